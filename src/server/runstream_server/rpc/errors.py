"""Maps domain errors to gRPC status codes, on every RPC, in one interceptor.

Servicers just let :class:`~runstream_server.errors.RunstreamError` propagate. Anything else
is a bug: it is logged with its traceback and the client gets INTERNAL with no internals
leaked, never UNKNOWN.

A rejected request is the client's problem, not the server's, and a client can send many:
rejections are logged through :class:`RejectionLog`, one INFO line for the first in an
interval and one summary line with the counts of the rest, however many there are.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from runstream_server.errors import ErrorKind, InvalidArgument, RunstreamError, ShuttingDown
from runstream_server.principal import Principal
from runstream_server.rpc.handlers import (
    Behavior,
    Handler,
    HandlerRewriter,
    replace_behavior,
    streams_responses,
)

log = logging.getLogger("runstream.api")
Context = aio.ServicerContext[Any, Any]

__all__ = [
    "MAX_STATUS_BYTES",
    "UNPROCESSED_HEADER",
    "ErrorInterceptor",
    "RejectionLog",
    "fitted",
    "status_trailer",
]

MAX_STATUS_BYTES = 1024
"""The most a status message takes in its trailer. gRPC percent-encodes every byte outside
printable ASCII (three characters each), and grpcio clients refuse trailers past 8 KiB now
and then and past 16 KiB always, answering RESOURCE_EXHAUSTED "received metadata size
exceeds" in place of the status. A message that repeats what the client sent (an unreadable
filter, the options of a decision, a dependency cycle) is cut to this, keeping its start,
which names the field."""


def grpc_code(kind: ErrorKind) -> grpc.StatusCode:
    """The gRPC status code of a domain refusal (ErrorKind names the codes)."""
    return grpc.StatusCode[kind.value]


def fitted(message: str) -> str:
    """`message`, cut to :data:`MAX_STATUS_BYTES` as sent, with how much was left out."""
    if message.isascii() and len(message) <= MAX_STATUS_BYTES // 3:
        return message
    size = 0
    for i, char in enumerate(message):
        size += 1 if " " <= char <= "~" and char != "%" else 3 * len(char.encode(errors="replace"))
        if size > MAX_STATUS_BYTES:
            return f"{message[:i]}... ({len(message) - i} more characters)"
    return message


UNPROCESSED_HEADER = "x-runstream-unprocessed"
"""Sent with a unary call's UNAVAILABLE when the server refused it, shutting down, before
doing any of it. The call has no response message, so gRPC sends the status and this in the
response headers (a "trailers-only" response), where Envoy's route retries on it
(``retriable-headers``) to another replica; an UNAVAILABLE without it may have done the
work, and Envoy never retries that."""


class RejectionLog:
    """Logs rejected requests without flooding: at most two lines per `interval` seconds.

    The first rejection of an interval is logged as it happens; the others are counted by
    method and status, and the counts are logged as one line when the interval ends.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._opened: float | None = None
        self._counts: Counter[tuple[str, str]] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def note(
        self,
        method: str,
        code: str,
        message: str,
        caller: Principal | None = None,
        peer: str | None = None,
    ) -> None:
        """Logs or counts one rejection; `caller` is the verified principal that was refused,
        when there is one (its subject and tenant are logged, never its token), and `peer`
        the address it called from, when known (the JSON lines' ``peer``)."""
        who = _who(caller)
        now = self._clock()
        if self._opened is not None and now - self._opened < self.interval:
            self._counts[(method, code + who)] += 1  # the summary names who, too
            self._flush_at_window_end(self._opened + self.interval - now)
            return
        self.flush()
        self._opened = now
        log.info(
            "rejected %s with %s%s: %s (more rejections are summarised every %gs)",
            method,
            code,
            who,
            message[:300],
            self.interval,
            extra={"peer": peer, **({} if caller is None else _caller_fields(caller))},
        )

    def _flush_at_window_end(self, delay: float) -> None:
        """Logs the counts when the interval ends, even if no rejection follows."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a direct call): the next rejection flushes
            return
        # In a context of its own: call_later would copy the current one, and the summary
        # would carry the run id, method and caller of whichever request started the timer.
        self._timer = loop.call_later(
            max(0.0, delay), self._close_window, context=contextvars.Context()
        )

    def _close_window(self) -> None:
        self._timer = None
        self.flush()
        self._opened = None

    def flush(self) -> None:
        """Logs the counts of the rejections not logged yet, if any."""
        if not self._counts:
            return
        total = sum(self._counts.values())
        worst = ", ".join(
            f"{method} {code} x{count}" for (method, code), count in self._counts.most_common(5)
        )
        log.info("%d more requests rejected since the last report: %s", total, worst)
        self._counts.clear()


def _who(caller: Principal | None) -> str:
    """The caller as the log names it (`` for principal 'alice' in tenant 'acme'``), or ""."""
    if caller is None:
        return ""
    tenant = f" in tenant {caller.tenant[:100]!r}" if caller.tenant else ""
    return f" for principal {caller.subject[:100]!r}{tenant}"


def _caller_fields(caller: Principal) -> dict[str, str | None]:
    """The record attributes the JSON log format writes as `principal` and `tenant`."""
    return {"principal": caller.subject, "tenant": caller.tenant or None}


ERROR_DOMAIN = "runstream"
"""``google.rpc.ErrorInfo.domain`` of every refusal: its reasons are Runstream's own."""

_EVENT_AT = re.compile(r"events\[(\d+)\]")
"""A message about one event of a batch starts with its path (``events[3]...``): the
refusal of that event alone, which the producer drops before it sends the rest again."""


def status_trailer(
    code: grpc.StatusCode, message: str, reason: str, *more: Message
) -> tuple[tuple[str, bytes], ...]:
    """The ``grpc-status-details-bin`` trailer of a refusal: a google.rpc.Status with an
    ErrorInfo of `reason` (in Runstream's domain), then `more` details."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    return _trailer(code, message, [info, *more])


def _trailer(
    code: grpc.StatusCode, message: str, found: list[Message]
) -> tuple[tuple[str, bytes], ...]:
    details = []
    for each in found:
        detail = any_pb2.Any()
        detail.Pack(each)
        details.append(detail)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _status_details(
    code: grpc.StatusCode, ex: RunstreamError, message: str
) -> tuple[tuple[str, bytes], ...]:
    """The ``grpc-status-details-bin`` trailer: a google.rpc.Status with an ErrorInfo (the
    error's reason; ``event_index`` when it refuses one event of a batch), a BadRequest
    naming the field of an INVALID_ARGUMENT, and a RetryInfo when the error says when to
    retry."""
    metadata = dict(ex.metadata)
    refused = _EVENT_AT.match(ex.message)
    if refused is not None:
        metadata["event_index"] = refused[1]
    found: list[Message] = [
        error_details_pb2.ErrorInfo(reason=ex.reason, domain=ERROR_DOMAIN, metadata=metadata)
    ]
    if isinstance(ex, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=fitted(ex.field), description=fitted(ex.problem)
        )
        found.append(error_details_pb2.BadRequest(field_violations=[violation]))
    retry_after = getattr(ex, "retry_after", None)
    if retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(max(1, round(retry_after * 1e9)))
        found.append(info)
    return _trailer(code, message, found)


class ErrorInterceptor(HandlerRewriter):
    """Turns domain errors into their gRPC status, unexpected errors into logged INTERNAL.

    One wrapper per method, built once (see :mod:`~runstream_server.rpc.handlers`): the
    exception a handler raises, when called or while it yields its responses, is answered.
    """

    def __init__(self, rejections: RejectionLog | None = None) -> None:
        super().__init__()
        self.rejections = rejections or RejectionLog()

    def rewrite(self, method: str, handler: Handler) -> Handler:
        def wrap(kind: str, behavior: Behavior) -> Behavior:
            if streams_responses(kind):

                async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                    try:
                        responses = behavior(request, context)
                        if not hasattr(responses, "__aiter__"):
                            # A coroutine: the handler writes with context.write() itself.
                            responses = await responses
                            if responses is None:
                                return
                        async for response in responses:
                            yield response
                    except Exception as ex:
                        await self.handle_exception(ex, context, method)

                return streaming

            async def unary(request: Any, context: Context) -> Any:
                try:
                    return await behavior(request, context)
                except Exception as ex:
                    # A stream may have done work for earlier messages: only a unary call's
                    # refusal says the whole call was left undone.
                    unprocessed = kind == "unary_unary" and isinstance(ex, ShuttingDown)
                    await self.handle_exception(ex, context, method, unprocessed=unprocessed)

            return unary

        return replace_behavior(handler, wrap)

    async def handle_exception(
        self, ex: Exception, context: Context, method_name: str, *, unprocessed: bool = False
    ) -> NoReturn:
        if isinstance(ex, RunstreamError):
            self.rejections.note(method_name, ex.kind.value, ex.message)
            code = grpc_code(ex.kind)
            message = fitted(ex.message)
            trailers: tuple[tuple[str, str | bytes], ...] = _status_details(code, ex, message)
            if unprocessed:
                trailers += ((UNPROCESSED_HEADER, "shutting-down"),)
            await context.abort(code, message, trailing_metadata=trailers)
        if context.code() is None:
            log.exception("unexpected error in %s", method_name, exc_info=ex)
            message = "internal error; see server logs"
            # The google.rpc.Status trailer marks the answer as the server's own verdict: the
            # SDK retries an INTERNAL without it (grpc's, from a transport that broke) and
            # never one with it.
            status = status_pb2.Status(code=grpc.StatusCode.INTERNAL.value[0], message=message)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                message,
                trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
            )
        raise ex
