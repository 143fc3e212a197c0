"""Runstream benchmarks: figures printed side by side, never pass/fail.

Each scenario starts its server as a separate process (so client work does not share its
GIL) and reads the server's CPU time from /proc, so "server CPU per delivery" is measured
the same way for Runstream and for the baseline, a bare grpc.aio server that streams
pre-serialized messages one per event (the best a hand-written gRPC fan-out does).

    .venv/bin/python bench/run.py            # all scenarios, ~1-2 minutes on 2 cores
    .venv/bin/python bench/run.py --quick    # smaller counts, for a smoke run

Scenarios:
  append      events/s a producer gets acknowledged (durable), SDK reporter vs unary batches
  fanout      N watchers follow one run while a producer appends; deliveries/s and server
              CPU microseconds per delivered event, Runstream vs bare grpc.aio
  latency     append-to-watcher latency (p50/p99) at a steady, modest rate
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc loads: no GOAWAY chatter

import grpc
import runstream
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    target: str

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)


@contextmanager
def start_server(argv: list[str], port: int) -> Iterator[Server]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield Server(process, f"127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def runstream_server(sync: str = "FULL") -> Iterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            sys.executable,
            str(HERE / "serve_runstream.py"),
            str(port),
            str(Path(tmp) / "bench.db"),
            sync,
        ]
        with start_server(argv, port) as server:
            yield server


@contextmanager
def baseline_server() -> Iterator[Server]:
    port = free_port()
    with start_server([sys.executable, str(HERE / "baseline_grpc.py"), str(port)], port) as server:
        yield server


def custom_event(n: int, size: int = 64) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
    event.custom.data.update({"n": n, "pad": "x" * size})
    return event


# --- append --------------------------------------------------------------------------------


async def bench_append(count: int) -> list[tuple[str, str]]:
    rows = []
    for sync in ("FULL", "NORMAL"):
        with runstream_server(sync) as server:
            async with runstream.connect(server.target) as client:
                run = await client.start_run("bench-append")
                started = time.perf_counter()
                for n in range(count):
                    await run.custom("tick", {"n": n})
                await run.complete()
                took = time.perf_counter() - started
            rows.append(
                (f"SDK reporter, synchronous={sync}", f"{count / took:,.0f} events/s acked")
            )
    with runstream_server("FULL") as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            run_id = (
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="b"))
            ).run.run_id
            started = time.perf_counter()
            for start in range(0, count, 100):
                events = [custom_event(n) for n in range(start, start + 100)]
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=events)
                )
            took = time.perf_counter() - started
            rows.append(
                ("AppendEvents, 100 per call, one at a time", f"{count / took:,.0f} events/s acked")
            )
    return rows


# --- fan-out -------------------------------------------------------------------------------


async def _follow_runstream(target: str, run_id: str, expect: int, done: Callable[[], None]) -> int:
    seen = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        async for response in stub.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id)):
            seen += len(response.events)
            if seen >= expect:
                break
    done()
    return seen


async def fanout_runstream(watchers: int, events: int) -> tuple[float, float]:
    with runstream_server("NORMAL") as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            run_id = (
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="b"))
            ).run.run_id
            finished = 0

            def done() -> None:
                nonlocal finished
                finished += 1

            tasks = [
                asyncio.create_task(_follow_runstream(server.target, run_id, events + 1, done))
                for _ in range(watchers)
            ]
            await asyncio.sleep(0.5)
            cpu0, t0 = server.cpu(), time.perf_counter()
            for start in range(0, events, 50):
                batch = [custom_event(n) for n in range(start, min(events, start + 50))]
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=batch)
                )
            await asyncio.gather(*tasks)
            took, cpu = time.perf_counter() - t0, server.cpu() - cpu0
    deliveries = watchers * events
    return deliveries / took, cpu / deliveries * 1e6


async def fanout_baseline(watchers: int, events: int) -> tuple[float, float]:
    with baseline_server() as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            publish = channel.unary_unary("/bench.Baseline/Publish")
            subscribe = channel.unary_stream("/bench.Baseline/Subscribe")

            async def follow() -> None:
                seen = 0
                async for _ in subscribe(b""):
                    seen += 1
                    if seen >= events:
                        return

            tasks = [asyncio.create_task(follow()) for _ in range(watchers)]
            await asyncio.sleep(0.5)
            cpu0, t0 = server.cpu(), time.perf_counter()
            payload = custom_event(0).SerializeToString()
            for start in range(0, events, 50):
                count = min(50, events - start)
                await publish(payload + count.to_bytes(2, "big"))
            await asyncio.gather(*tasks)
            took, cpu = time.perf_counter() - t0, server.cpu() - cpu0
    deliveries = watchers * events
    return deliveries / took, cpu / deliveries * 1e6


# --- latency -------------------------------------------------------------------------------


async def bench_latency(count: int, rate: float) -> tuple[float, float]:
    with runstream_server("FULL") as server:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("bench-latency")
            latencies: list[float] = []

            async def watch() -> None:
                async for event in client.watch(run.run_id, kinds=[runstream.EventKind.CUSTOM]):
                    sent = event.payload.data["t"]  # type: ignore[union-attr]
                    latencies.append(time.time() - float(sent))
                    if len(latencies) >= count:
                        return

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            for _ in range(count):
                await run.custom("tick", {"t": time.time()})
                await asyncio.sleep(1 / rate)
            await asyncio.wait_for(watcher, 30)
            await run.complete()
    ms = sorted(latency * 1000 for latency in latencies)
    return statistics.median(ms), ms[int(len(ms) * 0.99) - 1]


async def main(quick: bool) -> None:
    scale = 0.2 if quick else 1.0
    print("Runstream benchmarks (2-core machine, loopback; figures, not pass/fail)\n")

    print("== append: producer throughput, acknowledged only once durable")
    for name, figure in await bench_append(int(10_000 * scale)):
        print(f"  {name:<48} {figure}")

    print("\n== fan-out: one run, N watchers, server CPU per delivered event")
    print(
        f"  {'watchers':>8}  {'Runstream deliveries/s':>24} {'us/delivery':>12}"
        f"   {'bare grpc.aio deliveries/s':>27} {'us/delivery':>12}"
    )
    events = int(5_000 * scale)
    for watchers in (1, 10, 100):
        rs_rate, rs_cpu = await fanout_runstream(watchers, events)
        bl_rate, bl_cpu = await fanout_baseline(watchers, events)
        runstream_cols = f"{rs_rate:>24,.0f} {rs_cpu:>12.1f}"
        print(f"  {watchers:>8}  {runstream_cols}   {bl_rate:>27,.0f} {bl_cpu:>12.1f}")
    print(
        "  (Runstream: durable store, exact resume, events batched per message when a watcher"
        " is behind;\n   baseline: in-memory, one message per event, no resume)"
    )

    print("\n== latency: producer report -> watcher, 200 events/s, synchronous=FULL")
    p50, p99 = await bench_latency(int(1_000 * scale), 200)
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.quick))
