"""Decoding requests: bytes that are not a valid message get INVALID_ARGUMENT, on every RPC.

grpc.aio decodes a request with the method handler's ``request_deserializer`` before any
interceptor or servicer runs, and an exception there becomes UNKNOWN (unary calls, with the
Python exception's class in the message) or INTERNAL (streams), with a traceback in the log.
:class:`DecodingInterceptor` swaps every deserializer for one that never raises: it returns
the decoded message, checked against the field rules of
:mod:`runstream_server.domain.fields`, or the :class:`InvalidArgument` that says what is
wrong. The handler it wraps raises that error where the servicer would have started (unary
requests) or where the servicer reads the bad message (streaming requests), so
:class:`~runstream_server.api.errors.ErrorInterceptor` answers it like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import Message
from grpc import aio

from runstream_server.api.handlers import Handler, HandlerRewriter
from runstream_server.domain.fields import PACKAGE, check_request
from runstream_server.errors import InvalidArgument

Deserializer = Callable[[bytes], Any]


def safe_deserializer(deserialize: Deserializer) -> Deserializer:
    """`deserialize`, but returning an InvalidArgument instead of raising."""
    message_type = getattr(deserialize, "__self__", None)
    type_name = (
        message_type.DESCRIPTOR.full_name
        if isinstance(message_type, type) and issubclass(message_type, Message)
        else "the method's request"
    )

    def decode(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception:
            return InvalidArgument(
                "request",
                f"is not a valid {type_name} message (truncated, malformed, or a text field "
                "that is not UTF-8)",
            )
        if isinstance(message, Message) and message.DESCRIPTOR.full_name.startswith(PACKAGE):
            try:
                check_request(message)
            except InvalidArgument as exc:
                return exc
        return message

    return decode


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, InvalidArgument):
            raise request
        yield request


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, InvalidArgument):
            raise request
        return behavior(request, context)

    return call


def _streaming_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    def call(requests: AsyncIterator[Any], context: aio.ServicerContext[Any, Any]) -> Any:
        return behavior(_checked(requests), context)

    return call


class DecodingInterceptor(HandlerRewriter):
    """Installs :func:`safe_deserializer` on every method (once per method); must come after
    ErrorInterceptor."""

    def rewrite(self, method: str, handler: Handler) -> Handler:
        if handler.request_deserializer is None:
            return handler
        decode = safe_deserializer(handler.request_deserializer)
        for kind, wrap in (
            ("unary_unary", _unary_request),
            ("unary_stream", _unary_request),
            ("stream_unary", _streaming_request),
            ("stream_stream", _streaming_request),
        ):
            behavior = getattr(handler, kind)
            if behavior is not None:
                return handler._replace(**{kind: wrap(behavior), "request_deserializer": decode})
        return handler
