"""What the start-up check of the SQLite store costs, by file size: figures, never pass/fail.

`runstream serve` runs ``PRAGMA quick_check`` on its store before it listens (a file that is
not a database, or is damaged, is refused in one line). quick_check reads every page, so its
cost grows with the file. This builds stores of the given sizes with the server's own schema
and realistic events (about 400 bytes each, 100 per commit), then times, for each:

  quick_check   the check alone, on a fresh connection (the file is in the page cache,
                having just been written; a cold start off disk adds the disk's read time)
  open          SqliteEventStore.open(): lock, check, WAL setup, schema, write probe

    .venv/bin/python bench/store_check.py            # 100 MB and 1 GB (~2 GB of disk, ~1 min)
    .venv/bin/python bench/store_check.py --mb 50    # one size
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from runstream.v1 import event_pb2
from runstream_server.store.sqlite import SqliteEventStore
from runstream_server.store.sqlite_writer import SCHEMA

EVENTS_PER_RUN = 5000


def build(path: Path, megabytes: int) -> int:
    """Fills `path` with runs of custom events until it holds about `megabytes`; returns
    the number of events."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA)
    event = event_pb2.RunEvent(run_id="r", seq=1)
    event.custom.type = "tick"
    event.custom.data.update({"text": "x" * 300, "n": 1})
    data = event.SerializeToString()
    total, run = 0, 0
    while path.stat().st_size < megabytes * 1_000_000:
        run += 1
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO runs VALUES (?, 'wf', 2, ?, '{}', ?, x'')", (f"run-{run}", run, 0)
        )
        for start in range(0, EVENTS_PER_RUN, 100):
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, 15, ?, ?)",
                [(f"run-{run}", s, f"k{run}:{s}", data) for s in range(start, start + 100)],
            )
        conn.execute("COMMIT")
        total += EVENTS_PER_RUN
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return total


def time_quick_check(path: Path) -> float:
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def time_open(path: Path) -> float:
    store = SqliteEventStore(path)
    started = time.perf_counter()
    await store.open()
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, action="append", help="store size in MB (repeatable)")
    sizes = parser.parse_args().mb or [100, 1000]
    print(f"{'store':>10} {'events':>11} {'quick_check':>12} {'open':>8} {'MB/s':>7}")
    for megabytes in sizes:
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as directory:
            path = Path(directory) / "bench.db"
            events = build(path, megabytes)
            size_mb = path.stat().st_size / 1e6
            check = time_quick_check(path)
            opened = asyncio.run(time_open(path))
            print(
                f"{size_mb:>8.0f}MB {events:>11,} {check:>11.2f}s {opened:>7.2f}s "
                f"{size_mb / check:>7.0f}"
            )


if __name__ == "__main__":
    main()
