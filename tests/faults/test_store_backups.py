"""Copies of the SQLite store (`--backup-dir`) that go wrong leave nothing behind, never take
the live store for a copy, and do not hold up a stopping server. Found in review: a copy that
failed (a full disk) or was killed left its partial file for good, which kept a store on the
same disk from taking writes; pruning removed the live store when it sat in the directory
under a copy's name (a copy served in place after a restore); and SIGTERM waited for the whole
copy of a 2 GB store, whatever the shutdown grace. And (review rv65d) once the live file
was damaged, copies of it went on being taken and pushed out the good ones a restore needs."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from pathlib import Path

import grpc
import pytest
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.sqlite import SqliteEventStore
from runstream_server.store.sqlite_backups import BackupPasses, Backups, CopyStopped

from tests.clients.support import eventually
from tests.faults.storage import immutable
from tests.faults.test_store_damaged_live import stubs_of, write_history
from tests.server.support import append, create_run, custom


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


def sound_copy(path: Path, run_id: str) -> bool:
    """Whether a copy passes SQLite's quick_check and holds all 2,000 events appended to
    `run_id` (and the one its creation stored)."""
    conn = sqlite3.connect(path)
    try:
        checked = conn.execute("PRAGMA quick_check").fetchall()
        (events,) = conn.execute(
            "SELECT count(*) FROM events WHERE run_id = ?", (run_id,)
        ).fetchone()
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return checked == [("ok",)] and events == 2001


async def test_a_damaged_store_is_not_copied_and_the_good_copies_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, copies = tmp_path / "runstream.db", tmp_path / "copies"
    backups = Backups(copies, interval=0.2, keep=2)
    old = await write_history(store)
    server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store, backups=backups))
    await server.start()
    caplog.set_level(logging.INFO, logger="runstream.store")
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = await stubs_of(channel)
            live = await create_run(stubs)
            await eventually(lambda: len(list(copies.glob("runstream-*.db"))) == 2)
            os.truncate(store, 64 * 1024)  # damaged under the server, as in the review
            with pytest.raises(grpc.aio.AioRpcError):  # the first write meets the damage
                await append(stubs, live.run_id, custom(1))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id, page_size=1000))
            assert "the store file is damaged" in (refused.value.details() or "")
            kept = sorted(copies.glob("runstream-*.db"))
            await asyncio.sleep(backups.interval * 8)  # the passes that pushed them out
            assert sorted(copies.iterdir()) == kept  # no copy taken, none removed
    finally:
        await server.stop(grace=0.5)
    assert len(kept) == 2
    assert all(sound_copy(copy, old.run_id) for copy in kept)
    held = [r.getMessage() for r in caplog.records if "store copies held" in r.getMessage()]
    assert len(held) == 1, held  # said once, not every interval
    assert "the store file is damaged" in held[0] and str(copies) in held[0]


def damage(path: Path) -> None:
    """Overwrites 64 pages of snapshots in the middle of the file."""
    with open(path, "r+b") as live:
        live.seek(200 * 4096)
        live.write(b"\xff" * 64 * 4096)


async def test_a_copy_that_fails_its_check_is_not_kept(tmp_path: Path) -> None:
    """A copy of a file damaged where the server has not yet read: the online backup copies
    pages without reading them, so the copy is as damaged as the file."""
    store = await opened(tmp_path / "live.db", runs=3000)
    copies = tmp_path / "copies"
    copies.mkdir()
    try:
        passes = BackupPasses(Backups(copies, keep=1), store.backup, store.path)
        good = await passes.once()
        checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)"  # the pages into the file itself
        await store.writer.run(lambda conn, _: conn.execute(checkpoint).fetchall(), None)
        damage(store.path)
        await asyncio.sleep(0.01)
        assert await passes.once() is None
        assert list(copies.iterdir()) == [good]
    finally:
        await store.close()


async def test_copies_go_on_after_one_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy that fails (its directory refuses writes for a while) is logged and the next
    interval tries again: the copies resume once the directory takes writes, instead of
    stopping for the server's life after the first failure."""
    store = await opened(tmp_path / "live.db")
    copies = tmp_path / "copies"
    copies.mkdir()
    passes = BackupPasses(Backups(copies, interval=0.05), store.backup, store.path)
    forever: asyncio.Task[None] | None = None
    try:
        with immutable(copies):
            forever = asyncio.create_task(passes.run_forever())
            failed = "store copy failed; trying again at the next interval"
            await eventually(lambda: failed in caplog.text, within=10)
        await eventually(lambda: any(copies.glob("runstream-*.db")), within=10)
        assert not forever.done()
    finally:
        if forever is not None:
            forever.cancel()
            await asyncio.gather(forever, return_exceptions=True)
        await store.close()
