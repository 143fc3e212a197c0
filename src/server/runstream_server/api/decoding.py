"""Decoding requests: bytes that are not a valid message get INVALID_ARGUMENT, on every RPC.

grpc.aio decodes a request with the method handler's ``request_deserializer`` before any
interceptor or servicer runs, and an exception there becomes UNKNOWN (unary calls, with the
Python exception's class in the message) or INTERNAL (streams), with a traceback in the log.
:class:`DecodingInterceptor` swaps every deserializer for one that never raises: it returns
the decoded message, checked against the field rules of
:mod:`runstream_server.domain.fields`, or the :class:`InvalidArgument` that says what is
wrong. The handler it wraps raises that error where the servicer would have started (unary
requests) or where the servicer reads the bad message (streaming requests), so
:class:`~runstream_server.rpc.errors.ErrorInterceptor` answers it like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc import aio

from runstream_server.domain.fields import PACKAGE, check_request
from runstream_server.errors import InvalidArgument
from runstream_server.rpc.handlers import Handler, HandlerRewriter

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
        except Exception as exc:
            if _TOO_DEEP in str(exc):
                # Named where it can be found cheaply; else the request as a whole.
                descriptor = getattr(message_type, "DESCRIPTOR", None)
                path = isinstance(descriptor, Descriptor) and too_deep(descriptor, data)
                return InvalidArgument(
                    path or "request",
                    f"nests messages more than {NESTING_LIMIT} deep, the most protobuf "
                    "decodes (each level of a Struct inside a Struct takes 3 of them)",
                )
            return InvalidArgument(
                "request",
                f"is not a valid {type_name} message (truncated, malformed, or a text field "
                "that is not UTF-8)",
            )
        if isinstance(message, Message) and message.DESCRIPTOR.full_name.startswith(PACKAGE):
            try:
                check_request(message, data)
            except InvalidArgument as exc:
                return exc
        return message

    return decode


NESTING_LIMIT = 100
"""How deep protobuf (upb) decodes messages inside messages; deeper, it refuses the whole
request with an error naming no field."""
_TOO_DEEP = "MaxDepth"  # upb's "Exceeded upb_DecodeOptions_MaxDepth"
_WALK_FIELDS = 20_000
"""The most fields :func:`too_deep` reads of one request before it gives up naming one."""


def too_deep(descriptor: Descriptor, data: bytes) -> str | None:
    """The path of the field under which `data` (a `descriptor` message on the wire) nests
    messages more than NESTING_LIMIT deep, down to the first of protobuf's own types (a
    Struct: ``events[0].custom.data``); None if it does not, or the bytes are malformed.
    Only called for a request protobuf refused, so its cost is paid by that request."""
    budget = [_WALK_FIELDS]
    try:
        found = _deepest(descriptor, memoryview(data), 0, budget)
    except (IndexError, ValueError):  # truncated or malformed on the wire
        return None
    return None if found is None else "".join(found).lstrip(".")


def _deepest(
    descriptor: Descriptor, data: memoryview, depth: int, budget: list[int]
) -> list[str] | None:
    """The path segments to a message nested past the limit under this one, or None; walks
    the wire format with the descriptor and stops at the first such message."""
    counts: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated")
            chunk, pos = data[pos : pos + length], pos + length
            field = descriptor.fields_by_number.get(number)
            index = counts[number] = counts.get(number, -1) + 1
            inner = None if field is None else field.message_type
            if field is None or inner is None or field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            if depth + 1 > NESTING_LIMIT:
                return [f".{field.name}"]
            below = _deepest(inner, chunk, depth + 1, budget)
            if below is not None:
                repeated = field.is_repeated and not inner.GetOptions().map_entry
                segment = f".{field.name}" + (f"[{index}]" if repeated else "")
                inside = inner.full_name.startswith("google.protobuf.")
                return [segment] if inside else [segment, *below]
        else:
            raise ValueError("a group or a bad wire type")
    return None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


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
