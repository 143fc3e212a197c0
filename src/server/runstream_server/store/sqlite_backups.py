"""Copies of the SQLite store, taken while it serves (``runstream serve --backup-dir``).

The server holds its file exclusively (SQLite's ``unix-excl`` VFS, see ``sqlite_file``), so no
other program can read it while it runs: ``sqlite3 .backup``, ``VACUUM INTO`` and replication
tools are told the database is locked, and a copy of the file alone, taken after a crash,
misses what its ``-wal`` holds. The server therefore takes the copies itself, on one of its
reader connections, with SQLite's online backup: a consistent snapshot of everything
committed when the copy starts (every event acknowledged by then), while appends go on into
the write-ahead log. Each copy is written beside its final name and renamed once synced, so a
file named ``runstream-*.db`` in the directory is always a whole database, which opens and
serves as any store does; the oldest beyond ``keep`` are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runstream_server.store.base import stop_if_cancelled

__all__ = ["BackupPasses", "Backups", "copy_database"]

log = logging.getLogger("runstream.store")

PREFIX = "runstream-"


@dataclass(frozen=True)
class Backups:
    """Where and how often the store is copied."""

    directory: Path
    interval: float = 3600.0
    """Seconds between copies; the first is taken as the server starts."""
    keep: int = 24
    """Copies kept; older ones are removed."""

    def problem(self) -> str | None:
        """Why copies could not be written to the directory, or None."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create {self.directory}: {exc.strerror or exc}"
        if not self.directory.is_dir():
            return f"{self.directory} is not a directory"
        if not os.access(self.directory, os.W_OK | os.X_OK):
            return f"{self.directory} cannot be written"
        return None


def copy_database(source: sqlite3.Connection, destination: Path) -> int:
    """Copies the database `source` reads into `destination`, whole or not at all; returns
    its size in bytes."""
    partial = destination.with_name(destination.name + ".part")
    partial.unlink(missing_ok=True)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")  # one file: no -wal to carry along
    finally:
        target.close()
    with open(partial, "rb") as file:
        os.fsync(file.fileno())
    os.replace(partial, destination)
    directory = os.open(destination.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)
    return destination.stat().st_size


class BackupPasses:
    """Copies the store every interval, keeping the newest `keep` copies."""

    def __init__(self, backups: Backups, copy: Callable[[Path], Awaitable[int]]) -> None:
        """`copy(path)` writes a copy of the store to `path` and returns its size."""
        self._backups = backups
        self._copy = copy

    async def once(self) -> Path:
        """One copy, named by the time it was taken (UTC); returns its path."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self._backups.directory / f"{PREFIX}{stamp}.db"
        started = time.monotonic()
        size = await self._copy(path)
        log.info(
            "store copied to %s (%.1f MB in %.1f s)",
            path,
            size / 1e6,
            time.monotonic() - started,
        )
        self._prune()
        return path

    def _prune(self) -> None:
        copies = sorted(self._backups.directory.glob(f"{PREFIX}*.db"))
        for old in copies[: max(0, len(copies) - self._backups.keep)]:
            with contextlib.suppress(OSError):
                old.unlink()

    async def run_forever(self) -> None:
        while True:
            stop_if_cancelled()
            try:
                await self.once()
            except Exception:
                log.exception("store copy failed; trying again at the next interval")
            await asyncio.sleep(self._backups.interval)
