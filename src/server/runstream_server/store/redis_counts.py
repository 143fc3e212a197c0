"""The Redis store's run counts at start: the ended runs by status and the active runs.

The ended runs are counted by the sizes of their statuses' indexes (:mod:`.redis_statuses`),
the active ones read from ``P:active`` (:mod:`.redis_index`): no ended run's snapshot is read.
Where Redis refuses writes, which the statuses' walk and the moves of ended runs left in
``P:active`` need, they are counted from a listing of every run (:mod:`.redis_listing`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis.exceptions as rex
from runstream.v1 import run_pb2

from runstream_server.store.base import RunCounts, RunFilter
from runstream_server.store.redis_index import TERMINAL, RunIndex
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_listing import RunListing
from runstream_server.store.redis_snapshots import SNAPSHOT_BATCH, SNAPSHOT_BYTES, RunSnapshots
from runstream_server.store.redis_statuses import StatusIndexes

log = logging.getLogger("runstream.store.redis")


class RunCounter:
    """Counts the runs of one store, on the client `client` returns at each call, from the
    indexes by status (`statuses`) and the active runs' snapshots (`snapshots`), moving the
    ended ones met there (`index`); or from `listing` when Redis refuses writes."""

    def __init__(
        self,
        keys: RedisKeys,
        client: Callable[[], Any],
        snapshots: RunSnapshots,
        statuses: StatusIndexes,
        index: RunIndex,
        listing: RunListing,
    ) -> None:
        self._keys = keys
        self._client = client
        self._snapshots = snapshots
        self._statuses = statuses
        self._index = index
        self._listing = listing

    async def count_runs(self) -> RunCounts:
        """The ended runs by status from the sizes of their indexes (after a walk that
        enters the ends stored since the last one,
        :meth:`~.redis_statuses.StatusIndexes.catch_up`), and the snapshots of the runs of
        ``P:active``; an ended run left there by a crash before
        :meth:`~.redis_index.RunIndex.mark_ended` is moved now, as a listing would. What a
        listing of every run counts, without a read of any ended run: the listing decoded
        every snapshot, 2-2.5 s per 50,000 runs at every start. A Redis that refuses writes
        (out of memory, a read-only replica: a server still starts and serves reads) gets
        that listing: the walk and the moves write."""
        try:
            return await self._count_by_indexes()
        except rex.ResponseError as exc:
            log.warning("runs counted by reading every run (Redis refused a write: %s)", exc)
        ended: dict[int, int] = {}
        active: list[run_pb2.Run] = []
        cursor: tuple[int, str] | None = None
        while True:
            page = await self._listing.list_runs(
                RunFilter(), 1000, cursor, max_bytes=SNAPSHOT_BYTES
            )
            for run in page.runs:
                if run.status in TERMINAL:
                    ended[run.status] = ended.get(run.status, 0) + 1
                else:
                    active.append(run)
            if page.next_cursor is None:
                return RunCounts(ended, active)
            cursor = page.next_cursor

    async def _count_by_indexes(self) -> RunCounts:
        await self._statuses.catch_up()
        ids = [member.decode() for member in await self._client().zrange(self._keys.active, 0, -1)]
        active: list[run_pb2.Run] = []
        for at in range(0, len(ids), SNAPSHOT_BATCH):
            for run_id, run in await self._snapshots.read(ids[at : at + SNAPSHOT_BATCH]):
                if run is None:
                    continue
                if run.status in TERMINAL:
                    await self._index.mark_ended(run_id, run)
                else:
                    active.append(run)
        statuses = sorted(TERMINAL)
        pipe = self._client().pipeline(transaction=False)
        for status in statuses:
            pipe.zcard(self._keys.ended_runs(status))
        sizes = await pipe.execute()
        return RunCounts(dict(zip(statuses, sizes, strict=True)), active)
