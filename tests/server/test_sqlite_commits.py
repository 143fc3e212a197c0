"""SQLite commits: the ``synchronous`` mode the server is given, group commits, and commits
with ``synchronous=NORMAL`` on the event loop.

The writer connection runs in the mode the config names (``serve --sync``). Appends that
arrive while a commit is in progress share the next transaction, one savepoint each: one that
fails leaves nothing of itself, and the others land.

Commits with ``synchronous=NORMAL`` do not wait for the disk, so they skip the hand-off to
the writer thread; the checkpoints that copy the WAL into the database file (which do wait for
the disk) run on the writer thread instead. A purge or a recovery probe holding the writer
connection sends the commits back to the thread rather than blocking the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from runstream.v1 import run_pb2
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.base import HeadMoved, StoredEvent
from runstream_server.store.sqlite import SqliteEventStore

_BLOB = 32 * 1024


def _snapshot(run_id: str, last_seq: int) -> run_pb2.Run:
    run = run_pb2.Run(run_id=run_id, workflow="w", last_seq=last_seq)
    run.create_time.FromMicroseconds(1)
    return run


async def _append(store: SqliteEventStore, run_id: str, seq: int, key: str = "") -> None:
    event = StoredEvent(seq, 1, key or f"k{seq}", bytes([seq % 251]) * _BLOB)
    await store.append(run_id, [event], _snapshot(run_id, seq), expected_seq=seq - 1)


async def _writer_held(store: SqliteEventStore) -> tuple[asyncio.Future[None], threading.Event]:
    """The writer connection held on the writer thread until the event returned is set: the
    task holding it, and that event."""
    held, release = threading.Event(), threading.Event()

    def occupy(_conn: object, _arg: None) -> None:
        held.set()
        release.wait(10)

    busy = asyncio.ensure_future(store.writer.run(occupy, None))
    assert await asyncio.to_thread(held.wait, 10)
    return busy, release


def _pragma_synchronous(conn: sqlite3.Connection, _arg: None) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


@pytest.mark.parametrize(("mode", "applied"), [("FULL", 2), ("NORMAL", 1)])
async def test_the_writer_commits_in_the_synchronous_mode_the_server_is_given(
    tmp_path: Path, mode: str, applied: int
) -> None:
    """``serve --sync``: FULL waits for the disk at each commit (nothing acknowledged is
    lost on power loss), NORMAL does not. The mode is the writer connection's own, so it is
    read there."""
    config = ServerConfig(
        address="127.0.0.1:0", store_path=tmp_path / "runstream.db", sqlite_synchronous=mode
    )
    server = RunstreamServer(config)
    await server.start()
    try:
        assert server._store is not None
        store = server._store.inner
        assert isinstance(store, SqliteEventStore)
        assert await store.writer.run(_pragma_synchronous, None) == applied
    finally:
        await server.stop(grace=0.1)


async def test_a_write_that_fails_in_a_group_commit_leaves_nothing_and_the_others_land(
    tmp_path: Path,
) -> None:
    """A batch resent with an idempotency key run "a"'s log already holds fails inside the
    transaction it shares with other runs' appends, after its snapshot update: that update
    is undone with it, so the run's snapshot claims no event its log lacks."""
    store = SqliteEventStore(tmp_path / "group.db")  # FULL: commits queue for the writer thread
    await store.open()
    try:
        await _append(store, "a", 1, key="k")
        await _append(store, "c", 1)
        before = await store.load_run("a")
        busy, release = await _writer_held(store)  # a slow commit on the writer thread
        # Queued behind it, in order: the next transaction holds all four.
        group = [
            asyncio.ensure_future(_append(store, "b", 1)),
            asyncio.ensure_future(_append(store, "a", 2, key="k")),
            asyncio.ensure_future(_append(store, "c", 2)),
            asyncio.ensure_future(_append(store, "d", 1)),
        ]
        await asyncio.sleep(0.05)
        release.set()
        await busy
        outcomes = await asyncio.wait_for(asyncio.gather(*group, return_exceptions=True), 10)
        assert [type(o) for o in outcomes] == [type(None), HeadMoved, type(None), type(None)]

        assert await store.load_run("a") == before
        assert [(e.seq, e.idempotency_key) for e in await store.read_events("a", 0, 10)] == [
            (1, "k")
        ]
        for run_id, last in (("b", 1), ("c", 2), ("d", 1)):
            run = await store.load_run(run_id)
            assert run is not None and run.last_seq == last
            events = await store.read_events(run_id, 0, 10)
            assert [e.seq for e in events] == list(range(1, last + 1))
        await _append(store, "a", 2)  # the run goes on from where it was
        assert [e.seq for e in await store.read_events("a", 0, 10)] == [1, 2]
    finally:
        await store.close()


async def test_the_wal_is_checkpointed_while_commits_run_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "normal.db"
    store = SqliteEventStore(path, synchronous="NORMAL")
    await store.open()
    try:
        written = 512  # events of 32 KiB: 16 MiB in all
        for seq in range(1, written + 1):  # the first creates the run
            await _append(store, "r", seq)
            if seq % 64 == 0:
                await asyncio.sleep(0.05)  # a checkpoint on the writer thread gets its turn
        # Without checkpoints the WAL would hold all 16 MiB; with them it is reused.
        wal = Path(f"{path}-wal")
        assert await asyncio.to_thread(os.path.getsize, wal) < 10 * 1024 * 1024
        events = await store.read_events("r", 0, written + 1)
        assert [e.seq for e in events] == list(range(1, written + 1))
        assert events[-1].data == bytes([written % 251]) * _BLOB
    finally:
        await store.close()
    # The checkpointed pages are in the database file itself.
    assert await asyncio.to_thread(os.path.getsize, path) > 12 * 1024 * 1024


async def test_a_commit_waits_for_a_writer_connection_busy_on_the_thread(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "busy.db", synchronous="NORMAL")
    await store.open()
    try:
        await _append(store, "r", 1)
        busy, release = await _writer_held(store)  # as a long purge would
        append = asyncio.ensure_future(_append(store, "r", 2))
        ticks = 0
        while ticks < 20:  # the event loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not append.done()
        release.set()
        await busy
        await asyncio.wait_for(append, 10)
        assert [e.seq for e in await store.read_events("r", 0, 10)] == [1, 2]
    finally:
        await store.close()


async def test_a_write_expecting_an_older_head_is_refused_naming_the_head(tmp_path: Path) -> None:
    """The head check: a write that expects the run's head to be older than it is (the
    domain's bookkeeping gone wrong) is refused with the head it has, and stores nothing: no
    event past the head its snapshot names."""
    store = SqliteEventStore(tmp_path / "heads.db")
    await store.open()
    try:
        await _append(store, "r", 1)
        await _append(store, "r", 2)
        late = StoredEvent(3, 1, "k3", b"late")
        with pytest.raises(HeadMoved) as moved:
            await store.append("r", [late], _snapshot("r", 3), expected_seq=1)
        assert moved.value.actual == 2
        run = await store.load_run("r")
        assert run is not None and run.last_seq == 2
        assert [e.seq for e in await store.read_events("r", 0, 10)] == [1, 2]
    finally:
        await store.close()


async def test_appends_queued_when_the_store_closes_are_committed_first(tmp_path: Path) -> None:
    """A server told to stop commits the appends it took before closing its store: those
    queued behind a commit under way when the close began are stored and acknowledged, not
    failed against a closed writer."""
    path = tmp_path / "closing.db"
    store = SqliteEventStore(path)  # FULL: commits queue for the writer thread
    await store.open()
    await _append(store, "a", 1)
    busy, release = await _writer_held(store)  # a slow commit on the writer thread
    first = asyncio.ensure_future(_append(store, "a", 2))  # handed to the thread, behind it
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(_append(store, run_id, 1)) for run_id in ("b", "c")]
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0.05)
    release.set()
    await busy
    outcomes = await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), 10)
    await asyncio.wait_for(closing, 10)
    assert outcomes == [None, None, None]
    reopened = SqliteEventStore(path)
    await reopened.open()
    try:
        for run_id, last in (("a", 2), ("b", 1), ("c", 1)):
            assert [e.seq for e in await reopened.read_events(run_id, 0, 10)] == list(
                range(1, last + 1)
            )
    finally:
        await reopened.close()
