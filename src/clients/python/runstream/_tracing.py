"""Trace context from the caller into the server: W3C ``traceparent`` on every call.

When the OpenTelemetry API is installed and a call is made inside a recording span, the SDK
sends that span's context as gRPC metadata (through the configured propagator, W3C trace
context by default). A server with tracing on continues the trace: its RPC spans are children
of the caller's span, and a run created inside a span is traced as part of the caller's
trace. Without OpenTelemetry, or outside any span, nothing is added and nothing is paid.
"""

from __future__ import annotations

from typing import Any

from grpc import aio

__all__ = ["trace_interceptors"]

try:
    from opentelemetry import propagate, trace
except ImportError:  # the observability extra is not installed: nothing to propagate
    propagate = None  # type: ignore[assignment]


def _details(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
    if not trace.get_current_span().get_span_context().is_valid:
        return details
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return details
    metadata = aio.Metadata(*((k, v) for k, v in (details.metadata or ()) if k not in carrier))
    for key, value in carrier.items():
        metadata.add(key, value)
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details), request)


class _UnaryStream(aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details), request)


class _StreamUnary(aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details), request_iterator)


class _StreamStream(aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details), request_iterator)


def trace_interceptors() -> list[Any]:
    """Channel interceptors that send the current trace context (none without OpenTelemetry)."""
    if propagate is None:
        return []
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
