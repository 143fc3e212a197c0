"""The SQLite file itself: opened only when it is usable, and its faults told apart from bugs.

At start the file is locked, checked and probed before the server listens, so an operator
gets one line naming the file and what is wrong instead of a server that starts and then
answers INTERNAL:

- an exclusive ``flock`` on the file, held for the store's life: a second server on the same
  file refuses to start (two servers on one file would each keep their own live state, and
  their watchers would silently miss each other's events);
- ``PRAGMA quick_check``: a file that is not a database, or is damaged, is refused;
- a write probe: a file, directory or file system that cannot be written is refused.

Every connection opens the file through SQLite's ``unix-excl`` VFS (:func:`connect`).

While running, :func:`storage_fault` recognises the errors that mean "the storage cannot take
writes now" (disk full, read-only, I/O error) so the store can answer them UNAVAILABLE and
report itself unhealthy, instead of treating them as bugs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from runstream_server.store.base import StoreUnusable

log = logging.getLogger("runstream.store")

__all__ = [
    "PROBE_TABLE",
    "FileLock",
    "check_database",
    "connect",
    "damage",
    "probe_write",
    "rollback_if_active",
    "storage_fault",
    "unusable",
]

# Written by the start-up probe and by the recovery probe while writes fail.
PROBE_TABLE = "CREATE TABLE IF NOT EXISTS store_probe (id INTEGER PRIMARY KEY, at REAL NOT NULL)"

_FAULTS = {
    sqlite3.SQLITE_FULL: "the store is full (no space left on its disk)",
    sqlite3.SQLITE_READONLY: "the store is read-only",
    sqlite3.SQLITE_IOERR: "the store had an I/O error",
    sqlite3.SQLITE_CANTOPEN: "the store's files cannot be opened",
    sqlite3.SQLITE_PERM: "the store's files cannot be written",
}
_DAMAGED = {
    sqlite3.SQLITE_NOTADB: "is not a SQLite database",
    sqlite3.SQLITE_CORRUPT: "is damaged",
}
_MAX_PROBLEMS_SHOWN = 3
_BESIDE = ("-wal", "-journal")  # SQLite's files beside a store (no -shm: see connect)


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the store file, in autocommit mode, usable from any thread.

    Through SQLite's ``unix-excl`` VFS: while any connection is open, this process holds an
    exclusive lock on the file, and the WAL's index lives in the process's memory instead of
    a shared ``-shm`` file. The store's other connections (the readers beside the writer)
    share that index as usual, but no transaction takes an ``fcntl`` lock or touches shared
    memory: that takes about 11 us of CPU off each commit measured inside the server (of
    about 81; see the README's performance section). No other process can read the file
    while the server has it open; none should (the ``flock`` already keeps a second server
    out), and a ``sqlite3`` shell is told the database is locked.
    """
    uri = f"{path.absolute().as_uri()}?vfs=unix-excl"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def damage(exc: BaseException) -> str | None:
    """What is wrong when `exc` means the store file is damaged under the running server (cut
    short, or overwritten, as `cp backup.db runs.db` onto a live store does); None for any
    other error."""
    code = _primary_code(exc) if isinstance(exc, sqlite3.Error) else None
    if code is None or code not in _DAMAGED:
        return None
    return f"the store file {_DAMAGED[code]} ({exc})"


def storage_fault(exc: BaseException) -> str | None:
    """What is wrong with the storage, in a few words a client may read, when `exc` means it
    cannot take writes now; None for any other error (a bug, a constraint)."""
    if isinstance(exc, sqlite3.Error):
        code = _primary_code(exc)
        if code is not None and code in _FAULTS:
            return _FAULTS[code]
    if isinstance(exc, OSError):
        return "the store's files cannot be written"
    return None


def unusable(path: Path, exc: BaseException) -> StoreUnusable:
    """The one-line start-up refusal for an error met while opening or checking `path`."""
    if isinstance(exc, sqlite3.Error):
        code = _primary_code(exc)
        if code in _DAMAGED:
            return StoreUnusable(f"store {path} {_DAMAGED[code]} ({exc})")
        if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            if not os.access(path.parent, os.W_OK):
                return StoreUnusable(
                    f"store {path} cannot be opened for writing ({exc}): its directory "
                    "must be writable, for SQLite's -wal file"
                )
            return StoreUnusable(f"store {path} cannot be written ({exc})")
        if code == sqlite3.SQLITE_BUSY:  # unix-excl could not take its exclusive lock
            return StoreUnusable(
                f"store {path} is open in another program, which must close it first ({exc})"
            )
        if code == sqlite3.SQLITE_FULL:
            return StoreUnusable(f"store {path} cannot be written: the disk is full ({exc})")
    if isinstance(exc, OSError):
        return StoreUnusable(f"store {path} cannot be opened for writing ({exc.strerror or exc})")
    return StoreUnusable(f"store {path} cannot be used ({exc})")


class FileLock:
    """An exclusive, non-blocking ``flock`` on the store file, held until ``release()``.

    flock locks are separate from the POSIX record locks SQLite uses, so holding one does not
    disturb SQLite; the descriptor stays open until the SQLite connections are closed (closing
    a descriptor of a file drops the process's POSIX locks on it).
    """

    def __init__(self, path: Path) -> None:
        if path.is_dir():
            raise StoreUnusable(f"store {path} is a directory, not a database file")
        self._path = path
        self._fd: int | None = None
        # What this start creates, innermost first: removed again if the store is refused
        # (a full disk left an empty file and its new directories behind, found in review).
        self._created = [] if path.exists() else [path]
        self._created += [p for p in path.parents if not p.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.remove_created()
            raise StoreUnusable(
                f"store {path}: cannot create its directory ({exc.strerror or exc})"
            ) from exc
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.remove_created()
            raise unusable(path, exc) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.release()
            raise StoreUnusable(
                f"store {path} is in use by another Runstream server (it holds the file's lock)"
            ) from exc

    def say_created(self) -> None:
        """Logs what this start created, once the store is open: so a mistyped path (a
        directory, or the file's name alone) shows before runs go where nobody looks, and a
        refused store stays the one line `serve` prints."""
        path = self._path
        if path.parent in self._created:
            log.info("store %s: its directory %s did not exist and was created", path, path.parent)
        elif path in self._created:
            log.info("store %s did not exist: a new, empty store was created", path)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing drops the flock too
            self._fd = None

    def remove_created(self) -> None:
        """Releases the lock and removes what this start created: the file (with what SQLite
        put beside it) and the directories above it while empty."""
        self.release()
        path = self._path
        for created in self._created:
            with contextlib.suppress(OSError):
                if created == path:
                    for leftover in (path, *(path.with_name(path.name + s) for s in _BESIDE)):
                        with contextlib.suppress(FileNotFoundError):
                            leftover.unlink()
                else:
                    created.rmdir()  # only while empty


def check_database(conn: sqlite3.Connection, path: Path) -> None:
    """Refuses a damaged file: runs ``PRAGMA quick_check`` (see the README for its cost)."""
    # SQLite may put many problems in one row, one per line ("*** in database main ***\n
    # Page 2358: ...\nPage 4001: ..."): count them one by one.
    problems = [
        line
        for row in conn.execute("PRAGMA quick_check")
        for line in str(row[0]).splitlines()
        if line and not line.startswith("*** in database")
    ]
    if problems != ["ok"]:
        shown = "; ".join(problems[:_MAX_PROBLEMS_SHOWN])
        more = len(problems) - _MAX_PROBLEMS_SHOWN
        suffix = f" (and {more} more problems)" if more > 0 else ""
        raise StoreUnusable(f"store {path} is damaged: {shown}{suffix}")


def probe_write(conn: sqlite3.Connection, at: float) -> None:
    """One small committed write: proves the file, its directory and the disk take writes."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT OR REPLACE INTO store_probe (id, at) VALUES (1, ?)", (at,))
        conn.execute("COMMIT")
    except BaseException:
        rollback_if_active(conn)
        raise


def rollback_if_active(conn: sqlite3.Connection) -> None:
    """ROLLBACK, unless SQLite already rolled the transaction back itself.

    After some errors (a full disk, an I/O error) SQLite ends the transaction on its own; a
    ROLLBACK then fails with "cannot rollback - no transaction is active", which would replace
    the real cause. Callers re-raise the original error after this.
    """
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
