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
commit. Reads run on a small pool of reader threads with their own connections; WAL lets
them proceed while the writer commits.

The file is locked, checked and probed at :meth:`SqliteEventStore.open` (see
:mod:`~runstream_server.store.sqlite_file`). A write that fails because the storage cannot
take writes (disk full, read-only, I/O error) fails with UNAVAILABLE, so producers keep their
events and retry; the store then reports itself not writable (the server's health turns
NOT_SERVING) and probes with a small write every ``probe_interval`` seconds until one
succeeds. Nothing is acknowledged that was not committed, so nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from runstream.v1 import run_pb2

from runstream_server.errors import AlreadyExists, Unavailable
from runstream_server.store.base import (
    HeadMoved,
    NoticeHandler,
    RunFilter,
    RunPage,
    StoredEvent,
    StoreUnusable,
)
from runstream_server.store.sqlite_file import (
    PROBE_TABLE,
    FileLock,
    check_database,
    probe_write,
    rollback_if_active,
    storage_fault,
    unusable,
)

log = logging.getLogger("runstream.store")

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status INTEGER NOT NULL,
    create_time_us INTEGER NOT NULL,
    labels TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    snapshot BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_newest_first ON runs (create_time_us DESC, run_id DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    idempotency_key TEXT,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_idempotency
    ON events (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""
    + PROBE_TABLE
    + ";"
)

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_INLINE = ("OFF", "NORMAL")  # commits that do not wait for the disk: run on the event loop
_CHECKPOINT_BYTES = 4 << 20  # with inline commits: a checkpoint after this much is written
_PAGES_PER_APPEND = 3 * 4096
_T = TypeVar("_T")
_A = TypeVar("_A")
_TERMINAL = (run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED)


def _kinds_clause(kinds: Collection[int]) -> tuple[str, tuple[int, ...]]:
    if not kinds:
        return "", ()
    ordered = tuple(sorted(set(kinds)))
    return f"AND kind IN ({','.join('?' * len(ordered))})", ordered


def _add_tenant_column(conn: sqlite3.Connection) -> None:
    """Runs belong to a tenant (identity); files made before that get the column, all ""."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "tenant" not in columns:
        conn.execute("ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS runs_tenant_newest "
        "ON runs (tenant, create_time_us DESC, run_id DESC)"
    )


@dataclass(slots=True)
class _Write:
    run_id: str
    events: Sequence[StoredEvent]
    snapshot: run_pb2.Run
    expected_seq: int
    done: asyncio.Future[None] | None = None


class SqliteEventStore:
    """:class:`~runstream_server.store.base.EventStore` over one SQLite file.

    One process owns the file, so no other writer exists: :meth:`follow` has nothing to
    report, and the head check in :meth:`append` guards the domain's own bookkeeping.
    """

    shared = False

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
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}")
        self.path = path
        self._probe_interval = probe_interval
        self._writable = True
        self._prober: asyncio.Task[None] | None = None
        self._file_lock: FileLock | None = None
        self._closed = False
        self._check = check
        self._synchronous = synchronous.upper()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="runstream-sqlite-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="runstream-sqlite-reader")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._wconn: sqlite3.Connection | None = None
        # Held by whoever uses the writer connection: the writer thread, or the event loop
        # for an inline commit (which never waits for it: it hands the commit over instead).
        self._wlock = threading.Lock()
        self._inline = self._synchronous in _INLINE
        self._unchecked_bytes = 0
        self._checkpointing = False
        self._pending: list[_Write] = []
        self._drainer: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Locks, checks and probes the file; raises StoreUnusable naming what is wrong."""
        await asyncio.get_running_loop().run_in_executor(self._writer, self._open_writer)

    def _open_writer(self) -> None:
        lock = FileLock(self.path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self._check:
                check_database(conn, self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if self._inline:  # checkpoints wait for the disk: the writer thread runs them
                conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            _add_tenant_column(conn)
            probe_write(conn, time.time())
        except BaseException as exc:
            if conn is not None:
                conn.close()
            lock.release()
            if isinstance(exc, sqlite3.Error | OSError) and not isinstance(exc, StoreUnusable):
                raise unusable(self.path, exc) from exc
            raise
        self._wconn = conn
        self._file_lock = lock

    @property
    def writable(self) -> bool:
        """False while writes fail because of the storage (disk full, read-only, I/O error)."""
        return self._writable

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.wait({self._prober})
        if self._drainer is not None:
            await asyncio.shield(self._drainer)
        self._closed = True
        # Reads already handed to the pool finish first, on their open connections.
        await asyncio.to_thread(self._readers.shutdown, wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close_writer)
        self._writer.shutdown(wait=True)

    def _close_writer(self) -> None:
        with self._wlock:
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    # --- writability ----------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> BaseException:
        """The error an append gets: UNAVAILABLE for a storage fault (then not writable)."""
        fault = storage_fault(exc)
        if fault is None:
            return exc
        if self._writable:
            self._writable = False
            log.error(
                "store %s cannot take writes: %s (%s); writes answer UNAVAILABLE until one "
                "succeeds",
                self.path,
                fault,
                exc,
            )
            self._prober = asyncio.create_task(self._probe(), name="runstream-sqlite-probe")
        error = Unavailable(f"{fault}: nothing was stored; retry later")
        error.__cause__ = exc
        return error

    def _succeeded(self) -> None:
        if not self._writable:
            self._writable = True
            log.warning("store %s takes writes again", self.path)

    async def _probe(self) -> None:
        """While not writable: a small write every probe_interval until one succeeds."""
        loop = asyncio.get_running_loop()
        while not self._writable:
            await asyncio.sleep(self._probe_interval)
            try:
                await loop.run_in_executor(
                    self._writer, lambda: self._with_writer(probe_write, time.time())
                )
            except Exception as exc:
                if storage_fault(exc) is None:
                    log.exception("store probe failed unexpectedly")
                continue
            self._succeeded()
        self._prober = None

    # --- writes: group commit ---------------------------------------------------------------

    async def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
    ) -> None:
        write = _Write(run_id, events, snapshot, expected_seq)
        if self._drainer is None:  # nothing queued: commit at once if it can be done inline
            try:
                inline = self._commit_inline([write])
            except Exception as exc:
                failure = self._failed(exc)
                if failure is exc:
                    raise
                raise failure from exc
            if inline is not None:
                if inline[0] is not None:
                    raise self._failed(inline[0])
                self._succeeded()
                return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        write.done = done
        self._pending.append(write)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="runstream-sqlite-commit")
        await done

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    inline = self._commit_inline(batch)
                    results: list[BaseException | None] = list(
                        inline
                        if inline is not None
                        else await loop.run_in_executor(self._writer, self._commit, batch)
                    )
                except Exception as exc:  # the whole transaction failed (disk full, I/O error)
                    results = [self._failed(exc)] * len(batch)
                else:
                    results = [None if e is None else self._failed(e) for e in results]
                    if all(e is None for e in results):
                        self._succeeded()
                for write, error in zip(batch, results, strict=True):
                    assert write.done is not None
                    if write.done.done():
                        continue
                    if error is None:
                        write.done.set_result(None)
                    else:
                        write.done.set_exception(error)
        finally:
            self._drainer = None

    def _commit_inline(self, batch: list[_Write]) -> list[Exception | None] | None:
        """Commits on the event loop when commits do not wait for the disk and the writer
        connection is free (not probing, purging or checkpointing); None otherwise."""
        if not (self._inline and self._writable) or not self._wlock.acquire(blocking=False):
            return None
        try:
            results = self._commit_locked(batch)
        finally:
            self._wlock.release()
        # What the WAL grew by, about: each append rewrites a few pages besides its events.
        self._unchecked_bytes += sum(
            _PAGES_PER_APPEND + sum(len(e.data) for e in w.events) for w in batch
        )
        if self._unchecked_bytes >= _CHECKPOINT_BYTES and not self._checkpointing:
            self._unchecked_bytes = 0
            self._checkpointing = True
            done = asyncio.get_running_loop().run_in_executor(self._writer, self._checkpoint)
            done.add_done_callback(self._checkpointed)
        return results

    def _checkpoint(self) -> None:
        """Copies the WAL into the database file (waiting for the disk) on the writer thread.

        It holds the writer connection, so commits meanwhile queue for the thread instead of
        adding frames: the checkpoint completes and the next commit starts the WAL over.
        """
        self._with_writer(
            lambda conn, _: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall(), None
        )

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        self._checkpointing = False
        if not done.cancelled() and done.exception() is not None:
            log.warning("store %s: checkpoint failed: %s", self.path, done.exception())

    def _with_writer(self, fn: Callable[[sqlite3.Connection, _A], _T], arg: _A) -> _T:
        with self._wlock:
            return fn(self._writer_conn(), arg)

    def _commit(self, batch: list[_Write]) -> list[Exception | None]:
        with self._wlock:
            return self._commit_locked(batch)

    def _commit_locked(self, batch: list[_Write]) -> list[Exception | None]:
        conn = self._wconn
        assert conn is not None, "store is not open"
        results: list[Exception | None] = []
        conn.execute("BEGIN IMMEDIATE")
        if len(batch) == 1:  # alone in its transaction: no savepoint needed
            try:
                self._write_one(conn, batch[0])
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back (disk full, I/O)
                conn.execute("ROLLBACK")
                return [exc]
            except BaseException:
                rollback_if_active(conn)
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                rollback_if_active(conn)
                raise
            return [None]
        try:
            for write in batch:
                conn.execute("SAVEPOINT append")
                try:
                    self._write_one(conn, write)
                except Exception as exc:
                    if not conn.in_transaction:
                        raise  # SQLite rolled the whole transaction back (disk full, I/O)
                    conn.execute("ROLLBACK TO append")
                    results.append(exc)
                else:
                    results.append(None)
                conn.execute("RELEASE append")
            conn.execute("COMMIT")
        except BaseException:
            rollback_if_active(conn)
            raise
        return results

    @staticmethod
    def _write_one(conn: sqlite3.Connection, write: _Write) -> None:
        snap = write.snapshot
        data = snap.SerializeToString()
        if write.expected_seq == 0:
            try:
                conn.execute(
                    "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, "
                    "last_seq, snapshot, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        write.run_id,
                        snap.workflow,
                        snap.status,
                        snap.create_time.ToMicroseconds(),
                        json.dumps(dict(snap.labels), sort_keys=True),
                        snap.last_seq,
                        data,
                        snap.tenant,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"run {write.run_id!r} already exists") from exc
        else:
            updated = conn.execute(
                "UPDATE runs SET status = ?, last_seq = ?, snapshot = ? "
                "WHERE run_id = ? AND last_seq = ?",
                (snap.status, snap.last_seq, data, write.run_id, write.expected_seq),
            )
            if updated.rowcount != 1:
                row = conn.execute(
                    "SELECT last_seq FROM runs WHERE run_id = ?", (write.run_id,)
                ).fetchone()
                raise HeadMoved(write.run_id, write.expected_seq, -1 if row is None else row[0])
        try:
            conn.executemany(
                "INSERT INTO events (run_id, seq, kind, idempotency_key, data) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (write.run_id, e.seq, e.kind, e.idempotency_key or None, e.data)
                    for e in write.events
                ],
            )
        except sqlite3.IntegrityError as exc:  # an idempotency key the log holds
            raise HeadMoved(write.run_id, write.expected_seq, write.expected_seq) from exc

    # --- reads --------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise Unavailable("server is shutting down; resume elsewhere")
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: fn(self._reader())
        )

    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        def load(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT snapshot FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return None if row is None else bytes(row[0])

        data = await self._read(load)
        return None if data is None else run_pb2.Run.FromString(data)

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, int]:
        wanted = [k for k in keys if k]
        if not wanted:
            return {}

        def find(conn: sqlite3.Connection) -> dict[str, int]:
            found: dict[str, int] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    "SELECT idempotency_key, seq FROM events "
                    f"WHERE run_id = ? AND idempotency_key IN ({marks})",
                    (run_id, *chunk),
                )
                found.update((str(key), int(seq)) for key, seq in rows)
            return found

        return await self._read(find)

    async def read_events(
        self, run_id: str, after_seq: int, limit: int, kinds: Collection[int] = ()
    ) -> list[StoredEvent]:
        kind_clause, kind_params = _kinds_clause(kinds)

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, kind, idempotency_key, data FROM events "
                f"WHERE run_id = ? AND seq > ? {kind_clause} ORDER BY seq LIMIT ?",
                (run_id, after_seq, *kind_params, limit),
            )
            return [StoredEvent(seq, kind, key or "", bytes(data)) for seq, kind, key, data in rows]

        return await self._read(read)

    async def read_last_events(
        self, run_id: str, kinds: Collection[int], limit: int
    ) -> list[StoredEvent]:
        kind_clause, kind_params = _kinds_clause(kinds)

        def read(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, kind, idempotency_key, data FROM events "
                f"WHERE run_id = ? {kind_clause} ORDER BY seq DESC LIMIT ?",
                (run_id, *kind_params, limit),
            ).fetchall()
            return [
                StoredEvent(seq, kind, key or "", bytes(data))
                for seq, kind, key, data in reversed(rows)
            ]

        return await self._read(read)

    async def purge_events(
        self, *, ended_before_us: int | None, keep_newest: int | None
    ) -> list[str]:
        def purge(conn: sqlite3.Connection, _: None) -> list[str]:
            ended = [
                (str(run_id), run_pb2.Run.FromString(data))
                for run_id, data in conn.execute(
                    "SELECT run_id, snapshot FROM runs WHERE status IN (?, ?, ?)", _TERMINAL
                )
            ]
            ended.sort(key=lambda item: item[1].end_time.ToMicroseconds(), reverse=True)
            chosen = []
            for rank, (run_id, run) in enumerate(ended):
                too_old = ended_before_us is not None and (
                    run.end_time.ToMicroseconds() < ended_before_us
                )
                beyond = keep_newest is not None and rank >= keep_newest
                if (too_old or beyond) and run.purged_seq < run.last_seq:
                    chosen.append((run_id, run))
            conn.execute("BEGIN IMMEDIATE")
            try:
                for run_id, run in chosen:
                    conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                    run.purged_seq = run.last_seq
                    conn.execute(
                        "UPDATE runs SET snapshot = ? WHERE run_id = ?",
                        (run.SerializeToString(), run_id),
                    )
                conn.execute("COMMIT")
            except BaseException:
                rollback_if_active(conn)
                raise
            return [run_id for run_id, _ in chosen]

        # On the writer thread, so it never interleaves with a group commit.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: self._with_writer(purge, None))

    def _writer_conn(self) -> sqlite3.Connection:
        assert self._wconn is not None, "store is not open"
        return self._wconn

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, cursor: tuple[int, str] | None
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
        for key, value in sorted(run_filter.labels.items()):
            clauses.append("json_extract(labels, ?) = ?")
            params.extend([f'$."{key}"', value])
        if cursor is not None:
            clauses.append("(create_time_us, run_id) < (?, ?)")
            params.extend(cursor)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            f"SELECT snapshot, create_time_us, run_id FROM runs {where} "
            "ORDER BY create_time_us DESC, run_id DESC LIMIT ?"
        )
        params.append(page_size + 1)

        def query(conn: sqlite3.Connection) -> list[tuple[bytes, int, str]]:
            return [(bytes(s), int(t), str(r)) for s, t, r in conn.execute(sql, params)]

        rows = await self._read(query)
        more = len(rows) > page_size
        rows = rows[:page_size]
        runs = [run_pb2.Run.FromString(data) for data, _, _ in rows]
        next_cursor = (rows[-1][1], rows[-1][2]) if more and rows else None
        return RunPage(runs, next_cursor)

    # --- one process: nothing to follow, local viewer counts suffice -------------------------

    async def ping(self) -> bool:
        """False while writes fail because of the storage (the server is then NOT_SERVING)."""
        return self._wconn is not None and self._writable

    async def confirm(self, run_id: str) -> None:
        """What a commit stored is as durable as it will be: nothing to wait for."""

    async def follow(self, handler: NoticeHandler) -> None:
        """No other process writes this file: there is nothing to follow."""

    async def set_viewers(self, run_id: str, count: int) -> None:
        """Local counts are the only counts."""

    async def viewers(self, run_ids: Sequence[str]) -> dict[str, int]:
        return {}
