"""Runstream benchmarks: figures printed side by side with a bare grpc.aio server, never
pass/fail.

Every server runs in its own process pinned to one core, its producer beside it; watchers run
in processes pinned to the other core (see harness.py). Server CPU comes from /proc. The
baseline (baseline_grpc.py) is the best a hand-written gRPC fan-out does: one message per
event from a queue per watcher, in memory, no store, no sequence numbers, no resume.
Ratios are Runstream / baseline, measured in the same run.

    .venv/bin/python bench/run.py                 # everything, about 8-10 minutes on 2 cores
    .venv/bin/python bench/run.py --quick         # smaller counts, for a smoke run
    .venv/bin/python bench/run.py --only openloop,idle

Scenarios:
  append      events/s a producer gets acknowledged (durable): SDK reporter, unary batches
  fanout      N watchers follow a run fed in batches: deliveries/s, server CPU per delivery
  message     one event per message: producer reports, waits for the ack, repeats; server
              CPU per delivered event, alone and with the SDK producer's CPU added; then
              one AppendEvents call per event from a bare client (the baseline's is unary)
  ingest      the same loop split: server CPU to take an event in (no watcher) and to deliver
              it to one watcher, and a bare Report stream that only acks (echo_report.py)
  openloop    a producer at a steady rate, N watchers: report-to-receive p50/p99, server core
              busy; 1 x 200/s, 100 x 100/s, 1,000 x 10/s
  sustained   100 watchers following one run fed 10,000 events/s for 20 s, then the highest
              rate that keeps p99 under 50 ms for 100 and for 10 watchers (2,000 to 40,000
              events/s; a rate the producer, on the server's core, cannot feed ends it too)
  idle        RSS per idle watcher at 1,000, 5,000 and 20,000 watchers
  burst       10,000 watchers connecting at once: how many the server registers
  producer    the SDK producer's CPU per event at 200 events/s and at full speed
  watcher     a watcher's own CPU per event reading a run's log as fast as it comes: the
              SDK's watch() (typed events) beside a bare stub that decodes the messages
  replicas    more than one core: 4 runs (1,000 events/s, 25 watchers each) on one server
              process, then on two replicas sharing one Redis store, one pinned to each core
  stacks      beside the stack Runstream replaces (an SSE / WebSocket gateway on Redis
              pub/sub, stacks_gateway.py): 100 x 100/s and 1,000 x 10/s, then each watcher
              away for a second once: what it lost
  observability  what metrics and traces cost: append throughput and server CPU per
              event, fan-out server CPU per delivery (100 watchers), with metrics off, on,
              and on with traces exported to an OTLP sink; rounds alternate, medians shown
  instructions  the one-event-per-message loop under callgrind: user-space instructions per
              event, taken in and delivered to one watcher, and taken in by a run of 17
              planned steps (instructions.py); a count that does not move with how busy
              the machine is, for comparing versions

Set RUNSTREAM_TREE to another checkout to run its server and SDK instead (e.g. the previous
release, for a before/after table); the bench code and the baseline stay the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc loads: no GOAWAY chatter

import grpc
import harness
import instructions
import stacks
from harness import CLIENT_CPU, SERVER_CPU, server, spawn
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

SCENARIOS = (
    "append",
    "fanout",
    "message",
    "ingest",
    "openloop",
    "sustained",
    "idle",
    "burst",
    "producer",
    "watcher",
    "replicas",
    "observability",
    "stacks",
    "instructions",
)


STEPS = 17
"""The planned steps of the run the instructions scenario also counts (a campaign
generator's): a third of them done, three running, each with its agent."""


def row(name: str, runstream: str, baseline: str = "-", ratio: str = "") -> None:
    print(f"  {name:<44} {runstream:>26} {baseline:>22} {ratio:>8}")


def header(title: str) -> None:
    print(f"\n== {title}")
    row("", "Runstream", "bare grpc.aio", "ratio")


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else ""


def custom_event(n: int, size: int = 64) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
    event.custom.data.update({"n": n, "pad": "x" * size})
    return event


# --- append --------------------------------------------------------------------------------


async def bench_append(count: int) -> None:
    import runstream

    header("append: producer throughput, acknowledged only once durable")
    for sync in ("FULL", "NORMAL"):
        with server("runstream", sync=sync) as srv:
            async with runstream.connect(srv.target) as client:
                run = await client.start_run("bench-append")
                started = time.perf_counter()
                for n in range(count):
                    await run.custom("tick", {"n": n})
                await run.complete()
                took = time.perf_counter() - started
        row(f"SDK reporter, synchronous={sync}", f"{count / took:,.0f} events/s")
    with server("runstream") as srv:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="b"))
            started = time.perf_counter()
            for start in range(0, count, 100):
                events = [custom_event(n) for n in range(start, start + 100)]
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=created.run.run_id, events=events)
                )
            took = time.perf_counter() - started
    row("AppendEvents, 100 per call, one at a time", f"{count / took:,.0f} events/s")


# --- fan-out -------------------------------------------------------------------------------


async def _follow_runstream(target: str, run_id: str, expect: int) -> None:
    seen = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        async for response in stub.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id)):
            seen += len(response.events)
            if seen >= expect:
                return


async def fanout_runstream(
    watchers: int, events: int, extra: tuple[str, ...] = ()
) -> tuple[float, float]:
    with server("runstream", sync="NORMAL", extra=extra) as srv:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            run_id = (
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="b"))
            ).run.run_id
            tasks = [
                asyncio.create_task(_follow_runstream(srv.target, run_id, events + 1))
                for _ in range(watchers)
            ]
            await _until_watched(runs, run_id, watchers)
            cpu0, t0 = srv.cpu(), time.perf_counter()
            for start in range(0, events, 50):
                batch = [custom_event(n) for n in range(start, min(events, start + 50))]
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=batch)
                )
            await asyncio.gather(*tasks)
            took, cpu = time.perf_counter() - t0, srv.cpu() - cpu0
    deliveries = watchers * events
    return deliveries / took, cpu / deliveries * 1e6


async def _until_watched(runs: Any, run_id: str, watchers: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
        if run.run.viewer_count >= watchers:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{watchers} watchers did not connect")


async def fanout_baseline(watchers: int, events: int) -> tuple[float, float]:
    with server("baseline") as srv:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            # No serializers: the baseline speaks bytes as they are.
            publish = channel.unary_unary(
                "/bench.Baseline/Publish", request_serializer=None, response_deserializer=None
            )
            count_rpc = channel.unary_unary(
                "/bench.Baseline/Count", request_serializer=None, response_deserializer=None
            )
            subscribe = channel.unary_stream(
                "/bench.Baseline/Subscribe", request_serializer=None, response_deserializer=None
            )

            async def follow() -> None:
                seen = 0
                async for _ in subscribe(b""):
                    seen += 1
                    if seen >= events:
                        return

            tasks = [asyncio.create_task(follow()) for _ in range(watchers)]
            while int.from_bytes(await count_rpc(b""), "big") < watchers:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # another process's state: nothing to wait on
            cpu0, t0 = srv.cpu(), time.perf_counter()
            payload = custom_event(0).SerializeToString()
            for start in range(0, events, 50):
                count = min(50, events - start)
                await publish(payload + count.to_bytes(2, "big"))
            await asyncio.gather(*tasks)
            took, cpu = time.perf_counter() - t0, srv.cpu() - cpu0
    deliveries = watchers * events
    return deliveries / took, cpu / deliveries * 1e6


async def bench_fanout(events: int) -> None:
    header("fan-out: one run fed 50 events per call; deliveries/s and server CPU per delivery")
    for watchers in (1, 10, 100, 1000):
        n = events if watchers < 1000 else events // 5
        rs_rate, rs_cpu = await fanout_runstream(watchers, n)
        bl_rate, bl_cpu = await fanout_baseline(watchers, n)
        row(
            f"{watchers} watchers: deliveries/s",
            f"{rs_rate:,.0f}/s",
            f"{bl_rate:,.0f}/s",
            ratio(rs_rate, bl_rate),
        )
        row(
            f"{watchers} watchers: server CPU per delivery",
            f"{rs_cpu:.1f} us",
            f"{bl_cpu:.1f} us",
            ratio(rs_cpu, bl_cpu),
        )


# --- one event per message, open loop, sustained ------------------------------------------


def bench_message(count: int, rounds: int) -> None:
    header(
        "one event per message: report, wait for the ack, repeat; 1 watcher; sync NORMAL"
        f" ({rounds} alternating runs each: medians, then the runs' lowest and highest ratio)"
    )
    runs: dict[str, list[harness.OpenLoop]] = {"runstream": [], "baseline": []}
    for turn in range(rounds):  # alternating, the order swapped every turn: same load for both
        for system in ("runstream", "baseline")[:: 1 if turn % 2 == 0 else -1]:
            with server(system, sync="NORMAL") as srv:
                runs[system].append(
                    harness.open_loop(srv, watchers=1, rate=0, count=count, closed=True)
                )
    server_cpu = [r.server_cpu / count * 1e6 for r in runs["runstream"]]
    with_producer = [(r.server_cpu + r.producer_cpu) / count * 1e6 for r in runs["runstream"]]
    base_cpu = [r.server_cpu / count * 1e6 for r in runs["baseline"]]
    base_us = statistics.median(base_cpu)
    for label, ours in (
        ("server CPU per delivery", server_cpu),
        ("  with the SDK producer's CPU added", with_producer),
    ):
        ratios = sorted(a / b for a, b in zip(ours, base_cpu, strict=True))
        row(
            label,
            f"{statistics.median(ours):.0f} us ({ratios[0]:.2f}-{ratios[-1]:.2f}x)",
            f"{base_us:.0f} us",
            ratio(statistics.median(ours), base_us),
        )
    rs, bl = runs["runstream"], runs["baseline"]
    row("report-to-receive p50 / p99", _p_runs(rs), _p_runs(bl), ratio(_p99(rs), _p99(bl)))
    # A bare client's AppendEvents calls, one per event: the unary path, as the baseline's.
    with server("runstream", sync="NORMAL") as srv:
        unary = harness.open_loop(srv, watchers=1, rate=0, count=count, closed=True, client="unary")
    unary_us = unary.server_cpu / count * 1e6
    row(
        "AppendEvents, bare client: server CPU",
        f"{unary_us:.0f} us",
        f"{base_us:.0f} us",
        ratio(unary_us, base_us),
    )
    row(
        "AppendEvents: report-to-receive p50 / p99",
        _p(unary),
        _p_runs(bl),
        ratio(unary.latency["p99"], _p99(bl)),
    )


def bench_ingest(count: int) -> None:
    header(
        "one event per message, split: server CPU per event to take it in and to deliver it;"
        " sync NORMAL"
    )
    cpu: dict[tuple[str, int], float] = {}
    for system in ("runstream", "baseline"):
        for watchers in (0, 1):
            with server(system, sync="NORMAL") as srv:
                result = harness.open_loop(srv, watchers=watchers, rate=0, count=count, closed=True)
            cpu[(system, watchers)] = result.server_cpu / count * 1e6
    taken, base_taken = cpu[("runstream", 0)], cpu[("baseline", 0)]
    row("taken in, no watcher", f"{taken:.0f} us", f"{base_taken:.0f} us", ratio(taken, base_taken))
    added, base_added = cpu[("runstream", 1)] - taken, cpu[("baseline", 1)] - base_taken
    row(
        "delivered to one watcher (added)",
        f"{added:.0f} us",
        f"{base_added:.0f} us",
        ratio(added, base_added),
    )
    # The same bare client (one Report message per event, no SDK) to both Report servers.
    with server("runstream", sync="NORMAL") as srv:
        ours = _report_cpu_us(srv, 0.0, count, "bare", closed=True)[1]
    with server("echo") as srv:
        echo = _report_cpu_us(srv, 0.0, count, "bare", closed=True)[1]
    row(
        "Report, bare client (other: echo_report.py)",
        f"{ours:.0f} us",
        f"{echo:.0f} us",
        ratio(ours, echo),
    )


def bench_instructions() -> None:
    header(
        "one event per message under callgrind: user-space instructions per event (the"
        " kernel's work not counted); sync NORMAL"
    )
    if not instructions.available():
        print("  valgrind is not installed: skipped")
        return
    counts: dict[tuple[str, int], float] = {}
    for system in ("runstream", "baseline"):
        with instructions.counted(system) as counted:
            for watchers in (0, 1):
                counts[(system, watchers)] = counted.per_event(watchers)
            if system == "runstream":  # the bare server has no steps: the same loop for it
                stepped = counted.per_event(0, steps=STEPS)

    def thousands(n: float) -> str:
        return f"{n / 1000:,.0f} k"

    for label, ours, theirs in (
        ("report, ack and deliver to one watcher", counts[("runstream", 1)],
         counts[("baseline", 1)]),
        ("taken in, no watcher", counts[("runstream", 0)], counts[("baseline", 0)]),
        (f"taken in, a run of {STEPS} steps", stepped, counts[("baseline", 0)]),
        ("delivered to one watcher (added)",
         counts[("runstream", 1)] - counts[("runstream", 0)],
         counts[("baseline", 1)] - counts[("baseline", 0)]),
    ):  # fmt: skip
        row(label, thousands(ours), thousands(theirs), ratio(ours, theirs))


def _p(result: harness.OpenLoop) -> str:
    latency = result.latency
    return f"{latency.get('p50', 0):.2f} / {latency.get('p99', 0):.2f} ms"


def _lost(result: harness.OpenLoop) -> str:
    latency = result.latency
    bad = latency["lost"] + latency["repeated"]
    return "none lost" if not bad else f"{latency['lost']} lost, {latency['repeated']} repeated"


def _clients(result: harness.OpenLoop) -> str:
    """How busy the watcher processes kept their core: near 100 %, they set the latency."""
    return f"{100 * result.extra['clients_cpu'] / result.took:.0f} %"


def bench_openloop(seconds: float, repeats: int) -> None:
    header(
        f"open loop: a producer at a steady rate, N watchers ({repeats} runs of {seconds:g} s;"
        " p50 and p99 are the runs' medians, then the lowest and highest p99)"
    )
    # The last: 1,000 watchers 10 to a connection ("10/conn"), as a proxy (Envoy) multiplexes
    # them onto its connections to the server.
    for watchers, rate, procs, shared in (
        (1, 200, 1, 1),
        (100, 100, 1, 1),
        (1000, 10, 2, 1),
        (1000, 10, 2, 10),
    ):
        count = int(rate * seconds)
        runs: dict[str, list[harness.OpenLoop]] = {"runstream": [], "baseline": []}
        for _ in range(repeats):  # interleaved, so both meet the same background load
            for system, results in runs.items():
                with server(system) as srv:
                    results.append(
                        harness.open_loop(
                            srv,
                            watchers=watchers,
                            rate=rate,
                            count=count,
                            watcher_procs=procs,
                            per_channel=shared,
                        )
                    )
        rs, bl = runs["runstream"], runs["baseline"]
        name = f"{watchers} x {rate}/s" + (f", {shared}/conn" if shared > 1 else "")
        row(f"{name}: p50 / p99", _p_runs(rs), _p_runs(bl), ratio(_p99(rs), _p99(bl)))
        row(f"{name}: p99 range", _p99_range(rs), _p99_range(bl))
        rs_busy = statistics.median(r.server_busy for r in rs)
        bl_busy = statistics.median(r.server_busy for r in bl)
        row(
            f"{name}: server core busy",
            f"{100 * rs_busy:.0f} %",
            f"{100 * bl_busy:.0f} %",
            ratio(rs_busy, bl_busy),
        )
        if watchers >= 1000:  # sending one event to every watcher: the fan-out's own time
            rs_ms = statistics.median(r.server_cpu / r.events * 1e3 for r in rs)
            bl_ms = statistics.median(r.server_cpu / r.events * 1e3 for r in bl)
            row(
                f"{name}: server CPU per event",
                f"{rs_ms:.1f} ms",
                f"{bl_ms:.1f} ms",
                ratio(rs_ms, bl_ms),
            )
        delivered = sum(r.latency["events"] for r in rs)
        lost = sum(r.latency["lost"] + r.latency["repeated"] for r in rs + bl)
        row(f"{name}: events delivered", f"{delivered:,}", "", "none lost" if not lost else "LOST")
        row(f"{name}: watchers' core busy", _clients(rs[-1]), _clients(bl[-1]))
        if watchers == 1:  # the same without waiting for the disk: the delivery path alone
            normal = []
            for _ in range(repeats):
                with server("runstream", sync="NORMAL") as srv:
                    normal.append(harness.open_loop(srv, watchers=1, rate=rate, count=count))
            row(
                f"{name}, synchronous=NORMAL: p50 / p99",
                _p_runs(normal),
                _p_runs(bl),
                ratio(_p99(normal), _p99(bl)),
            )
            row(f"{name}, synchronous=NORMAL: p99 range", _p99_range(normal), _p99_range(bl))
            row("disk: 4 KiB append + fdatasync, p50 / p99", _fsync_latency())


def _fsync_latency(samples: int = 500) -> str:
    """What a FULL commit waits for on this disk, beside the latency it adds: one 4 KiB
    append and its fdatasync, 200 times a second, in the directory the bench's stores use."""
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(os.path.join(tmp, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            took = []
            for _ in range(samples):
                start = time.perf_counter()
                os.write(fd, b"x" * 4096)
                os.fdatasync(fd)
                took.append((time.perf_counter() - start) * 1e3)
                time.sleep(0.005)
        finally:
            os.close(fd)
    took.sort()
    return f"{took[len(took) // 2]:.2f} / {took[int(len(took) * 0.99)]:.2f} ms"


def _p99(results: list[harness.OpenLoop]) -> float:
    return float(statistics.median(r.latency.get("p99", 0.0) for r in results))


def _p_runs(results: list[harness.OpenLoop]) -> str:
    p50 = statistics.median(r.latency.get("p50", 0.0) for r in results)
    return f"{p50:.2f} / {_p99(results):.2f} ms"


def _p99_range(results: list[harness.OpenLoop]) -> str:
    p99s = [r.latency.get("p99", 0.0) for r in results]
    return f"{min(p99s):.1f} - {max(p99s):.1f} ms"


def bench_sustained(seconds: float, search_seconds: float) -> None:
    header(f"sustained: one run fed 10,000 events/s for {seconds:g} s, 100 watchers")
    with server("runstream") as srv:
        rs = harness.open_loop(srv, watchers=100, rate=10_000, count=int(10_000 * seconds))
    row("p50 / p99", _p(rs))
    row("events delivered", f"{rs.latency['events']:,}", "", _lost(rs))
    row("server core busy", f"{100 * rs.server_busy:.0f} %")
    row("watchers' core busy", _clients(rs))
    row("producer kept up", f"{rs.events / rs.took:,.0f} events/s")
    ladder = (2_000, 5_000, 10_000, 20_000, 30_000, 40_000)
    for watchers, rates in ((100, ladder), (10, ladder[1:])):
        best, stopped = 0, ""
        for rate in rates:
            with server("runstream") as srv:
                res = harness.open_loop(
                    srv, watchers=watchers, rate=rate, count=int(rate * search_seconds)
                )
            fed = res.events / res.took
            if fed < 0.95 * rate:  # the producer, on the server's core, fell behind
                stopped = f"{rate:,}/s: fed only {fed:,.0f}/s"
                break
            if res.latency.get("p99", 1e9) >= 50:
                stopped = f"{rate:,}/s: p99 {res.latency.get('p99', 0):.0f} ms"
                break
            best = rate
        row(
            f"highest rate with p99 < 50 ms, {watchers} watchers",
            f"{best:,} events/s" if best else f"< {rates[0]:,}/s",
        )
        row("  the next rate tried", stopped or "none: the highest tried")


# --- idle and burst ------------------------------------------------------------------------


def _hold_watchers(
    srv: harness.Server, watchers: int, *, per_channel: int, procs: int, mode: str
) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Opens `watchers` streams from `procs` processes, each process's on a run of its own
    (the server allows 5,000 watchers per run by default); returns their reports and a
    closer."""
    stack = ExitStack()
    options = ("--per-channel", str(per_channel), "--mode", mode)
    shares = [watchers // procs + (i < watchers % procs) for i in range(procs)]
    started = [
        proc
        for n in shares
        for proc in harness.start_watchers(stack, srv, _new_run(srv), n, 1, *options)
    ]
    if srv.system == "baseline":
        _publish_until(srv, started)
    return [proc.read(300) for proc in started], stack.close


def _publish_until(srv: harness.Server, procs: list[harness.Proc]) -> None:
    """The baseline sends nothing by itself: a hello every 100 ms marks its streams open."""
    import select

    pipes = [p.stdout for p in procs]
    payload = event_pb2.RunEvent(custom=event_pb2.Custom(type="w")).SerializeToString()

    async def hello() -> None:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            publish = channel.unary_unary(
                "/bench.Baseline/Publish", request_serializer=None, response_deserializer=None
            )
            while len(select.select(pipes, [], [], 0)[0]) < len(pipes):
                with contextlib.suppress(grpc.aio.AioRpcError):  # refused in a burst: again
                    await publish(payload + (1).to_bytes(2, "big"))
                await asyncio.sleep(0.1)

    asyncio.run(hello())


def _new_run(srv: harness.Server) -> str:
    if srv.system != "runstream":
        return "-"

    async def create() -> str:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            created: run_service_pb2.CreateRunResponse = await runs.CreateRun(
                run_service_pb2.CreateRunRequest(workflow="idle")
            )
            return created.run.run_id

    return asyncio.run(create())


def bench_idle(sizes: tuple[int, ...]) -> None:
    header("idle watchers: server memory (RSS) per open watch stream, up to 5,000 per run")
    for watchers in sizes:
        # 20,000 connections do not fit the 20,000 descriptors a process may hold here.
        per_channel = 1 if watchers <= 5_000 else 10
        procs = max(1, watchers // 5_000)
        figures: dict[str, tuple[float, int]] = {}
        for system in ("runstream", "baseline"):
            with server(system) as srv:
                time.sleep(0.5)
                before = srv.rss()
                reports, close = _hold_watchers(
                    srv, watchers, per_channel=per_channel, procs=procs, mode="idle"
                )
                try:
                    time.sleep(1.0)
                    opened = sum(r.get("ready", 0) for r in reports)
                    figures[system] = ((srv.rss() - before) / max(1, opened) / 1024, opened)
                finally:
                    close()
        (rs_kib, rs_open), (bl_kib, bl_open) = figures["runstream"], figures["baseline"]
        sharing = "" if per_channel == 1 else f", {per_channel} per connection"
        row(
            f"{watchers:,} watchers{sharing}: KiB each",
            f"{rs_kib:.1f} KiB ({rs_open:,} open)",
            f"{bl_kib:.1f} KiB ({bl_open:,})",
            ratio(rs_kib, bl_kib),
        )


def bench_burst(watchers: int) -> None:
    header(
        f"burst: {watchers:,} watchers connecting at once over 4 runs, one connection each,"
        " no retry"
    )
    results = {}
    for system in ("runstream", "baseline"):
        with server(system) as srv:
            t0 = time.perf_counter()
            reports, close = _hold_watchers(srv, watchers, per_channel=1, procs=4, mode="burst")
            took = time.perf_counter() - t0
            try:
                opened = sum(r["opened"] for r in reports)
                failed: dict[str, int] = {}
                for report in reports:
                    for code, n in report["failed"].items():
                        failed[code] = failed.get(code, 0) + n
                results[system] = (opened, failed, took)
            finally:
                close()

    def refused(system: str) -> str:
        failed = results[system][1]
        return ", ".join(f"{n:,} {code}" for code, n in failed.items()) or "none"

    row(
        "streams open",
        f"{results['runstream'][0]:,} in {results['runstream'][2]:.0f} s",
        f"{results['baseline'][0]:,} in {results['baseline'][2]:.0f} s",
    )
    row("refused on the first try", refused("runstream"), refused("baseline"))


# --- producer ------------------------------------------------------------------------------


def bench_producer(seconds: float, full: int) -> None:
    header(
        "the SDK producer's CPU per event (its own process, server on the same core); the"
        " other column: a bare grpc.aio client, one Report message per event"
    )
    figures: dict[tuple[str, str], float] = {}
    for name, rate, count in (
        ("at 200 events/s", 200.0, int(200 * seconds)),
        ("at full speed", 0.0, full),
    ):
        for client in ("runstream", "bare"):
            figures[(name, client)] = _producer_cpu_us(rate, count, client)
        sdk, bare = figures[(name, "runstream")], figures[(name, "bare")]
        row(name, f"{sdk:.1f} us", f"{bare:.1f} us", ratio(sdk, bare))
    low, top = "at 200 events/s", "at full speed"
    row(
        "low rate / full speed",
        ratio(figures[(low, "runstream")], figures[(top, "runstream")]),
        ratio(figures[(low, "bare")], figures[(top, "bare")]),
    )
    # The SDK's opt-in linger: fewer, fuller messages at a low rate, paid for in latency.
    row("200 events/s, the SDK's linger:", "CPU, x full speed", "p50 / p99, 1 watcher")
    for linger in (0.0, 0.02, 0.1):
        with server("runstream") as srv:
            result = harness.open_loop(
                srv, watchers=1, rate=200, count=int(200 * seconds), linger=linger
            )
        cpu = result.producer_cpu / result.events * 1e6
        full_speed = ratio(cpu, figures[(top, "runstream")])
        row(f"  linger {linger:g} s", f"{cpu:.1f} us, {full_speed}", _p(result))
    # What waking up 200 times a second costs a process before it reports anything.
    floor = _producer_cpu_us(200.0, int(200 * seconds), "nothing")
    full_speed = ratio(floor, figures[(top, "runstream")])
    row("  no SDK: a process waking 200 times/s", f"{floor:.1f} us, {full_speed}")


def _producer_cpu_us(rate: float, count: int, client: str) -> float:
    """A loadgen producer's CPU per event reporting to a fresh Runstream server."""
    with server("runstream") as srv:
        return _report_cpu_us(srv, rate, count, client)[0]


def _report_cpu_us(
    srv: harness.Server, rate: float, count: int, client: str, *, closed: bool = False
) -> tuple[float, float]:
    """The producer's and the server's CPU per event while a loadgen producer (`client`:
    runstream, bare or nothing) reports `count` events at `rate`/s (0: at once; `closed`:
    each after the previous one's ack)."""
    argv = harness.producer_argv(srv, rate, count, closed=closed, client=client)
    with spawn(argv, None) as producer:
        producer.read()
        cpu0 = srv.cpu()
        producer.send("go")
        done = producer.read(600)
        server_cpu = srv.cpu() - cpu0
    return float(done["cpu"]) / count * 1e6, server_cpu / count * 1e6


def bench_replicas(seconds: float) -> None:
    runs, watchers, rate = 4, 25, 1_000
    header(
        f"replicas on one Redis store: {runs} runs at {rate:,}/s with {watchers} watchers each;"
        " producers and watchers on either core"
    )
    count = int(rate * seconds)
    for replicas in (1, 2):
        with ExitStack() as stack:
            url = stack.enter_context(harness.redis_server(harness.EVERY_CORE))
            servers = [
                stack.enter_context(server("runstream", store=url, cpu=harness.CORES[i]))
                for i in range(replicas)
            ]
            latency, busy, took = harness.spread_load(
                servers, runs=runs, watchers=watchers, rate=rate, count=count
            )
        cores = " + ".join(f"{100 * b:.0f} %" for b in busy)
        name = f"{replicas} process{'es' if replicas > 1 else ''}"
        row(f"{name}: p50 / p99", f"{latency['p50']:.1f} / {latency['p99']:.1f} ms")
        row(f"{name}: server cores busy", cores)
        row(
            f"{name}: events in / delivered",
            f"{runs * count / took:,.0f}/s / {latency['events']:,}",
        )


# --- observability: metrics and traces on versus off ----------------------------------------


async def _append_with(extra: tuple[str, ...], count: int) -> tuple[float, float]:
    """SDK producer throughput (events/s) and server CPU per appended event (us)."""
    import runstream

    with server("runstream", sync="NORMAL", extra=extra) as srv:
        async with runstream.connect(srv.target) as client:
            run = await client.start_run("bench-observability", steps=["a", "b"])
            cpu0, t0 = srv.cpu(), time.perf_counter()
            async with run.step("a"):
                for n in range(count):
                    await run.custom("tick", {"n": n})
            await run.complete()
            took, cpu = time.perf_counter() - t0, srv.cpu() - cpu0
    return count / took, cpu / count * 1e6


def _trace_sink() -> tuple[Any, int]:
    """An OTLP/gRPC trace receiver that discards what it gets, as a collector's would. It
    answers from threads of its own: a server stopping with traces on exports its last spans
    while the bench's event loop waits, blocked, for it to exit (a sink on that loop answered
    too late, and gRPC printed each cancelled Export's traceback)."""
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    class Sink(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            return trace_service_pb2.ExportTraceServiceResponse()

    sink = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Sink(), sink)
    port = sink.add_insecure_port("127.0.0.1:0")
    sink.start()
    return sink, port


async def bench_observability(count: int, events: int, rounds: int = 3) -> None:
    sink, port = _trace_sink()
    configs = {
        "off": (),
        "metrics": ("--metrics-address", "127.0.0.1:0"),
        "metrics+traces": (
            "--metrics-address",
            "127.0.0.1:0",
            "--otlp-endpoint",
            f"http://127.0.0.1:{port}",
        ),
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
    try:
        for _ in range(rounds):  # alternate, so drift in the machine's load hits all alike
            for name, extra in configs.items():
                rate, cpu = await _append_with(extra, count)
                _, fan_cpu = await fanout_runstream(100, events, extra)
                for key, value in (("rate", rate), ("cpu", cpu), ("fan", fan_cpu)):
                    results[name].setdefault(key, []).append(value)
    finally:
        sink.stop(0)

    def median(name: str, key: str) -> float:
        values = sorted(results[name][key])
        return values[len(values) // 2]

    print(f"\n== observability: metrics and traces off vs on (median of {rounds} rounds)")
    print(f"  {'':<44} {'off':>12} {'metrics':>12} {'+ traces':>12}")
    for label, key, unit in (
        ("append: SDK producer, sync NORMAL", "rate", "ev/s"),
        ("append: server CPU per event", "cpu", "us"),
        ("fan-out 100 watchers: server CPU per delivery", "fan", "us"),
    ):
        off = median("off", key)
        cells = [f"{off:,.0f} {unit}" if key == "rate" else f"{off:.2f} {unit}"]
        for name in ("metrics", "metrics+traces"):
            value = median(name, key)
            cells.append(f"{100 * (value - off) / off:+.1f} %")
        print(f"  {label:<44} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12}")


# --- the watcher's side --------------------------------------------------------------------


def _mixed_event(n: int) -> event_pb2.RunEvent:
    """One of a run's events as a multi-agent run reports them: mostly streamed model output,
    then agents' activity, thoughts and custom events with a little data."""
    which = n % 10
    if which < 6:
        return event_pb2.RunEvent(
            text_delta=event_pb2.TextDelta(agent_id="writer", message_id="m1", delta=" word")
        )
    if which < 8:
        return event_pb2.RunEvent(
            agent_activity=event_pb2.AgentActivity(
                agent_id="researcher",
                activity=event_pb2.AGENT_ACTIVITY_TYPE_PROGRESS,
                message="searching the web",
            )
        )
    if which == 8:
        return event_pb2.RunEvent(
            thinking=event_pb2.Thinking(agent_id="manager", analysis="the draft needs sources")
        )
    return custom_event(n, size=16)


async def bench_watcher(events: int) -> None:
    print(
        "\n== a watcher's CPU per event, reading a run's log of "
        f"{events:,} events as fast as it comes (the best of 5 reads each)"
    )
    row("", "SDK watch()", "bare stub", "ratio")
    import runstream

    with server("runstream", sync="NORMAL") as srv:
        async with grpc.aio.insecure_channel(srv.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            append = report_service_pb2_grpc.ReportServiceStub(channel).AppendEvents
            created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="bench"))
            run_id = created.run.run_id
            for start in range(0, events, 500):
                batch = [_mixed_event(n) for n in range(start, min(events, start + 500))]
                await append(report_service_pb2.AppendEventsRequest(run_id=run_id, events=batch))
            done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
            await append(report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done]))

            async def bare() -> int:
                read = 0
                async for response in runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id)):
                    read += len(response.events)
                return read

            async with runstream.connect(srv.target) as client:

                async def sdk() -> int:
                    read = 0
                    async for _event in client.watch(run_id):
                        read += 1
                    return read

                cpu: dict[str, list[float]] = {"sdk": [], "bare": []}
                for _ in range(5):
                    for name, read_all in (("sdk", sdk), ("bare", bare)):
                        cpu0 = time.process_time()
                        read = await read_all()
                        cpu[name].append((time.process_time() - cpu0) / read * 1e6)
    ours, theirs = min(cpu["sdk"]), min(cpu["bare"])
    row("CPU per event", f"{ours:.2f} us", f"{theirs:.2f} us", ratio(ours, theirs))


async def bench_async(only: set[str], scale: float) -> None:
    if "append" in only:
        await bench_append(int(10_000 * scale))
    if "fanout" in only:
        await bench_fanout(int(5_000 * scale))
    if "observability" in only:
        await bench_observability(int(20_000 * scale), int(2_000 * scale))
    if "watcher" in only:
        await bench_watcher(int(50_000 * scale))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    args = parser.parse_args()
    tree = os.environ.get("RUNSTREAM_TREE")
    path = os.pathsep.join([f"{tree}/src/server", f"{tree}/src/clients/python"])
    if tree and not os.environ.get("PYTHONPATH", "").startswith(path):
        # Every process of the bench, this one included, imports that tree's code.
        os.environ["PYTHONPATH"] = path
        os.execv(sys.executable, [sys.executable, *sys.argv])
    only = set(args.only.split(","))
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    scale = 0.2 if args.quick else 1.0
    if args.quick:
        print(
            "--quick: a smoke run. CPU is read in clock ticks of 10 ms, over a fifth of the "
            "events: CPU figures and their ratios move by a tick's worth; compare full runs."
        )
    os.sched_setaffinity(0, {CLIENT_CPU})
    print(
        "Runstream benchmarks (loopback; figures, not pass/fail); "
        f"server core {SERVER_CPU}, client core {CLIENT_CPU}"
        + (f"; server and SDK from {tree}" if tree else "")
    )
    started = time.perf_counter()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(bench_async(only, scale))
    if "message" in only:
        bench_message(int(2_000 * scale), 5 if scale == 1.0 else 2)
    if "ingest" in only:
        bench_ingest(int(2_000 * scale))
    if "openloop" in only:
        bench_openloop(6 * scale, 3)
    if "sustained" in only:
        bench_sustained(20 * scale, 5 * scale)
    if "idle" in only:
        bench_idle((1_000, 5_000, 20_000) if not args.quick else (500, 1_000))
    if "burst" in only:
        bench_burst(10_000 if not args.quick else 2_000)
    if "producer" in only:
        bench_producer(10 * scale, int(20_000 * scale))
    if "replicas" in only:
        bench_replicas(10 * scale)
    if "stacks" in only:
        stacks.bench_stacks(6 * scale, 3 if scale == 1.0 else 1)
    if "instructions" in only:
        bench_instructions()
    print(f"\n(took {time.perf_counter() - started:.0f} s)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
