"""The Redis store's run indexes, and ListRuns and retention's choice of runs over them.

Sorted sets outside the runs' slots (named by :class:`~.redis_keys.RedisKeys`): ``P:runs``
(every run by create time), ``P:active`` (runs not ended), ``P:ended`` (ended runs whose
logs are kept, by when their ends were stored, for retention: a run leaves it once
retention purged its log),
``P:moved`` (runs whose end was stored in the last hour, by the server's clock then: what a
replica that missed notices reads again) and ``P:tenant:<tenant>:runs`` (each tenant's runs
by create time, so a tenant's ListRuns reads only its own runs). They are hints: every read
re-checks the run's snapshot, so an entry whose run has no snapshot is passed over, and a
run found ended in ``P:active`` is moved to ``P:ended`` when met (by an active-only
ListRuns, and by retention's sweep).

A new run's entries (every run, active, its tenant's) are written before the append script
stores the run, in one round trip: the script is sent only once all of them are
acknowledged, so a run is never stored without its entries. A crash before that leaves some
or all of the entries without a run, which every listing passes over; a retry of the same
run id finds them in place (ZADD NX leaves them as they are). They cannot share the script
or one MULTI/EXEC: on a cluster they are in other slots than the run's keys and than each
other. Nor need they: each is a hint on its own, meaningless until the run's snapshot exists.

An ended run moves from ``P:active`` to ``P:ended`` after the script stored its end, ZADD to
``P:ended`` first and ZREM from ``P:active`` second, never the other way round: at every
crash point the run is still in ``P:active`` or already in ``P:ended``. Retention chooses
runs from ``P:ended`` only, so a run left in neither would keep its log forever; one left in
``P:active`` is moved by whoever meets it there next. Retention does not wait for an
active-only ListRuns to come by: each of its passes sweeps a bounded batch of ``P:active``
first (:meth:`RunIndex.sweep_active`).

``P:status:<status>:runs`` (one per ended status, scored as ``P:runs``) holds the runs that
ended with that status: a ListRuns by one ended status, and the start's count, read it
rather than every stored run. :meth:`RunIndex.mark_ended` writes it with ``P:ended``, before
the ZREM from ``P:active`` (so a sweep's move writes it too), and retention leaves it: a
purged run keeps its snapshot and is listed still. Runs ended before it existed, or by a
replica of an earlier release during a rollout, are entered by :meth:`RunIndex.catch_up_statuses`
(at start and in each replica's walk, every minute): the first walk of a store reads every
run's small ``status`` field once; later ones only the runs whose ends were stored since the
last walk (``P:moved``, and ``P:ended`` by end time for the earlier release's, less
:data:`~.redis_filters.MARGIN_US`), and walk every run again only when the indexes' sizes
say some run is in none of them. Until a walk has covered every run (``P:filters`` field
``statuses``), listings by an ended status read as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.exceptions as rex
from runstream.v1 import run_pb2

from runstream_server.store.base import (
    RunCounts,
    RunFilter,
    RunPage,
    ended_us,
    left_out,
    readable_run,
    stop_if_cancelled,
)
from runstream_server.store.redis_filters import MARGIN_US, FilterIndexes
from runstream_server.store.redis_keys import RedisKeys

log = logging.getLogger("runstream.store.redis")

HISTORY_KEPT = 100
"""Runs each workflow's history key keeps (newest first)."""
HISTORY_SCAN = 2000
"""The tenant's newest runs looked through, once per process, for a workflow's runs that
succeeded before its history key existed."""

MOVED_KEPT_US = 3600 * 10**6
"""How long a run stays in ``P:moved`` after its end is stored."""

_TENANT_BATCH = 1000
"""Runs whose tenants retention reads in one round trip (from ``P:ended:tenants``)."""
_SNAPSHOT_BATCH = 256
"""Snapshots read in one round trip for the tenants of runs an earlier release ended."""
_COUNT_BATCH = 1000
"""Runs whose ``status`` fields the start's count reads in one round trip."""
_SNAPSHOT_BYTES = 1024 * 1024
"""Snapshot bytes a listing reads per round trip (one snapshot at least): a page of 200 runs
of 2 MiB snapshots is read a few at a time, by their sizes (HSTRLEN), not all at once."""

TERMINAL = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)


class RunIndex:
    """The run indexes of one store, on the client `client` returns at each call."""

    SWEEP_BATCH = 256
    """``P:active`` entries one retention pass examines (:meth:`sweep_active`)."""

    def __init__(
        self,
        keys: RedisKeys,
        client: Callable[[], Any],
        *,
        cluster: bool,
        clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        """`clock_us`: the replicas' shared clock (microseconds), which ``P:moved`` is on."""
        self._clock_us = clock_us
        self._keys = keys
        self._client = client
        self._cluster = cluster
        self._history_scanned: set[tuple[str, str]] = set()
        """The (tenant, workflow) pairs whose earlier runs this process looked for."""
        self._swept: tuple[str, int] | None = None
        """Where the next sweep starts: a score of ``P:active`` and how many entries of that
        score the sweeps met already; None: at the oldest."""
        self.filters = FilterIndexes(keys, client, self.snapshots, self.catch_up_statuses)
        """The indexes by workflow and label, which ListRuns reads when they are smaller."""
        self.statuses_ready = False
        """Whether every stored ended run is in its status's index (once true, for good)."""
        self._status_walk = asyncio.Lock()

    async def add_created(self, run_id: str, snapshot: run_pb2.Run) -> None:
        """Enters a run about to be created, in one round trip (on a cluster, one to each
        master holding an index, all at once); returns once every entry is written."""
        created = snapshot.create_time.ToMicroseconds()
        indexes = [self._keys.runs, self._keys.active, self._keys.tenant_runs(snapshot.tenant)]
        pipe = self._client().pipeline(transaction=False)
        for index in indexes + self.filters.keys_of(snapshot):
            pipe.zadd(index, {run_id: created}, nx=True)
        await pipe.execute()

    async def mark_ended(self, run_id: str, snapshot: run_pb2.Run) -> None:
        """Moves a run whose end is stored from the active runs to the ended ones: into
        ``P:ended`` first, out of ``P:active`` second, so that a crash at any point leaves
        the run in one of them at least (again and again is harmless: ZADD sets the same
        score, ZREM of an absent member does nothing)."""
        ended = {run_id: ended_us(snapshot)}
        now = self._clock_us()
        # Its status's index is scored as P:runs: a ListRuns page's cursor is a score of
        # whichever index it read, and the next page may read another.
        at = await self._client().zscore(self._keys.runs, run_id)
        by_status = {run_id: snapshot.create_time.ToMicroseconds() if at is None else int(at)}
        succeeded = [snapshot] if snapshot.status == run_pb2.RUN_STATUS_SUCCEEDED else []
        if self._cluster:
            if succeeded:  # its workflow's history key: a slot of its own
                await self._enter_succeeded(succeeded)
            # The keys are in other slots, likely on other masters, and the cluster client
            # sends a pipeline's commands to each master at once, in no order between
            # masters: the ZREM could land while a ZADD never does. So the ZREM is sent only
            # once the ZADDs are acknowledged.
            pipe = self._client().pipeline(transaction=False)
            pipe.zadd(self._keys.ended, ended)
            pipe.zadd(self._keys.ended_runs(snapshot.status), by_status)
            pipe.hset(self._keys.ended_tenants, run_id, snapshot.tenant)
            self._queue_moved(pipe, run_id, now)
            await pipe.execute()
            await self._client().zrem(self._keys.active, run_id)
            return
        # One Redis runs one connection's commands in order, so one round trip keeps the
        # order. MULTI/EXEC rather than a plain pipeline: a plain one still runs the ZREM
        # when the ZADD is refused (OOM at maxmemory refuses ZADD and lets ZREM through),
        # where EXEC runs neither.
        pipe = self._client().pipeline(transaction=True)
        self._queue_succeeded(pipe, succeeded)
        pipe.zadd(self._keys.ended, ended)
        pipe.zadd(self._keys.ended_runs(snapshot.status), by_status)
        pipe.hset(self._keys.ended_tenants, run_id, snapshot.tenant)
        self._queue_moved(pipe, run_id, now)
        pipe.zrem(self._keys.active, run_id)
        await pipe.execute()

    def _queue_moved(self, pipe: Any, run_id: str, now_us: int) -> None:
        """Queues on `pipe` the run's entry in ``P:moved``, and the removal of the entries
        older than :data:`MOVED_KEPT_US` (the key is one and the same on a cluster)."""
        pipe.zadd(self._keys.moved, {run_id: now_us})
        pipe.zremrangebyscore(self._keys.moved, "-inf", f"({now_us - MOVED_KEPT_US}")

    def _queue_succeeded(self, pipe: Any, runs: list[run_pb2.Run]) -> None:
        """Queues on `pipe` the entry of runs that succeeded in their workflows' histories,
        which keep the newest :data:`HISTORY_KEPT` each (the ETA learns from 20 by default)."""
        for run in runs:
            key = self._keys.succeeded(run.tenant, run.workflow)
            pipe.zadd(key, {run.run_id: run.create_time.ToMicroseconds()})
            pipe.zremrangebyrank(key, 0, -HISTORY_KEPT - 1)

    async def _enter_succeeded(self, runs: list[run_pb2.Run]) -> None:
        """:meth:`_queue_succeeded`, in one round trip."""
        pipe = self._client().pipeline(transaction=False)
        self._queue_succeeded(pipe, runs)
        await pipe.execute()

    async def succeeded(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        """The newest `limit` runs of the workflow that succeeded, newest first, from its
        history key; a run it names that is gone or no longer matches (a hint, like the
        other indexes) is left out. Runs that succeeded before the key existed (an earlier
        release) are looked for once per process among the tenant's newest
        :data:`HISTORY_SCAN` runs, and entered: a workflow's history never costs a scan of
        every stored run, which it did at each of its runs' commits until learned (64 s a
        commit at 106,000 runs, found in review)."""
        key = self._keys.succeeded(tenant, workflow)
        if (tenant, workflow) not in self._history_scanned:
            self._history_scanned.add((tenant, workflow))
            if await self._client().zcard(key) < limit:
                await self._scan_for_history(tenant, workflow, limit)
        ids = [m.decode() for m in await self._client().zrevrange(key, 0, limit - 1)]
        return [
            run
            for _, run in await self.snapshots(ids)
            if run is not None
            and run.status == run_pb2.RUN_STATUS_SUCCEEDED
            and (run.tenant, run.workflow) == (tenant, workflow)
        ]

    async def _scan_for_history(self, tenant: str, workflow: str, limit: int) -> None:
        found = []
        scanned = 0
        runs = self._newest_first(self._keys.tenant_runs(tenant), None, page=min(200, HISTORY_SCAN))
        async for _, run, _ in runs:
            scanned += 1
            if run.workflow == workflow and run.status == run_pb2.RUN_STATUS_SUCCEEDED:
                found.append(run)
            if len(found) >= limit or scanned >= HISTORY_SCAN:
                break
        if found:
            await self._enter_succeeded(found)

    async def sweep_active(self) -> list[str]:
        """Moves to ``P:ended`` the ended runs that a crash left in ``P:active`` (between the
        script that stored the end and :meth:`mark_ended`), among the next
        :attr:`SWEEP_BATCH` entries of ``P:active``; returns their ids.

        Retention calls it before choosing from ``P:ended``, so a leftover is purged without
        anyone listing active runs. Bounded: one pass examines one batch, oldest first from
        where the previous pass stopped, and starts over at the oldest once past the newest,
        so every entry is examined within ceil(active runs / batch) + 1 passes. Not an age cut:
        ``P:active`` is scored by create time, a leftover may be a run created a moment ago
        that ended at once, and a ``runs=N`` policy has no age at all. A pass costs one
        ZRANGEBYSCORE and one pipelined HGET of each entry's small ``status`` field; only
        the ended ones' snapshots are read (for their end time). The position is this
        process's: several replicas sweep on their own, and a move done twice is harmless.
        """
        low, skip = ("-inf", 0) if self._swept is None else self._swept
        rows = await self._client().zrangebyscore(
            self._keys.active, low, "+inf", start=skip, num=self.SWEEP_BATCH, withscores=True
        )
        if len(rows) < self.SWEEP_BATCH:
            self._swept = None  # past the newest: the next pass starts over at the oldest
        else:
            # Resume at the last score met, after the entries of that score met so far (as
            # ListRuns pages do). Moving entries of that very score out of P:active shifts
            # the rest back, so they might wait a round: only entries created in the same
            # microsecond.
            last = str(int(rows[-1][1]))
            same = sum(1 for _, score in rows if str(int(score)) == last)
            self._swept = (last, skip + same if last == low else same)
        ids = [member.decode() for member, _ in rows]
        if not ids:
            return []
        pipe = self._client().pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(self._keys.meta(run_id), "status")
        statuses = await pipe.execute()
        moved = []
        for run_id, status in zip(ids, statuses, strict=True):
            if status is None or int(status) not in TERMINAL:
                continue
            snap = await self._client().hget(self._keys.meta(run_id), "snap")
            run = None if snap is None else readable_run(run_id, snap)
            if run is not None and run.status in TERMINAL:
                await self.mark_ended(run_id, run)
                moved.append(run_id)
        return moved

    async def ended(self, *, ended_before_us: int | None, keep_newest: int | None) -> list[str]:
        """Ended runs whose logs are kept that ended before `ended_before_us` or are older
        than their tenant's newest `keep_newest` of them (hints: the caller re-checks each
        run, and :meth:`forget_ended` those it purged)."""
        chosen: dict[str, None] = {}
        if ended_before_us is not None:
            for member in await self._client().zrangebyscore(
                self._keys.ended, "-inf", f"({ended_before_us}"
            ):
                chosen[member.decode()] = None
        # Fewer runs kept than `keep_newest` in all: no tenant has more (nothing read).
        if keep_newest is not None and await self._client().zcard(self._keys.ended) > keep_newest:
            members = [m.decode() for m in await self._client().zrevrange(self._keys.ended, 0, -1)]
            await self._forget_stray_tenants(members)
            tenants = await self._tenants_of(members)
            kept: dict[str, int] = {}
            for run_id in members:  # newest first
                tenant = tenants.get(run_id)
                if tenant is None:  # no run under this entry: the caller takes it out
                    chosen[run_id] = None
                    continue
                kept[tenant] = kept.get(tenant, 0) + 1
                if kept[tenant] > keep_newest:
                    chosen[run_id] = None
        return list(chosen)

    async def _tenants_of(self, run_ids: list[str]) -> dict[str, str | None]:
        """Each run's tenant, from ``P:ended:tenants``; a run ended by a release before it
        is read in its snapshot once, and written there (None: no run under that id)."""
        tenants: dict[str, str | None] = {}
        for start in range(0, len(run_ids), _TENANT_BATCH):
            batch = run_ids[start : start + _TENANT_BATCH]
            found = await self._client().hmget(self._keys.ended_tenants, batch)
            for run_id, value in zip(batch, found, strict=True):
                if value is not None:
                    tenants[run_id] = value.decode()
        missing = [run_id for run_id in run_ids if run_id not in tenants]
        for start in range(0, len(missing), _SNAPSHOT_BATCH):
            read = await self.snapshots(missing[start : start + _SNAPSHOT_BATCH])
            learnt = {run_id: run.tenant for run_id, run in read if run is not None}
            if learnt:
                await self._client().hset(self._keys.ended_tenants, mapping=learnt)
            tenants.update((run_id, run.tenant if run else None) for run_id, run in read)
        return tenants

    async def _forget_stray_tenants(self, members: list[str]) -> None:
        """Takes out of ``P:ended:tenants`` the runs no longer in ``P:ended`` (`members`): a
        replica of an earlier release forgets runs without it, and on a cluster the two
        keys' writes are not one transaction. Read only when it holds more entries."""
        if await self._client().hlen(self._keys.ended_tenants) <= len(members):
            return
        kept = set(members)
        stray = [
            field
            async for field, _ in self._client().hscan_iter(self._keys.ended_tenants)
            if field.decode() not in kept
        ]
        for start in range(0, len(stray), _TENANT_BATCH):
            await self._client().hdel(
                self._keys.ended_tenants, *stray[start : start + _TENANT_BATCH]
            )

    async def forget_ended(self, run_ids: list[str]) -> None:
        """Takes runs whose logs are purged out of ``P:ended:tenants``, then ``P:ended``:
        retention never reads them again (a crash between the two leaves the run in
        ``P:ended``, whose next pass reads its tenant again and meets it purged). Harmless
        if one comes back (a sweep that met it in ``P:active``): the next pass meets it
        purged and takes it out again."""
        if run_ids:
            await self._client().hdel(self._keys.ended_tenants, *run_ids)
            await self._client().zrem(self._keys.ended, *run_ids)

    async def changed_since(self, since_us: int) -> list[str] | None:
        """Every run not ended (``P:active``), created since `since_us` (``P:runs``), or
        whose end was stored since (``P:moved``; ``P:ended`` by end time, for the runs a
        replica of an earlier release ended), in one round trip: four index reads, however
        many runs are stored. None when `since_us` is further back than ``P:moved`` keeps."""
        if since_us < self._clock_us() - MOVED_KEPT_US:
            return None
        pipe = self._client().pipeline(transaction=False)
        pipe.zrange(self._keys.active, 0, -1)
        for index in (self._keys.runs, self._keys.moved, self._keys.ended):
            pipe.zrangebyscore(index, since_us, "+inf")
        found = await pipe.execute()
        return list(dict.fromkeys(member.decode() for members in found for member in members))

    async def snapshots(self, run_ids: list[str]) -> list[tuple[str, run_pb2.Run | None]]:
        """The snapshots of `run_ids`, in one round trip (on a cluster, one to each master
        holding some of them): None for a run not stored; a damaged one, or a key of
        another type than Runstream's (another program's data under the run's name), is
        logged and left out (:func:`~.base.readable_run`, :func:`~.base.left_out`)."""
        pipe = self._client().pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hget(self._keys.meta(run_id), "snap")
        found: list[tuple[str, run_pb2.Run | None]] = []
        for run_id, snap in zip(run_ids, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(snap, Exception):
                if "WRONGTYPE" not in str(snap):
                    raise snap
                left_out(run_id, f"run {run_id}: its stored record is not Runstream's")
                continue
            if snap is None:
                found.append((run_id, None))
                continue
            run = readable_run(run_id, snap)
            if run is not None:
                found.append((run_id, run))
        return found

    async def _snapshot_sizes(self, run_ids: list[str]) -> list[int]:
        """The size of each run's stored snapshot, in one round trip (0: none, or a key
        that is not Runstream's, which :meth:`snapshots` then leaves out)."""
        pipe = self._client().pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hstrlen(self._keys.meta(run_id), "snap")
        found = await pipe.execute(raise_on_error=False)
        return [size if isinstance(size, int) else 0 for size in found]

    async def count_runs(self) -> RunCounts:
        """The ended runs by status from the sizes of their indexes (after a walk that
        enters the ends stored since the last one, :meth:`catch_up_statuses`), and the
        snapshots of the runs of ``P:active``; an ended run left there by a crash before
        :meth:`mark_ended` is moved now, as a listing would. What a listing of every run
        counts, without a read of any ended run: the listing decoded every snapshot, 2-2.5 s
        per 50,000 runs at every start. A Redis that refuses writes (out of memory, a
        read-only replica: a server still starts and serves reads) gets that listing: the
        walk and the moves write."""
        try:
            return await self._count_by_indexes()
        except rex.ResponseError as exc:
            log.warning("runs counted by reading every run (Redis refused a write: %s)", exc)
        ended: dict[int, int] = {}
        active: list[run_pb2.Run] = []
        cursor: tuple[int, str] | None = None
        while True:
            page = await self.list_runs(RunFilter(), 1000, cursor, max_bytes=_SNAPSHOT_BYTES)
            for run in page.runs:
                if run.status in TERMINAL:
                    ended[run.status] = ended.get(run.status, 0) + 1
                else:
                    active.append(run)
            if page.next_cursor is None:
                return RunCounts(ended, active)
            cursor = page.next_cursor

    async def _count_by_indexes(self) -> RunCounts:
        await self.catch_up_statuses()
        ids = [member.decode() for member in await self._client().zrange(self._keys.active, 0, -1)]
        active: list[run_pb2.Run] = []
        for at in range(0, len(ids), _SNAPSHOT_BATCH):
            for run_id, run in await self.snapshots(ids[at : at + _SNAPSHOT_BATCH]):
                if run is None:
                    continue
                if run.status in TERMINAL:
                    await self.mark_ended(run_id, run)
                else:
                    active.append(run)
        statuses = sorted(TERMINAL)
        pipe = self._client().pipeline(transaction=False)
        for status in statuses:
            pipe.zcard(self._keys.ended_runs(status))
        sizes = await pipe.execute()
        return RunCounts(dict(zip(statuses, sizes, strict=True)), active)

    async def catch_up_statuses(self) -> int:
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
        async with self._status_walk:
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
            self.statuses_ready = True
            return entered

    async def _enter_every_status(self) -> int:
        entered = start = 0
        while True:
            stop_if_cancelled()
            rows = await self._client().zrange(
                self._keys.runs, start, start + _COUNT_BATCH - 1, withscores=True
            )
            entered += await self._enter_statuses(
                [(member.decode(), int(score)) for member, score in rows]
            )
            start += len(rows)
            if len(rows) < _COUNT_BATCH:
                return entered

    async def _enter_ended_since(self, since_us: int) -> int:
        pipe = self._client().pipeline(transaction=False)
        pipe.zrangebyscore(self._keys.moved, since_us, "+inf")
        pipe.zrangebyscore(self._keys.ended, since_us, "+inf")
        found = await pipe.execute()
        ids = list(dict.fromkeys(m.decode() for members in found for m in members))
        entered = 0
        for at in range(0, len(ids), _COUNT_BATCH):
            batch = ids[at : at + _COUNT_BATCH]
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

    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        only_active = bool(run_filter.statuses) and not (run_filter.statuses & TERMINAL)
        index = await self._smallest(run_filter, only_active)
        page: list[tuple[int, run_pb2.Run]] = []
        held = 0  # snapshot bytes of the page
        more = False
        created = (run_filter.created_after_us, run_filter.created_before_us)
        async for at, run, size in self._newest_first(index, cursor, *created):
            if index == self._keys.active and run.status in TERMINAL:
                await self.mark_ended(run.run_id, run)  # left by a crash before mark_ended
                continue
            if run_filter.matches(run):
                past = max_bytes is not None and bool(page) and held + size > max_bytes
                if len(page) >= page_size or past:
                    more = True  # one more run matches
                    break
                page.append((at, run))
                held += size
        # Positions in the index, not create times: the two differ for a run whose first
        # create was cut short after its entries (a retry keeps the first attempt's score),
        # and a cursor off the index's order would list runs again.
        positions = [(at, run.run_id) for at, run in page]
        return RunPage([run for _, run in page], positions, more)

    async def _smallest(self, run_filter: RunFilter, only_active: bool) -> str:
        """The index to read for `run_filter`: of those that hold every run it can match
        (the runs not ended for an active-only filter, the status's for one ended status,
        the tenant's, the workflow's, each
        label's), the one with the fewest entries; every run when none of them applies.
        Every other index is part of ``P:runs``, so that one is read only alone. Read the
        other way round, a tenant's few runs (the active-runs limit counts them at each
        CreateRun) meant reading every tenant's active runs, and a rare label every run."""
        candidates = [self._keys.active] if only_active else []
        statuses = run_filter.statuses
        if self.statuses_ready and len(statuses) == 1 and statuses <= TERMINAL:
            candidates.append(self._keys.ended_runs(next(iter(statuses))))
        if run_filter.tenant is not None:
            candidates.append(self._keys.tenant_runs(run_filter.tenant))
        candidates += self.filters.indexes_for(run_filter)
        if len(candidates) < 2:
            return candidates[0] if candidates else self._keys.runs
        pipe = self._client().pipeline(transaction=False)
        for index in candidates:
            pipe.zcard(index)
        sizes = await pipe.execute()
        return min(zip(sizes, range(len(candidates)), candidates, strict=True))[2]

    async def _newest_first(
        self,
        index: str,
        cursor: tuple[int, str] | None,
        after: int | None = None,
        before: int | None = None,
        *,
        page: int = 200,
    ) -> AsyncIterator[tuple[int, run_pb2.Run, int]]:
        """Runs of an index, each with its score and its snapshot's size, by (score, id)
        descending, strictly after `cursor` (a score is the run's create time, or its first
        attempt's), with scores between `after` and `before` (exclusive) when given:
        create_time bounds read by score, so a create retried after a crash is bounded, as
        it is paged, by the time of its first attempt (its stored create_time is the
        retry's, some moments later)."""
        highest = [cursor[0]] if cursor is not None else []
        highest += [before - 1] if before is not None else []
        top = str(min(highest)) if highest else "+inf"
        bottom = "-inf" if after is None else f"({after}"
        skip = 0  # entries scored `top` already met: the next fetch starts after them
        while True:
            stop_if_cancelled()  # a caller that left: redis-py may have swallowed its cancel
            rows = await self._client().zrevrangebyscore(
                index, top, bottom, start=skip, num=page, withscores=True
            )
            if not rows:
                return
            ids = [member.decode() for member, _ in rows]
            sizes = await self._snapshot_sizes(ids)
            start = 0
            while start < len(ids):  # the snapshots, a round trip per _SNAPSHOT_BYTES
                end, held = start + 1, sizes[start]
                while end < len(ids) and held + sizes[end] <= _SNAPSHOT_BYTES:
                    held += sizes[end]
                    end += 1
                runs = dict(await self.snapshots(ids[start:end]))
                for run_id, (_, score), size in zip(
                    ids[start:end], rows[start:end], sizes[start:end], strict=True
                ):
                    at = int(score)
                    if str(at) == top:
                        skip += 1
                    else:
                        top, skip = str(at), 1
                    if cursor is not None and (at, run_id) >= cursor:
                        continue
                    # None or missing: an entry written before a crash stopped the create,
                    # or a record that is damaged or not Runstream's (logged).
                    run = runs.get(run_id)
                    if run is not None:
                        yield at, run, size
                start = end
            if len(rows) < page:
                return
