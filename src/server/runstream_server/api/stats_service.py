"""StatsService: one replica's key figures in one message, from the server's telemetry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2
from grpc import aio
from runstream.v1 import stats_service_pb2 as pb
from runstream.v1 import stats_service_pb2_grpc

from runstream_server.domain.state import to_timestamp
from runstream_server.observability.telemetry import Telemetry

Context = aio.ServicerContext[Any, Any]


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


class StatsServicer(stats_service_pb2_grpc.StatsServiceServicer):
    """Answers GetStats from :class:`Telemetry`; the store's kind and size come from the app."""

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        version: str,
        store_kind: str,
        store_size: Callable[[], int],
    ) -> None:
        self._telemetry = telemetry
        self._version = version
        self._store_kind = store_kind
        self._store_size = store_size

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.GetStatsResponse:
        t = self._telemetry
        p50, p99 = t.append_latency.percentiles(0.5, 0.99)
        streams = dict(t.open_streams)
        stats = pb.ServerStats(
            server_version=self._version,
            start_time=to_timestamp(t.started),
            uptime=_duration(t.uptime_seconds()),
            runs_by_status=[
                pb.RunStatusCount(status=status, count=count)  # type: ignore[arg-type]
                for status, count in sorted(t.runs.by_status().items())
            ],
            watchers=streams.get("WatchRun", 0),
            producers=streams.get("Report", 0),
            watch_runs_streams=streams.get("WatchRuns", 0),
            interact_streams=streams.get("Interact", 0),
            open_decisions=t.open_decision_count(),
            events_appended_last_minute=t.appended.total(),
            events_delivered_last_minute=t.delivered_recently.total(),
            append_latency_p50=_duration(p50),
            append_latency_p99=_duration(p99),
            events_appended_total=t.events_appended_total,
            events_delivered_total=t.events_delivered_total,
            store_errors_total=t.store_errors_total,
            store_kind=self._store_kind,
            store_size_bytes=self._store_size(),
        )
        return pb.GetStatsResponse(stats=stats)
