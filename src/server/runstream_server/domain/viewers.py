"""Viewer counts: how many watchers a run has on this process and on every other replica.

A run's ``viewer_count`` is this process's watchers (the hub knows them) plus the other
replicas' (the store keeps each replica's count with an expiry, so a dead replica's watchers
stop counting). Reads ask the store for a whole page of runs in one round trip: GetRun,
ListRuns and the first state of WatchRuns are always current.

WatchRuns then sends a run again whenever it changes, with its count. So that those
summaries, made on every commit without waiting for the store, carry the other replicas'
watchers too, the last counts read are kept here. Each replica tells the others when its
count for a run changes (a :class:`~runstream_server.store.base.ViewersNotice`); a process
with WatchRuns streams reads that run's counts again and sends the run on. The kept counts
are read again every few seconds, which is how a replica that died without a word stops
counting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from runstream.v1 import run_pb2

from runstream_server.domain.hub import Hub, RunsHub
from runstream_server.domain.state import RunState
from runstream_server.errors import RunstreamError
from runstream_server.store.base import EventStore, stop_if_cancelled

log = logging.getLogger("runstream.runs")

REREAD_INTERVAL = 5.0
"""Seconds between reads of the kept counts (other replicas' counts expire after 15 s)."""


class ViewerCounts:
    """Watchers per run across replicas, for GetRun, ListRuns and WatchRuns."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub,
        runs_hub: RunsHub,
        cached: Callable[[str], RunState | None],
        summary: Callable[[run_pb2.Run, int], run_pb2.Run],
    ) -> None:
        """`cached` gives a run's state when this process holds it; `summary` makes the
        run WatchRuns sends."""
        self._store = store
        self._hub = hub
        self._runs_hub = runs_hub
        self._cached = cached
        self._summary = summary
        self._elsewhere: dict[str, int] = {}
        """Other replicas' watchers per run, as last read (runs with none are left out)."""
        self._unsent: set[str] = set()
        """Runs whose changed count a store error kept from WatchRuns: sent at the next read."""

    def total(self, run_id: str) -> int:
        """This process's watchers of the run now, plus the other replicas' as last read."""
        return self._hub.watcher_count(run_id) + self._elsewhere.get(run_id, 0)

    async def read(self, run_ids: Sequence[str]) -> dict[str, int]:
        """The runs' counts on every replica, reading the others' in one round trip."""
        if self._store.shared and run_ids:
            elsewhere = await self._store.viewers(run_ids)
            for run_id in run_ids:
                self._keep(run_id, elsewhere.get(run_id, 0))
        return {run_id: self.total(run_id) for run_id in run_ids}

    async def changed_elsewhere(self, run_ids: Sequence[str]) -> None:
        """Another replica's count changed: read it, and send the runs to WatchRuns."""
        if not self._runs_hub.active:  # nothing shows counts live; reads ask the store
            for run_id in run_ids:
                self._elsewhere.pop(run_id, None)
                self._unsent.discard(run_id)
            return
        before = {run_id: self.total(run_id) for run_id in run_ids}
        changed = [
            (run_id, count)
            for run_id, count in (await self.read(run_ids)).items()
            if count != before[run_id] or run_id in self._unsent
        ]
        for i, (run_id, count) in enumerate(changed):
            if not self._runs_hub.active:
                return
            try:
                run = await self._latest(run_id)
            except Exception:
                # Not sent (the store failed): read and sent again at the next interval.
                self._unsent.update(unsent for unsent, _ in changed[i:])
                raise
            self._unsent.discard(run_id)
            if run is not None:
                self._runs_hub.publish(self._summary(run, count))

    def _keep(self, run_id: str, count: int) -> None:
        if count:
            self._elsewhere[run_id] = count
        else:
            self._elsewhere.pop(run_id, None)

    async def _latest(self, run_id: str) -> run_pb2.Run | None:
        """The run as held here, else as stored: held after the read (a commit here loaded
        it meanwhile, and sent its newer state), the held state, not the older one read."""
        state = self._cached(run_id)
        if state is None:
            stored = await self._store.load_run(run_id)
            state = self._cached(run_id)
            if state is None:
                return stored
        return state.run

    async def reread_forever(self) -> None:
        """Reads the kept counts again every few seconds (a replica may have died); a read
        the store fails is tried again at the next interval."""
        while True:
            stop_if_cancelled()
            await asyncio.sleep(REREAD_INTERVAL)
            if self._elsewhere or self._unsent:
                try:
                    await self.changed_elsewhere(list(self._elsewhere.keys() | self._unsent))
                except RunstreamError as exc:  # the store is unreachable: it says so itself
                    log.debug("viewer counts not read again: %s", exc)
