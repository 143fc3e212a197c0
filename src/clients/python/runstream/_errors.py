"""The SDK's one exception hierarchy, mapped from gRPC status codes.

Every error the SDK raises is a :class:`RunstreamError` carrying a :class:`StatusCode`, with one
subclass per code so callers can ``except NotFoundError`` instead of comparing codes. Errors
raised by a failed RPC chain the original ``grpc.aio.AioRpcError`` as ``__cause__``.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
from google.protobuf import message as _message
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "DataLossError",
    "DeadlineExceededError",
    "ErrorDetails",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "RunCancelledError",
    "RunstreamError",
    "StatusCode",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
]


class StatusCode(enum.IntEnum):
    """gRPC status codes, with the same numbers as the wire protocol."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True)
class ErrorDetails:
    """What a server's refusal says for programs, beside its message: its
    ``google.rpc.ErrorInfo`` and ``google.rpc.BadRequest`` details. Empty for an error the
    SDK made itself, and from servers of releases before 2026-12-06.

    Attributes:
        reason: Why, as a constant to compare with: ``RUN_ENDED``, ``IDEMPOTENCY_KEY_REUSED``,
            ``EVENTS_PURGED``, ``INVALID_FIELD``... (the README's "Bad input and limits"
            lists them); "" when the server sent none.
        metadata: What goes with the reason, as text: ``event_index`` when the refusal is of
            one event of a batch (its place in the batch).
        field_violations: (field path, problem) of an INVALID_ARGUMENT, e.g.
            ``("events[0].step_progress.percent", "must be between 0 and 100, got 150")``.
    """

    reason: str = ""
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    field_violations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.metadata, MappingProxyType):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def __reduce__(self) -> tuple[Any, ...]:
        # A MappingProxyType cannot be pickled, and a worker process's error is sent to its
        # parent pickled: the metadata goes as a dict, read-only again once unpickled.
        return (ErrorDetails, (self.reason, dict(self.metadata), self.field_violations))


_NO_DETAILS = ErrorDetails()


class RunstreamError(Exception):
    """Base of every error the SDK raises.

    Attributes:
        code: The gRPC status code of the failure.
        message: The server's (or the SDK's) explanation.
        details: The refusal's reason and fields, for programs (see :class:`ErrorDetails`).
    """

    default_code: StatusCode = StatusCode.UNKNOWN

    def __init__(
        self, message: str, *, code: StatusCode | None = None, details: ErrorDetails | None = None
    ) -> None:
        super().__init__(message)
        self.code: StatusCode = code if code is not None else self.default_code
        self.message: str = message
        self.details: ErrorDetails = details or _NO_DETAILS

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickled without calling __init__, whose parameters differ by subclass
        # (RunCancelledError takes a run id): an error raised in a worker process reaches its
        # parent as the same type with the same message, code, details and attributes.
        return (_unpickled, (type(self), self.args), self.__dict__)


def _unpickled(cls: type[RunstreamError], args: tuple[Any, ...]) -> RunstreamError:
    error = cls.__new__(cls)
    error.args = args
    return error


class RequestCancelledError(RunstreamError):
    """The RPC was cancelled (status CANCELLED), usually by the server shutting down."""

    default_code = StatusCode.CANCELLED


class UnknownError(RunstreamError):
    """The server failed without saying why (status UNKNOWN)."""

    default_code = StatusCode.UNKNOWN


class InvalidArgumentError(RunstreamError):
    """The request was malformed; the message names the offending field."""

    default_code = StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(RunstreamError):
    """The RPC did not finish within its timeout."""

    default_code = StatusCode.DEADLINE_EXCEEDED


class NotFoundError(RunstreamError):
    """The run (or another resource) does not exist."""

    default_code = StatusCode.NOT_FOUND


class AlreadyExistsError(RunstreamError):
    """A run with the requested id already exists."""

    default_code = StatusCode.ALREADY_EXISTS


class PermissionDeniedError(RunstreamError):
    """The caller may not do this."""

    default_code = StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(RunstreamError):
    """A limit was exceeded, for example an oversized event."""

    default_code = StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(RunstreamError):
    """The run is not in a state that allows the request, for example it already ended."""

    default_code = StatusCode.FAILED_PRECONDITION


def client_closed() -> FailedPreconditionError:
    """What any call of a closed client raises."""
    return FailedPreconditionError("the Runstream client is closed")


class RunCancelledError(FailedPreconditionError):
    """The run was cancelled by an operator, or ended by the server (its producer silent
    for longer than the server's ``--abandon-after``); the producer should stop working on
    it.

    Attributes:
        run_id: The cancelled run.
        reason: The cancellation reason, when the server said (for a run the server ended,
            its error message: "abandoned: ...").
        by_server: Whether the server ended the run (FAILED, error code ABANDONED) rather
            than an operator cancelling it.
    """

    def __init__(self, run_id: str, reason: str = "", *, by_server: bool = False) -> None:
        text = f"run {run_id!r} was {'ended by the server' if by_server else 'cancelled'}"
        if reason:
            text += f": {reason}"
        super().__init__(text)
        self.run_id = run_id
        self.reason = reason
        self.by_server = by_server


class AbortedError(RunstreamError):
    """The operation was aborted, typically by a concurrency conflict."""

    default_code = StatusCode.ABORTED


class OutOfRangeError(RunstreamError):
    """A cursor or position lies beyond the valid range, for example after_seq past the head."""

    default_code = StatusCode.OUT_OF_RANGE


class UnimplementedError(RunstreamError):
    """The server does not implement this RPC."""

    default_code = StatusCode.UNIMPLEMENTED


class InternalError(RunstreamError):
    """The server hit an internal error."""

    default_code = StatusCode.INTERNAL


class UnavailableError(RunstreamError):
    """The server could not be reached (or not within the reconnect timeout)."""

    default_code = StatusCode.UNAVAILABLE


class DataLossError(RunstreamError):
    """Data was lost or a stream broke its ordering guarantee (a gap or a repeated seq)."""

    default_code = StatusCode.DATA_LOSS


class UnauthenticatedError(RunstreamError):
    """The caller did not authenticate."""

    default_code = StatusCode.UNAUTHENTICATED


_BY_CODE: dict[StatusCode, type[RunstreamError]] = {
    StatusCode.CANCELLED: RequestCancelledError,
    StatusCode.UNKNOWN: UnknownError,
    StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    StatusCode.NOT_FOUND: NotFoundError,
    StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    StatusCode.ABORTED: AbortedError,
    StatusCode.OUT_OF_RANGE: OutOfRangeError,
    StatusCode.UNIMPLEMENTED: UnimplementedError,
    StatusCode.INTERNAL: InternalError,
    StatusCode.UNAVAILABLE: UnavailableError,
    StatusCode.DATA_LOSS: DataLossError,
    StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


def status_code_of(code: grpc.StatusCode) -> StatusCode:
    """The SDK's StatusCode for a grpc.StatusCode (whose value is a ``(number, name)`` pair)."""
    number = code.value[0]
    try:
        return StatusCode(number)
    except ValueError:
        return StatusCode.UNKNOWN


def error_from_rpc(exc: grpc.aio.AioRpcError) -> RunstreamError:
    """The RunstreamError for a failed RPC; raise it ``from exc``."""
    code = status_code_of(exc.code())
    return error_from_status(code, exc.details() or "", details=details_of(exc))


def error_from_status(
    code: StatusCode, message: str, *, details: ErrorDetails | None = None
) -> RunstreamError:
    """The RunstreamError for a status the server reported in a message (not as an RPC's
    status), for example a rejected answer on an Interact stream."""
    cls = _BY_CODE.get(code, RunstreamError)
    error = cls(message or code.name, code=code)
    error.details = details or _NO_DETAILS
    return error


def status_of(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """A failed RPC's ``grpc-status-details-bin`` trailer, the server's google.rpc.Status,
    or None when there is none or it cannot be read."""
    trailers: Any = exc.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except _message.DecodeError:
                return None
    return None


def details_of(exc: grpc.aio.AioRpcError) -> ErrorDetails:
    """The ErrorInfo and BadRequest of a failed RPC's status (empty when it has none)."""
    status = status_of(exc)
    if status is None:
        return _NO_DETAILS
    reason, metadata, violations = "", {}, []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(request):
            violations += [(v.field, v.description) for v in request.field_violations]
    return ErrorDetails(reason, metadata, tuple(violations))


def about(error: RunstreamError, subject: str) -> RunstreamError:
    """A copy of ``error`` whose message starts with what it is about (``subject``: the call
    that reported a refused event), keeping its type, code, attributes and cause."""
    named = raised_again(error)
    named.message = f"{subject}: {error.message}"
    named.args = (named.message,)
    return named


def raised_again(error: RunstreamError) -> RunstreamError:
    """A copy of a stored error, to raise where it must be raised again and again (a failed
    reporter's every reporting call, an ended interaction's every read).

    Raising the stored object itself would append each raise's frames to its one
    ``__traceback__`` (keeping their locals alive) and rewrite its ``__context__``: a failed
    reporter fed one call per LLM token grew a traceback of hundreds of thousands of frames.
    The copy has the error's type, message and attributes (``code``, ``message``,
    ``RunCancelledError.run_id`` ...) and its cause (the ``grpc.aio.AioRpcError``), and a
    traceback of its own raise only.
    """
    again = copy.copy(error)  # type, args and __dict__; not __traceback__, __cause__, __context__
    if error.__cause__ is not None:
        again.__cause__ = error.__cause__
    return again
