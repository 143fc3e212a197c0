"""The domain's error hierarchy, independent of gRPC.

Each error names the status it stands for; the API layer maps it to the gRPC code of the
same name. Messages name the offending field first (``events[2].step_progress.percent: ...``)
so a client can tell exactly what to fix.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What kind of failure an error is; mirrors the gRPC status codes the API returns."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"


class RunstreamError(Exception):
    """Base of every error the domain raises on purpose."""

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RunstreamError):
    """A request field is missing or malformed. The message starts with the field path."""

    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFound(RunstreamError):
    """The named run (or step) does not exist."""

    kind = ErrorKind.NOT_FOUND


class PermissionDenied(RunstreamError):
    """The caller's roles do not reach this run (a producer's token and another's run)."""

    kind = ErrorKind.PERMISSION_DENIED


class AlreadyExists(RunstreamError):
    """A run with the requested id already exists."""

    kind = ErrorKind.ALREADY_EXISTS


class FailedPrecondition(RunstreamError):
    """The request is well-formed but the run is not in a state that allows it."""

    kind = ErrorKind.FAILED_PRECONDITION


class OutOfRange(RunstreamError):
    """A cursor points beyond the end of a run's log."""

    kind = ErrorKind.OUT_OF_RANGE


class ResourceExhausted(RunstreamError):
    """A message or batch exceeds a configured size limit, or a caller a rate or count limit.

    `retry_after` (seconds) is set when trying again later can succeed; the API sends it as a
    ``google.rpc.RetryInfo`` detail.
    """

    kind = ErrorKind.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DataLoss(RunstreamError):
    """What the store holds for a run cannot be read back (a damaged record): the run cannot
    be served, and trying again will not help. Other runs are not affected."""

    kind = ErrorKind.DATA_LOSS


class Unavailable(RunstreamError):
    """The server is shutting down; the client should retry, here later or elsewhere."""

    kind = ErrorKind.UNAVAILABLE


class NothingStored(Unavailable):
    """A write refused before any of it was stored (a full disk, a run contended by too many
    replicas): sending it again cannot store it twice. A bare :class:`Unavailable` from a
    write leaves open whether it was stored (a Redis reply lost after the script ran)."""


class ShuttingDown(NothingStored):
    """The server is shutting down and refused the call before doing any of it, so sending
    the same call again (to another replica) cannot do its work twice, even a CreateRun or an
    AppendEvents. The API marks such a refusal of a unary call for Envoy, which retries it."""


class Aborted(RunstreamError):
    """A conflicting write won first, for example another answer to the same decision."""

    kind = ErrorKind.ABORTED
