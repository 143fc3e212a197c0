"""The passes over the whole store a process makes at start and after each gap in the other
replicas' notices: the open decisions of every waiting or paused run, whose deadlines are
armed here (a gap may have carried questions asked on runs this process does not hold), and,
on a shared store, the store's runs by status and open questions counted again for the
observer (the gap may have carried moves of runs it does not hold, which its figures
follow)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

from runstream.v1 import decision_pb2, run_pb2

from runstream_server.domain.monitors import DEADLINE_KINDS, Deadlines
from runstream_server.domain.observer import DeliveryObserver
from runstream_server.domain.state import RunState
from runstream_server.store.base import EventStore, RunCounts, RunFilter, read_every_event

__all__ = ["StorePasses"]


class StorePasses:
    """Reads the store's open decisions, arms their deadlines, and recounts its figures."""

    def __init__(self, store: EventStore, deadlines: Deadlines, observer: DeliveryObserver) -> None:
        self._store = store
        self._deadlines = deadlines
        self._observer = observer

    async def arm_deadlines(self) -> None:
        """Arms the deadline of every open decision in the store: at start, or on a shared
        store after each gap in the notices, the first being the subscription itself (so a
        question asked before it is not missed). On a shared store the observer is given the
        store's runs by status and open questions counted again, in the same pass."""
        recount = self._store.shared
        if recount:
            self._observer.recounting()
        found: list[tuple[str, decision_pb2.Decision]] = []
        counts: RunCounts | None = None
        try:
            async for run_id, decision in self.open_decisions():
                found.append((run_id, decision))
                if decision.HasField("deadline"):
                    deadline = decision.deadline.ToDatetime(UTC)
                    self._deadlines.arm(run_id, decision.decision_id, deadline)
            if recount:
                counts = await self._store.count_runs()
        finally:
            if recount:
                self._observer.recounted(counts, found)

    async def open_decisions(self) -> AsyncIterator[tuple[str, decision_pb2.Decision]]:
        """The open decisions of every waiting or paused run in the store, read from their
        questions and answers alone: no run is loaded into memory, where thousands of them
        would push out the runs in use."""
        for status in (run_pb2.RUN_STATUS_WAITING_FOR_INPUT, run_pb2.RUN_STATUS_PAUSED):
            cursor: tuple[int, str] | None = None
            while True:
                page = await self._store.list_runs(RunFilter(frozenset({status})), 500, cursor)
                for run in page.runs:
                    asked = await read_every_event(self._store, run.run_id, DEADLINE_KINDS)
                    state = RunState.restore(run, (e.decode() for e in asked))
                    for decision in state.open_decisions():
                        yield run.run_id, decision
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
