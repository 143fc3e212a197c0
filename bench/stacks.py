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
from typing import Any

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


def _busy(results: list[harness.OpenLoop]) -> str:
    return f"{100 * statistics.median(r.server_busy for r in results):.0f} %"


def _per_delivery(watchers: int) -> Callable[[list[harness.OpenLoop]], str]:
    def cell(results: list[harness.OpenLoop]) -> str:
        us = statistics.median(r.server_cpu / (r.events * watchers) * 1e6 for r in results)
        return f"{us:.0f} us"

    return cell


def _each(
    runs: dict[str, list[harness.OpenLoop]], cell: Callable[[list[harness.OpenLoop]], str]
) -> Iterator[str]:
    """A row's cells: a system none of whose runs could open every watcher has none."""
    return (cell(results) if results else "did not open" for results in runs.values())


def _measure(runs: list[harness.OpenLoop], srv: harness.Server, **scenario: Any) -> None:
    """One run of a scenario; a system whose watchers could not all open (the gateway's
    core too busy to accept them) is said so and left out, and the bench goes on."""
    try:
        runs.append(harness.open_loop(srv, **scenario))
    except harness.WatchersFailed as exc:
        print(f"  ({exc}: left out)")


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
                    _measure(
                        runs[system],
                        srv,
                        watchers=watchers,
                        rate=rate,
                        count=count,
                        watcher_procs=procs,
                    )
        name = f"{watchers} x {rate}/s"
        _row(f"{name}: p50 / p99", _each(runs, _p50_p99))
        _row(f"{name}: server core busy", _each(runs, _busy))
        _row(f"{name}: server CPU per delivery", _each(runs, _per_delivery(watchers)))
        _row(f"{name}: events lost", _each(runs, _lost))
    # Each watcher drops out after a third of the events, for a second.
    watchers, rate = 100, 100
    count = int(rate * max(seconds, 4.0))
    dropped: dict[str, list[harness.OpenLoop]] = {system: [] for system in SYSTEMS}
    for system, start in SYSTEMS.items():
        with start() as srv:
            _measure(
                dropped[system],
                srv,
                watchers=watchers,
                rate=rate,
                count=count,
                drop_after=count // 3,
            )
    name = f"{watchers} x {rate}/s, each away 1 s once"
    sent = watchers * count
    _row(f"{name}: received", _each(dropped, lambda r: f"{r[0].latency['events']:,} of {sent:,}"))
    _row(f"{name}: events lost", _each(dropped, _lost))
