"""The storage interface every backend implements (SQLite embedded, Redis for replicas).

It is deliberately small: an append-only, per-run event log with idempotency keys, plus the
latest derived snapshot of each run stored in the same atomic write, so a restart needs no
replay. A backend must make :meth:`EventStore.append` durable before it returns: the server
acknowledges events to producers only after that.

Appends are optimistic: the caller names the head seq it folded its derived state on, and
the store refuses the write with :class:`HeadMoved` when another writer (another replica)
got there first. The loser reloads the run (snapshot, then the events after it) and folds
again. The store owns its record types (:class:`StoredEvent`, :class:`CommitNotice`), so a
backend imports nothing from the domain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.message import DecodeError
from runstream.v1 import event_pb2, run_pb2

from runstream_server.errors import Aborted, DataLoss
from runstream_server.store.clock import StoreClock

log = logging.getLogger("runstream.store")


def decode_run(run_id: str, data: bytes) -> run_pb2.Run:
    """A run's stored snapshot, or DataLoss naming the run when the record is damaged (a
    disk fault, another program writing under Runstream's keys): that run cannot be served,
    and every other run still can."""
    try:
        return run_pb2.Run.FromString(data)
    except DecodeError as exc:
        raise DataLoss(
            f"run {run_id}: its stored snapshot cannot be read ({exc}); the store's record "
            "of it is damaged"
        ) from None


def readable_runs(snapshots: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, run_pb2.Run]]:
    """The runs of (run id, snapshot) pairs whose snapshot can be read; each damaged one is
    logged (ERROR) and left out, so one damaged record does not hide every run from a
    listing, a count or a purge."""
    for run_id, data in snapshots:
        run = readable_run(run_id, data)
        if run is not None:
            yield run_id, run


def readable_run(run_id: str, data: bytes) -> run_pb2.Run | None:
    """One run's snapshot, or None (logged once, see :func:`left_out`) when it is damaged."""
    try:
        return decode_run(run_id, data)
    except DataLoss as exc:
        left_out(run_id, exc.message)
        return None


def left_out(run_id: str, problem: str) -> None:
    """Logs a run left out of listings, counts and purges because its stored record cannot
    be read: once per run, as sweeps and listings meet it again."""
    if run_id not in _REPORTED_DAMAGED:
        _REPORTED_DAMAGED.add(run_id)
        log.error("%s; left out of listings, counts and purges", problem)


_REPORTED_DAMAGED: set[str] = set()


def ended_us(run: run_pb2.Run) -> int:
    """When an ended run's end was stored, by the server's clock (microseconds since the
    epoch): what retention counts its age from. Its ``update_time``, which no event changes
    after the end: the server's receipt of the ending event, where ``end_time`` is the
    producer's clock (2 days behind made a log purgeable 2 days early). A run ended by a
    release before 2026-12-06 has its ``end_time`` there (one without: its end time)."""
    stamp = run.update_time if run.HasField("update_time") else run.end_time
    return int(stamp.ToMicroseconds())


def stop_if_cancelled() -> None:
    """Raises CancelledError when the task running this was asked to stop but is still
    going: something under it swallowed the cancellation. The forever loops that follow a
    shared store call it each turn; one that went on after its cancel held every stop of a
    Redis-backed server for the 5 s the stop waits for its background work (seen in tests
    of servers that stop right after they start)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(frozen=True, slots=True)
class Usage:
    """What one caller uses on one process of the limits counted per caller."""

    streams: int
    """Watch streams open now."""
    appended: int
    """Events appended since the process first counted this caller (it forgets an idle
    caller, and starts again from 0)."""


@dataclass(frozen=True, slots=True)
class HeldKey:
    """What an idempotency key holds in a run's log: the seq and kind of its event."""

    seq: int
    kind: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event: its position in the run's log, kind, producer key and bytes."""

    seq: int
    kind: int
    idempotency_key: str
    data: bytes

    def decode(self) -> event_pb2.RunEvent:
        return event_pb2.RunEvent.FromString(self.data)


def within_bytes(events: Iterable[StoredEvent], max_bytes: int | None) -> list[StoredEvent]:
    """The leading `events` a read bounded by `max_bytes` returns, drawn one by one so that
    nothing after them is read: every one until they hold more than `max_bytes` of data
    (``len(data)``, the stored bytes), the one that passes it included, and two at least. A
    caller that keeps what fits in `max_bytes` so still learns whether an event follows
    what it keeps, and a read holds about its budget however large the events are: by
    count alone, a watcher's catch-up read 500 events of up to 256 KiB each at once, and a
    viewer that stopped reading its stream pinned them (about 200 MB per stream, found in
    review)."""
    if max_bytes is None:
        return list(events)
    found: list[StoredEvent] = []
    held = 0
    for event in events:
        found.append(event)
        held += len(event.data)
        if held > max_bytes and len(found) >= 2:
            break
    return found


EVERY_EVENT_PAGE = 10_000
"""Events :func:`read_every_event` asks for per read."""


async def read_every_event(
    store: EventStore, run_id: str, kinds: Collection[int]
) -> list[StoredEvent]:
    """Every event of the run of those kinds, in order, read :data:`EVERY_EVENT_PAGE` at a
    time: what rebuilds a run's decisions and milestones, which have no limit. One read of
    at most 1,000,000 of them left any after those out, silently."""
    events: list[StoredEvent] = []
    while True:
        page = EVERY_EVENT_PAGE
        batch = await store.read_events(run_id, events[-1].seq if events else 0, page, kinds)
        events += batch
        if len(batch) < page:
            return events


@dataclass(frozen=True, slots=True)
class CommitNotice:
    """What another writer committed to one run: events first_seq..last_seq.

    `events` holds them when the backend carries them in the notice (it may be empty: the
    reader then fetches them from the log). Notices may be lost or repeated; the reader
    compares seqs and reads any gap from the log, so exactness never rests on them.
    """

    run_id: str
    first_seq: int
    last_seq: int
    events: tuple[StoredEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class ViewersNotice:
    """Another process's count of watchers on one run changed; read the counts again."""

    run_id: str


@dataclass(frozen=True, slots=True)
class PurgedNotice:
    """Another process purged the run's log (retention); its snapshot says up to where."""

    run_id: str


class StoreUnusable(OSError):
    """The store cannot be used at all, found when the server starts: the file is not a
    database, cannot be written, or is held by another server. The message names the store
    and what is wrong, in one line, for the operator. An OSError, like the other faults of
    the environment a command reports in one line (a port in use)."""


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs ListRuns returns: every given criterion must match."""

    statuses: frozenset[int] = frozenset()
    workflow: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    tenant: str | None = None
    """Only runs of this tenant (``Run.tenant``); None: every tenant."""
    created_after_us: int | None = None
    """Only runs created after this time (epoch microseconds, exclusive)."""
    created_before_us: int | None = None
    """Only runs created before this time (epoch microseconds, exclusive)."""

    def matches(self, run: run_pb2.Run) -> bool:
        """Whether the run satisfies every criterion (for stores, and for live updates)."""
        if self.statuses and run.status not in self.statuses:
            return False
        if not self.created_within(run.create_time.ToMicroseconds()):
            return False
        if self.workflow is not None and run.workflow != self.workflow:
            return False
        if self.tenant is not None and run.tenant != self.tenant:
            return False
        return all(run.labels.get(k) == v for k, v in self.labels.items())

    def created_within(self, create_time_us: int) -> bool:
        """Whether a run created then lies within the create_time bounds."""
        after, before = self.created_after_us, self.created_before_us
        return (after is None or create_time_us > after) and (
            before is None or create_time_us < before
        )


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first, and whether more runs match after it."""

    runs: list[run_pb2.Run]
    positions: list[tuple[int, str]]
    """Each run's place in the listing's order: the cursor of a page that ends with it (its
    create time and id, or on Redis its index score, which a retried create keeps)."""
    more: bool = False
    read_up_to: tuple[int, str] | None = None
    """The place of the last run the page read, when it is not the last run's: a damaged run
    left out of the page (the next page starts after it, not before)."""

    @property
    def next_cursor(self) -> tuple[int, str] | None:
        """Where the next page starts (after this page's last run); None at the end."""
        if not self.more:
            return None
        return self.read_up_to or (self.positions[-1] if self.positions else None)


@dataclass(frozen=True, slots=True)
class RunCounts:
    """The stored runs by status, as a server counts them at start: the ended ones by
    status alone, from an index, and each run not ended with its snapshot (its health)."""

    ended: dict[int, int]
    """Ended runs by status (each a terminal status)."""
    active: list[run_pb2.Run]
    """Every stored run not ended."""


class HeadMoved(Aborted):
    """The run's head is not the seq the writer expected: someone else appended first."""

    def __init__(self, run_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"run {run_id!r} moved to seq {actual} while a write expected seq {expected}; "
            "reload and retry"
        )
        self.actual = actual


Notice = CommitNotice | ViewersNotice | PurgedNotice | None
"""What the store's reader hands on: a commit, a viewer count change, a purge, or `None`
for a gap."""
NoticeHandler = Callable[[Notice], None]
"""Called on the event loop for each notice; `None` marks a gap (reconnect): resync all."""


class EventStore(Protocol):
    """Durable run logs. All methods are coroutines safe to call from the event loop."""

    shared: bool
    """True when other processes may write the same runs (then :meth:`follow` matters)."""

    @property
    def persistence(self) -> str:
        """What keeps acknowledged writes across a restart of the store's own server, as read
        at :meth:`open` ("AOF on" for Redis); empty where the configuration says it (SQLite)."""

    clock: StoreClock
    """The clock every "now" compared with stored times reads: the store's own when other
    processes share it (their stamps and this one's then agree), else this machine's."""

    async def open(self) -> None:
        """Creates or opens the storage."""

    async def close(self) -> None:
        """Flushes and releases the storage."""

    async def ping(self) -> bool:
        """Whether the storage answers right now (health checks)."""

    @property
    def outage(self) -> str:
        """Why :meth:`ping` last answered False, in a few words for the log line of health
        turning NOT_SERVING: the Redis store out of reach, the SQLite file full, read-only or
        damaged; empty while it serves."""

    async def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: bytes | None = None,
    ) -> None:
        """Atomically and durably adds `events` to the run's log and replaces its snapshot.

        `expected_seq` is the head the caller folded on; 0 creates the run (AlreadyExists
        when it exists). Raises :class:`HeadMoved` when the head is elsewhere, or when an
        idempotency key of `events` is already stored. Seqs continue the log without gaps.
        `encoded` is the snapshot's encoding when the caller made it (the ledger does, to
        check its size): stored as it is, not made again.
        """

    async def confirm(self, run_id: str) -> None:
        """Returns once what the run's log holds is as durable as :meth:`append` makes a
        new write (replica acknowledgements), for events a producer sent again; raises as
        ``append`` would when it is not. Nothing to do where a stored write is durable."""

    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        """The run's latest snapshot, or None when the run does not exist."""

    async def heads(self, run_ids: Sequence[str]) -> dict[str, int]:
        """The stored head seq of each of those runs, in one round trip however many they
        are (a replica checks every run it holds this way after a gap in its notices); runs
        that do not exist are left out."""

    async def load_runs(self, run_ids: Sequence[str]) -> list[run_pb2.Run]:
        """The snapshots of those runs, in one round trip; runs that do not exist, or whose
        record is damaged (logged), are left out."""

    async def changed_since(self, since_us: int) -> list[str] | None:
        """The ids of every run that may have changed at or after `since_us` (epoch
        microseconds): each run not ended, each created since, and each whose end was
        stored since. What a WatchRuns stream reads again after a gap in notices, instead
        of every stored run: a run that ended before the gap never changes again. None when
        the store cannot tell from that far back (every run may have)."""

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, HeldKey]:
        """What those idempotency keys the run's log already holds hold."""

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
        """Up to `limit` events with seq > after_seq (and < before_seq, when given), of the
        given kinds if any, in order; reading stops at before_seq. With `max_bytes`, it
        also stops once the events read hold more than that (:func:`within_bytes`)."""

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
        """Up to `limit` events with seq < before_seq (the log's newest when None) and >
        after_seq, of the given kinds if any, newest first; reading stops at after_seq, and
        with `max_bytes` once the events read hold more than that (:func:`within_bytes`)."""

    async def purge_events(
        self,
        *,
        ended_before_us: int | None,
        keep_newest: int | None,
        marked: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Deletes the event logs of ended runs that ended before `ended_before_us` (epoch
        microseconds, by the server's clock: :func:`ended_us`) or are older than their
        tenant's newest `keep_newest` ended runs whose logs are kept, keeping their
        snapshots with ``purged_seq`` set, and tells the other processes (a
        :class:`PurgedNotice` each). Returns the ids of the runs purged.

        A store that deletes a long log over several transactions marks the runs purged
        first and awaits `marked` with their ids before deleting any of their events, so
        that this process refuses to read those logs before they are partly gone (a reader
        must never take what is left for the whole log).

        Each tenant keeps its own `keep_newest`: one tenant's busy day purges none of
        another's logs. A pass reads only the runs it purges, never those purged before, so
        that its cost does not grow with the store's history: the newest `keep_newest` are
        counted among the tenant's runs whose logs are kept, not among every ended run.
        Those are the same runs, as every run purged is older than every run of its
        tenant kept (whatever was purged for its rank has at least `keep_newest` kept runs
        newer than it, whatever was purged for its age ended before every kept one), unless
        the policy was loosened since (more runs or days kept), when this keeps more logs,
        never fewer."""

    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        """Runs matching the filter, newest first, starting after `cursor`. With
        `max_bytes`, the page also ends before a run whose stored snapshot would take the
        page's past that (one run at least), and says whether more runs match after it all
        the same: runs whose snapshots reach 2 MiB each are read a few at a time, not 1,001
        at once (4 ListRuns calls took 430 MB, found in review)."""

    async def count_runs(self) -> RunCounts:
        """The stored runs by status, what a listing of every run would count, without
        reading the ended runs' snapshots: read at every start, where listing every run
        took seconds per 50,000 and grew with every run ever stored."""

    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        """The newest `limit` runs of the tenant's workflow that succeeded, newest first:
        the workflow's history, which estimates and stall checks learn from. Read at every
        commit of a workflow not yet learned, so never a scan of every stored run."""

    async def follow(self, handler: NoticeHandler) -> None:
        """Calls `handler` with the commits of other writers until closed (one reader per
        process). Returns at once for a store no other process writes."""

    async def set_viewers(self, run_id: str, count: int) -> None:
        """Records how many watchers this process has on the run, and tells the other
        processes (a :class:`ViewersNotice` to their :meth:`follow`)."""

    async def viewers(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Watchers of each run on every other live process, in one round trip; runs
        without any are left out. Empty when the counts cannot be read right now."""

    async def share_usage(self, mine: Mapping[str, Usage]) -> dict[str, dict[str, Usage]]:
        """Records what this process's callers use of the per-caller limits, by caller, and
        returns every other live process's, by process then caller, in one round trip.
        Empty for a store no other process writes."""
