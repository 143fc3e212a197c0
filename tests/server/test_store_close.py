"""Closing the SQLite store lets reads in flight finish, and refuses new ones cleanly.

Issue 8, item 9: close() used to close the reader connections while the reader pool was still
running, so a read in flight at shutdown hit a closed connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from runstream_server.errors import Unavailable
from runstream_server.store import SqliteEventStore


async def test_a_read_in_flight_at_close_finishes_on_its_open_connection(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "c.db")
    await store.open()
    started, release = threading.Event(), threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        started.set()
        release.wait(10)  # close() starts while this read is in flight
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    read = asyncio.ensure_future(store._read(slow_read))
    assert await asyncio.to_thread(started.wait, 10)
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0.1)  # close() gets as far as it can while the read is running
    assert not closing.done()
    release.set()
    assert await read == 0
    await closing

    with pytest.raises(Unavailable):
        await store.load_run("after-close")
