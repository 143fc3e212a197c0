"""What an idle replica costs on the Redis store over many runs not ended: figures, never
pass/fail.

Runs created and never finished (producers that died before starting, abandoned runs) stay
in the store's index of active runs, and every replica's stall check reads that index to
find the running runs gone silent. This starts a real `runstream serve` replica on a real
redis-server, creates N runs that never start, and measures, with no client doing anything,
the replica's CPU (from /proc) over 10 s; then the latency of a filtered ListRuns
(`status = RUNNING`), which reads the same index.

    .venv/bin/python bench/redis_idle.py                # 1,000 and 10,000 runs
    .venv/bin/python bench/redis_idle.py --runs 20000
    RUNSTREAM_TREE=/path/to/other/checkout .venv/bin/python bench/redis_idle.py   # compare
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from harness import cpu_seconds, replica_of
from runstream.cli.replicas import redis_server
from runstream.v1 import run_service_pb2, run_service_pb2_grpc

TREE = Path(os.environ.get("RUNSTREAM_TREE", Path(__file__).resolve().parent.parent))


async def _measure(port: int, pid: int, runs: int) -> tuple[float, float, float]:
    """(idle CPU share, ListRuns p50 ms, max ms) of the replica `pid` over `runs` pending
    runs it is made to create."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        request = run_service_pb2.CreateRunRequest(workflow="abandoned")
        for _ in range(0, runs, 200):
            await asyncio.gather(*(stub.CreateRun(request) for _ in range(200)))
        await asyncio.sleep(3)  # past the creates' own work
        cpu, started = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(10)
        idle = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
        took = []
        for _ in range(10):
            begun = time.perf_counter()
            await stub.ListRuns(
                run_service_pb2.ListRunsRequest(filter="status = RUNNING", page_size=50)
            )
            took.append((time.perf_counter() - begun) * 1000)
    return idle, statistics.median(took), max(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[1_000, 10_000])
    args = parser.parse_args()
    print(f"server tree: {TREE}")
    print("pending runs | idle replica CPU | ListRuns status = RUNNING p50 / max")
    for runs in args.runs:
        with (
            tempfile.TemporaryDirectory() as directory,
            redis_server(Path(directory)) as url,
            replica_of(TREE, url) as (port, pid),
        ):
            idle, p50, most = asyncio.run(_measure(port, pid, runs))
        print(f"{runs:>12,} | {idle:>15.1%} | {p50:.1f} / {most:.1f} ms")


if __name__ == "__main__":
    main()
