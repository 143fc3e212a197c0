"""One client's connection to a Runstream server: the channel, its stubs, and what each call
carries.

:class:`Connection` opens its gRPC channel lazily, on the first call, with the SDK's channel
options (fast reconnects, keepalive) and the token's interceptors. Every call and stream sends
the client's metadata followed by the caller's trace context, which is read at each call so
the call continues the span it starts in (see :mod:`runstream._tracing`). A token on a
plaintext channel to a host beyond this machine is refused when the connection is made,
before anything connects (see :func:`runstream._auth.check_token_transport`).

gRPC cannot be used across ``fork()``: in a child forked while a grpc.aio channel was alive
(open, or closed but still referenced), calls hang or crash the process (grpc's
doc/fork_support.md). So a closed connection lets go of its channel, and a client in such a
child raises FailedPreconditionError saying what to do instead, before any call. gRPC's own
threads outlive its last channel by some milliseconds: a fork waits for them to exit (on
Linux, where they can be listed), since a child forked while they wound down hung as well.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

import grpc

from runstream._auth import TokenProvider, auth_interceptors, check_token_transport
from runstream._errors import FailedPreconditionError, client_closed, error_from_rpc
from runstream._retry import Backoff, is_retryable
from runstream._target import check_target
from runstream._tracing import trace_metadata
from runstream._unreachable import SDK_NAMES, Diagnosis, TlsSettings
from runstream.v1 import (
    decision_service_pb2_grpc,
    report_service_pb2_grpc,
    run_service_pb2_grpc,
    stats_service_pb2_grpc,
)

__all__ = ["UNARY_RETRY_FOR", "Connection"]

UNARY_RETRY_FOR = 5.0
"""Seconds a repeatable unary call keeps trying while the server is out of reach."""

# Reconnect quickly after a server restart: grpc's own defaults back off up to 120 s between
# connection attempts, which would outlast the SDK's reconnect timeout. Not
# grpc.min_reconnect_backoff_ms: gRPC takes it as each connection attempt's timeout too (20 s
# by default), and at 100 ms a link of 300 ms each way took four attempts, one of 2.5 s each
# way never connected (found in review).
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Keepalive: while a call is open, ping every 30 s and give up on a connection whose
    # ping goes unanswered for 10 s. Long, quiet streams (a producer waiting for an answer,
    # a watcher of an idle run) then survive proxies and NATs that drop idle connections
    # (cloud load balancers after 350-600 s), and a path that stops acknowledging is meant to
    # be noticed in 40 s rather than at the next TCP timeout. A server that is stopped but
    # whose kernel still acknowledges (SIGSTOP, a paused VM) keeps the connection: grpcio
    # 1.85 leaves its ping outstanding, and calls carry on within milliseconds of the server
    # resuming, nothing lost or doubled (measured up to a 60 s stop); one stopped for longer
    # is left after about 60 s (60.4-60.7 s, measured three times), and the SDK resumes on
    # the target's next address. gRPC otherwise stops pinging after two pings without data.
    # The server accepts pings every 5 s or slower, so this never trips its abuse guard.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)


ACROSS_FORK = (
    "gRPC cannot be used across fork(): connect in the worker, started with the 'spawn' or "
    "'forkserver' method (multiprocessing.get_context('spawn')), or forked before the first "
    "Runstream call or after closing the client; for a run, pass its run_id and attach_run() "
    "it there"
)
"""What to do instead, said by every call of a client that a forked process cannot use."""

# The channels of this process still alive (open, or closed but not yet collected).
_LIVE_CHANNELS: weakref.WeakSet[grpc.aio.Channel] = weakref.WeakSet()
# Whether one of them lived when this process was forked from its parent (or an ancestor):
# gRPC's state, copied half-working into the child, hangs or crashes any channel here.
_forked_with_channel = False


GRPC_WIND_DOWN = 1.0
"""Seconds after closing its last channel during which a fork waits for gRPC's threads to
exit (they took up to 22 ms on a loaded machine). Past it, or while anything else in the
process uses gRPC (a server, another library's channel: their threads never exit), a fork
does not wait."""

# The names gRPC core gives its threads (15 characters at most, as Linux keeps them).
_GRPC_THREAD_NAMES = ("event_engine", "lifeguard", "grpc_global_tim")

# When this process last closed a Runstream channel (time.monotonic()), if it did.
_closed_at: float | None = None


def _grpc_threads_running() -> bool:
    """Whether a thread of gRPC's still runs in this process (False where none are listed)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                if comm.read().startswith(_GRPC_THREAD_NAMES):
                    return True
        except OSError:  # exited meanwhile
            continue
    return False


def _before_fork() -> None:
    """Right after the last channel closed, waits until gRPC's threads have exited: they wind
    down for some milliseconds after the last channel is gone, and a child forked meanwhile
    copied their state half-changed, so its first channel hung before its event loop could
    time anything out (4 forks in 200 under load; tests/clients/test_fork.py). With a
    channel alive the child refuses every call anyway (:data:`ACROSS_FORK`)."""
    if _LIVE_CHANNELS or _closed_at is None:
        return
    deadline = _closed_at + GRPC_WIND_DOWN
    while time.monotonic() < deadline and _grpc_threads_running():
        time.sleep(0.002)


def _after_fork_in_child() -> None:
    global _forked_with_channel
    _forked_with_channel = _forked_with_channel or bool(_LIVE_CHANNELS)


if hasattr(os, "register_at_fork"):  # not on Windows, which never forks
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


class Connection:
    """A lazily opened channel to one server, its service stubs, and per-call settings."""

    def __init__(
        self,
        target: str,
        *,
        metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None,
        timeout: float | None,
        reconnect_timeout: float | None,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, Any]],
        token: str | TokenProvider | None,
        insecure_token: bool = False,
        tls: TlsSettings | None = None,
    ) -> None:
        """`tls`: the TLS files `credentials` were made of, for what a failed connection
        means (None: plaintext without credentials, unknown with the caller's own)."""
        self._target = check_target(target)
        if isinstance(metadata, Mapping):
            self._metadata: tuple[tuple[str, str], ...] = tuple(metadata.items())
        else:
            self._metadata = tuple(metadata or ())
        check_token_transport(
            target,
            secure=credentials is not None,
            token=token,
            metadata=self._metadata,
            insecure_token=insecure_token,
        )
        self._interceptors = auth_interceptors(token)
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._credentials = credentials
        if tls is None and credentials is None:
            tls = TlsSettings(tls=False, **SDK_NAMES)
        self.diagnosis = Diagnosis(self._target, tls)
        """What this client's failed connections mean (see runstream._unreachable)."""
        overridden = {name for name, _ in options}
        self._options = [o for o in _CHANNEL_OPTIONS if o[0] not in overridden] + list(options)
        self._channel: grpc.aio.Channel | None = None
        # The loop the channel was opened in: a grpc.aio channel works only there.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Any: the generated *_pb2_grpc modules come without type stubs.
        self._run_stub: Any = None
        self._report_stub: Any = None
        self._decision_stub: Any = None
        self._stats_stub: Any = None
        # The process that opened the channel: a forked child inherits it but cannot use it.
        self._pid = 0
        self._closed = False

    @property
    def target(self) -> str:
        return self._target

    @property
    def reconnect_timeout(self) -> float | None:
        """How long reporters and watchers keep reconnecting (None: forever)."""
        return self._reconnect_timeout

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self, what: str) -> None:
        """FailedPreconditionError naming `what` once the client is closed: a stream's next
        attempt (a reconnect) on the closed channel would fail with grpc's UsageError."""
        if self._closed:
            raise FailedPreconditionError(f"{what}: the Runstream client was closed")

    def open(self) -> None:
        """Creates the channel and its stubs unless done already; FailedPreconditionError
        once closed, or in an event loop other than the one that opened it (the SDK raises
        only RunstreamErrors)."""
        if self._closed:
            raise client_closed()
        self._check_not_forked()
        if self._channel is not None and not self._in_its_loop():
            raise FailedPreconditionError(
                "the Runstream client was opened in another event loop (each asyncio.run() "
                "has its own); connect in the loop that uses it"
            )
        if self._channel is None:
            self._loop = _running_loop()
            self._pid = os.getpid()
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(
                    self._target, options=self._options, interceptors=self._interceptors
                )
            else:
                self._channel = grpc.aio.secure_channel(
                    self._target,
                    self._credentials,
                    options=self._options,
                    interceptors=self._interceptors,
                )
            self._run_stub = run_service_pb2_grpc.RunServiceStub(self._channel)  # type: ignore[no-untyped-call]
            self._report_stub = report_service_pb2_grpc.ReportServiceStub(  # type: ignore[no-untyped-call]
                self._channel
            )
            self._decision_stub = decision_service_pb2_grpc.DecisionServiceStub(  # type: ignore[no-untyped-call]
                self._channel
            )
            self._stats_stub = stats_service_pb2_grpc.StatsServiceStub(  # type: ignore[no-untyped-call]
                self._channel
            )
            _LIVE_CHANNELS.add(self._channel)

    def _check_not_forked(self) -> None:
        """FailedPreconditionError in a process forked while gRPC was in use in its parent,
        rather than a call that hangs or crashes it."""
        if self._channel is not None and self._pid != os.getpid():
            raise FailedPreconditionError(
                f"this Runstream client was opened before its process forked; {ACROSS_FORK}"
            )
        if self._channel is None and _forked_with_channel:
            raise FailedPreconditionError(
                "this process was forked while a Runstream client's gRPC channel was alive in "
                "its parent (a client not closed, or a raw_*_service stub kept); " + ACROSS_FORK
            )

    @property
    def run_service(self) -> Any:
        """The RunService stub (None until ``open()``)."""
        return self._run_stub

    @property
    def report_service(self) -> Any:
        """The ReportService stub (None until ``open()``)."""
        return self._report_stub

    @property
    def decision_service(self) -> Any:
        """The DecisionService stub (None until ``open()``)."""
        return self._decision_stub

    @property
    def stats_service(self) -> Any:
        """The StatsService stub (None until ``open()``)."""
        return self._stats_stub

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata of a call or stream starting now: the client's, then the trace
        context of the caller's current span."""
        return self._metadata + trace_metadata()

    async def call(self, method: Any, request: Any) -> Any:
        """One unary call with the client's deadline; raises grpc's AioRpcError, or
        FailedPreconditionError when the client is closed while the call is out."""
        try:
            response = await method(request, timeout=self._timeout, metadata=self.call_metadata())
        except asyncio.CancelledError:
            raise_if_closed_under("call")
            raise
        except grpc.aio.AioRpcError as exc:
            if not is_retryable(exc) and exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                self.diagnosis.reached()  # a server's verdict: it took the connection
            raise
        self.diagnosis.reached()
        return response

    async def unary(self, method: Any, request: Any, *, retry: bool = True) -> Any:
        """One unary call with the client's deadline; raises a RunstreamError.

        With ``retry`` (calls that may be repeated: reads, and answers, where the same answer
        again gets the same result) a failure that means the server or the connection went
        away is tried again for up to UNARY_RETRY_FOR seconds (at most the reconnect
        timeout): a server restarting, or the channel still waiting out its reconnect
        backoff, answers UNAVAILABLE at once. Controls (cancel, pause, resume) are not
        repeated: their second try would report the first one's effect as a failure. Either
        says why the client cannot connect when that is certain, at once, or likely, as it
        gives up (see runstream._unreachable.Diagnosis).
        """
        backoff = Backoff()
        limit = self._reconnect_timeout
        deadline = time.monotonic() + (
            UNARY_RETRY_FOR if limit is None else min(UNARY_RETRY_FOR, limit)
        )
        while True:
            try:
                return await self.call(method, request)
            except grpc.aio.AioRpcError as exc:
                if not is_retryable(exc):
                    raise error_from_rpc(exc) from exc
                if error := await self.diagnosis.at_once(exc):
                    raise error from exc
                if not retry:  # a control, not repeated: it gave up on nothing
                    raise error_from_rpc(exc) from exc
                if time.monotonic() >= deadline:
                    raise await self.diagnosis.given_up(error_from_rpc(exc), exc) from exc
                backoff.hold(exc)
            await asyncio.sleep(min(backoff.next_delay(), max(0.0, deadline - time.monotonic())))
            self.open()  # FailedPreconditionError if the client was closed meanwhile

    async def every_page(
        self, method: Any, request_for: Callable[[str], Any]
    ) -> AsyncGenerator[Any, None]:
        """Each response of a paginated List call, from the first page to the last; the
        request of a page is ``request_for(page_token)``."""
        page_token = ""
        while True:
            response = await self.unary(method, request_for(page_token))
            yield response
            page_token = response.next_page_token
            if not page_token:
                return

    async def close(self) -> None:
        self._closed = True
        self.diagnosis.close()
        if self._channel is None or self._pid != os.getpid() or not self._in_its_loop():
            # Left alone: inherited across fork() (gRPC cannot run it here), or another loop's.
            return
        global _closed_at
        try:
            await self._channel.close(grace=None)
        finally:
            # Let go of gRPC, so that this process can fork workers that connect on their own.
            self._channel = None
            self._run_stub = self._report_stub = self._decision_stub = self._stats_stub = None
            _closed_at = time.monotonic()

    def _in_its_loop(self) -> bool:
        """Whether the channel's loop is the running one (or either is unknown)."""
        running = _running_loop()
        return self._loop is None or running is None or running is self._loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a raw_*_service stub taken outside any loop
        return None


def raise_if_closed_under(what: str) -> None:
    """A call or stream ended with CancelledError though no one cancelled the task awaiting
    it: the client was closed under it (closing the channel cancels what is out). Says so as
    a RunstreamError, not as a cancellation that would make the awaiting task look
    cancelled."""
    task = asyncio.current_task()
    if task is not None and not task.cancelling():
        raise FailedPreconditionError(f"{what}: the Runstream client was closed")
