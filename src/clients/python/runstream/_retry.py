"""Reconnect policy shared by the reporter and the watcher: which failures to retry, when, and
how an outage is said in the log (:class:`OutageLog`: a few lines, not one per attempt).

A failure is retried when it means "the server or the connection went away", never when the
server judged the request itself (bad input, run ended, size limits): those would fail again.
Two server verdicts are worth waiting out: a rate or count limit answered with a RetryInfo
(retried after the delay it names) and a stream cut at its token's expiry, or because the
server no longer accepts its token (retried at once, with a fresh token from the provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import grpc
from google.rpc import error_details_pb2

from runstream._auth import ask_providers_again, is_refused_stream, is_stream_cut_for_its_token
from runstream._errors import UnavailableError, status_of

__all__ = [
    "RETRYABLE_CODES",
    "Backoff",
    "ConnectionLost",
    "Outage",
    "OutageLog",
    "is_retryable",
    "retry_after",
    "send",
]

# Decided by status code alone (detail strings change between grpc versions):
# - UNAVAILABLE: the server is unreachable, shutting down, or cannot store now (disk full);
# - CANCELLED: the SDK never cancels a call it still reads from, so the server side ended it
#   (typically a server that stopped with streams still open).
# Never ABORTED (a conflicting write won: retrying cannot change that), never a verdict on
# the request itself. INTERNAL and UNKNOWN are the server's verdict (a bug would only repeat)
# only when they carry its google.rpc.Status trailer; without one, grpc made them up in this
# process because the transport broke under the call (a killed server, a cut connection).
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
STILL_OUT_EVERY = 30.0
"""Seconds between the lines that say a stream is still out of reach (see OutageLog)."""
_LOCAL_WHEN_UNMARKED = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
_STATUS_TRAILER = "grpc-status-details-bin"


class ConnectionLost(Exception):
    """A message could not be sent on a stream: the transport under it broke."""


def retry_after(exc: BaseException | None) -> float | None:
    """The seconds a RESOURCE_EXHAUSTED answer's RetryInfo detail asks to wait, else None."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return None
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    status = status_of(exc)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            seconds: float = info.retry_delay.ToNanoseconds() / 1e9
            return max(0.0, seconds)
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed RPC is worth retrying on a new connection (server or link went away),
    or later (a limit answered with RetryInfo: :meth:`Backoff.hold` waits that long)."""
    if isinstance(exc, ConnectionLost) or retry_after(exc) is not None:
        return True
    if not isinstance(exc, grpc.aio.AioRpcError):
        return False
    # A stream the server cut for its token: reconnect with a fresh token.
    return (
        exc.code() in RETRYABLE_CODES
        or is_stream_cut_for_its_token(exc)
        or _broke_under_the_call(exc)
    )


def _broke_under_the_call(exc: grpc.aio.AioRpcError) -> bool:
    """An INTERNAL or UNKNOWN status that no Runstream server sent (it marks its own)."""
    if exc.code() not in _LOCAL_WHEN_UNMARKED:
        return False
    trailers: Any = exc.trailing_metadata() or ()
    return not any(key == _STATUS_TRAILER for key, _ in trailers)


async def send(call: grpc.aio.StreamStreamCall[Any, Any], request: Any) -> None:
    """``call.write(request)``, with a send that failed locally raised as ConnectionLost.

    grpc reports a message it could not put on a broken transport as INTERNAL, generated in
    this process: no server answered it. A status the server did send ends the call, and a
    write after that raises asyncio.InvalidStateError, left to the caller.
    """
    try:
        await call.write(request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INTERNAL:
            raise ConnectionLost(
                f"the connection broke while sending (gRPC: {exc.details()})"
            ) from exc
        raise


async def end_requests(call: grpc.aio.StreamStreamCall[Any, Any]) -> None:
    """Ends the request side of a stream that is over, so nothing of it stays pending.

    With interceptors (a client with a token), grpc turns ``write()`` into a request iterator
    that a task of its own consumes. A call that ended (failed, or was cancelled after it
    ended) without ``done_writing()`` left that task waiting for the next write for good:
    once collected, asyncio logged "Task was destroyed but it is pending!" and, closing the
    iterator it was inside, "aclose(): asynchronous generator is already running", for an
    interaction's and a reporter's streams alike. Without interceptors this does nothing.
    """
    with contextlib.suppress(asyncio.InvalidStateError, grpc.aio.AioRpcError):
        await call.done_writing()


class Backoff:
    """Exponential backoff with jitter: ``initial`` doubling up to ``maximum``.

    Each delay is drawn uniformly from [delay/2, delay] ("equal jitter"), so many clients
    cut off by the same server restart do not reconnect in lockstep.
    """

    def __init__(
        self, initial: float = 0.05, maximum: float = 2.0, multiplier: float = 2.0
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._multiplier = multiplier
        self._next = initial
        self._hold = 0.0

    def hold(self, exc: BaseException | None) -> None:
        """Makes the next attempt heed what the failure asked: a delay at least what its
        RetryInfo names, if any, and a fresh token when the server no longer accepts the one
        the stream was opened with."""
        self._hold = max(self._hold, retry_after(exc) or 0.0)
        if is_refused_stream(exc):
            ask_providers_again()

    def next_delay(self) -> float:
        """The delay before the next attempt; each call backs off further."""
        delay = self._next
        self._next = min(self._maximum, self._next * self._multiplier)
        held, self._hold = self._hold, 0.0
        return max(held, random.uniform(delay / 2, delay))

    def reset(self) -> None:
        """Starts over from the initial delay (after a connection worked)."""
        self._next = self._initial


class Outage:
    """How long the server has been out of reach, against the client's ``reconnect_timeout``.

    The clock starts at the first failed attempt and stops at ``recovered()``; once it has run
    past ``limit`` (None: never), ``exceeded()`` returns the UnavailableError to give up with.
    """

    def __init__(self, limit: float | None) -> None:
        self._limit = limit
        self._since: float | None = None

    def recovered(self) -> None:
        self._since = None

    def exceeded(
        self, what: str, detail: str, cause: BaseException | None
    ) -> UnavailableError | None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self._limit is None or now - self._since <= self._limit:
            return None
        error = UnavailableError(
            f"{what}: no server could serve it for {self._limit:g}s, unreachable or unable to "
            f"store ({detail})"
        )
        error.__cause__ = cause
        return error


class OutageLog:
    """Says an outage of one stream (or call) in a few lines, not one per attempt.

    The loss is logged at INFO, then a line every STILL_OUT_EVERY seconds while it lasts
    ("still lost after 30 s"), and one when the stream is back, with how long it was out and
    how many attempts that took; each failure in between goes to DEBUG. One line an attempt
    (every 2 s at most) made ~45 lines a minute in ``runstream watch --plain``, and as many
    in an application's log per watch and per reporter, for as long as a server was out of
    reach. The server says the outages of its Redis subscription the same way.

    A stream the server ended at its token's ``exp`` (``renewing``) is no outage: with a
    token provider it comes back at once with a fresh token, at every expiry. Its loss and
    return go to DEBUG, unless another failure follows before it is back or it stays out
    STILL_OUT_EVERY seconds: ``runstream watch --plain`` printed "lost (UNAUTHENTICATED)"
    and "is back" at each token's expiry, as if the server had gone (found in review).
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._since: float | None = None
        self._said_at = 0.0
        self._attempts = 0
        self._renewing = False  # the outage so far is a token renewal, said at DEBUG

    def lost(self, why: str, then: str, *, renewing: bool = False) -> None:
        """An attempt failed (`why`); `then` says what comes next ("reconnecting");
        `renewing`: the server ended the stream at its token's expiry."""
        now = time.monotonic()
        self._attempts += 1
        if self._since is None:
            self._since = self._said_at = now
            self._renewing = renewing
            said = self._log.debug if renewing else self._log.info
            said("%s lost (%s); %s", self._what, why, then)
        elif self._renewing and not renewing:  # more than a renewal: an outage after all
            self._renewing = False
            self._said_at = now
            self._log.info("%s lost (%s); %s", self._what, why, then)
        elif now - self._said_at >= STILL_OUT_EVERY:
            self._renewing = False
            self._said_at = now
            self._log.info(
                "%s still lost after %.0f s (%d failures, the last: %s); %s",
                self._what,
                now - self._since,
                self._attempts,
                why,
                then,
            )
        else:
            self._log.debug("%s: failure %d (%s); %s", self._what, self._attempts, why, then)

    def back(self) -> None:
        """The stream works again: says so once, with how long it was out."""
        if self._since is None:
            return
        said = self._log.debug if self._renewing else self._log.info
        said(
            "%s is back after %.1f s (attempts: %d)",
            self._what,
            time.monotonic() - self._since,
            self._attempts,
        )
        self._since = None
        self._attempts = 0
