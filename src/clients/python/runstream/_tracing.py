"""Trace context from the caller into the server: W3C ``traceparent`` with each call.

When the OpenTelemetry API is installed and a call starts inside a recording span, the SDK
sends that span's context as gRPC metadata (through the configured propagator, W3C trace
context by default). A server with tracing on continues the trace: its RPC spans are children
of the caller's span, and a run started inside a span is traced as part of the caller's
trace (the run's Report stream keeps the context of the moment the run was started, across
reconnects). Without OpenTelemetry, or outside any span, nothing is added.

It is metadata computed per call rather than a channel interceptor: interceptors would wrap
every call and stream of every client, traced or not.
"""

from __future__ import annotations

__all__ = ["trace_metadata"]

try:
    from opentelemetry import propagate, trace
except ImportError:  # the observability extra is not installed: nothing to propagate
    propagate = None  # type: ignore[assignment]


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current span's context as gRPC metadata pairs; () outside a span."""
    if propagate is None or not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())
