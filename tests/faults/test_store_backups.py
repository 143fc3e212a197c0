"""Copies of the SQLite store (`--backup-dir`) that go wrong leave nothing behind, never take
the live store for a copy, and do not hold up a stopping server. Found in review: a copy that
failed (a full disk) or was killed left its partial file for good, which kept a store on the
same disk from taking writes; pruning removed the live store when it sat in the directory
under a copy's name (a copy served in place after a restore); and SIGTERM waited for the whole
copy of a 2 GB store, whatever the shutdown grace."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from runstream_server.store.sqlite import SqliteEventStore
from runstream_server.store.sqlite_backups import BackupPasses, Backups, CopyStopped


async def opened(path: Path, runs: int = 0) -> SqliteEventStore:
    """A store at `path`, with `runs` rows of 4 KB snapshots (a few MB to copy)."""
    store = SqliteEventStore(path)
    await store.open()
    if runs:

        def fill(conn: object) -> None:
            conn.executemany(  # type: ignore[attr-defined]
                "INSERT INTO runs (run_id, workflow, status, create_time_us, labels, last_seq, "
                "snapshot) VALUES (?, 'wf', 1, ?, '{}', 0, ?)",
                [(f"r{i}", i, b"x" * 4096) for i in range(runs)],
            )

        await store.writer.run(lambda conn, _: fill(conn), None)
    return store


async def test_a_copy_abandoned_midway_leaves_no_partial_file(tmp_path: Path) -> None:
    store = await opened(tmp_path / "live.db", runs=3000)
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "runstream-20260101T000000.000000Z.db.part").write_bytes(b"cut by a kill")
    try:
        passes = BackupPasses(Backups(copies), store.backup, store.path)
        assert list(copies.iterdir()) == []  # what a killed copy left, removed at start
        stopping = threading.Event()
        stopping.set()  # the server stops while the copy is under way
        with pytest.raises(CopyStopped):
            await store.backup(copies / "runstream-x.db", stopping)
        assert list(copies.iterdir()) == []
        made = await passes.once()  # and the next copy is whole
        assert list(copies.iterdir()) == [made]
    finally:
        await store.close()


async def test_pruning_never_removes_the_live_store(tmp_path: Path) -> None:
    copies = tmp_path / "copies"
    copies.mkdir()
    live = copies / "runstream-20200101T000000.000000Z.db"  # a copy served in place
    store = await opened(live)
    try:
        passes = BackupPasses(Backups(copies, keep=1), store.backup, store.path)
        for _ in range(3):
            newest = await passes.once()
            await asyncio.sleep(0.01)
        assert sorted(copies.glob("runstream-*.db")) == sorted([live, newest])
    finally:
        await store.close()
