"""Operating the server: Prometheus metrics, GetStats figures, OpenTelemetry traces, logs.

Everything here observes the server from outside its domain, through three narrow hooks: the
store boundary (:mod:`.store`, every durable commit), the run manager's delivery observer
(:class:`~runstream_server.domain.observer.DeliveryObserver`) and a request interceptor
(:mod:`.interceptor`). :class:`~.telemetry.Telemetry` is the one sink they report to.
"""

from __future__ import annotations

from runstream_server.observability.interceptor import RequestInterceptor
from runstream_server.observability.metrics import MetricsUnavailable, PrometheusMetrics
from runstream_server.observability.store import ObservedStore
from runstream_server.observability.telemetry import Telemetry
from runstream_server.observability.tracing import (
    RpcTracer,
    RunTracer,
    TracingUnavailable,
    otlp_endpoint,
    tracer_provider,
)

__all__ = [
    "MetricsUnavailable",
    "ObservedStore",
    "PrometheusMetrics",
    "RequestInterceptor",
    "RpcTracer",
    "RunTracer",
    "Telemetry",
    "TracingUnavailable",
    "otlp_endpoint",
    "tracer_provider",
]
