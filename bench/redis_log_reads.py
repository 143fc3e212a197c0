"""What reading a long run's log costs a replica on Redis: figures, never pass/fail.

One run of N events on a real redis-server (appended through the server's own path), a few
of them alerts; then, in alternating rounds, each way of reading it, timed by the wall clock
and by this process's CPU (the replica's share; Redis's own time is in its INFO
commandstats):

- alerts only, every page sent over and filtered here (the release before 2026-12-05), with
  redis-py's own reply parser and with hiredis;
- alerts only, filtered in Redis by the store's script (now);
- the whole log, with each parser.

    .venv/bin/python bench/redis_log_reads.py                   # 200,000 events, ~1 minute
    .venv/bin/python bench/redis_log_reads.py --events 50000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src/server"), str(ROOT / "src/clients/python")]

import redis.asyncio as aioredis  # noqa: E402
from redis._parsers import _AsyncRESP2Parser  # noqa: E402
from runstream.cli.replicas import redis_server  # noqa: E402
from runstream.v1 import event_pb2  # noqa: E402
from runstream_server.app import RunstreamServer, ServerConfig  # noqa: E402
from runstream_server.store.redis_keys import RedisKeys  # noqa: E402
from runstream_server.store.redis_log import RunLog  # noqa: E402

ALERT = event_pb2.EVENT_KIND_ALERT
PREFIX = "logreads"


async def _fill(url: str, events: int) -> str:
    """A run of `events` events, one alert in each 1,000; returns its id."""
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            address="127.0.0.1:0",
            store_path=Path(tmp) / "unused.db",
            store_url=f"{url}?prefix={PREFIX}",
        )
        server = RunstreamServer(config)
        await server.start()
        try:
            manager = server.runs
            assert manager is not None
            run = await manager.create_run(
                run_id="", workflow="long", display_name="", labels={}, steps=[]
            )
            for _ in range(events // 1000):  # each event its own message: the commit stamps it
                batch = [
                    event_pb2.RunEvent(custom=event_pb2.Custom(type="tick")) for _ in range(999)
                ]
                batch.append(event_pb2.RunEvent(alert=event_pb2.Alert(message="disk almost full")))
                await manager.append(run.run_id, batch)
            return run.run_id
        finally:
            await server.stop(grace=0.1)


def _python_filtered(log: RunLog) -> Callable[[str], Awaitable[int]]:
    """Every page sent over and filtered here, as before."""

    async def read(run_id: str) -> int:
        found, after = 0, 0
        while page := await log.read(run_id, after, None, 1000, (), newest_first=False):
            found += sum(1 for event in page if event.kind == ALERT)
            after = page[-1].seq
        return found

    return read


def _redis_filtered(log: RunLog) -> Callable[[str], Awaitable[int]]:
    async def read(run_id: str) -> int:
        found = await log.read(run_id, 0, None, 10**9, (ALERT,), newest_first=False)
        return len(found)

    return read


def _whole(log: RunLog) -> Callable[[str], Awaitable[int]]:
    async def read(run_id: str) -> int:
        everything = await log.read(run_id, 0, None, 10**9, (), newest_first=False)
        return len(everything)

    return read


async def _measure(url: str, run_id: str, rounds: int) -> dict[str, list[tuple[float, float]]]:
    keys = RedisKeys(PREFIX)
    pure = aioredis.Redis.from_url(url, parser_class=_AsyncRESP2Parser)
    fast = aioredis.Redis.from_url(url)  # hiredis when installed
    ways = {
        "alerts, filtered here, redis-py's parser (before)": _python_filtered(
            RunLog(keys, lambda: pure)
        ),
        "alerts, filtered here, hiredis": _python_filtered(RunLog(keys, lambda: fast)),
        "alerts, filtered in Redis, hiredis (now)": _redis_filtered(RunLog(keys, lambda: fast)),
        "whole log, redis-py's parser (before)": _whole(RunLog(keys, lambda: pure)),
        "whole log, hiredis (now)": _whole(RunLog(keys, lambda: fast)),
    }
    took: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    try:
        for _ in range(rounds):
            for way, read in ways.items():
                wall, cpu = time.perf_counter(), time.process_time()
                await read(run_id)
                took[way].append((time.perf_counter() - wall, time.process_time() - cpu))
    finally:
        await pure.aclose()
        await fast.aclose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp), fsync="everysec") as url:
        run_id = asyncio.run(_fill(url, args.events))
        took = asyncio.run(_measure(url, run_id, args.rounds))
    print(
        f"{args.events:,} events, {args.events // 1000:,} of them alerts; medians of {args.rounds}"
    )
    print("| read | wall | this process's CPU |")
    print("|---|---|---|")
    for way, figures in took.items():
        wall = statistics.median(w for w, _ in figures)
        cpu = statistics.median(c for _, c in figures)
        print(f"| {way} | {wall:.2f} s | {cpu:.2f} s |")


if __name__ == "__main__":
    main()
