"""The runs a process holds in memory: each run's derived state and the lock of its writes.

A run stays while something uses it and is evicted, least recently used first, when there
are more than the limits allow, ended or not: every run reloads from the store on its next
use. Eviction can never hand out two locks for one run: whoever is about to take a run's lock
registers as a user of its slot first, synchronously (no await between finding the slot and
counting in), and a slot is dropped only when it has no users. A waiter queued on a lock that
was just released still counts, which ``lock.locked()`` would have missed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from runstream_server.domain.state import RunState


class RunSlot:
    """One run in memory: its state (None until loaded) and the lock of its writes."""

    __slots__ = ("failure", "lock", "run_id", "state", "users")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock = asyncio.Lock()
        self.state: RunState | None = None
        self.users = 0
        # The last failed load (when, what): the callers queued behind it share it rather
        # than each waiting out the store's timeout in turn.
        self.failure: tuple[float, Exception] | None = None


class RunSlots:
    """Slots by run id, least recently used first."""

    def __init__(self, capacity: int, ended_capacity: int, pinned: Callable[[str], bool]) -> None:
        """At most `capacity` runs, of which at most `ended_capacity` ended, stay in memory
        unless `pinned` (watched, produced to) or in use."""
        self._capacity = capacity
        self._ended_capacity = ended_capacity
        self._pinned = pinned
        self._slots: OrderedDict[str, RunSlot] = OrderedDict()
        self._ended = 0

    def __len__(self) -> int:
        return len(self._slots)

    def state(self, run_id: str) -> RunState | None:
        """The run's state if it is in memory (and marks it recently used)."""
        slot = self._slots.get(run_id)
        if slot is None or slot.state is None:
            return None
        self._slots.move_to_end(run_id)
        return slot.state

    def __contains__(self, run_id: str) -> bool:
        """Whether the run has a slot: loaded, or being loaded."""
        return run_id in self._slots

    def loading_runs(self) -> list[str]:
        """The runs being loaded (a slot taken, its state not read yet)."""
        return [s.run_id for s in self._slots.values() if s.state is None]

    def held(self) -> list[tuple[str, RunState]]:
        """Every loaded run, e.g. to check them all against the store after a gap."""
        return [(s.run_id, s.state) for s in self._slots.values() if s.state is not None]

    def set_state(self, slot: RunSlot, state: RunState | None) -> None:
        """Replaces a slot's state (only while holding its lock)."""
        was = slot.state is not None and slot.state.is_terminal
        now = state is not None and state.is_terminal
        self._ended += int(now) - int(was)
        slot.state = state

    def locked(self, run_id: str) -> Held:
        """Holds the run's lock (``async with``); its slot cannot be evicted meanwhile."""
        return Held(self, run_id)

    def _enter(self, run_id: str) -> RunSlot:
        slot = self._slots.get(run_id)
        if slot is None:
            slot = self._slots[run_id] = RunSlot(run_id)
        slot.users += 1  # before the first await: from here on the slot stays
        return slot

    def _leave(self, slot: RunSlot) -> None:
        slot.users -= 1
        if slot.users == 0 and slot.state is None:
            del self._slots[slot.run_id]  # an unknown run, or a failed load: nothing to keep
        else:
            self._slots.move_to_end(slot.run_id)
        self.evict()

    def evict(self) -> None:
        """Drops the least recently used idle runs beyond the limits."""
        excess = len(self._slots) - self._capacity
        if excess <= 0 and self._ended <= self._ended_capacity:
            return
        for run_id, slot in list(self._slots.items()):
            if excess <= 0 and self._ended <= self._ended_capacity:
                return
            if slot.users or self._pinned(run_id):
                continue
            ended = slot.state is not None and slot.state.is_terminal
            if excess > 0 or ended:
                self.set_state(slot, None)
                del self._slots[run_id]
                excess -= 1


class Held:
    """``async with slots.locked(run_id) as slot``: the slot counted in use, then its lock
    taken; on the way out the lock released, then the slot let go (and maybe evicted). A
    class rather than an async generator: every commit takes one."""

    __slots__ = ("_run_id", "_slot", "_slots")

    def __init__(self, slots: RunSlots, run_id: str) -> None:
        self._slots = slots
        self._run_id = run_id
        self._slot: RunSlot | None = None

    async def __aenter__(self) -> RunSlot:
        slot = self._slot = self._slots._enter(self._run_id)
        try:
            await slot.lock.acquire()
        except BaseException:
            self._slots._leave(slot)
            raise
        return slot

    async def __aexit__(self, *exc_info: object) -> None:
        slot = self._slot
        assert slot is not None, "left without entering"
        try:
            slot.lock.release()
        finally:
            self._slots._leave(slot)
