"""What one retention pass costs on a store full of finished runs whose logs are already
purged: figures, never pass/fail.

Fills a store (SQLite file, or a Redis key prefix) with RUNS finished runs through the
store's own appends, purges all but the newest KEEP with one pass, ends NEW more runs, then
times further passes with ``keep_newest=KEEP``, each while a producer appends to one run
every millisecond: the pass's wall time, the snapshots it parsed, the HGETs and scripts it
sent to Redis (INFO commandstats, less the producer's), and the slowest append meanwhile.

    .venv/bin/python bench/retention_pass.py sqlite --runs 50000
    .venv/bin/python bench/retention_pass.py redis://127.0.0.1:53601/0 --runs 40000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from runstream.v1 import run_pb2
from runstream_server.store import base
from runstream_server.store import redis as redis_store
from runstream_server.store.base import StoredEvent
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.sqlite import SqliteEventStore

_parsed = 0
_decode = base.decode_run


def _counting_decode(run_id: str, data: bytes) -> run_pb2.Run:
    global _parsed
    _parsed += 1
    return _decode(run_id, data)


base.decode_run = _counting_decode
# redis.py looks up the decode_run it imported from base, a name it does not re-export.
redis_store.decode_run = _counting_decode  # type: ignore[attr-defined]


def ended_run(run_id: str, end_us: int) -> tuple[list[StoredEvent], run_pb2.Run]:
    snap = run_pb2.Run(run_id=run_id, workflow="wf", status=run_pb2.RUN_STATUS_SUCCEEDED)
    snap.create_time.FromMicroseconds(end_us - 1000)
    snap.end_time.FromMicroseconds(end_us)
    snap.last_seq = 2
    events = [StoredEvent(1, 1, "", b"x" * 200), StoredEvent(2, 2, "", b"y" * 200)]
    return events, snap


async def fill(store: Any, count: int, start_us: int) -> None:
    async def one(i: int) -> None:
        events, snap = ended_run(f"r{start_us + i:016d}", start_us + i)
        await store.append(snap.run_id, events, snap, expected_seq=0)

    for first in range(0, count, 200):
        await asyncio.gather(*(one(i) for i in range(first, min(count, first + 200))))


async def commands(url: str | None) -> dict[str, int]:
    """Redis's count of calls so far, by command (those a script makes count too)."""
    if url is None:
        return {}
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def timed_pass(store: Any, keep: int, url: str | None) -> str:
    global _parsed
    run_id = f"probe-{uuid.uuid4().hex[:8]}"
    snap = run_pb2.Run(run_id=run_id, workflow="probe", status=run_pb2.RUN_STATUS_RUNNING)
    snap.last_seq = 1
    await store.append(run_id, [StoredEvent(1, 1, "", b"p")], snap, expected_seq=0)
    worst = 0.0
    appends = 0
    done = asyncio.Event()
    between = asyncio.Lock()  # held by each append: counts are taken between two

    async def one_append() -> None:
        nonlocal worst, appends
        seq = snap.last_seq
        snap.last_seq = seq + 1
        async with between:
            started = time.perf_counter()
            await store.append(run_id, [StoredEvent(seq + 1, 3, "", b"t")], snap, expected_seq=seq)
            worst = max(worst, time.perf_counter() - started)
            appends += 1

    async def producer() -> None:
        while not done.is_set():
            await one_append()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(producer())
    await asyncio.sleep(0.05)
    async with between:
        before_cmds = await commands(url)
        appends = 0
    _parsed = 0
    started = time.perf_counter()
    purged = await store.purge_events(ended_before_us=None, keep_newest=keep)
    took = time.perf_counter() - started
    parsed = _parsed
    done.set()
    await task
    after_cmds = await commands(url)
    line = f"pass {took * 1000:8.1f} ms  purged {len(purged):6d}  parsed {parsed:6d}"
    if url is not None:
        # Less the producer's appends: one EVALSHA each, whose script makes one HGET.
        hgets = after_cmds.get("hget", 0) - before_cmds.get("hget", 0) - appends
        scripts = after_cmds.get("evalsha", 0) - before_cmds.get("evalsha", 0) - appends
        line += f"  HGETs {hgets:6d}  scripts {scripts:4d}"
    return line + f"  slowest append meanwhile {worst * 1000:7.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="'sqlite', or a redis:// URL (a fresh prefix is used)")
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--keep", type=int, default=100)
    parser.add_argument("--new", type=int, default=50, help="runs ended between passes")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url: str | None = None
        if args.store == "sqlite":
            path = Path(tmp) / "r.db"
            filler: Any = SqliteEventStore(path, synchronous="NORMAL", check=False)
            await filler.open()
            await fill(filler, args.runs, 10**15)
            await filler.close()
            store: Any = SqliteEventStore(path, check=False)
        else:
            url = args.store
            store = RedisEventStore(f"{url}?prefix=bench{uuid.uuid4().hex[:8]}")
        await store.open()
        try:
            if url is not None:
                await fill(store, args.runs, 10**15)
            started = time.perf_counter()
            first = await store.purge_events(ended_before_us=None, keep_newest=args.keep)
            print(
                f"{args.store.split('?')[0]}: {args.runs} finished runs; the first pass purged "
                f"{len(first)} in {time.perf_counter() - started:.2f} s"
            )
            for n in range(args.passes):
                await fill(store, args.new, 2 * 10**15 + n * args.new)
                print(f"  {args.new} more ended: " + await timed_pass(store, args.keep, url))
        finally:
            await store.close()
            if url is not None:
                client = aioredis.from_url(url)
                prefix = store.options.prefix
                async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                    await client.delete(key)
                await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
