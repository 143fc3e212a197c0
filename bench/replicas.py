"""Runstream on Redis: cross-replica latency and append throughput (figures, not pass/fail).

    .venv/bin/python bench/replicas.py            # ~1 minute on 2 cores
    .venv/bin/python bench/replicas.py --quick    # smaller counts, for a smoke run

Scenarios:
  latency     producer report -> watcher latency (p50/p99) at a steady rate: one process on
              SQLite, one replica on Redis, and producer on replica A with the watcher on B
  append      events/s acknowledged on Redis with appendfsync everysec and always, unary
              AppendEvents with 100 events per call from several concurrent producers

Every server is a `runstream serve` process, every Redis a real redis-server with AOF on.
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
from contextlib import ExitStack, contextmanager
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import harness
import runstream
from runstream.cli.replicas import redis_server
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)


@contextmanager
def runstream_serve(store: str) -> Iterator[str]:
    port = harness.free_port()
    argv = [
        sys.executable, "-m", "runstream.cli.main", "serve",
        "--address", f"127.0.0.1:{port}", "--store", store, "--log-level", "warning",
    ]  # fmt: skip
    with harness.spawn(argv, None, quiet=True) as proc:
        harness.wait_for_port(port, proc=proc)
        yield f"127.0.0.1:{port}"


# --- latency -------------------------------------------------------------------------------


async def latency(producer_target: str, watcher_target: str, count: int, rate: float) -> str:
    async with (
        runstream.connect(producer_target) as producer,
        runstream.connect(watcher_target) as watcher,
    ):
        run = await producer.start_run("bench-latency")
        latencies: list[float] = []

        async def watch() -> None:
            async for event in watcher.watch(run.run_id, kinds=[runstream.EventKind.CUSTOM]):
                sent = event.payload.data["t"]  # type: ignore[union-attr]
                latencies.append(time.time() - float(sent))
                if len(latencies) >= count:
                    return

        following = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        for _ in range(count):
            await run.custom("tick", {"t": time.time()})
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(following, 60)
        await run.complete()
    ms = sorted(latency * 1000 for latency in latencies)
    return f"p50 {statistics.median(ms):6.2f} ms   p99 {ms[int(len(ms) * 0.99) - 1]:6.2f} ms"


# --- append --------------------------------------------------------------------------------


async def append_throughput(target: str, total: int, producers: int) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_ids = [
            (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="b"))).run.run_id
            for _ in range(producers)
        ]

        async def produce(run_id: str) -> None:
            for start in range(0, total // producers, 100):
                batch = []
                for n in range(start, start + 100):
                    event = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
                    event.custom.data.update({"n": n, "pad": "x" * 64})
                    event.idempotency_key = f"k{n}"
                    batch.append(event)
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=batch)
                )

        started = time.perf_counter()
        await asyncio.gather(*(produce(r) for r in run_ids))
        return total / (time.perf_counter() - started)


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    print("Runstream replicas on Redis (2-core machine, loopback; figures, not pass/fail)\n")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        base = Path(tmp)
        count, rate = int(1_000 * scale), 200.0
        print(f"== latency: producer report -> watcher, {rate:.0f} events/s, {count} events")
        single = stack.enter_context(runstream_serve(str(base / "single.db")))
        print(f"  {'one process, SQLite (FULL)':<44} {await latency(single, single, count, rate)}")
        (base / "always").mkdir()
        url = stack.enter_context(redis_server(base / "always", "always"))
        a = stack.enter_context(runstream_serve(url + "?prefix=lat"))
        b = stack.enter_context(runstream_serve(url + "?prefix=lat"))
        print(f"  {'one replica on Redis (always)':<44} {await latency(a, a, count, rate)}")
        print(f"  {'producer on replica A, watcher on B':<44} {await latency(a, b, count, rate)}")

    total = int(40_000 * scale)
    print(f"\n== append: AppendEvents, 100 events per call, 4 producers, {total:,} events")
    for fsync in ("everysec", "always"):
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            url = stack.enter_context(redis_server(Path(tmp), fsync))
            target = stack.enter_context(runstream_serve(url))
            rate_ = await append_throughput(target, total, 4)
            print(f"  {'one replica, appendfsync ' + fsync:<44} {rate_:>10,.0f} events/s acked")
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            url = stack.enter_context(redis_server(Path(tmp), fsync))
            targets = [stack.enter_context(runstream_serve(url)) for _ in range(2)]
            rates = await asyncio.gather(*(append_throughput(t, total // 2, 2) for t in targets))
            print(
                f"  {'two replicas (two cores), appendfsync ' + fsync:<44} "
                f"{sum(rates):>10,.0f} events/s acked"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
