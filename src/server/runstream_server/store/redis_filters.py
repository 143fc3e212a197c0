"""The Redis store's filter indexes: a ListRuns by workflow or label reads the runs that have
it, not every stored run until it has its page.

Sorted sets outside the runs' slots, one per workflow (``P:wf:<workflow>:runs``) and one per
label (``P:label:<key>:<value>:runs``; names quoted), scored as ``P:runs`` is: by the run's
create time, its first attempt's. They are written with a new run's other index entries, in
the same round trip before the script that stores the run, and that script marks the run's
meta hash (``ix``): a run so marked has its filter entries. A run's workflow and labels never
change, so an entry never goes stale; like the other indexes they are hints, and every read
re-checks the run's snapshot.

Runs stored before these indexes existed, or by a replica of an earlier release during a
rollout, have no entries and no mark. Each replica walks ``P:runs`` in the background
(:meth:`FilterIndexes.catch_up`, at start and every :attr:`~FilterIndexes.EVERY` seconds)
from where the last walk of any replica got to (``P:filters``, a hash: ``ready``, ``upto``),
less :data:`MARGIN_US` (a run enters ``P:runs`` by its creator's clock, a moment before it is
stored), and enters every stored run without the mark. Until some replica has walked them all
once (``ready``), filtered listings read as they did before, from the run indexes alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions as rex
from runstream.v1 import run_pb2

from runstream_server.background import spawn_logged
from runstream_server.errors import Unavailable
from runstream_server.store.base import RunFilter, stop_if_cancelled
from runstream_server.store.redis_connect import SOCKET_TIMEOUT
from runstream_server.store.redis_keys import RedisKeys

log = logging.getLogger("runstream.store.redis")

MARGIN_US = 120 * 10**6
"""How far before the last walk's end the next walk starts again."""

Snapshots = Callable[[list[str]], Awaitable[list[tuple[str, run_pb2.Run | None]]]]


class FilterIndexes:
    """The filter indexes of one store, on the client `client` returns at each call;
    `snapshots` reads runs' snapshots (:meth:`~.redis_snapshots.RunSnapshots.read`)."""

    EVERY = 60.0
    """Seconds between two walks for runs without entries."""
    PAGE = 500
    """``P:runs`` entries one round trip of a walk reads."""

    def __init__(
        self,
        keys: RedisKeys,
        client: Callable[[], Any],
        snapshots: Snapshots,
        then: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`then`: another walk each of these walks is followed by (the ended runs' indexes
        by status, :meth:`~.redis_statuses.StatusIndexes.catch_up`)."""
        self._keys = keys
        self._client = client
        self._snapshots = snapshots
        self._then = then
        self.ready = False
        """Whether every stored run has its entries (once true, true for good)."""
        self._walker: asyncio.Task[None] | None = None

    def keys_of(self, snapshot: run_pb2.Run) -> list[str]:
        """The filter indexes a run belongs in."""
        keys = [self._keys.workflow_runs(snapshot.workflow)]
        keys += [self._keys.label_runs(k, v) for k, v in sorted(snapshot.labels.items())]
        return keys

    def indexes_for(self, run_filter: RunFilter) -> list[str]:
        """The filter indexes that hold every run `run_filter` can match (each of them
        does): none until the walk made them whole."""
        if not self.ready:
            return []
        workflow = run_filter.workflow
        keys = [] if workflow is None else [self._keys.workflow_runs(workflow)]
        keys += [self._keys.label_runs(k, v) for k, v in sorted(run_filter.labels.items())]
        return keys

    # --- the walk ---------------------------------------------------------------------------

    def start(self) -> None:
        self._walker = spawn_logged(self._walk_forever(), "runstream-redis-filter-walks")

    async def stop(self) -> None:
        """Stops the walks, and waits for the one under way to end: at its next round trip,
        when redis-py swallowed the cancel (within the socket timeout, however Redis is);
        a walk left running past the store's close would open connections of its own."""
        if self._walker is not None:
            self._walker.cancel()
            await asyncio.wait({self._walker}, timeout=SOCKET_TIMEOUT + 2)

    async def _walk_forever(self) -> None:
        while True:
            try:
                await self.catch_up()
                if self._then is not None:
                    await self._then()
            except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
                # Redis away (which the server reports already): the next walk starts where
                # the last whole one ended.
                log.debug("filter indexes: a walk stopped (%s); next in %ss", exc, self.EVERY)
            except Unavailable:
                return  # the store is closed
            stop_if_cancelled()
            await asyncio.sleep(self.EVERY)

    async def catch_up(self) -> int:
        """One walk: enters the stored runs of ``P:runs`` that have no entries, from the
        last walk's end less :data:`MARGIN_US` (from the oldest when no walk ended yet);
        returns how many it entered."""
        state = await self._client().hgetall(self._keys.filters)
        stop_if_cancelled()
        ready = state.get(b"ready") == b"1"
        upto = int(state.get(b"upto", b"0")) if ready else None
        low, skip = ("-inf" if upto is None else str(upto - MARGIN_US)), 0
        highest, entered = upto, 0
        while True:
            stop_if_cancelled()  # redis-py may have swallowed the stop's cancel
            rows = await self._client().zrangebyscore(
                self._keys.runs, low, "+inf", start=skip, num=self.PAGE, withscores=True
            )
            if not rows:
                break
            scored = [(m.decode(), int(score)) for m, score in rows]
            entered += await self._enter_unmarked(scored)
            last = scored[-1][1]
            same = sum(1 for _, at in scored if at == last)
            low, skip = (str(last), skip + same) if str(last) == low else (str(last), same)
            highest = last if highest is None else max(highest, last)
            if len(rows) < self.PAGE:
                break
        mapping: dict[str, int] = {"ready": 1}
        if highest is not None:
            mapping["upto"] = highest
        await self._client().hset(self._keys.filters, mapping=mapping)
        self.ready = True
        return entered

    async def _enter_unmarked(self, scored: Sequence[tuple[str, int]]) -> int:
        """Writes the entries of the runs among `scored` (ids with their ``P:runs`` scores)
        that are stored without the mark, then marks them: entries first, in their own round
        trip, so a mark never stands for entries not written. A run not stored (a create in
        flight, or cut short) is left to the next walk."""
        pipe = self._client().pipeline(transaction=False)
        for run_id, _ in scored:
            pipe.hget(self._keys.meta(run_id), "ix")
        marks = await pipe.execute(raise_on_error=False)
        stop_if_cancelled()  # here and after each round trip: redis-py may swallow a cancel
        unmarked = {
            run_id: at for (run_id, at), mark in zip(scored, marks, strict=True) if mark is None
        }
        if not unmarked:
            return 0
        stored = [(run_id, run) for run_id, run in await self._snapshots(list(unmarked)) if run]
        stop_if_cancelled()
        if not stored:
            return 0
        pipe = self._client().pipeline(transaction=False)
        for run_id, run in stored:
            for key in self.keys_of(run):
                pipe.zadd(key, {run_id: unmarked[run_id]}, nx=True)
        await pipe.execute()
        stop_if_cancelled()
        pipe = self._client().pipeline(transaction=False)
        for run_id, _ in stored:
            pipe.hset(self._keys.meta(run_id), "ix", 1)
        await pipe.execute()
        return len(stored)
