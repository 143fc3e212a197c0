"""The replica store: every run's log and snapshot in Redis, shared by any number of servers.

Per run, three keys share the hash tag ``{run_id}`` so a Redis Cluster keeps them on one shard
and one script may touch them all:

- ``P:{run}:meta``, a hash: ``seq`` (the head), ``snap`` (the snapshot), ``status``;
- ``P:{run}:log``, a stream whose entry IDs are ``<seq>-0``, fields ``k`` (kind),
  ``i`` (idempotency key) and ``d`` (the serialized RunEvent);
- ``P:{run}:keys``, a hash from idempotency key to seq.

One Lua script per append checks the head seq the writer folded on and the idempotency keys,
XADDs the events with their seqs as IDs, replaces the snapshot and publishes a notice with the
seqs (and, when small, the events) on ``P:commits``, all in one atomic step; with
``appendfsync always`` Redis replies only once the AOF holds it. A writer that lost the race
gets :class:`~runstream_server.store.base.HeadMoved` and reloads. Readers of notices compare
seqs and read gaps from the stream, so a lost pub/sub message costs a read, never an event
(reads of the log: :mod:`.redis_log`; the notices and their one reader per process:
:mod:`.redis_notices`; the URL's options: :mod:`.redis_url`; the connections and the checks
at start: :mod:`.redis_connect`, and of Redis's own settings (eviction, AOF, replicas):
:mod:`.redis_settings`; writes that wait for Redis's replicas: :mod:`.redis_wait`; what callers
get when Redis fails: :mod:`.redis_errors`).

Run indexes live outside the runs' slots: ``P:runs`` (every run by create time), ``P:active``
(runs not ended), ``P:ended`` (ended runs whose logs are kept, by when their ends were
stored, for retention), ``P:moved`` (the last hour's ends, by when they were stored),
``P:tenant:<tenant>:runs`` (each tenant's runs by create time, so a tenant's ListRuns reads
only its own runs), ``P:status:<status>:runs`` (the ended runs of each ended status) and
one per workflow and per label (:mod:`.redis_filters`). They are hints: a new run's entries are
written, in one round trip, before the script stores the run, so a run is never stored
without them (a run of an earlier release gets its workflow and label entries later); every
read re-checks the snapshot (:mod:`.redis_snapshots`), and a stale hint is passed over or
repaired when met. A run's entries and its move when it ends: :mod:`.redis_index`; the
indexes by status: :mod:`.redis_statuses`; ListRuns: :mod:`.redis_listing`; the counts at
start: :mod:`.redis_counts`; retention's choice of runs: :mod:`.redis_retention`. The key
names: :mod:`.redis_keys`; each replica's watcher counts: :mod:`.redis_viewers`; its callers'
use of the per-caller limits: :mod:`.redis_usage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import redis.exceptions as rex
from runstream.v1 import run_pb2

from runstream_server.background import spawn_logged, stop_task
from runstream_server.errors import AlreadyExists, Unavailable
from runstream_server.store.base import (
    HeadMoved,
    HeldKey,
    NoticeHandler,
    RunCounts,
    RunFilter,
    RunPage,
    StoredEvent,
    StoreUnusable,
    Usage,
    decode_run,
)
from runstream_server.store.clock import StoreClock
from runstream_server.store.redis_connect import check_usable, open_client, said
from runstream_server.store.redis_counts import RunCounter
from runstream_server.store.redis_errors import closed_store, unavailable, unavailable_read
from runstream_server.store.redis_filters import FilterIndexes
from runstream_server.store.redis_index import TERMINAL, RunIndex, WorkflowHistory
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_listing import RunListing
from runstream_server.store.redis_log import RunLog
from runstream_server.store.redis_notices import (
    PURGED_NOTICE,
    NoticeFollower,
    notice_channel,
    publish_command,
)
from runstream_server.store.redis_retention import EndedRuns
from runstream_server.store.redis_settings import StillLoading, check_settings
from runstream_server.store.redis_snapshots import RunSnapshots
from runstream_server.store.redis_statuses import StatusIndexes
from runstream_server.store.redis_url import parse_url, redact
from runstream_server.store.redis_usage import UsageShare
from runstream_server.store.redis_viewers import RedisViewerCounts
from runstream_server.store.redis_wait import ReplicaWaits

__all__ = ["RedisEventStore"]

log = logging.getLogger("runstream.store.redis")

_READ_BATCH = 256
"""Snapshots a retention pass reads per round trip."""

NOTICE_DATA_LIMIT = 64 * 1024
"""Notices carry the events themselves up to this many bytes; above, readers fetch them."""

# KEYS: meta, log, keys. ARGV: expected head, snapshot, status, channel, run id, with data
# (1/0), number of events, the publish command (PUBLISH, or SPUBLISH on a cluster), then seq,
# kind, key, data per event. Everything is checked before the first write: a script that
# fails halfway would leave its earlier writes in place. A new run is marked as having its
# filter index entries (`ix`: :mod:`.redis_filters`), which were written before.
_APPEND = """
local meta, log, keys = KEYS[1], KEYS[2], KEYS[3]
local expected = tonumber(ARGV[1])
local head = redis.call('HGET', meta, 'seq')
if expected == 0 then
  if head then return {'exists', tonumber(head)} end
elseif not head then
  return {'missing', -1}
elseif tonumber(head) ~= expected then
  return {'moved', tonumber(head)}
end
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  local base = 9 + i * 4
  if tonumber(ARGV[base]) ~= expected + i + 1 then return {'gap', expected} end
  local key = ARGV[base + 2]
  if key ~= '' and redis.call('HEXISTS', keys, key) == 1 then
    return {'moved', tonumber(head or 0)}
  end
end
local parts = {ARGV[5], '\\n', expected + 1, '\\n', expected + n, '\\n'}
for i = 0, n - 1 do
  local base = 9 + i * 4
  local seq, kind, key, data = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  redis.call('XADD', log, seq .. '-0', 'k', kind, 'i', key, 'd', data)
  if key ~= '' then redis.call('HSET', keys, key, seq) end
  if ARGV[6] == '1' then
    parts[#parts + 1] = kind .. ' ' .. #key .. ' ' .. #data .. '\\n' .. key .. data
  end
end
redis.call('HSET', meta, 'seq', expected + n, 'snap', ARGV[2], 'status', ARGV[3])
if expected == 0 then redis.call('HSET', meta, 'ix', 1) end
if ARGV[4] ~= '' then redis.call(ARGV[8], ARGV[4], table.concat(parts)) end
return {'ok', expected + n}
"""

# KEYS: meta, log, keys. ARGV: expected head, the purged snapshot, channel, the publish
# command, the notice. 1: purged; 0: the run moved on; 2: purged already (a replica whose
# pass chose it too, at the same time: a log purged has no key, an ended run's has events).
# UNLINK frees a long log's memory in the background: DEL held every replica's commands
# for as long as it took (125 ms for 400,000 events).
_PURGE = """
local head = redis.call('HGET', KEYS[1], 'seq')
if not head or tonumber(head) ~= tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 2 end
redis.call('UNLINK', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'snap', ARGV[2])
redis.call(ARGV[4], ARGV[3], ARGV[5])
return 1
"""


_SETTINGS_WAIT = (0.5, 5.0)
"""Seconds between two checks of the settings of a Redis still loading its data: the first,
the most."""

_UNREACHABLE = (rex.RedisError, rex.RedisClusterException, OSError, Unavailable)
"""What a raw client call (not under :func:`unavailable`) raises when Redis is out of reach,
or the store closed (:class:`_Closed`)."""


class _Closed:
    """Stands in for the client and its scripts once the store is closed: work still in
    flight (a shielded write, a read of a stream being cancelled) gets UNAVAILABLE instead
    of opening a new connection that nothing would ever close."""

    def __getattr__(self, name: str) -> Any:
        raise closed_store()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise closed_store()


class RedisEventStore:
    """:class:`~runstream_server.store.base.EventStore` on Redis (one server or a cluster)."""

    shared = True

    def __init__(self, url: str, *, replica_id: str | None = None) -> None:
        self.options = parse_url(url)
        self.display = redact(url)
        self.replica_id = replica_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._keys = RedisKeys(self.options.prefix)
        self._client: Any = None
        self._append: Any = None
        self._purge: Any = None
        self._closed = asyncio.Event()
        self.clock = StoreClock(self._redis_time, _UNREACHABLE)
        """Redis's clock, which every replica compares stored times with."""
        self._clock_sync: asyncio.Task[None] | None = None
        keys, client = self._keys, self._current
        self._snapshots = RunSnapshots(keys, client)
        """The one reader of runs' snapshots."""
        self._statuses = StatusIndexes(keys, client, clock_us=self.clock.time_us)
        """The ended runs' indexes by status."""
        self._filters = FilterIndexes(keys, client, self._snapshots.read, self._statuses.catch_up)
        """The indexes by workflow and label (its walk is followed by the statuses' walk)."""
        self._history = WorkflowHistory(keys, client, self._snapshots)
        """Each workflow's runs that succeeded."""
        cluster, clock_us = self.options.cluster, self.clock.time_us
        self._index = RunIndex(
            keys, client, self._filters, self._history, cluster=cluster, clock_us=clock_us
        )
        """A run's entries when created, and its move when it ends."""
        self._listing = RunListing(
            keys, client, self._snapshots, self._filters, self._statuses, self._index
        )
        """ListRuns over the indexes."""
        self._counts = RunCounter(
            keys, client, self._snapshots, self._statuses, self._index, self._listing
        )
        """The run counts at start."""
        self._retention = EndedRuns(keys, client, self._snapshots)
        """Retention's choice of ended runs."""
        self._log = RunLog(self._keys, self._current)
        """Reads of runs' logs."""
        self._viewers = RedisViewerCounts(
            self.options, self._keys, self.replica_id, self._current, self.clock.time
        )
        """This replica's watcher counts, and the others'."""
        self._usage = UsageShare(self._keys, self.replica_id, self._current, self.clock.time)
        """This replica's callers' use of the per-caller limits, and the others'."""
        self._notices = NoticeFollower(self.options, self.replica_id, back=self._check_again)
        self._checks: set[asyncio.Task[None]] = set()
        """Checks of Redis's settings after an outage (it may have restarted with others)."""
        self._publish = publish_command(self.options)  # PUBLISH, or SPUBLISH on a cluster
        self._waits = ReplicaWaits(self.options, self._keys, self._current, _APPEND)
        """Writes that wait for Redis's replicas (``?wait=N``)."""
        self.persistence = "AOF unchecked"
        self.outage = ""
        """Why the last ping found the store not serving (Redis out of reach, a cluster
        down); empty once it serves."""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _current(self) -> Any:
        """The client now: a stand-in that refuses all work once the store is closed."""
        return self._client

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        self._client = await open_client(self.options, self.display)
        self._append = self._client.register_script(_APPEND)
        self._purge = self._client.register_script(_PURGE)
        try:
            await check_usable(
                self._client, self.options, self._keys, publish=self._publish, display=self.display
            )
            self.persistence = await check_settings(
                self._client, self.options, display=self.display
            )
        except BaseException:
            await self._client.aclose()
            raise
        try:
            await self.clock.sync()
        except _UNREACHABLE as exc:
            await self._client.aclose()
            raise StoreUnusable(
                f"cannot read the clock of the Redis store {self.display}: {exc}"
            ) from None
        self._clock_sync = spawn_logged(self.clock.run_forever(), "runstream-redis-clock")
        self._viewers.start()
        self._usage.start()
        self._filters.start()

    def _check_again(self) -> None:
        """Checks Redis's settings again, now it is back: a Redis restarted without its
        configuration (a container given none) runs with AOF off, and said nothing."""
        check = spawn_logged(self._settings_again(), "runstream-redis-settings")
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _settings_again(self) -> None:
        wait = _SETTINGS_WAIT[0]
        while True:
            try:
                self.persistence = await check_settings(
                    self._client, self.options, display=self.display, serving=True
                )
                return
            except StillLoading:  # checked once it shows them
                await asyncio.sleep(wait)
                wait = min(wait * 2, _SETTINGS_WAIT[1])
            except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
                log.debug("could not check the Redis store's settings again: %s", exc)
                return

    async def _redis_time(self) -> float:
        """Redis's clock (``TIME``), in seconds since the epoch: on a cluster, one node's."""
        answer = await self._client.time()
        if isinstance(answer, dict):  # a cluster client may answer per node
            answer = next(iter(answer.values()))
        seconds, micros = answer
        return int(seconds) + int(micros) / 1e6

    async def close(self) -> None:
        self._closed.set()
        if self._clock_sync is not None:
            await stop_task(self._clock_sync)
        await self._notices.close()
        for check in list(self._checks):
            check.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        await self._viewers.stop()
        await self._filters.stop()
        await self._waits.close()
        client, self._client = self._client, _Closed()
        self._append = self._purge = _Closed()
        if client is not None and not isinstance(client, _Closed):
            with contextlib.suppress(rex.RedisError, OSError):
                await client.aclose()

    async def ping(self) -> bool:
        if self.closed:
            self.outage = "the Redis store is closed"
            return False
        try:
            async with asyncio.timeout(2):
                answered = bool(await self._client.ping())
                if answered and self.options.cluster:
                    # A cluster with a slot no master serves (a shard lost, no replica to
                    # take over) answers PING on every node left and refuses every command.
                    info = await self._client.cluster_info()
                    answered = info.get("cluster_state") == "ok"
        except (rex.RedisError, rex.RedisClusterException, OSError, TimeoutError) as exc:
            self.outage = f"the Redis store {self.display} is unreachable ({said(exc)})"
            return False
        if answered:
            self.outage = ""
            self._notices.reachable()
        else:  # only a cluster answers PING and is down
            self.outage = f"the Redis Cluster {self.display} is down: a slot no master serves"
        return answered

    # --- writes -----------------------------------------------------------------------------

    @unavailable
    async def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: bytes | None = None,
    ) -> None:
        meta, log_key, keys = self._keys.run(run_id)
        if expected_seq == 0:  # index first: a run is never stored without its index entries
            await self._index.add_created(run_id, snapshot)
        with_data = sum(len(e.data) for e in events) <= NOTICE_DATA_LIMIT
        args: list[Any] = [
            expected_seq,
            snapshot.SerializeToString() if encoded is None else encoded,
            snapshot.status,
            notice_channel(self.options, run_id),
            run_id,
            1 if with_data else 0,
            len(events),
            self._publish,
        ]
        for event in events:
            args += [event.seq, event.kind, event.idempotency_key, event.data]
        if self.options.wait_replicas:
            # EVALSHA itself rather than the script object, which would make the pipeline ask
            # SCRIPT EXISTS first, one more round trip per append; the waits load the script
            # where it is missing (NOSCRIPT).
            async def write(pipe: Any) -> None:
                pipe.evalsha(self._append.sha, 3, meta, log_key, keys, *args)

            (verdict, head), acked = await self._waits.write(run_id, write)
        else:
            verdict, head = await self._append(keys=[meta, log_key, keys], args=args)
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        if verdict == "exists":
            raise AlreadyExists(f"run {run_id!r} already exists")
        if verdict != "ok":
            raise HeadMoved(run_id, expected_seq, int(head))
        if snapshot.status in TERMINAL:
            await self._index.mark_ended(run_id, snapshot)
        if self.options.wait_replicas:
            self._waits.check_acked(acked)

    @unavailable
    async def confirm(self, run_id: str) -> None:
        if self.options.wait_replicas:
            await self._waits.confirm(run_id)

    @unavailable
    async def purge_events(
        self,
        *,
        ended_before_us: int | None,
        keep_newest: int | None,
        marked: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Each log goes at once (UNLINK), never partly, so `marked` is never called.
        Chooses from ``P:ended``, which holds only the ended runs whose logs are kept: a
        run leaves it once its log is purged (after the purge, so a crash between the two
        leaves it there, and the next pass that meets it purged takes it out; so are the
        purged runs a store written by an earlier version left in it, once each). A pass
        costs what it purges, plus the :meth:`~.redis_index.RunIndex.sweep_active` batch,
        plus, with `keep_newest` and more runs kept than that, one read of the kept runs'
        ids and tenants (``P:ended:tenants``). Why counting among the kept runs is right:
        the interface's docstring (:meth:`.base.EventStore.purge_events`)."""
        # Ended runs a crash left in P:active first, so that they are among those chosen.
        await self._index.sweep_active()
        chosen = await self._retention.ended(
            ended_before_us=ended_before_us, keep_newest=keep_newest
        )
        purged = []
        for start in range(0, len(chosen), _READ_BATCH):
            batch = chosen[start : start + _READ_BATCH]
            gone = []  # purged now or before: no longer in P:ended
            for run_id, run in await self._snapshots.read(batch):
                if run is None:  # no run under this entry (deleted by hand): nothing to purge
                    gone.append(run_id)
                    continue
                if run.status not in TERMINAL:
                    continue
                if run.purged_seq >= run.last_seq:
                    gone.append(run_id)
                    continue
                head = run.last_seq
                run.purged_seq = head
                meta, log_key, keys = self._keys.run(run_id)
                args = [
                    head,
                    run.SerializeToString(),
                    notice_channel(self.options, run_id),
                    self._publish,
                    PURGED_NOTICE + run_id.encode(),
                ]
                done = await self._purge(keys=[meta, log_key, keys], args=args)
                if done == 1:
                    purged.append(run_id)
                if done:
                    gone.append(run_id)
            await self._retention.forget_ended(gone)
        return purged

    @unavailable_read
    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        data = await self._client.hget(self._keys.meta(run_id), "snap")
        return None if data is None else decode_run(run_id, data)

    @unavailable_read
    async def load_runs(self, run_ids: Sequence[str]) -> list[run_pb2.Run]:
        found = await self._snapshots.read(list(dict.fromkeys(run_ids)))
        return [run for _, run in found if run is not None]

    @unavailable_read
    async def changed_since(self, since_us: int) -> list[str] | None:
        return await self._index.changed_since(since_us)

    @unavailable_read
    async def heads(self, run_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(run_ids))
        if not wanted:
            return {}
        # One pipeline: on a cluster, one round trip to each master holding some of them.
        pipe = self._client.pipeline(transaction=False)
        for run_id in wanted:
            pipe.hget(self._keys.meta(run_id), "seq")
        seqs = await pipe.execute()
        return {run_id: int(seq) for run_id, seq in zip(wanted, seqs, strict=True) if seq}

    @unavailable_read
    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, HeldKey]:
        return await self._log.find_keys(run_id, keys)

    @unavailable_read
    async def read_events(
        self,
        run_id: str,
        after_seq: int,
        limit: int,
        kinds: Collection[int] = (),
        *,
        before_seq: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        return await self._log.read(
            run_id, after_seq, before_seq, limit, kinds, newest_first=False, max_bytes=max_bytes
        )

    @unavailable_read
    async def read_events_before(
        self,
        run_id: str,
        before_seq: int | None,
        limit: int,
        kinds: Collection[int] = (),
        *,
        after_seq: int = 0,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        return await self._log.read(
            run_id, after_seq, before_seq, limit, kinds, newest_first=True, max_bytes=max_bytes
        )

    @unavailable_read
    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        return await self._listing.list_runs(run_filter, page_size, cursor, max_bytes=max_bytes)

    @unavailable_read
    async def count_runs(self) -> RunCounts:
        return await self._counts.count_runs()

    @unavailable_read
    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        return await self._history.succeeded(tenant, workflow, limit)

    # --- other replicas ---------------------------------------------------------------------

    async def follow(self, handler: NoticeHandler) -> None:
        """One subscription per process (on a cluster, one per shard); reconnects, and
        reports each gap as None."""
        await self._notices.follow(handler, self._client)

    # --- viewer counts ----------------------------------------------------------------------

    async def set_viewers(self, run_id: str, count: int) -> None:
        if not self.closed:
            await self._viewers.set(run_id, count)

    async def viewers(self, run_ids: Sequence[str]) -> dict[str, int]:
        if self.closed or not run_ids:
            return {}
        return await self._viewers.others(run_ids)

    # --- usage of the per-caller limits -----------------------------------------------------

    @unavailable
    async def share_usage(self, mine: Mapping[str, Usage]) -> dict[str, dict[str, Usage]]:
        return await self._usage.share(mine)
