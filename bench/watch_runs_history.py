"""What a WatchRuns stream costs over a long history of ended runs: figures, never pass/fail.

For each store (a SQLite file in a temp dir, then a real redis-server), a `runstream serve`
process (a subprocess, so its CPU is read from /proc: the server's own, nothing of this
process's clients) is filled with N runs that ended (half succeeded by an AppendEvents
RunCompleted, half cancelled by CancelRun) after 20 running ones, all through the server's
real RPCs, 50 in flight. Then, in alternating rounds, a WatchRuns stream (no filter) is
opened and timed until its initial_state_complete message: without a limit (every stored
run is read and sent) and with initial_ended_limit=100 (every run not ended, the newest
100 that ended). Each open shows its wall time, the server's CPU, the runs and messages
received, and ended_runs_left_out.

On Redis, the runs' entries in the store's indexes of runs created and ended (`P:runs`,
`P:ended`, `P:moved`) are then moved an hour back, as if the history were old; with 3
unlimited streams open, the replica's notice subscription is cut (CLIENT KILL TYPE pubsub)
and the server's CPU is read from the cut until it is idle again (at least 3 s): the streams'
re-list after a gap in notices, beside 3 s of the same server idle. Redis's own CPU and
the commands it ran in that window are shown too.

    .venv/bin/python bench/watch_runs_history.py            # 20,000 ended runs, 3 rounds
    .venv/bin/python bench/watch_runs_history.py --quick    # ~2,000 runs, 1 round: smoke run
    .venv/bin/python bench/watch_runs_history.py --runs 50000 --rounds 5
    RUNSTREAM_TREE=/path/to/other/checkout .venv/bin/python bench/watch_runs_history.py

RUNSTREAM_TREE runs another checkout's server (e.g. one before initial_ended_limit and the
re-list of only the runs that may have changed: an older server ignores the limit and sends
every run); the clients and this bench stay the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src/server"), str(ROOT / "src/clients/python")]

import grpc  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from harness import cpu_seconds, free_port, spawn  # noqa: E402
from runstream.cli.replicas import redis_server  # noqa: E402
from runstream.v1 import (  # noqa: E402
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.store.redis_keys import RedisKeys  # noqa: E402

TREE = Path(os.environ.get("RUNSTREAM_TREE", ROOT))
PREFIX = "history"
RUNNING = 20
IN_FLIGHT = 50
LIMIT = 100
STREAMS = 3
HOUR_US = 3600 * 10**6


@dataclass
class Open:
    """One WatchRuns stream opened, until its initial state was complete."""

    wall: float
    cpu: float
    runs: int
    messages: int
    left_out: bool


@dataclass
class Gap:
    """A window of the server's life: idle, or from a cut of its notices until idle again."""

    seconds: float
    cpu: float
    redis_cpu: float
    redis_commands: int
    messages: int


@contextmanager
def _server(store: str) -> Iterator[tuple[int, int]]:
    """A `runstream serve` of TREE over `store`; yields (port, pid)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=f"{TREE}/src/server:{TREE}/src/clients/python")
    argv = [
        sys.executable, "-m", "runstream.cli.main", "serve", "--address", f"127.0.0.1:{port}",
        "--store", store, "--insecure-no-auth", "--log-level", "warning",
        "--stall-after", "86400", "--start-within", "86400",
        # SQLite's durability; serve refuses it with a redis:// store, which has none of it.
        *(() if store.startswith("redis") else ("--sync", "normal")),
    ]  # fmt: skip
    with spawn(argv, None, quiet=True, stderr=sys.stderr, env=env) as server:
        yield port, server.process.pid


async def _fill(channel: grpc.aio.Channel, ended: int) -> float:
    """RUNNING running runs, then `ended` ended ones, IN_FLIGHT calls at a time; seconds."""
    runs = run_service_pb2_grpc.RunServiceStub(channel)
    report = report_service_pb2_grpc.ReportServiceStub(channel)
    started = event_pb2.RunEvent(run_started=event_pb2.RunStarted())
    completed = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted(summary="done"))

    async def one(i: int, end: bool) -> None:
        request = run_service_pb2.CreateRunRequest(workflow=f"wf{i % 10}")
        run_id = (await runs.CreateRun(request)).run.run_id
        if not end:
            event = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[started])
            await report.AppendEvents(event)
        elif i % 2:
            await runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run_id, reason="bench"))
        else:
            event = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[completed])
            await report.AppendEvents(event)

    async def worker(todo: Iterator[tuple[int, bool]]) -> None:
        for i, end in todo:
            await one(i, end)

    begun = time.perf_counter()
    for count, end in ((RUNNING, False), (ended, True)):
        todo = iter([(i, end) for i in range(count)])
        await asyncio.gather(*(worker(todo) for _ in range(IN_FLIGHT)))
    return time.perf_counter() - begun


async def _open(channel: grpc.aio.Channel, pid: int, limit: int) -> Open:
    stub = run_service_pb2_grpc.RunServiceStub(channel)
    runs = messages = 0
    left_out = False
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    call = stub.WatchRuns(run_service_pb2.WatchRunsRequest(initial_ended_limit=limit))
    async for response in call:
        messages += 1
        runs += len(response.runs)
        if response.initial_state_complete:
            left_out = response.ended_runs_left_out
            break
    took = Open(time.perf_counter() - wall, cpu_seconds(pid) - cpu, runs, messages, left_out)
    call.cancel()
    await asyncio.sleep(0.3)  # the stream's end, outside the next open
    return took


async def _opens(channel: grpc.aio.Channel, pid: int, rounds: int) -> dict[int, list[Open]]:
    took: dict[int, list[Open]] = {0: [], LIMIT: []}
    for _ in range(rounds):
        for limit in took:
            took[limit].append(await _open(channel, pid, limit))
    return took


async def _redis_figures(client: aioredis.Redis) -> tuple[float, int]:
    """Redis's CPU seconds and commands processed so far."""
    cpu = await client.info("cpu")
    stats = await client.info("stats")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], int(stats["total_commands_processed"])


async def _window(
    client: aioredis.Redis, pid: int, received: list[int], cut: bool, least: float = 3.0
) -> Gap:
    """The server's CPU over `least` seconds (idle), or from a cut of its notices until a
    second passes with under 20 ms of its CPU (at least `least` seconds, at most 120)."""
    redis_cpu, commands = await _redis_figures(client)
    messages, cpu, begun = received[0], cpu_seconds(pid), time.monotonic()
    if cut:
        await client.client_kill_filter(_type="pubsub")
    await asyncio.sleep(least)
    if cut:
        last = cpu_seconds(pid)
        while time.monotonic() - begun < 120:
            await asyncio.sleep(1)
            now = cpu_seconds(pid)
            if now - last < 0.02:
                break
            last = now
    seconds, used = time.monotonic() - begun, cpu_seconds(pid) - cpu
    redis_after, commands_after = await _redis_figures(client)
    return Gap(
        seconds, used, redis_after - redis_cpu, commands_after - commands, received[0] - messages
    )


async def _gaps(
    channel: grpc.aio.Channel, url: str, pid: int, rounds: int
) -> tuple[Gap, list[Gap]]:
    """With STREAMS unlimited streams open: 3 s idle, then `rounds` cuts of the notices."""
    stub = run_service_pb2_grpc.RunServiceStub(channel)
    complete, all_complete = [0], asyncio.Event()
    received = [0]  # messages after the initial state, heartbeats aside

    async def follow() -> None:
        initial = True
        async for response in stub.WatchRuns(run_service_pb2.WatchRunsRequest()):
            if response.initial_state_complete:
                initial = False
                complete[0] += 1
                if complete[0] == STREAMS:
                    all_complete.set()
            elif not initial and response.runs:
                received[0] += 1

    client = aioredis.Redis.from_url(url)
    followers = [asyncio.create_task(follow()) for _ in range(STREAMS)]
    try:
        await asyncio.wait_for(all_complete.wait(), 600)
        await asyncio.sleep(2)  # past the opens' own work
        idle = await _window(client, pid, received, cut=False)
        cuts = []
        for _ in range(rounds):
            cuts.append(await _window(client, pid, received, cut=True))
        return idle, cuts
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await client.aclose()


async def _age(url: str) -> None:
    """Every run created and ended an hour earlier, as far as the store's indexes tell."""
    keys = RedisKeys(PREFIX)
    client = aioredis.Redis.from_url(url)
    try:
        for index in (keys.runs, keys.ended, keys.moved):
            entries = cast(
                "list[tuple[bytes, float]]", await client.zrange(index, 0, -1, withscores=True)
            )
            await client.zadd(index, {m: s - HOUR_US for m, s in entries}, xx=True)
    finally:
        await client.aclose()


async def _bench(
    store: str, ended: int, rounds: int, redis_url: str | None
) -> tuple[float, dict[int, list[Open]], tuple[Gap, list[Gap]] | None]:
    with _server(store) as (port, pid):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            fill = await _fill(channel, ended)
            if redis_url is not None:
                await _age(redis_url)
            await asyncio.sleep(2)  # past the fill's own work
            opens = await _opens(channel, pid, rounds)
            gaps = None if redis_url is None else await _gaps(channel, redis_url, pid, rounds)
    return fill, opens, gaps


def _spread(values: list[float], unit: str, scale: float = 1.0, digits: int = 2) -> str:
    """The median of `values` (times `scale`), and their range when more than one."""
    med, unit = statistics.median(values) * scale, f" {unit}" if unit else ""
    if len(values) == 1:
        return f"{med:,.{digits}f}{unit}"
    low, high = min(values) * scale, max(values) * scale
    return f"{med:,.{digits}f}{unit} ({low:,.{digits}f}-{high:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000, help="ended runs stored")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 runs, 1 round: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds = 2_000, 1
    print(f"server tree: {TREE}")
    print(
        f"{args.runs:,} ended runs + {RUNNING} running, created through the server's RPCs "
        f"({IN_FLIGHT} in flight); medians (min-max) of {args.rounds} alternating rounds; "
        "server CPU from /proc (its process alone)"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = asyncio.run(_bench(f"{tmp}/runs.db", args.runs, args.rounds, None))
        with redis_server(Path(tmp), fsync="everysec") as url:
            store = f"{url}?prefix={PREFIX}"
            results["Redis"] = asyncio.run(_bench(store, args.runs, args.rounds, url))
    print()
    for name, (fill, _, _) in results.items():
        print(f"fill, {name}: {fill:.0f} s ({(args.runs + RUNNING) / fill:,.0f} runs/s)")
    print()
    print("WatchRuns, no filter, until initial_state_complete:")
    print(
        "| store | initial_ended_limit | wall | server CPU | runs received | messages "
        "| ended_runs_left_out |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (_, opens, _) in results.items():
        for limit, figures in opens.items():
            runs = sorted({o.runs for o in figures})
            messages = sorted({o.messages for o in figures})
            left_out = sorted({o.left_out for o in figures})
            wall = _spread([o.wall for o in figures], "ms", 1000, 0)
            cpu = _spread([o.cpu for o in figures], "s")
            print(
                f"| {name} | {limit or 'none'} | {wall} | {cpu} | "
                f"{'/'.join(f'{r:,}' for r in runs)} | {'/'.join(map(str, messages))} | "
                f"{'/'.join(map(str, left_out))} |"
            )
    gaps = results["Redis"][2]
    assert gaps is not None
    idle, cuts = gaps
    print()
    print(
        f"Redis, {STREAMS} unlimited WatchRuns streams open, the runs' index entries an hour "
        "old: a gap in the replica's notices (CLIENT KILL TYPE pubsub), from the cut until "
        "the server is idle again, beside the same server idle:"
    )
    print("| window | length | server CPU | Redis CPU | Redis commands | messages to the streams |")
    print("|---|---|---|---|---|---|")
    print(
        f"| idle, no gap | {idle.seconds:.1f} s | {idle.cpu:.2f} s | {idle.redis_cpu:.2f} s | "
        f"{idle.redis_commands:,} | {idle.messages} |"
    )
    print(
        f"| after a gap | {_spread([c.seconds for c in cuts], 's', digits=1)} | "
        f"{_spread([c.cpu for c in cuts], 's')} | {_spread([c.redis_cpu for c in cuts], 's')} "
        f"| {_spread([float(c.redis_commands) for c in cuts], '', digits=0)} | "
        f"{'/'.join(str(c.messages) for c in cuts)} |"
    )


if __name__ == "__main__":
    main()
