"""Reconnect policy shared by the reporter and the watcher: which failures to retry, and when.

A failure is retried when it means "the server or the connection went away", never when the
server judged the request itself (bad input, run ended, limits): those would fail again.
"""

from __future__ import annotations

import random
import time

import grpc

from runstream._auth import is_expired_stream
from runstream._errors import UnavailableError

__all__ = ["Backoff", "Outage", "is_retryable"]

# Details that grpc gives when a connection dies under a stream; depending on timing a killed
# server shows up as UNAVAILABLE, or as UNKNOWN/INTERNAL with one of these. "Internal error
# from Core" is grpc's own text for a failed send on a broken transport (a server never sends it).
_CONNECTION_LOSS_HINTS = (
    "internal error from core",
    "rst_stream",
    "stream removed",
    "socket closed",
    "connection reset",
    "broken pipe",
    "goaway",
    "connection refused",
    "failed to connect",
)


def is_retryable(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a failed RPC is worth retrying on a new connection (server or link went away)."""
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED):
        return True
    if is_expired_stream(exc):  # reconnect with a fresh token; a stale one fails at once
        return True
    if code == grpc.StatusCode.CANCELLED:
        # The SDK never cancels a call it still reads from, so CANCELLED came from the server
        # side, typically a server that stopped with streams still open.
        return True
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        details = (exc.details() or "").lower()
        return any(hint in details for hint in _CONNECTION_LOSS_HINTS)
    return False


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

    def next_delay(self) -> float:
        """The delay before the next attempt; each call backs off further."""
        delay = self._next
        self._next = min(self._maximum, self._next * self._multiplier)
        return random.uniform(delay / 2, delay)

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
        error = UnavailableError(f"{what}: server unreachable for {self._limit:g}s ({detail})")
        error.__cause__ = cause
        return error
