"""What a ListRuns by workflow or label costs on the Redis store: figures, never pass/fail.

A real `runstream serve` replica on a real redis-server; N runs are created through it, all
but one in a hundred of workflow "campaign" with the label team=growth, the others of
workflow "discovery" with team=sales. Then, for each filter, ten first pages of 50 runs,
timed (p50 / max), and the replica's CPU over 10 s with no client doing anything (what its
background work costs over that many runs).

    .venv/bin/python bench/redis_filtered_list.py                 # 10,000 runs
    .venv/bin/python bench/redis_filtered_list.py --runs 1000 100000
    RUNSTREAM_TREE=/path/to/other/checkout .venv/bin/python bench/redis_filtered_list.py
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

FILTERS = [
    'workflow = "discovery"',
    'labels.team = "sales"',
    'labels.team = "nobody"',
    'workflow = "campaign"',
    'workflow = "discovery" AND status = PENDING',
]


async def _measure(port: int, pid: int, runs: int) -> tuple[float, dict[str, tuple[float, float]]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        common = run_service_pb2.CreateRunRequest(workflow="campaign", labels={"team": "growth"})
        rare = run_service_pb2.CreateRunRequest(workflow="discovery", labels={"team": "sales"})
        for first in range(0, runs, 200):
            batch = [rare if n % 100 == 99 else common for n in range(first, first + 200)]
            await asyncio.gather(*(stub.CreateRun(request) for request in batch[: runs - first]))
        await asyncio.sleep(3)  # past the creates' own work
        cpu, started = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(10)
        idle = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
        figures = {}
        for text in FILTERS:
            took = []
            for _ in range(10):
                begun = time.perf_counter()
                await stub.ListRuns(run_service_pb2.ListRunsRequest(filter=text, page_size=50))
                took.append((time.perf_counter() - begun) * 1000)
            figures[text] = (statistics.median(took), max(took))
    return idle, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[10_000])
    args = parser.parse_args()
    print(f"server tree: {TREE}")
    for runs in args.runs:
        with (
            tempfile.TemporaryDirectory() as directory,
            redis_server(Path(directory)) as url,
            replica_of(TREE, url) as (port, pid),
        ):
            idle, figures = asyncio.run(_measure(port, pid, runs))
        print(f"{runs:,} runs: idle replica CPU {idle:.1%}; ListRuns, first page of 50:")
        for text, (p50, most) in figures.items():
            print(f"  {text:<45} p50 {p50:8.1f} ms, max {most:8.1f} ms")


if __name__ == "__main__":
    main()
