"""One server interceptor for every request: metrics, the request's log line and its span.

It sits outside the error interceptor, so it sees the final status code of every call. For
each call it records the request count and duration by method and code, keeps a count of
open streams by method (watchers, producers, WatchRuns), writes one log line when the call
ends (DEBUG, so ``--log-level debug`` shows every call and the default INFO shows none: a
busy server or a client sending garbage cannot flood the log; WARNING for server errors),
and, with tracing on, wraps the call
in a SERVER span whose parent is the trace context the client sent (W3C traceparent), so a
producer's trace continues into the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from grpc import aio

from runstream_server.observability import logs
from runstream_server.observability.telemetry import Telemetry
from runstream_server.rpc.handlers import Handler, HandlerRewriter

if TYPE_CHECKING:
    from runstream_server.observability.tracing import RpcTracer

__all__ = ["UNREGISTERED_METHOD", "RequestInterceptor"]

log = logging.getLogger("runstream.requests")

UNREGISTERED_METHOD = "other"
"""The method label of calls to a method the server does not have (grpc answers UNIMPLEMENTED):
the name is the client's to choose, so it never becomes a label (grpc's OpenTelemetry plugin
says "other" too)."""
# DATA_LOSS is a persistent fault of one stored run: the store logs it once (ERROR) and the
# error interceptor's RejectionLog summarises the calls answered with it once a minute, so a
# WARNING per call would repeat it for every poll of that run.
_SERVER_ERRORS = frozenset({"INTERNAL", "UNKNOWN", "UNIMPLEMENTED"})
if TYPE_CHECKING:
    Context: TypeAlias = aio.ServicerContext[Any, Any]


_DEADLINE_SLACK = 0.05
"""A call cancelled this close to its deadline (seconds, plus 1 % of its length) ran out of
time: the server's deadline falls a little after the client's, which gives up and hangs up
first. gRPC sends the deadline rounded up (to 10 ms past a second, 100 ms past ten: at most
about 1 %), and the server counts it from when it reads the call's header."""


def _code_of(context: Context, exc: BaseException | None, seconds: float) -> str:
    code = context.code()
    if code is not None:
        if isinstance(code, grpc.StatusCode):
            return code.name
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # gRPC cancels the handler both when the client hangs up and when the client's
        # deadline passes; the deadline's remaining time (0 once passed, None without one)
        # tells them apart, as the client's own status does.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= _DEADLINE_SLACK + seconds / 100:
            return "DEADLINE_EXCEEDED"
        return "CANCELLED"
    return "UNKNOWN"


class _Call:
    """One call in progress: what its end records."""

    __slots__ = (
        "full_method",
        "interceptor",
        "method",
        "peer",
        "run_id",
        "span",
        "started",
        "streaming",
    )

    def __init__(
        self, interceptor: RequestInterceptor, full_method: str, streaming: bool, run_id: str
    ) -> None:
        self.interceptor = interceptor
        self.full_method = full_method
        self.method = full_method.rsplit("/", 1)[-1]
        self.streaming = streaming
        self.run_id = run_id
        self.started = time.perf_counter()
        self.span: Any = None
        self.peer: str | None = None
        """The client's address, read when a stream starts: a stream may end after its call
        is gone (a client that hung up), and asking gRPC for the peer then crashes."""
        logs.request_scope(full_method, run_id or None)

    def saw_run_id(self, run_id: str) -> None:
        if run_id and not self.run_id:
            self.run_id = run_id
            logs.set_run_id(run_id)

    def finish(self, context: Context, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self.started
        code = _code_of(context, exc, seconds)
        telemetry = self.interceptor.telemetry
        telemetry.request_finished(self.full_method, code, seconds)
        if self.streaming:
            telemetry.stream_closed(self.method)
        if self.span is not None:
            self.interceptor.tracer.end(self.span, code)  # type: ignore[union-attr]
        level = logging.WARNING if code in _SERVER_ERRORS else logging.DEBUG
        if log.isEnabledFor(level):
            ms = seconds * 1000
            log.log(
                level,
                "%s %s in %.1f ms",
                self.full_method,
                code,
                ms,
                extra={
                    "method": self.full_method,
                    "code": code,
                    "duration_ms": round(ms, 3),
                    "run_id": self.run_id or None,
                    "peer": self.peer if self.peer is not None else context.peer(),
                },
            )


class RequestInterceptor(HandlerRewriter):
    """Counts, times, logs and (with a tracer) traces every call (wrappers built once per
    method)."""

    def __init__(self, telemetry: Telemetry, tracer: RpcTracer | None = None) -> None:
        super().__init__()
        self.telemetry = telemetry
        self.tracer = tracer

    def on_call(self, details: grpc.HandlerCallDetails, handler: Handler | None) -> None:
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED, no handler runs
            self.telemetry.request_finished(UNREGISTERED_METHOD, "UNIMPLEMENTED", 0.0)

    def _begin(self, full_method: str, streaming: bool, request: Any, context: Context) -> _Call:
        call = _Call(self, full_method, streaming, getattr(request, "run_id", "") or "")
        if streaming:
            call.peer = context.peer()
            self.telemetry.stream_opened(call.method)
        if self.tracer is not None:
            call.span = self.tracer.start(full_method, context.invocation_metadata() or ())
        return call

    def rewrite(self, method: str, handler: Handler) -> Handler:
        full_method = method.lstrip("/")
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(full_method, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=self._streaming(full_method, handler.unary_stream, False)
            )
        if handler.stream_stream is not None:
            return handler._replace(
                stream_stream=self._streaming(full_method, handler.stream_stream, True)
            )
        if handler.stream_unary is not None:
            return handler._replace(
                stream_unary=self._client_streaming(full_method, handler.stream_unary)
            )
        return handler

    def _unary(self, full_method: str, behavior: Any) -> Any:
        async def unary(request: Any, context: Context) -> Any:
            call = self._begin(full_method, False, request, context)
            failure: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.finish(context, failure)

        return unary

    def _streaming(self, full_method: str, behavior: Any, request_streaming: bool) -> Any:
        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            call = self._begin(full_method, True, None if request_streaming else request, context)
            if request_streaming:
                request = _watch_requests(request, call)
            failure: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.finish(context, failure)

        return streaming

    def _client_streaming(self, full_method: str, behavior: Any) -> Any:
        async def client_streaming(requests: Any, context: Context) -> Any:
            call = self._begin(full_method, True, None, context)
            failure: BaseException | None = None
            try:
                return await behavior(_watch_requests(requests, call), context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                call.finish(context, failure)

        return client_streaming


async def _watch_requests(requests: AsyncIterator[Any], call: _Call) -> AsyncIterator[Any]:
    """The client's messages as they come; the first that names a run names the call's run."""
    async for request in requests:
        if not call.run_id:
            call.saw_run_id(getattr(request, "run_id", "") or "")
        yield request
