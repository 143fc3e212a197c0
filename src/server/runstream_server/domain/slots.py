"""The runs a process holds in memory: each run's derived state and the lock of its writes.

A run stays while something uses it and is evicted, least recently used first, when there
are more than the limits allow, ended or not: every run reloads from the store on its next
use. Eviction can never hand out two locks for one run: whoever is about to take a run's lock
registers as a user of its slot first, synchronously (no await between finding the slot and
counting in), and a slot is dropped only when it has no users. A waiter queued on a lock that
was just released still counts, which ``lock.locked()`` would have missed.

A walk over the slots that finds too few of them free to drop (more ended runs than the limit
watched, say) is not repeated until a pin is released: until then only the run just let go
can have become free, so a commit costs the same however many runs are pinned.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from runstream_server.domain.state import RunState


class RunSlot:
    """One run in memory: its state (None until loaded) and the lock of its writes."""

    __slots__ = ("failure", "lock", "run_id", "state", "unsure", "users")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock = asyncio.Lock()
        self.state: RunState | None = None
        self.users = 0
        # The last failed load (when, what): the callers queued behind it share it rather
        # than each waiting out the store's timeout in turn.
        self.failure: tuple[float, Exception] | None = None
        # A write to the run got no answer from the store, which may still apply it: the
        # state may be behind the log until the log is read after it.
        self.unsure = False


class RunSlots:
    """Slots by run id, least recently used first."""

    def __init__(
        self,
        capacity: int,
        ended_capacity: int,
        pinned: Callable[[str], bool],
        releases: Callable[[], int],
    ) -> None:
        """At most `capacity` runs, of which at most `ended_capacity` ended, stay in memory
        unless `pinned` (watched, produced to) or in use; `releases` counts the pins
        released so far (a run left by its last watcher, producer or decision feed)."""
        self._capacity = capacity
        self._ended_capacity = ended_capacity
        self._pinned = pinned
        self._releases = releases
        self._slots: OrderedDict[str, RunSlot] = OrderedDict()
        self._ended = 0
        # `releases` when a walk last left the slots over the limits, none free to drop.
        self._walked_in_vain_at: int | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def state(self, run_id: str, *, settled: bool = False) -> RunState | None:
        """The run's state if it is in memory (and marks it recently used); when `settled`,
        only if no write the store may still apply is unaccounted for."""
        slot = self._slots.get(run_id)
        if slot is None or slot.state is None or (settled and slot.unsure):
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
        self.evict(slot)

    def evict(self, left: RunSlot | None = None) -> None:
        """Drops the least recently used idle runs beyond the limits. After a walk that
        could not drop enough, and until a pin is released, only `left` (the run just let
        go, the one slot that may have become free since) is looked at."""
        excess = len(self._slots) - self._capacity
        if excess <= 0 and self._ended <= self._ended_capacity:
            self._walked_in_vain_at = None
            return
        if self._walked_in_vain_at == self._releases():
            if left is not None and left.run_id in self._slots:
                self._drop_if_free(left, excess)
            return
        for slot in list(self._slots.values()):
            if excess <= 0 and self._ended <= self._ended_capacity:
                self._walked_in_vain_at = None
                return
            excess -= self._drop_if_free(slot, excess)
        if excess > 0 or self._ended > self._ended_capacity:
            self._walked_in_vain_at = self._releases()

    def _drop_if_free(self, slot: RunSlot, excess: int) -> int:
        """Drops the slot if it is idle, not pinned and over a limit; 1 if it did."""
        if slot.users or self._pinned(slot.run_id):
            return 0
        if excess > 0 or (slot.state is not None and slot.state.is_terminal):
            self.set_state(slot, None)
            del self._slots[slot.run_id]
            return 1
        return 0


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
