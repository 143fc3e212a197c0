"""What an Interaction's iteration yields: each decision's prompt once, a closure only for a
prompt it yielded, and a resync in place of a queue that grew past its bound (see the
docstring of runstream._interaction)."""

from __future__ import annotations

import asyncio
from collections import deque

from runstream._types import Decision, DecisionClosed, DecisionPrompt, InteractionUpdate

__all__ = ["DecisionUpdates", "Key", "key_of"]

Key = tuple[str, str]


def key_of(decision: Decision) -> Key:
    return decision.run_id, decision.decision_id


class _End:
    """Marks the end of the updates queue."""


_END = _End()


class DecisionUpdates:
    """The updates of an Interaction's stream, between the stream task that delivers them
    and the caller that iterates them; what is open is kept whether or not anyone iterates."""

    def __init__(self, max_updates: int) -> None:
        self._queue: asyncio.Queue[InteractionUpdate | _End] = asyncio.Queue()
        self._max_updates = max(1, max_updates)
        # What the server said is open, what the iteration yielded as open, closures of
        # yielded prompts not yielded yet, and the updates a resync hands out before the
        # queue again.
        self.open: dict[Key, Decision] = {}
        self._shown: set[Key] = set()
        self._closures: dict[Key, Decision] = {}
        # Decisions known closed: a prompt for one is stale, and its closure is told once
        # (after a reconnect, both the new stream and GetDecision may tell it).
        self._finished: set[Key] = set()
        self._resync = False
        self._backlog: deque[InteractionUpdate] = deque()

    def __len__(self) -> int:
        """The updates queued now: at most max_updates (and the end's mark)."""
        return self._queue.qsize()

    def deliver(self, update: InteractionUpdate) -> None:
        """Queues an update for the iteration; past max_updates, a resync replaces the queue."""
        if (
            isinstance(update, DecisionPrompt | DecisionClosed)
            and key_of(update.decision) in self._finished
        ):
            return  # sent before it closed, or a closure told already
        if isinstance(update, DecisionPrompt):
            self.open[key_of(update.decision)] = update.decision
        elif isinstance(update, DecisionClosed):
            key = key_of(update.decision)
            self._finished.add(key)
            self.open.pop(key, None)
            if key in self._shown:
                self._closures[key] = update.decision
        if self._resync and isinstance(update, DecisionPrompt | DecisionClosed):
            return  # the resync yields the state as it is when the caller gets to it
        if self._queue.qsize() >= self._max_updates:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._resync = True
            return
        self._queue.put_nowait(update)

    def end(self) -> None:
        """Ends the iteration once what is queued before it was taken."""
        self._queue.put_nowait(_END)

    async def next(self) -> InteractionUpdate | None:
        """The next update to yield; None once the updates ended (and at every call after)."""
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._resync:
                self._resync = False
                self._backlog.extend(self._differences())
                continue
            update = await self._queue.get()
            if isinstance(update, _End):
                self._queue.put_nowait(update)  # Every later call ends too.
                return None
            if isinstance(update, DecisionPrompt):
                if key_of(update.decision) in self._shown:
                    continue  # repeated after a reconnect, or yielded by a resync
                self._shown.add(key_of(update.decision))
            elif isinstance(update, DecisionClosed):
                if key_of(update.decision) not in self._shown:
                    continue  # its prompt was never yielded, or a resync yielded the closure
                self._shown.discard(key_of(update.decision))
                self._closures.pop(key_of(update.decision), None)
            return update

    def _differences(self) -> list[InteractionUpdate]:
        """A resync: closures of yielded prompts that closed, prompts not yielded yet."""
        updates: list[InteractionUpdate] = []
        for key in [k for k in self._shown if k not in self.open]:
            self._shown.discard(key)
            closed = self._closures.pop(key, None)
            if closed is not None:
                updates.append(DecisionClosed(closed))
        for key, decision in self.open.items():
            if key not in self._shown:
                self._shown.add(key)
                updates.append(DecisionPrompt(decision))
        return updates
