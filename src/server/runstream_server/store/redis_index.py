"""The Redis store's run indexes that a run enters when created and leaves when it ends.

Sorted sets outside the runs' slots (named by :class:`~.redis_keys.RedisKeys`): ``P:runs``
(every run by create time), ``P:active`` (runs not ended), ``P:ended`` (ended runs whose
logs are kept, by when their ends were stored, for retention: a run leaves it once
retention purged its log, :mod:`.redis_retention`),
``P:moved`` (runs whose end was stored in the last hour, by the server's clock then: what a
replica that missed notices reads again) and ``P:tenant:<tenant>:runs`` (each tenant's runs
by create time, so a tenant's ListRuns reads only its own runs). They are hints: every read
re-checks the run's snapshot (:mod:`.redis_snapshots`), so an entry whose run has no snapshot
is passed over, and a run found ended in ``P:active`` is moved to ``P:ended`` when met (by an
active-only ListRuns, and by retention's sweep).

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
first (:meth:`RunIndex.sweep_active`). The same move enters the run in its status's index
(:mod:`.redis_statuses`) and, when it succeeded, in its workflow's history
(``P:tenant:<tenant>:wf:<workflow>:ok``, :class:`WorkflowHistory`).

The other parts, each where it lives: the indexes by workflow and label
(:mod:`.redis_filters`), by ended status (:mod:`.redis_statuses`), ListRuns over them all
(:mod:`.redis_listing`), the run counts at start (:mod:`.redis_counts`) and retention's choice
of ended runs (:mod:`.redis_retention`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runstream.v1 import run_pb2

from runstream_server.store.base import ended_us, readable_run
from runstream_server.store.redis_filters import FilterIndexes
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_snapshots import RunSnapshots

HISTORY_KEPT = 100
"""Runs each workflow's history key keeps (newest first)."""
HISTORY_SCAN = 2000
"""The tenant's newest runs looked through, once per process, for a workflow's runs that
succeeded before its history key existed."""

MOVED_KEPT_US = 3600 * 10**6
"""How long a run stays in ``P:moved`` after its end is stored."""

TERMINAL = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)


class RunIndex:
    """The entries a run gets when created and the move when it ends, of one store, on the
    client `client` returns at each call; `filters` names a new run's filter indexes, and
    `history` takes the runs that succeeded."""

    SWEEP_BATCH = 256
    """``P:active`` entries one retention pass examines (:meth:`sweep_active`)."""

    def __init__(
        self,
        keys: RedisKeys,
        client: Callable[[], Any],
        filters: FilterIndexes,
        history: WorkflowHistory,
        *,
        cluster: bool,
        clock_us: Callable[[], int],
    ) -> None:
        """`clock_us`: the replicas' shared clock (microseconds), which ``P:moved`` is on."""
        self._clock_us = clock_us
        self._keys = keys
        self._client = client
        self._filters = filters
        self._history = history
        self._cluster = cluster
        self._swept: tuple[str, int] | None = None
        """Where the next sweep starts: a score of ``P:active`` and how many entries of that
        score the sweeps met already; None: at the oldest."""

    async def add_created(self, run_id: str, snapshot: run_pb2.Run) -> None:
        """Enters a run about to be created, in one round trip (on a cluster, one to each
        master holding an index, all at once); returns once every entry is written."""
        created = snapshot.create_time.ToMicroseconds()
        indexes = [self._keys.runs, self._keys.active, self._keys.tenant_runs(snapshot.tenant)]
        pipe = self._client().pipeline(transaction=False)
        for index in indexes + self._filters.keys_of(snapshot):
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
                await self._history.enter(succeeded)
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
        self._history.queue(pipe, succeeded)
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


class WorkflowHistory:
    """Each workflow's history of the runs that succeeded, where its ETA and stall checks
    learn from (``P:tenant:<tenant>:wf:<workflow>:ok``), of one store, on the client `client`
    returns at each call; `snapshots` reads the runs it names."""

    def __init__(self, keys: RedisKeys, client: Callable[[], Any], snapshots: RunSnapshots) -> None:
        self._keys = keys
        self._client = client
        self._snapshots = snapshots
        self._scanned: set[tuple[str, str]] = set()
        """The (tenant, workflow) pairs whose earlier runs this process looked for."""

    def queue(self, pipe: Any, runs: list[run_pb2.Run]) -> None:
        """Queues on `pipe` the entry of runs that succeeded in their workflows' histories,
        which keep the newest :data:`HISTORY_KEPT` each (the ETA learns from 20 by default)."""
        for run in runs:
            key = self._keys.succeeded(run.tenant, run.workflow)
            pipe.zadd(key, {run.run_id: run.create_time.ToMicroseconds()})
            pipe.zremrangebyrank(key, 0, -HISTORY_KEPT - 1)

    async def enter(self, runs: list[run_pb2.Run]) -> None:
        """:meth:`queue`, in one round trip."""
        pipe = self._client().pipeline(transaction=False)
        self.queue(pipe, runs)
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
        if (tenant, workflow) not in self._scanned:
            self._scanned.add((tenant, workflow))
            if await self._client().zcard(key) < limit:
                await self._scan(tenant, workflow, limit)
        ids = [m.decode() for m in await self._client().zrevrange(key, 0, limit - 1)]
        return [
            run
            for _, run in await self._snapshots.read(ids)
            if run is not None
            and run.status == run_pb2.RUN_STATUS_SUCCEEDED
            and (run.tenant, run.workflow) == (tenant, workflow)
        ]

    async def _scan(self, tenant: str, workflow: str, limit: int) -> None:
        found = []
        scanned = 0
        runs = self._snapshots.newest_first(
            self._keys.tenant_runs(tenant), None, page=min(200, HISTORY_SCAN)
        )
        async for _, run, _ in runs:
            scanned += 1
            if run.workflow == workflow and run.status == run_pb2.RUN_STATUS_SUCCEEDED:
                found.append(run)
            if len(found) >= limit or scanned >= HISTORY_SCAN:
                break
        if found:
            await self.enter(found)
