"""A server replica's key figures (StatsService.GetStats) as a typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from runstream._readers import timestamp_to_datetime
from runstream._types import RunStatus
from runstream.v1 import stats_service_pb2

__all__ = ["ServerStats", "stats_from_pb"]


@dataclass(frozen=True, slots=True)
class ServerStats:
    """One replica's figures as of the call; "last minute" figures cover the 60 s before it.

    Attributes:
        server_version: The Runstream version the replica runs.
        start_time: When the replica started serving.
        uptime: How long it has been serving.
        runs_by_status: Runs in the store by status (statuses with none are left out); every
            replica on a shared store reports the whole store's.
        watchers: Open WatchRun streams.
        producers: Open Report streams.
        watch_runs_streams: Open WatchRuns streams.
        interact_streams: Open DecisionService.Interact streams.
        open_decisions: Decisions asked and not yet resolved.
        events_appended_last_minute: Events durably appended in the last minute.
        events_delivered_last_minute: Events sent to watchers in the last minute.
        append_latency_p50: Median time of one durable append in the last minute.
        append_latency_p99: 99th percentile of the same.
        events_appended_total: Events appended since the replica started.
        events_delivered_total: Events delivered since the replica started.
        store_errors_total: Failed store operations since the replica started.
        store_kind: "sqlite" or "redis".
        store_size_bytes: The SQLite files' size on disk; 0 for Redis.
    """

    server_version: str
    start_time: datetime
    uptime: timedelta
    runs_by_status: dict[RunStatus, int]
    watchers: int
    producers: int
    watch_runs_streams: int
    interact_streams: int
    open_decisions: int
    events_appended_last_minute: int
    events_delivered_last_minute: int
    append_latency_p50: timedelta
    append_latency_p99: timedelta
    events_appended_total: int
    events_delivered_total: int
    store_errors_total: int
    store_kind: str
    store_size_bytes: int
    raw: stats_service_pb2.ServerStats = field(repr=False, compare=False)


def _status(value: int) -> RunStatus:
    try:
        return RunStatus(value)
    except ValueError:  # a status added by a newer server
        return RunStatus.UNSPECIFIED


def stats_from_pb(message: stats_service_pb2.ServerStats) -> ServerStats:
    runs: dict[RunStatus, int] = {}
    for entry in message.runs_by_status:
        status = _status(entry.status)
        runs[status] = runs.get(status, 0) + entry.count
    return ServerStats(
        server_version=message.server_version,
        start_time=timestamp_to_datetime(message.start_time),
        uptime=message.uptime.ToTimedelta(),
        runs_by_status=runs,
        watchers=message.watchers,
        producers=message.producers,
        watch_runs_streams=message.watch_runs_streams,
        interact_streams=message.interact_streams,
        open_decisions=message.open_decisions,
        events_appended_last_minute=message.events_appended_last_minute,
        events_delivered_last_minute=message.events_delivered_last_minute,
        append_latency_p50=message.append_latency_p50.ToTimedelta(),
        append_latency_p99=message.append_latency_p99.ToTimedelta(),
        events_appended_total=message.events_appended_total,
        events_delivered_total=message.events_delivered_total,
        store_errors_total=message.store_errors_total,
        store_kind=message.store_kind,
        store_size_bytes=message.store_size_bytes,
        raw=message,
    )
