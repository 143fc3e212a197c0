"""`runstream stats`: one server replica's key figures, as a table or as JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

import runstream

from .fmt import literal

__all__ = ["show_stats", "stats_json"]


def _ms(value: timedelta) -> str:
    return f"{value.total_seconds() * 1000:.2f} ms"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _uptime(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {text}" if days else text


def stats_json(stats: runstream.ServerStats) -> dict[str, Any]:
    """The figures as plain JSON values: seconds for durations, names for statuses."""
    return {
        "server_version": stats.server_version,
        "start_time": stats.start_time.isoformat(),
        "uptime_seconds": stats.uptime.total_seconds(),
        "runs_by_status": {s.name: n for s, n in stats.runs_by_status.items()},
        "watchers": stats.watchers,
        "producers": stats.producers,
        "watch_runs_streams": stats.watch_runs_streams,
        "interact_streams": stats.interact_streams,
        "open_decisions": stats.open_decisions,
        "events_appended_last_minute": stats.events_appended_last_minute,
        "events_delivered_last_minute": stats.events_delivered_last_minute,
        "append_latency_p50_seconds": stats.append_latency_p50.total_seconds(),
        "append_latency_p99_seconds": stats.append_latency_p99.total_seconds(),
        "events_appended_total": stats.events_appended_total,
        "events_delivered_total": stats.events_delivered_total,
        "store_errors_total": stats.store_errors_total,
        "store_kind": stats.store_kind,
        "store_size_bytes": stats.store_size_bytes,
    }


async def show_stats(client: runstream.Client, console: Console, *, as_json: bool) -> None:
    stats = await client.get_stats()
    if as_json:
        # Its strings are the server's names (version, store kind): nothing to keep readable,
        # and nothing beyond ASCII reaches the terminal as it is (rich re-dumps the JSON).
        console.print_json(json.dumps(stats_json(stats)), ensure_ascii=True)
        return
    runs = ", ".join(f"{s.name} {n}" for s, n in sorted(stats.runs_by_status.items())) or "none"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("server", f"Runstream {stats.server_version} at {client.target}"),
        ("uptime", f"{_uptime(stats.uptime)} (since {stats.start_time:%Y-%m-%d %H:%M:%S} UTC)"),
        ("runs", runs),
        ("watchers", str(stats.watchers)),
        ("producers", str(stats.producers)),
        ("WatchRuns streams", str(stats.watch_runs_streams)),
        ("Interact streams", str(stats.interact_streams)),
        ("open decisions", str(stats.open_decisions)),
        ("appended (last min)", f"{stats.events_appended_last_minute} events"),
        ("delivered (last min)", f"{stats.events_delivered_last_minute} events"),
        ("append p50 / p99", f"{_ms(stats.append_latency_p50)} / {_ms(stats.append_latency_p99)}"),
        (
            "since start",
            f"{stats.events_appended_total} appended, {stats.events_delivered_total} delivered, "
            f"{stats.store_errors_total} store errors",
        ),
        ("store", _store(stats.store_kind, stats.store_size_bytes)),
    ]
    for name, value in rows:
        table.add_row(name, literal(value))
    console.print(table)


def _store(kind: str, size: int) -> str:
    """The store and what it takes: a file's size on disk; Redis reports its memory itself
    (GetStats says 0 there, which read as an empty store)."""
    if kind == "redis":
        return "redis (its memory: INFO memory on the Redis)"
    return f"{kind}, {_bytes(size)}"
