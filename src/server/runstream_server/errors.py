"""The domain's error hierarchy, independent of gRPC.

Each error names the status it stands for; the API layer maps it to the gRPC code of the
same name. Messages name the offending field first (``events[2].step_progress.percent: ...``)
so a client can tell exactly what to fix. Each error also has a `reason`, a constant that
says why in a word a program can switch on (``RUN_ENDED``, ``IDEMPOTENCY_KEY_REUSED``): the
API sends it in a ``google.rpc.ErrorInfo`` detail, and an InvalidArgument's field and problem
in a ``google.rpc.BadRequest``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


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
    """Base of every error the domain raises on purpose.

    `reason` is the error's constant for programs (the class's own unless the raiser gives
    one: see the README's "Bad input and limits" for the list); `metadata` what a program
    needs beside it, as text.
    """

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"

    def __init__(
        self, message: str, *, reason: str = "", metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(RunstreamError):
    """A request field is missing or malformed. The message starts with the field path."""

    kind = ErrorKind.INVALID_ARGUMENT
    reason = "INVALID_FIELD"

    def __init__(self, field: str, problem: str, *, reason: str = "") -> None:
        super().__init__(f"{field}: {problem}", reason=reason)
        self.field = field
        self.problem = problem


class NotFound(RunstreamError):
    """The named run (or decision) does not exist."""

    kind = ErrorKind.NOT_FOUND
    reason = "RUN_NOT_FOUND"


class PermissionDenied(RunstreamError):
    """The caller's roles do not reach this run (a producer's token and another's run)."""

    kind = ErrorKind.PERMISSION_DENIED
    reason = "RUN_OF_ANOTHER_SUBJECT"


class AlreadyExists(RunstreamError):
    """A run with the requested id already exists."""

    kind = ErrorKind.ALREADY_EXISTS
    reason = "RUN_EXISTS"


class FailedPrecondition(RunstreamError):
    """The request is well-formed but the run is not in a state that allows it."""

    kind = ErrorKind.FAILED_PRECONDITION


class OutOfRange(RunstreamError):
    """A cursor points beyond the end of a run's log."""

    kind = ErrorKind.OUT_OF_RANGE
    reason = "AFTER_SEQ_PAST_END"


class ResourceExhausted(RunstreamError):
    """A message or batch exceeds a configured size limit, or a caller a rate or count limit.

    `retry_after` (seconds) is set when trying again later can succeed; the API sends it as a
    ``google.rpc.RetryInfo`` detail.
    """

    kind = ErrorKind.RESOURCE_EXHAUSTED
    reason = "LIMIT_REACHED"

    def __init__(self, message: str, *, reason: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class DataLoss(RunstreamError):
    """What the store holds for a run cannot be read back (a damaged record): the run cannot
    be served, and trying again will not help. Other runs are not affected."""

    kind = ErrorKind.DATA_LOSS
    reason = "RUN_DAMAGED"


class Unavailable(RunstreamError):
    """The server or its store cannot serve now; the client should retry, here later or
    elsewhere."""

    kind = ErrorKind.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"


class NothingStored(Unavailable):
    """A write refused before any of it was stored (a full disk, a run contended by too many
    replicas): sending it again cannot store it twice. A bare :class:`Unavailable` from a
    write leaves open whether it was stored (a Redis reply lost after the script ran)."""

    reason = "NOTHING_STORED"


class ShuttingDown(NothingStored):
    """The server is shutting down and refused the call before doing any of it, so sending
    the same call again (to another replica) cannot do its work twice, even a CreateRun or an
    AppendEvents. The API marks such a refusal of a unary call for Envoy, which retries it."""

    reason = "SHUTTING_DOWN"


class Aborted(RunstreamError):
    """A conflicting write won first, for example another answer to the same decision."""

    kind = ErrorKind.ABORTED
    reason = "DECISION_CLOSED"
