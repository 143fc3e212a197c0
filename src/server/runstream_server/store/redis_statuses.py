"""The Redis store's indexes of the ended runs by status, and the walk that catches them up.

``P:status:<status>:runs`` (one per ended status, scored as ``P:runs``) holds the runs that
ended with that status: a ListRuns by one ended status (:mod:`.redis_listing`), and the
start's count (:mod:`.redis_counts`), read it rather than every stored run.
:meth:`~.redis_index.RunIndex.mark_ended` writes it with ``P:ended``, before the ZREM from
``P:active`` (so a sweep's move writes it too), and retention leaves it: a purged run keeps
its snapshot and is listed still. Runs ended before it existed, or by a replica of an earlier
release during a rollout, are entered by :meth:`StatusIndexes.catch_up` (at start and in each
replica's walk, every minute, after the filter indexes' walk: :mod:`.redis_filters`): the
first walk of a store reads every run's small ``status`` field once; later ones only the runs
whose ends were stored since the last walk (``P:moved``, and ``P:ended`` by end time for the
earlier release's, less :data:`~.redis_filters.MARGIN_US`), and walk every run again only
when the indexes' sizes say some run is in none of them. Until a walk has covered every run
(``P:filters`` field ``statuses``), listings by an ended status read as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runstream_server.store.base import stop_if_cancelled
from runstream_server.store.redis_filters import MARGIN_US
from runstream_server.store.redis_index import TERMINAL
from runstream_server.store.redis_keys import RedisKeys

_WALK_BATCH = 1000
"""Runs whose ``status`` fields a walk reads in one round trip."""


class StatusIndexes:
    """The indexes by ended status of one store, on the client `client` returns at each
    call; `clock_us`: the replicas' shared clock (microseconds), which ``P:moved`` is on."""

    def __init__(
        self, keys: RedisKeys, client: Callable[[], Any], *, clock_us: Callable[[], int]
    ) -> None:
        self._keys = keys
        self._client = client
        self._clock_us = clock_us
        self.ready = False
        """Whether every stored ended run is in its status's index (once true, for good)."""
        self._walk = asyncio.Lock()

    async def catch_up(self) -> int:
        """One walk that enters the ended runs missing from their statuses' indexes;
        returns how many it entered. Reads runs' small ``status`` fields, never a snapshot.

        The first walk of a store reads every run of ``P:runs``. Later ones read the runs
        whose ends were stored since the last walk of any replica, less
        :data:`~.redis_filters.MARGIN_US` (``P:moved``; ``P:ended`` by end time, for the
        ends of a replica of an earlier release, which writes no ``P:moved``), and then
        check that ``P:runs`` holds no more runs than ``P:active`` and these indexes do,
        beside the ones it held at the last whole walk (creates cut short, which no index
        but ``P:runs`` keeps): a run that such a replica ended with an end time dated back,
        or that retention purged in between, is in none of them, and a whole walk enters it."""
        async with self._walk:
            done, upto, gap = await self._client().hmget(
                self._keys.filters, "statuses", "statuses_upto", "statuses_gap"
            )
            now = self._clock_us()
            if done == b"1":
                entered = await self._enter_ended_since(int(upto or 0) - MARGIN_US)
                whole = await self._unindexed() > int(gap or 0)
            else:
                entered, whole = 0, True
            mapping = {"statuses": 1, "statuses_upto": now}
            if whole:
                entered += await self._enter_every_status()
                mapping["statuses_gap"] = await self._unindexed()
            await self._client().hset(self._keys.filters, mapping=mapping)
            self.ready = True
            return entered

    async def _enter_every_status(self) -> int:
        entered = start = 0
        while True:
            stop_if_cancelled()
            rows = await self._client().zrange(
                self._keys.runs, start, start + _WALK_BATCH - 1, withscores=True
            )
            entered += await self._enter_statuses(
                [(member.decode(), int(score)) for member, score in rows]
            )
            start += len(rows)
            if len(rows) < _WALK_BATCH:
                return entered

    async def _enter_ended_since(self, since_us: int) -> int:
        pipe = self._client().pipeline(transaction=False)
        pipe.zrangebyscore(self._keys.moved, since_us, "+inf")
        pipe.zrangebyscore(self._keys.ended, since_us, "+inf")
        found = await pipe.execute()
        ids = list(dict.fromkeys(m.decode() for members in found for m in members))
        entered = 0
        for at in range(0, len(ids), _WALK_BATCH):
            batch = ids[at : at + _WALK_BATCH]
            pipe = self._client().pipeline(transaction=False)
            for run_id in batch:
                pipe.zscore(self._keys.runs, run_id)
            scores = await pipe.execute()
            entered += await self._enter_statuses(
                [
                    (run_id, int(score))
                    for run_id, score in zip(batch, scores, strict=True)
                    if score is not None
                ]
            )
        return entered

    async def _unindexed(self) -> int:
        """How many runs of ``P:runs`` are in neither ``P:active`` nor an index by status
        (counted by sizes: a run in both, between the two writes of its end, counts once
        less)."""
        pipe = self._client().pipeline(transaction=False)
        for index in [self._keys.runs, self._keys.active]:
            pipe.zcard(index)
        for status in sorted(TERMINAL):
            pipe.zcard(self._keys.ended_runs(status))
        every, active, *ended = await pipe.execute()
        return int(every) - int(active) - sum(int(n) for n in ended)

    async def _enter_statuses(self, scored: list[tuple[str, int]]) -> int:
        """Enters the runs among `scored` (ids with their ``P:runs`` scores) whose stored
        ``status`` is an ended one in that status's index (again is harmless: ZADD NX)."""
        if not scored:
            return 0
        pipe = self._client().pipeline(transaction=False)
        for run_id, _ in scored:
            pipe.hget(self._keys.meta(run_id), "status")
        statuses = await pipe.execute(raise_on_error=False)
        by_status: dict[int, dict[str, int]] = {}
        for (run_id, score), status in zip(scored, statuses, strict=True):
            if isinstance(status, bytes) and int(status) in TERMINAL:
                by_status.setdefault(int(status), {})[run_id] = score
        if by_status:
            pipe = self._client().pipeline(transaction=False)
            for status, entries in by_status.items():  # one command per status
                pipe.zadd(self._keys.ended_runs(status), entries, nx=True)
            await pipe.execute()
        return sum(len(entries) for entries in by_status.values())
