"""The Redis store's run indexes, and ListRuns and retention's choice of runs over them.

Sorted sets outside the runs' slots (named by :class:`~.redis_keys.RedisKeys`): ``P:runs``
(every run by create time), ``P:active`` (runs not ended), ``P:ended`` (by end time, for
retention) and ``P:tenant:<tenant>:runs`` (each tenant's runs by create time, so a tenant's
ListRuns reads only its own runs). They are hints: every read re-checks the run's snapshot,
so an entry whose run has no snapshot is passed over, and a run found ended in ``P:active``
is taken out of it when met.

A new run's entries (every run, active, its tenant's) are written before the append script
stores the run, in one round trip: the script is sent only once all of them are
acknowledged, so a run is never stored without its entries. A crash before that leaves some
or all of the entries without a run, which every listing passes over; a retry of the same
run id finds them in place (ZADD NX leaves them as they are). They cannot share the script
or one MULTI/EXEC: on a cluster they are in other slots than the run's keys and than each
other. Nor need they: each is a hint on its own, meaningless until the run's snapshot exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from runstream.v1 import run_pb2

from runstream_server.store.base import RunFilter, RunPage
from runstream_server.store.redis_keys import RedisKeys

TERMINAL = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)


class RunIndex:
    """The run indexes of one store, on the client `client` returns at each call."""

    def __init__(self, keys: RedisKeys, client: Callable[[], Any]) -> None:
        self._keys = keys
        self._client = client

    async def add_created(self, run_id: str, snapshot: run_pb2.Run) -> None:
        """Enters a run about to be created, in one round trip (on a cluster, one to each
        master holding an index, all at once); returns once every entry is written."""
        created = snapshot.create_time.ToMicroseconds()
        pipe = self._client().pipeline(transaction=False)
        for index in (self._keys.runs, self._keys.active, self._keys.tenant_runs(snapshot.tenant)):
            pipe.zadd(index, {run_id: created}, nx=True)
        await pipe.execute()

    async def mark_ended(self, run_id: str, snapshot: run_pb2.Run) -> None:
        """Moves a run whose end is stored from the active runs to the ended ones."""
        await self._client().zrem(self._keys.active, run_id)
        await self._client().zadd(self._keys.ended, {run_id: snapshot.end_time.ToMicroseconds()})

    async def ended(self, *, ended_before_us: int | None, keep_newest: int | None) -> list[str]:
        """Ended runs that ended before `ended_before_us` or are older than the newest
        `keep_newest` ended runs (hints: the caller re-checks each run)."""
        chosen: dict[str, None] = {}
        if ended_before_us is not None:
            for member in await self._client().zrangebyscore(
                self._keys.ended, "-inf", f"({ended_before_us}"
            ):
                chosen[member.decode()] = None
        if keep_newest is not None:
            for member in await self._client().zrevrange(self._keys.ended, keep_newest, -1):
                chosen[member.decode()] = None
        return list(chosen)

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, cursor: tuple[int, str] | None
    ) -> RunPage:
        only_active = bool(run_filter.statuses) and not (run_filter.statuses & TERMINAL)
        index = self._keys.active if only_active else self._keys.runs
        if run_filter.tenant is not None and not only_active:
            index = self._keys.tenant_runs(run_filter.tenant)
        matched: list[run_pb2.Run] = []
        async for run in self._newest_first(index, cursor):
            if only_active and run.status in TERMINAL:  # a hint left by a crashed writer
                await self._client().zrem(self._keys.active, run.run_id)
                continue
            if run_filter.matches(run):
                matched.append(run)
                if len(matched) > page_size:
                    break
        more = len(matched) > page_size
        runs = matched[:page_size]
        last = runs[-1] if runs else None
        next_cursor = (
            (last.create_time.ToMicroseconds(), last.run_id) if more and last is not None else None
        )
        return RunPage(runs, next_cursor)

    async def _newest_first(
        self, index: str, cursor: tuple[int, str] | None
    ) -> AsyncIterator[run_pb2.Run]:
        """Runs of an index by (create time, id) descending, strictly after `cursor`."""
        top = "+inf" if cursor is None else str(cursor[0])
        skip = 0  # entries scored `top` already met: the next fetch starts after them
        while True:
            rows = await self._client().zrevrangebyscore(
                index, top, "-inf", start=skip, num=200, withscores=True
            )
            if not rows:
                return
            ids = [member.decode() for member, _ in rows]
            pipe = self._client().pipeline(transaction=False)
            for run_id in ids:
                pipe.hget(self._keys.meta(run_id), "snap")
            snaps = await pipe.execute()
            for run_id, (_, score), snap in zip(ids, rows, snaps, strict=True):
                at = int(score)
                if str(at) == top:
                    skip += 1
                else:
                    top, skip = str(at), 1
                if cursor is not None and (at, run_id) >= cursor:
                    continue
                if snap is not None:  # an entry written before a crash stopped the create
                    yield run_pb2.Run.FromString(snap)
            if len(rows) < 200:
                return
