"""The SQLite store's one writer: its connection, group commit, checkpoints, and what
happens while the storage refuses writes.

Appends that arrive while a commit is in progress are written together in the next
transaction, each inside its own savepoint so one failing append (a duplicate run id) does
not fail the others. With ``synchronous=FULL`` (the default) a commit returns only once its
transaction is on disk, so commits run on one writer thread. With ``NORMAL`` or ``OFF`` a
commit only writes to the operating system's cache and takes tens of microseconds, less than
handing it to a thread and back, so it runs on the event loop while the writer connection is
free; checkpoints, which do wait for the disk, then run on the writer thread.

A write that fails because the storage cannot take writes (disk full, read-only, I/O error)
fails with UNAVAILABLE; the writer then reports itself not writable and probes with a small
write every ``probe_interval`` seconds until one succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from runstream.v1 import run_pb2

from runstream_server.errors import AlreadyExists, NothingStored, Unavailable
from runstream_server.store.base import (
    HeadMoved,
    StoredEvent,
    StoreUnusable,
    ended_us,
    readable_run,
)
from runstream_server.store.sqlite_file import (
    PROBE_TABLE,
    FileLock,
    check_database,
    connect,
    damage,
    probe_write,
    rollback_if_active,
    storage_fault,
    unusable,
)

log = logging.getLogger("runstream.store")

SCHEMA = (
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

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_INLINE = ("OFF", "NORMAL")  # commits that do not wait for the disk: run on the event loop
_CHECKPOINT_BYTES = 4 << 20  # with inline commits: a checkpoint after this much is written
_PAGES_PER_APPEND = 3 * 4096
_T = TypeVar("_T")
_A = TypeVar("_A")


_UPDATE_RUNNING = (
    "UPDATE runs SET status = ?, last_seq = ?, snapshot = ?, retained_end_us = NULL "
    "WHERE run_id = ? AND last_seq = ?"
)
_UPDATE_ENDED = (
    "UPDATE runs SET retained_end_us = ?, status = ?, last_seq = ?, snapshot = ? "
    "WHERE run_id = ? AND last_seq = ?"
)


def _blob(data: bytes) -> bytearray:
    """`data` as sqlite3 binds it at once: a bytes or None parameter is first offered to
    its adapters (none are registered), which raises and swallows an AttributeError each
    time; a bytearray (or an int, a float, a str) is bound as it is. 0.6 us less per value,
    for a copy, on every commit."""
    return bytearray(data)


_OWN_COLUMNS = {
    "runs": {"run_id", "workflow", "status", "create_time_us", "labels", "last_seq", "snapshot"},
    "events": {"run_id", "seq", "kind", "idempotency_key", "data"},
    "store_probe": {"id", "at"},
}


def check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuses another program's database (a mistyped ``--store``) before anything is written
    to it: a file with tables but not Runstream's ``runs`` and ``events``, or with tables of
    those names holding other columns. An empty file, or one of Runstream's own, passes,
    whatever else it holds (an operator's table, a backup tool's)."""
    tables = [
        str(name)
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in [t for t in tables if t in _OWN_COLUMNS]:
        columns = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = sorted(_OWN_COLUMNS[table] - columns)
        if missing:
            raise StoreUnusable(
                f"store {path} is another program's database (its table {table} has no "
                f"column {', '.join(missing)}); Runstream keeps its runs in a file of its own"
            )
    if tables and not {"runs", "events"} <= set(tables):
        others = sorted(t for t in tables if t not in _OWN_COLUMNS) or tables
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise StoreUnusable(
            f"store {path} is another program's database (its tables: {shown}); Runstream "
            "keeps its runs in a file of its own"
        )


def _add_tenant_column(conn: sqlite3.Connection) -> None:
    """Runs belong to a tenant (identity); files made before that get the column, all ""."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "tenant" not in columns:
        conn.execute("ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS runs_tenant_newest "
        "ON runs (tenant, create_time_us DESC, run_id DESC)"
    )


_TERMINAL = (run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED)

_RETAINED_INDEXES = (
    # Ended runs whose logs are kept, by end time (retention by age) ...
    "CREATE INDEX IF NOT EXISTS runs_retained ON runs (retained_end_us, run_id) "
    "WHERE retained_end_us IS NOT NULL",
    # ... and within their tenants, newest first (by count: each tenant's newest N), so a
    # pass reads neither the runs' rows nor their snapshots.
    "CREATE INDEX IF NOT EXISTS runs_retained_by_tenant "
    "ON runs (tenant, retained_end_us DESC, run_id DESC) WHERE retained_end_us IS NOT NULL",
)


def retained_end(snap: run_pb2.Run) -> int | None:
    """The ``retained_end_us`` of a run with this snapshot: when its end was stored
    (microseconds, :func:`~.base.ended_us`) while it has ended and its log is kept, else
    NULL (running, or its log purged)."""
    if snap.status in _TERMINAL and snap.purged_seq < snap.last_seq:
        return ended_us(snap)
    return None


def _add_retained_column(conn: sqlite3.Connection) -> None:
    """Retention chooses among the ended runs whose logs are kept, by end time, from the
    partial index ``runs_retained``; a pass reads no run whose log it purged before.

    A file made before that gets the column (NULL for every run) and has it filled in the
    same transaction from the snapshots of the ended runs that still have events: a
    purged run has none left (a purge deletes them all with the snapshot's update), so only
    the snapshots of runs whose logs are kept are read, once. A crash meanwhile rolls the
    whole change back, and the next open does it again."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "retained_end_us" in columns:
        for index in _RETAINED_INDEXES:
            conn.execute(index)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE runs ADD COLUMN retained_end_us INTEGER")
        ended = conn.execute(
            "SELECT run_id FROM runs WHERE status IN (?, ?, ?) "
            "AND EXISTS (SELECT 1 FROM events WHERE events.run_id = runs.run_id)",
            _TERMINAL,
        ).fetchall()
        filled = 0
        for (run_id,) in ended:  # one snapshot at a time: each may be megabytes
            (data,) = conn.execute(
                "SELECT snapshot FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            run = readable_run(str(run_id), bytes(data))
            end = None if run is None else retained_end(run)
            if end is not None:
                conn.execute("UPDATE runs SET retained_end_us = ? WHERE run_id = ?", (end, run_id))
                filled += 1
        for index in _RETAINED_INDEXES:
            conn.execute(index)
        conn.execute("COMMIT")
    except BaseException:
        rollback_if_active(conn)
        raise
    # The change went through the write-ahead log, which then kept its size (143 MB after
    # a 227 MB store, found in review) for as long as the server ran: give the space back.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if filled:
        log.info("store: indexed the end times of %d ended runs whose logs are kept", filled)


@dataclass(slots=True)
class _Write:
    run_id: str
    events: Sequence[StoredEvent]
    snapshot: run_pb2.Run
    data: bytes
    """The snapshot's encoding."""
    expected_seq: int
    done: asyncio.Future[None] | None = None


class SqliteWriter:
    """The writer connection of one SQLite file, and everything that writes through it."""

    def __init__(self, path: Path, *, synchronous: str, probe_interval: float, check: bool) -> None:
        self.path = path
        self._probe_interval = probe_interval
        self._writable = True
        self._fault = ""
        """Why writes fail, while they do: the storage fault a client is told of."""
        self._damage: str | None = None
        self._prober: asyncio.Task[None] | None = None
        self._file_lock: FileLock | None = None
        self._check = check
        self._synchronous = synchronous
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="runstream-sqlite-writer")
        self._wconn: sqlite3.Connection | None = None
        # Held by whoever uses the writer connection: the writer thread, or the event loop
        # for an inline commit (which never waits for it: it hands the commit over instead).
        self._wlock = threading.Lock()
        self._inline = synchronous in _INLINE
        self._unchecked_bytes = 0
        self._checkpointing = False
        self._pending: list[_Write] = []
        self._drainer: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Locks, checks and probes the file; raises StoreUnusable naming what is wrong."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._open_writer)

    def _open_writer(self) -> None:
        lock = FileLock(self.path)
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self.path)
            if self._check:
                check_database(conn, self.path)
            # Before the first write: switching to WAL rewrites the header of the file, and
            # another program's database must be left as it was.
            check_ours(conn, self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            if self._inline:  # checkpoints wait for the disk: the writer thread runs them
                conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
            _add_tenant_column(conn)
            _add_retained_column(conn)
            probe_write(conn, time.time())
        except BaseException as exc:
            if conn is not None:
                conn.close()
            lock.remove_created()
            if isinstance(exc, sqlite3.Error | OSError) and not isinstance(exc, StoreUnusable):
                raise unusable(self.path, exc) from exc
            raise
        self._wconn = conn
        self._file_lock = lock
        lock.say_created()

    @property
    def is_open(self) -> bool:
        return self._wconn is not None

    @property
    def writable(self) -> bool:
        """False while writes fail because of the storage (disk full, read-only, I/O error),
        and for good once the file was found damaged."""
        return self._writable and self._damage is None

    @property
    def outage(self) -> str:
        """Why the store does not serve now, for health's log line: the file damaged, closed,
        or a storage fault (full, read-only, an I/O error); empty while it serves. In a few
        words: the ERROR logged when it happened says the rest."""
        if self._damage is not None:
            return self._damage
        if self._wconn is None:
            return "the store is closed"
        return "" if self._writable else self._fault

    @property
    def damage(self) -> str | None:
        """What is wrong once the file was found damaged under the server; None until then."""
        return self._damage

    def damaged(self, exc: BaseException) -> Unavailable | None:
        """The error a call gets when `exc` means the file is damaged under the server (None
        otherwise): UNAVAILABLE from then on, health NOT_SERVING, said once in the log.
        Nothing more is written: a restart checks the file (and refuses it, naming what is
        wrong, until a backup is restored)."""
        reason = damage(exc)
        if reason is None:
            return None
        if self._damage is None:
            self._damage = reason
            log.error(
                "store %s: %s; it takes no more writes and answers UNAVAILABLE until the "
                "server is restarted, which checks the file (restore a backup if it is "
                "refused)",
                self.path,
                reason,
            )
        return self._refusal()

    def _refusal(self) -> Unavailable:
        # Nothing stored: refused before writing, or rolled back when the damage was found.
        return NothingStored(
            f"{self._damage}: the server must be restarted to check it", reason="STORE_DAMAGED"
        )

    def _refuse_if_damaged(self) -> None:
        """Nothing is written once the file was found damaged: a write that touched no
        damaged page still succeeded, so a cancel was acknowledged as stored (review rv65d)
        in a file the next start refuses."""
        if self._damage is not None:
            raise self._refusal()

    async def settle(self) -> None:
        """Stops probing and waits for the commits in flight: nothing writes after this."""
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.wait({self._prober})
        if self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def close(self) -> None:
        await self.settle()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_writer)
        self._thread.shutdown(wait=True)

    def _close_writer(self) -> None:
        with self._wlock:
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    async def run(self, fn: Callable[[sqlite3.Connection, _A], _T], arg: _A) -> _T:
        """`fn(connection, arg)` on the writer thread, holding the writer connection: work
        that must never interleave with a commit (a purge)."""
        self._refuse_if_damaged()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._with_writer, fn, arg)

    # --- writability ----------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> BaseException:
        """The error an append gets: UNAVAILABLE for a storage fault (then not writable)."""
        if (damaged := self.damaged(exc)) is not None:
            damaged.__cause__ = exc
            return damaged
        fault = storage_fault(exc)
        if fault is None:
            return exc
        if self._writable:
            self._writable = False
            self._fault = fault
            log.error(
                "store %s cannot take writes: %s (%s); writes answer UNAVAILABLE until one "
                "succeeds",
                self.path,
                fault,
                exc,
            )
            self._prober = asyncio.create_task(self._probe(), name="runstream-sqlite-probe")
        error = NothingStored(
            f"{fault}: nothing was stored; retry later", reason="STORE_REFUSED_WRITE"
        )
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
                    self._thread, self._with_writer, probe_write, time.time()
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
        encoded: bytes | None = None,
    ) -> None:
        self._refuse_if_damaged()
        data = snapshot.SerializeToString() if encoded is None else encoded
        write = _Write(run_id, events, snapshot, data, expected_seq)
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
                        else await loop.run_in_executor(self._thread, self._commit, batch)
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
            done = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
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
            return fn(self._connection(), arg)

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

    def _connection(self) -> sqlite3.Connection:
        assert self._wconn is not None, "store is not open"
        return self._wconn

    @staticmethod
    def _write_one(conn: sqlite3.Connection, write: _Write) -> None:
        snap, data = write.snapshot, write.data
        if write.expected_seq == 0:
            try:
                conn.execute(
                    "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, "
                    "last_seq, snapshot, tenant, retained_end_us) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        write.run_id,
                        snap.workflow,
                        snap.status,
                        snap.create_time.ToMicroseconds(),
                        json.dumps(dict(snap.labels), sort_keys=True),
                        snap.last_seq,
                        data,
                        snap.tenant,
                        retained_end(snap),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"run {write.run_id!r} already exists") from exc
        else:
            end = retained_end(snap)
            params = (snap.status, snap.last_seq, _blob(data), write.run_id, write.expected_seq)
            if end is None:  # running: NULL in the statement (a None parameter costs as bytes)
                updated = conn.execute(_UPDATE_RUNNING, params)
            else:
                updated = conn.execute(_UPDATE_ENDED, (end, *params))
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
                    (write.run_id, e.seq, e.kind, e.idempotency_key or None, _blob(e.data))
                    for e in write.events
                ],
            )
        except sqlite3.IntegrityError as exc:  # an idempotency key the log holds
            raise HeadMoved(write.run_id, write.expected_seq, write.expected_seq) from exc
