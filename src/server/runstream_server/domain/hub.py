"""Live fan-out: durable events to each run's watchers, run-level changes to WatchRuns.

Publishing never blocks and never waits for a watcher: each subscription has a bounded
buffer, and a watcher that falls more than ``max_pending`` events behind is marked overflowed
and its buffer dropped. The watcher then reads what it missed from the store, which has every
event already (the hub only ever sees durable events), so falling behind costs a read, never
an event.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from runstream.v1 import run_pb2

from runstream_server.domain.events import EncodedEvent


class _Mailbox:
    """What a stream waits on: news arrived, or the hub closed. Never blocks the sender."""

    __slots__ = ("_ready", "closed_reason")

    def __init__(self) -> None:
        self.closed_reason: str | None = None
        self._ready = asyncio.Event()  # set exactly while there is news or the hub closed

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self._ready.set()

    async def wait(self, idle_seconds: float) -> bool:
        """Waits for news; returns False when `idle_seconds` passed with none."""
        try:
            async with asyncio.timeout(idle_seconds):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True


class Subscription(_Mailbox):
    """One watcher's buffer of live events for one run."""

    __slots__ = ("_max_pending", "items", "overflowed", "run_id")

    def __init__(self, run_id: str, max_pending: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.items: deque[EncodedEvent] = deque()
        self.overflowed = False
        self._max_pending = max_pending

    def push(self, events: Sequence[EncodedEvent]) -> None:
        if self.overflowed:
            return
        if len(self.items) + len(events) > self._max_pending:
            # Drop the buffer, not the events: the watcher re-reads them from the store.
            self.overflowed = True
            self.items.clear()
        else:
            self.items.extend(events)
        self._ready.set()

    def take(self) -> list[EncodedEvent]:
        """Removes and returns everything buffered, resetting the overflow mark."""
        items = list(self.items)
        self.items.clear()
        self.overflowed = False
        if self.closed_reason is None:
            self._ready.clear()
        return items


class Hub:
    """Routes each run's newly durable events to that run's subscriptions."""

    def __init__(self, max_pending: int = 4096) -> None:
        self._max_pending = max_pending
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._closed_reason: str | None = None

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(run_id, self._max_pending)
        if self._closed_reason is not None:
            sub.close(self._closed_reason)
        self._subscriptions.setdefault(run_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscriptions[sub.run_id]

    def publish(self, run_id: str, events: Sequence[EncodedEvent]) -> None:
        for sub in self._subscriptions.get(run_id, ()):
            sub.push(events)

    def watcher_count(self, run_id: str) -> int:
        return len(self._subscriptions.get(run_id, ()))

    def close(self, reason: str) -> None:
        """Ends every subscription, e.g. at shutdown, so watchers resume elsewhere."""
        self._closed_reason = reason
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.close(reason)


class RunsSubscription(_Mailbox):
    """One WatchRuns stream: the latest state of each changed run, coalesced per run."""

    __slots__ = ("known", "matches", "pending")

    def __init__(self, matches: Callable[[run_pb2.Run], bool]) -> None:
        super().__init__()
        self.matches = matches
        self.pending: dict[str, run_pb2.Run] = {}
        self.known: set[str] = set()

    def offer(self, run: run_pb2.Run) -> None:
        """Queues the run if it matches, or if it just stopped matching (sent once more)."""
        if self.matches(run):
            self.known.add(run.run_id)
        elif run.run_id in self.known:
            self.known.discard(run.run_id)
        else:
            return
        self.pending[run.run_id] = run
        self._ready.set()

    def take(self) -> list[run_pb2.Run]:
        runs = list(self.pending.values())
        self.pending.clear()
        if self.closed_reason is None:
            self._ready.clear()
        return runs


class RunsHub:
    """Routes run-level changes to WatchRuns streams; never blocks the writer."""

    def __init__(self) -> None:
        self._subscriptions: set[RunsSubscription] = set()
        self._closed_reason: str | None = None

    @property
    def active(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(self, matches: Callable[[run_pb2.Run], bool]) -> RunsSubscription:
        sub = RunsSubscription(matches)
        if self._closed_reason is not None:
            sub.close(self._closed_reason)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: RunsSubscription) -> None:
        self._subscriptions.discard(sub)

    def publish(self, run: run_pb2.Run) -> None:
        for sub in self._subscriptions:
            sub.offer(run)

    def close(self, reason: str) -> None:
        self._closed_reason = reason
        for sub in self._subscriptions:
            sub.close(reason)
