"""Runstream beside the stack it replaces: an SSE / WebSocket gateway on Redis pub/sub
(stacks_gateway.py, built as the reference systems build theirs), in one run.

``bench/run.py --only stacks`` runs it. Each system gets the same producer rate and the same
watchers, on the same cores: Runstream (SQLite, ``synchronous=FULL``: every event durable
before any watcher sees it) on the server's core; the gateway and its redis-server together
on that core; producers beside their servers, watchers on the other core. Runstream's
watchers are raw WatchRun streams, the gateway's a raw SSE reader and the websockets
library. Then each watcher drops its stream once for a second, as a browser does on a network
blip, and comes back: Runstream's resume after the last seq they saw, the gateway's simply
connect again, as an EventSource or a WebSocket hook does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import harness

SYSTEMS: dict[str, Callable[[], AbstractContextManager[harness.Server]]] = {
    "runstream": lambda: harness.server("runstream"),
    "sse": lambda: harness.gateway("sse"),
    "ws": lambda: harness.gateway("ws"),
}


def _row(name: str, cells: Iterator[str]) -> None:
    print(f"  {name:<40}" + "".join(f"{cell:>22}" for cell in cells))


def _p50_p99(results: list[harness.OpenLoop]) -> str:
    p50 = statistics.median(r.latency.get("p50", 0.0) for r in results)
    p99 = statistics.median(r.latency.get("p99", 0.0) for r in results)
    return f"{p50:.2f} / {p99:.2f} ms"


def _lost(results: list[harness.OpenLoop]) -> str:
    lost = sum(r.latency["lost"] for r in results)
    repeated = sum(r.latency["repeated"] for r in results)
    return f"{lost:,} lost" + (f", {repeated:,} twice" if repeated else "")


def bench_stacks(seconds: float, repeats: int) -> None:
    print(
        "\n== beside the stack it replaces: an SSE / WebSocket gateway on Redis pub/sub "
        f"({repeats} runs of {seconds:g} s, medians)"
    )
    _row("", iter(("Runstream (durable)", "SSE + Redis pub/sub", "WebSocket + pub/sub")))
    for watchers, rate, procs in ((100, 100, 1), (1000, 10, 2)):
        count = int(rate * seconds)
        runs: dict[str, list[harness.OpenLoop]] = {system: [] for system in SYSTEMS}
        for _ in range(repeats):  # interleaved, so all meet the same background load
            for system, start in SYSTEMS.items():
                with start() as srv:
                    runs[system].append(
                        harness.open_loop(
                            srv, watchers=watchers, rate=rate, count=count, watcher_procs=procs
                        )
                    )
        name = f"{watchers} x {rate}/s"
        _row(f"{name}: p50 / p99", (_p50_p99(r) for r in runs.values()))
        busy = (statistics.median(x.server_busy for x in r) for r in runs.values())
        _row(f"{name}: server core busy", (f"{100 * b:.0f} %" for b in busy))
        per = (
            statistics.median(x.server_cpu / (x.events * watchers) * 1e6 for x in r)
            for r in runs.values()
        )
        _row(f"{name}: server CPU per delivery", (f"{us:.0f} us" for us in per))
        _row(f"{name}: events lost", (_lost(r) for r in runs.values()))
    # Each watcher drops out after a third of the events, for a second.
    watchers, rate = 100, 100
    count = int(rate * max(seconds, 4.0))
    dropped: dict[str, list[harness.OpenLoop]] = {system: [] for system in SYSTEMS}
    for system, start in SYSTEMS.items():
        with start() as srv:
            result = harness.open_loop(
                srv, watchers=watchers, rate=rate, count=count, drop_after=count // 3
            )
            dropped[system].append(result)
    name = f"{watchers} x {rate}/s, each away 1 s once"
    sent = watchers * count
    _row(f"{name}: received", (f"{r[0].latency['events']:,} of {sent:,}" for r in dropped.values()))
    _row(f"{name}: events lost", (_lost(r) for r in dropped.values()))
