"""The embedded default store: one SQLite file in WAL mode.

Writes use group commit: appends that arrive while a commit is in progress are written
together in the next transaction, each inside its own savepoint so one failing append (a
duplicate run id) does not fail the others. With ``synchronous=FULL`` (the default) an append
returns only after its transaction is on disk, so an acknowledged event survives a crash of
the process or the machine; those commits run on one writer thread, since they wait for the
disk. With ``NORMAL`` or ``OFF`` a commit only writes to the operating system's cache (an
acknowledged event survives a crash of the process, not of the machine) and takes tens of
microseconds, less than handing it to a thread and back, so it runs on the event loop;
checkpoints, which do wait for the disk, then run on the writer thread instead of inside a
commit (all of that is :mod:`~runstream_server.store.sqlite_writer`). Reads run on a small
pool of reader threads with their own connections; WAL lets them proceed while the writer
commits.

The file is locked, checked and probed at :meth:`SqliteEventStore.open` (see
:mod:`~runstream_server.store.sqlite_file`). A write that fails because the storage cannot
take writes (disk full, read-only, I/O error) fails with UNAVAILABLE, so producers keep their
events and retry; the store then reports itself not writable (the server's health turns
NOT_SERVING) and probes with a small write every ``probe_interval`` seconds until one
succeeds. Nothing is acknowledged that was not committed, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from runstream.v1 import run_pb2

from runstream_server.errors import Unavailable
from runstream_server.store.base import (
    HeldKey,
    NoticeHandler,
    RunCounts,
    RunFilter,
    RunPage,
    StoredEvent,
    Usage,
    decode_run,
    readable_runs,
    within_bytes,
)
from runstream_server.store.clock import StoreClock
from runstream_server.store.sqlite_backups import CopyHeld, copy_database
from runstream_server.store.sqlite_file import (
    connect,
    rollback_if_active,
)
from runstream_server.store.sqlite_writer import SYNCHRONOUS, SqliteWriter

_T = TypeVar("_T")
_TERMINAL = (run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED)
_ENDED = ", ".join("?" * len(_TERMINAL))
_NO_SEQ_ABOVE = 2**63 - 1  # a read without an upper bound
_PURGE_BATCH = 256  # runs purged per hold of the writer
_PURGE_ROWS = 5000  # events deleted per hold of the writer, at most


def _kinds_clause(kinds: Collection[int]) -> tuple[str, tuple[int, ...]]:
    if not kinds:
        return "", ()
    ordered = tuple(sorted(set(kinds)))
    return f"AND kind IN ({','.join('?' * len(ordered))})", ordered


class SqliteEventStore:
    """:class:`~runstream_server.store.base.EventStore` over one SQLite file.

    One process owns the file, so no other writer exists: :meth:`follow` has nothing to
    report, and the head check in :meth:`append` guards the domain's own bookkeeping.
    """

    shared = False
    persistence = ""  # the startup line says the sync mode configured

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        readers: int = 4,
        probe_interval: float = 1.0,
        check: bool = True,
    ) -> None:
        """`check` runs ``PRAGMA quick_check`` at open (about 3 s per GB; see the README);
        `probe_interval` is how often a write is tried while writes fail."""
        self.clock = StoreClock()
        """This machine's wall clock: no other server compares times with this one's."""
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
        self.path = path
        self.writer = SqliteWriter(
            path, synchronous=synchronous.upper(), probe_interval=probe_interval, check=check
        )
        """The one writer connection: group commit, checkpoints, writability."""
        self._closed = False
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="runstream-sqlite-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Locks, checks and probes the file; raises StoreUnusable naming what is wrong."""
        await self.writer.open()

    @property
    def writable(self) -> bool:
        """False while writes fail because of the storage (disk full, read-only, I/O error)."""
        return self.writer.writable

    async def close(self) -> None:
        await self.writer.settle()
        self._closed = True
        # Reads already handed to the pool finish first, on their open connections.
        await asyncio.to_thread(self._readers.shutdown, wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        await self.writer.close()

    # --- writes -------------------------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: bytes | None = None,
    ) -> None:
        await self.writer.append(
            run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded
        )

    # --- reads --------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise Unavailable("server is shutting down; resume elsewhere", reason="SHUTTING_DOWN")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, lambda: fn(self._reader())
            )
        except sqlite3.DatabaseError as exc:
            damaged = self.writer.damaged(exc)  # a file damaged under the server
            if damaged is None:
                raise
            raise damaged from exc

    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        def load(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT snapshot FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return None if row is None else bytes(row[0])

        data = await self._read(load)
        return None if data is None else decode_run(run_id, data)

    async def load_runs(self, run_ids: Sequence[str]) -> list[run_pb2.Run]:
        wanted = list(dict.fromkeys(run_ids))

        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = _rows_in(conn, "SELECT run_id, snapshot FROM runs WHERE run_id IN ({})", wanted)
            return [(str(run_id), bytes(data)) for run_id, data in rows]

        return [run for _, run in readable_runs(await self._read(read))] if wanted else []

    async def changed_since(self, since_us: int) -> list[str] | None:
        """None: one process writes this file and never misses a change, so it keeps no
        record of when each run's end was stored."""
        return None

    async def heads(self, run_ids: Sequence[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(run_ids))

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = _rows_in(conn, "SELECT run_id, last_seq FROM runs WHERE run_id IN ({})", wanted)
            return {str(run_id): int(seq) for run_id, seq in rows}

        return await self._read(read) if wanted else {}

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, HeldKey]:
        wanted = [k for k in keys if k]
        if not wanted:
            return {}

        def find(conn: sqlite3.Connection) -> dict[str, HeldKey]:
            rows = _rows_in(
                conn,
                "SELECT idempotency_key, seq, kind FROM events "
                "WHERE run_id = ? AND idempotency_key IN ({})",
                wanted,
                run_id,
            )
            return {str(key): HeldKey(int(seq), int(kind)) for key, seq, kind in rows}

        return await self._read(find)

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
        kind_clause, kind_params = _kinds_clause(kinds)
        below = _NO_SEQ_ABOVE if before_seq is None else before_seq

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            # Along the primary key (run_id, seq), from after_seq up to before_seq at most.
            rows = conn.execute(
                "SELECT seq, kind, idempotency_key, data FROM events "
                f"WHERE run_id = ? AND seq > ? AND seq < ? {kind_clause} ORDER BY seq LIMIT ?",
                (run_id, after_seq, below, *kind_params, limit),
            )
            return _events(rows, max_bytes)

        return await self._read(read)

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
        kind_clause, kind_params = _kinds_clause(kinds)
        below = _NO_SEQ_ABOVE if before_seq is None else before_seq

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            # Backwards along the primary key (run_id, seq): no sort, however long the log,
            # and down to after_seq at most.
            rows = conn.execute(
                "SELECT seq, kind, idempotency_key, data FROM events "
                f"WHERE run_id = ? AND seq < ? AND seq > ? {kind_clause} "
                "ORDER BY seq DESC LIMIT ?",
                (run_id, below, after_seq, *kind_params, limit),
            )
            return _events(rows, max_bytes)

        return await self._read(read)

    async def purge_events(
        self,
        *,
        ended_before_us: int | None,
        keep_newest: int | None,
        marked: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Chooses on a reader, from the index of ended runs whose logs are kept
        (``runs_retained``), their ids and end times alone, then reads the snapshots of
        the chosen runs a batch of :data:`_PURGE_BATCH` at a time, newest end first: a pass
        costs what it purges, plus a walk over the entries kept (ranked within their
        tenants), however many runs were purged before, and holds one batch of snapshots
        in memory, however many runs it purges. The writer is held only for the purge's
        writes, batch by batch, and deletes at most :data:`_PURGE_ROWS` events per hold, so
        appends wait for one such batch at most, however long the logs. A batch's logs that
        fit go with their snapshots' updates; the longer ones are marked purged then
        (``purged_seq`` their head, the whole log refused to readers from there on), told to
        `marked`, and deleted newest events first, a chunk per hold, the run's entry in
        ``runs_retained`` cleared with the last chunk: a pass cut short (a crash) leaves a
        run refused to readers whose next pass deletes the rest. Why counting among the kept
        runs is right: the interface's docstring (:meth:`.base.EventStore.purge_events`)."""

        def choose(conn: sqlite3.Connection) -> list[str]:
            ends: dict[str, int] = {}
            if ended_before_us is not None:
                for run_id, end in conn.execute(
                    "SELECT run_id, retained_end_us FROM runs "
                    "WHERE retained_end_us IS NOT NULL AND retained_end_us < ?",
                    (ended_before_us,),
                ):
                    ends[str(run_id)] = int(end)
            if keep_newest is not None:  # each tenant's newest `keep_newest` kept
                # The kept runs only, ranked within their tenants, from their index alone
                # (left to itself, the planner walked every run of the tenant index, and
                # through runs_retained it read each kept run's row, snapshot and all).
                for run_id, end in conn.execute(
                    "SELECT run_id, retained_end_us FROM (SELECT run_id, retained_end_us, "
                    "ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY retained_end_us DESC, "
                    "run_id DESC) AS newer FROM runs INDEXED BY runs_retained_by_tenant "
                    "WHERE retained_end_us IS NOT NULL) WHERE newer > ?",
                    (keep_newest,),
                ):
                    ends[str(run_id)] = int(end)
            return sorted(ends, key=ends.__getitem__, reverse=True)

        def snapshots(
            conn: sqlite3.Connection, run_ids: list[str]
        ) -> list[tuple[str, run_pb2.Run]]:
            rows = _rows_in(conn, "SELECT run_id, snapshot FROM runs WHERE run_id IN ({})", run_ids)
            runs = dict(readable_runs((str(run_id), bytes(data)) for run_id, data in rows))
            return [(run_id, runs[run_id]) for run_id in run_ids if run_id in runs]

        chosen = await self._read(choose)
        purged: list[str] = []
        for start in range(0, len(chosen), _PURGE_BATCH):
            ids = chosen[start : start + _PURGE_BATCH]
            batch = await self._read(functools.partial(snapshots, run_ids=ids))
            done, long_logs = await self.writer.run(_purge, batch)  # never amid a commit
            if marked is not None and long_logs:
                await marked([run_id for run_id, _, _ in long_logs])
            for run_id, head, _ in long_logs:
                for top in range(head, 0, -_PURGE_ROWS):
                    await self.writer.run(_delete_events, (run_id, top))
            purged += done + [run_id for run_id, _, new in long_logs if new]
        return purged

    async def count_runs(self) -> RunCounts:
        """The runs counted by their ``status`` column, and the snapshots of the runs not
        ended: each row's first page is read, not an ended run's snapshot, which a large one
        keeps on pages of its own (the listing decoded them all, 0.49 s at 100,000 runs;
        this takes 0.06 s there). No index: one on ``status`` would be written at every
        commit of a running run, which sets the column (about 8 % more instructions per
        event with a partial index of the ended runs, measured)."""

        def count(conn: sqlite3.Connection) -> tuple[dict[int, int], list[tuple[str, bytes]]]:
            counted = conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
            active = conn.execute(
                f"SELECT run_id, snapshot FROM runs WHERE status NOT IN ({_ENDED})", _TERMINAL
            ).fetchall()
            return (
                {int(status): int(n) for status, n in counted if status in _TERMINAL},
                [(str(run_id), bytes(data)) for run_id, data in active],
            )

        ended, active = await self._read(count)
        return RunCounts(ended, [run for _, run in readable_runs(active)])

    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        clauses: list[str] = []
        params: list[object] = []
        if run_filter.statuses:
            clauses.append(f"status IN ({','.join('?' * len(run_filter.statuses))})")
            params.extend(sorted(run_filter.statuses))
        if run_filter.workflow is not None:
            clauses.append("workflow = ?")
            params.append(run_filter.workflow)
        if run_filter.tenant is not None:
            clauses.append("tenant = ?")
            params.append(run_filter.tenant)
        for clause, bound in (
            ("create_time_us > ?", run_filter.created_after_us),
            ("create_time_us < ?", run_filter.created_before_us),
        ):
            if bound is not None:
                clauses.append(clause)
                params.append(bound)
        for key, value in sorted(run_filter.labels.items()):
            clauses.append("json_extract(labels, ?) = ?")
            params.extend([f'$."{key}"', value])
        if cursor is not None:
            clauses.append("(create_time_us, run_id) < (?, ?)")
            params.extend(cursor)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT length(snapshot), create_time_us, run_id FROM runs {where} "
            "ORDER BY create_time_us DESC, run_id DESC LIMIT ?"
        )
        params.append(page_size + 1)

        def query(conn: sqlite3.Connection) -> tuple[list[tuple[bytes, int, str]], bool]:
            # The page's runs by their snapshots' sizes first (SQLite keeps a blob's length
            # in its record): with `max_bytes`, the snapshots past it are never read.
            chosen: list[tuple[int, str]] = []
            held, more = 0, False
            for size, created, run_id in conn.execute(sql, params).fetchall():
                past = max_bytes is not None and bool(chosen) and held + size > max_bytes
                if len(chosen) >= page_size or past:
                    more = True  # one more run matches
                    break
                chosen.append((int(created), str(run_id)))
                held += size
            wanted = [run_id for _, run_id in chosen]
            sql_in = "SELECT run_id, snapshot FROM runs WHERE run_id IN ({})"
            found = {str(run_id): bytes(data) for run_id, data in _rows_in(conn, sql_in, wanted)}
            rows = [(found[r], created, r) for created, r in chosen if r in found]
            return rows, more

        rows, more = await self._read(query)
        readable = dict(readable_runs((run_id, data) for data, _, run_id in rows))
        runs = list(readable.values())
        positions = [(created, run_id) for _, created, run_id in rows if run_id in readable]
        last = (rows[-1][1], rows[-1][2]) if rows else None
        return RunPage(runs, positions, more, read_up_to=last)

    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        # One SELECT over the runs table; read once per workflow per process.
        succeeded = RunFilter(frozenset({run_pb2.RUN_STATUS_SUCCEEDED}), workflow, tenant=tenant)
        return (await self.list_runs(succeeded, limit, None)).runs

    async def backup(self, destination: Path, stopping: threading.Event | None = None) -> int:
        """A consistent copy of the store in `destination`, taken on a reader while appends
        go on, abandoned once `stopping` is set (see store/sqlite_backups.py); returns its
        size in bytes. Refused (CopyHeld) once the file was found damaged: a copy of it would
        only push a good one out."""
        if self.writer.damage is not None:
            raise CopyHeld(self.writer.damage)
        try:
            return await self._read(lambda conn: copy_database(conn, destination, stopping))
        except Unavailable as exc:
            if self.writer.damage is None:
                raise
            raise CopyHeld(self.writer.damage) from exc  # found reading it for the copy

    # --- one process: nothing to follow, local viewer counts suffice -------------------------

    async def ping(self) -> bool:
        """False while writes fail because of the storage (the server is then NOT_SERVING)."""
        return self.writer.is_open and self.writer.writable

    @property
    def outage(self) -> str:
        return self.writer.outage

    async def confirm(self, run_id: str) -> None:
        """What a commit stored is as durable as it will be: nothing to wait for."""

    async def follow(self, handler: NoticeHandler) -> None:
        """No other process writes this file: there is nothing to follow."""

    async def set_viewers(self, run_id: str, count: int) -> None:
        """Local counts are the only counts."""

    async def viewers(self, run_ids: Sequence[str]) -> dict[str, int]:
        return {}

    async def share_usage(self, mine: Mapping[str, Usage]) -> dict[str, dict[str, Usage]]:
        """One process per file: its own usage is all there is."""
        return {}


def _events(rows: sqlite3.Cursor, max_bytes: int | None) -> list[StoredEvent]:
    """The events of a query's rows (seq, kind, key, data), read one by one up to
    `max_bytes` (:func:`~.base.within_bytes`); the query is closed after them."""
    try:
        return within_bytes(
            (StoredEvent(seq, kind, key or "", bytes(data)) for seq, kind, key, data in rows),
            max_bytes,
        )
    finally:
        rows.close()


def _purge(
    conn: sqlite3.Connection, runs: list[tuple[str, run_pb2.Run]]
) -> tuple[list[str], list[tuple[str, int, bool]]]:
    """Purges the logs of `runs` (chosen on a reader) in one transaction, on the writer, up
    to :data:`_PURGE_ROWS` events in all; returns the runs purged and, for each run whose log
    did not fit, its id, its head and whether this pass marked it: its snapshot is marked
    purged, its events are left to :func:`_delete_events`. A run is passed over when its head
    moved since it was read (no ended run's does) or its log is no longer kept (another pass
    purged it meanwhile); one marked purged by a pass cut short has the rest of its log left
    to delete, as has one whose log an earlier version purged without clearing
    ``retained_end_us`` (a file opened by it again after this version), to no effect; neither
    is reported again."""
    purged: list[str] = []
    long_logs: list[tuple[str, int, bool]] = []
    rows = _PURGE_ROWS
    conn.execute("BEGIN IMMEDIATE")
    try:
        for run_id, run in runs:
            if run.status not in _TERMINAL:
                conn.execute(
                    "UPDATE runs SET retained_end_us = NULL WHERE run_id = ? AND last_seq = ?",
                    (run_id, run.last_seq),
                )
                continue
            if run.purged_seq >= run.last_seq:  # marked purged, its log maybe partly kept
                long_logs.append((run_id, run.last_seq, False))
                continue
            events = run.last_seq - run.purged_seq  # at most; those up to purged_seq are gone
            fits = events <= rows
            run.purged_seq = run.last_seq
            updated = conn.execute(
                "UPDATE runs SET snapshot = ?, retained_end_us = "
                f"{'NULL' if fits else 'retained_end_us'} "
                "WHERE run_id = ? AND last_seq = ? AND retained_end_us IS NOT NULL",
                (run.SerializeToString(), run_id, run.last_seq),
            )
            if updated.rowcount != 1:
                continue
            if fits:
                conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                rows -= events
                purged.append(run_id)
            else:
                long_logs.append((run_id, run.last_seq, True))
        conn.execute("COMMIT")
    except BaseException:
        rollback_if_active(conn)
        raise
    return purged, long_logs


def _delete_events(conn: sqlite3.Connection, chunk: tuple[str, int]) -> None:
    """Deletes one chunk of a log marked purged, the :data:`_PURGE_ROWS` seqs up to `top`,
    in one transaction; the run leaves ``runs_retained`` with its last chunk (the one that
    reaches seq 1)."""
    run_id, top = chunk
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "DELETE FROM events WHERE run_id = ? AND seq > ? AND seq <= ?",
            (run_id, top - _PURGE_ROWS, top),
        )
        if top <= _PURGE_ROWS:
            conn.execute("UPDATE runs SET retained_end_us = NULL WHERE run_id = ?", (run_id,))
        conn.execute("COMMIT")
    except BaseException:
        rollback_if_active(conn)
        raise


def _rows_in(
    conn: sqlite3.Connection, sql: str, values: Sequence[str], *first: object
) -> list[Any]:
    """The rows of ``sql`` (its ``IN ({})`` filled with `values`, after the parameters
    `first`), 500 values per query: SQLite takes a bounded number of parameters."""
    rows: list[Any] = []
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        rows += conn.execute(sql.format(",".join("?" * len(chunk))), (*first, *chunk))
    return rows
