"""Prometheus metrics (the ``prometheus_client`` library), served on ``--metrics-address``.

Names follow Prometheus conventions: a ``runstream_`` prefix, ``_total`` on counters, base
units (``_seconds``), and bounded label sets only: a method, a status code, an event kind, a
run status or health, a store operation; never a run id. Counters and histograms are updated
where things happen; gauges of current state (streams open, runs by status, open decisions)
are read from :class:`~runstream_server.observability.telemetry.Telemetry` when scraped,
and so are the counters and histograms updated on the hot path (events appended by kind,
delivered, append duration, watcher lag): the telemetry keeps them as plain integers, which
costs a delivery far less than a Prometheus metric's lock.

The registry is the server's own, not the library's global one, so several servers in one
process (tests, the embedded demo) each have theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runstream.v1 import event_pb2, run_pb2

from runstream_server.observability.windows import Buckets

if TYPE_CHECKING:
    from runstream_server.observability.telemetry import Telemetry

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - the observability extra is not installed
    prometheus_client = None  # type: ignore[assignment]
    Collector = object  # type: ignore[assignment,misc]

__all__ = ["MetricsUnavailable", "PrometheusMetrics"]

_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600)
_ANSWER_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 86400)


class MetricsUnavailable(RuntimeError):
    """The metrics library is not installed."""


def _kind_label(kind: int) -> str:
    try:
        return event_pb2.EventKind.Name(kind).removeprefix("EVENT_KIND_").lower()
    except ValueError:
        return "unknown"


KIND_LABELS = {kind: _kind_label(kind) for kind in event_pb2.EventKind.values()}
STATUS_LABELS = {
    s: run_pb2.RunStatus.Name(s).removeprefix("RUN_STATUS_").lower()
    for s in run_pb2.RunStatus.values()
    if s
}
HEALTH_LABELS = {
    h: run_pb2.RunHealth.Name(h).removeprefix("RUN_HEALTH_").lower()
    for h in run_pb2.RunHealth.values()
}
"""Every health, RUN_HEALTH_UNSPECIFIED included as "unspecified" (a PENDING run that has
not been assessed yet), so the gauge adds up to the runs not ended."""


def _histogram(name: str, documentation: str, buckets: Buckets) -> Any:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], buckets.cumulative(), sum_value=buckets.sum)
    return family


def _metrics_path_only(app: Any) -> Any:
    """`app` at /metrics, 404 at every other path (as Prometheus' Go client answers)."""

    def serve_metrics_path(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/metrics":
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"404 page not found: the metrics are at /metrics\n"]

    return serve_metrics_path


class _StateCollector(Collector):
    """The state gauges and the hot-path counters and histograms, read from the telemetry
    at scrape time."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Any]:
        t = self._telemetry
        streams = dict(t.open_streams)
        for name, method, doc in (
            ("runstream_watchers", "WatchRun", "Open WatchRun streams (watchers of one run)."),
            ("runstream_producers", "Report", "Open Report streams (producers)."),
            ("runstream_watch_runs_streams", "WatchRuns", "Open WatchRuns streams."),
            ("runstream_interact_streams", "Interact", "Open DecisionService.Interact streams."),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], streams.get(method, 0))
            yield gauge
        runs = GaugeMetricFamily(
            "runstream_runs", "Runs in the store by status.", labels=["status"]
        )
        by_status = t.runs.by_status()
        for status, label in STATUS_LABELS.items():
            runs.add_metric([label], by_status.get(status, 0))
        yield runs
        health = GaugeMetricFamily(
            "runstream_active_runs", "Runs not yet ended, by health.", labels=["health"]
        )
        by_health = t.runs.active_by_health()
        for value, label in HEALTH_LABELS.items():
            health.add_metric([label], by_health.get(value, 0))
        yield health
        decisions = GaugeMetricFamily(
            "runstream_decisions_open", "Decisions waiting for an answer."
        )
        decisions.add_metric([], t.open_decision_count())
        yield decisions
        appended = CounterMetricFamily(
            "runstream_events_appended",
            "Events durably appended, by kind (producers' and the server's own).",
            labels=["kind"],
        )
        for kind, n in sorted(dict(t.appended_by_kind).items()):
            appended.add_metric([KIND_LABELS.get(kind) or _kind_label(kind)], n)
        yield appended
        delivered = CounterMetricFamily("runstream_events_delivered", "Events sent to watchers.")
        delivered.add_metric([], t.events_delivered_total)
        yield delivered
        yield _histogram(
            "runstream_append_duration_seconds",
            "Time one durable append (one batch) took in the store.",
            t.append_seconds,
        )
        yield _histogram(
            "runstream_watcher_lag_events",
            "How many events a watcher was still behind the run's head after each delivery.",
            t.watcher_lag,
        )
        uptime = GaugeMetricFamily("runstream_uptime_seconds", "Seconds since the server started.")
        uptime.add_metric([], t.uptime_seconds())
        yield uptime


class PrometheusMetrics:
    """The server's collectors on its own registry, and the HTTP endpoint that serves them."""

    def __init__(self) -> None:
        if prometheus_client is None:
            raise MetricsUnavailable(
                "metrics need the prometheus-client package: pip install 'runstream[observability]'"
            )
        pc = prometheus_client
        self.registry = pc.CollectorRegistry(auto_describe=True)
        reg = self.registry
        pc.ProcessCollector(registry=reg)
        pc.PlatformCollector(registry=reg)
        self.rpc_requests = pc.Counter(
            "runstream_grpc_requests",
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
            registry=reg,
        )
        self.rpc_duration = pc.Histogram(
            "runstream_grpc_request_duration_seconds",
            "Time from a request's start to its status, by method (streams: their lifetime).",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=reg,
        )
        self.watcher_overflows = pc.Counter(
            "runstream_watcher_overflows",
            "Times a watcher fell too far behind and caught up from the store.",
            registry=reg,
        )
        self.watch_sends_stalled = pc.Counter(
            "runstream_watch_sends_stalled",
            "Watch streams (WatchRun, WatchRuns) ended because a message of theirs waited the "
            "send timeout to be sent: their client stopped reading.",
            registry=reg,
        )
        self.limit_refusals = pc.Counter(
            "runstream_limit_refusals",
            "Calls refused RESOURCE_EXHAUSTED by a caller or run limit, by the refusal's reason "
            "(WATCH_STREAM_LIMIT, REPORT_STREAM_LIMIT, RATE_LIMITED, TENANT_RUN_LIMIT, "
            "RUN_WATCHER_LIMIT).",
            ["limit"],
            registry=reg,
        )
        self.decision_answer = pc.Histogram(
            "runstream_decision_answer_seconds",
            "Time from a decision's request to its resolution, by outcome.",
            ["outcome"],
            buckets=_ANSWER_BUCKETS,
            registry=reg,
        )
        self.store_errors = pc.Counter(
            "runstream_store_errors",
            "Store operations that failed, by operation.",
            ["operation"],
            registry=reg,
        )
        self.store_conflicts = pc.Counter(
            "runstream_store_conflicts",
            "Appends another replica got to first (retried on the fresh head).",
            registry=reg,
        )
        self.store_reconnects = pc.Counter(
            "runstream_store_reconnects",
            "Times the shared store's notice subscription (Redis pub/sub) was re-established.",
            registry=reg,
        )
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.url = ""
        """Where /metrics is served, once it is."""

    def attach(self, telemetry: Telemetry) -> None:
        """Adds the state gauges read from `telemetry`."""
        self.registry.register(_StateCollector(telemetry))

    def serve(self, address: str) -> int:
        """Serves /metrics over HTTP on `address` (host:port; port 0 picks one; without a
        host, or a port alone: on every IPv4 interface)."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        assert prometheus_client is not None
        try:
            self._http, self._thread = prometheus_client.start_http_server(
                int(port), addr=host, registry=self.registry
            )
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
        # The library's app answers every path with the metrics ("for backwards
        # compatibility"), so a scrape or probe at a wrong path never failed. wsgiref's server
        # reads its app per request, so this takes before the port is known to anyone.
        self._http.set_app(_metrics_path_only(self._http.get_app()))
        self.port = int(self._http.server_address[1])
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
