"""The client: one gRPC channel to a Runstream server, for producing, watching and querying.

:class:`Client` produces runs (``start_run``, ``attach_run``) and operates them (cancel,
pause, resume); it inherits reading stored runs from :mod:`runstream._run_queries`, following
them live from :mod:`runstream._watch` and answering decisions from
:mod:`runstream._decision_calls`. The channel, its stubs and what each call carries are
:mod:`runstream._connection`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import grpc

from runstream import _arguments as arguments
from runstream import _convert as convert
from runstream import _event_builders as builders
from runstream import _requests as rpc
from runstream._auth import TokenProvider, channel_credentials
from runstream._connection import Connection
from runstream._decision_calls import DecisionCalls
from runstream._errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    RunCancelledError,
    RunstreamError,
    error_from_rpc,
)
from runstream._reporter import RunReporter
from runstream._retry import Backoff, OutageLog, is_retryable
from runstream._run_queries import RunQueries
from runstream._stats import ServerStats, stats_from_pb
from runstream._types import Run, RunStatus, StepSpec, Target
from runstream._unreachable import SDK_NAMES, TlsSettings
from runstream._watch import RunWatching
from runstream.v1 import (
    decision_service_pb2_grpc,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    stats_service_pb2,
)

__all__ = ["Client", "connect"]

_log = logging.getLogger("runstream.client")


def connect(
    target: str,
    *,
    metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    timeout: float | None = 10.0,
    reconnect_timeout: float | None = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    token: str | TokenProvider | None = None,
    ca_file: str | Path | None = None,
    client_cert: str | Path | None = None,
    client_key: str | Path | None = None,
    insecure_token: bool = False,
) -> Client:
    """A client for the Runstream server at ``target`` ("host:port").

    Use it as ``async with runstream.connect(target) as client:`` or call ``await
    client.close()`` when done. The channel connects lazily, on the first call, and serves
    the event loop of that call only: in another (a second ``asyncio.run()``) the client
    raises FailedPreconditionError.

    Args:
        target: The server's address, for example "127.0.0.1:50051" ("[::1]:50051", or a
            gRPC URI such as "unix:/run/rs.sock"). A host without a port means gRPC's
            default, 443, not the CLI's 50051. A URL, an empty address, one with a space or
            without a host, or a port past 65535 raises ValueError saying so.
        metadata: gRPC metadata sent with every call. An ``authorization`` entry is held to
            the same rule as ``token`` (prefer ``token``: it refreshes).
        timeout: Deadline in seconds of each unary call (None: no deadline). Streams have none.
        reconnect_timeout: How long reporters and watchers keep reconnecting to an
            unreachable server before they raise UnavailableError (None: forever). Default 60 s.
        credentials: TLS channel credentials; plaintext when None (with a token, see
            ``insecure_token``). Credentials given here are taken as the caller's choice.
        options: Extra gRPC channel options; they override the SDK's defaults.
        token: A bearer JWT sent on every call, or a function (sync or async) returning one;
            a function is asked again shortly before each token expires, and streams the
            server ends at expiry resume with the new token (README, "Identity and access",
            "Long streams").
            Anyone who reads a token can replay it, so on a plaintext channel (no
            ``ca_file``, ``client_cert`` or ``credentials``) a token is sent only to a target
            on this machine: a unix socket, 127.0.0.0/8, ::1 or "localhost" (where a local
            proxy such as an Envoy sidecar may carry it on over TLS). To any other target,
            names included ("runstream:50051", "svc.ns.svc.cluster.local": they are not
            resolved to judge), ``connect`` raises ValueError, before anything connects,
            unless ``insecure_token``.
        ca_file: PEM file of the CA that signed the server's certificate: connect with TLS.
        client_cert: PEM client certificate for mutual TLS (with ``client_key``).
        client_key: PEM private key of ``client_cert``, unencrypted. ``connect`` raises
            ValueError naming a file of these three that holds no PEM certificate, or a
            key that is not the certificate's.
        insecure_token: Send the token over a plaintext channel to a target beyond this
            machine: in clear, so anyone on the path can read and replay it. Only for a
            network you trust end to end (a compose network on one host, a service mesh
            whose sidecars add mutual TLS). gRPC's own call credentials need a secure or
            local channel; this is the SDK's explicit way past that rule.
    """
    tls = None
    if credentials is None:
        credentials = channel_credentials(ca_file, client_cert, client_key)
        tls = TlsSettings(
            tls=credentials is not None,
            client_cert=str(client_cert) if client_cert is not None else None,
            client_key=str(client_key) if client_key is not None else None,
            **SDK_NAMES,
        )
    return Client(
        target,
        metadata=metadata,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        credentials=credentials,
        options=options,
        token=token,
        insecure_token=insecure_token,
        tls=tls,
    )


class Client(RunQueries, RunWatching, DecisionCalls):
    """A connection to a Runstream server. Create it with :func:`connect`."""

    def __init__(
        self,
        target: str,
        *,
        metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        timeout: float | None = 10.0,
        reconnect_timeout: float | None = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        token: str | TokenProvider | None = None,
        insecure_token: bool = False,
        tls: TlsSettings | None = None,
    ) -> None:
        """`tls`: the TLS files ``connect`` made `credentials` of, to say in their names why
        a connection fails (see runstream._unreachable)."""
        self._connection = Connection(
            target,
            metadata=metadata,
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            credentials=credentials,
            options=options,
            token=token,
            insecure_token=insecure_token,
            tls=tls,
        )
        self._reporters: weakref.WeakSet[RunReporter] = weakref.WeakSet()

    @property
    def target(self) -> str:
        """The server address this client talks to."""
        return self._connection.target

    def __reduce__(self) -> NoReturn:
        # Pickling is how a 'spawn' or 'forkserver' worker would get it; its channel and the
        # reporters' tasks belong to this process.
        raise TypeError(
            "a Runstream client cannot be sent to another process: connect in the worker; "
            "for a run, pass its run_id and attach_run() it there"
        )

    @property
    def raw_run_service(self) -> run_service_pb2_grpc.RunServiceStub:
        """The generated RunService stub on this client's channel (escape hatch)."""
        self._connection.open()
        stub: run_service_pb2_grpc.RunServiceStub = self._connection.run_service
        return stub

    @property
    def raw_report_service(self) -> report_service_pb2_grpc.ReportServiceStub:
        """The generated ReportService stub on this client's channel (escape hatch)."""
        self._connection.open()
        stub: report_service_pb2_grpc.ReportServiceStub = self._connection.report_service
        return stub

    @property
    def raw_decision_service(self) -> decision_service_pb2_grpc.DecisionServiceStub:
        """The generated DecisionService stub on this client's channel (escape hatch)."""
        self._connection.open()
        stub: decision_service_pb2_grpc.DecisionServiceStub = self._connection.decision_service
        return stub

    async def __aenter__(self) -> Client:
        self._connection.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the reporters still open (flushing them), then the channel. Idempotent."""
        if self._connection.closed:
            return

        async def close_one(reporter: RunReporter) -> None:
            try:
                await reporter._close_with_client()
            except RunstreamError as exc:
                _log.warning("closing the reporter of run %s failed: %s", reporter.run_id, exc)

        # At once: each may wait for a stalled server, and they would add up one after another.
        await asyncio.gather(*(close_one(reporter) for reporter in list(self._reporters)))
        await self._connection.close()

    # --- producing --------------------------------------------------------------------------

    async def start_run(
        self,
        workflow: str,
        *,
        steps: Iterable[StepSpec | str] = (),
        display_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        run_id: str | None = None,
        message: str = "",
        max_buffered: int = 10_000,
        targets: Iterable[Target] = (),
        cancel_task: bool = True,
        key_prefix: str | None = None,
        linger: float = 0.0,
    ) -> RunReporter:
        """Creates a run, opens its report stream and reports RunStarted.

        Args:
            workflow: The workflow the run executes, for example "campaign-generator".
            steps: The planned steps, in order (StepSpec, or a bare step id).
            display_name: Human-readable name; the server uses the workflow name when unset.
            labels: Labels for filtering, for example {"team": "growth"}.
            run_id: The run's id; the SDK generates one when None (an empty one raises
                InvalidArgumentError). CreateRun is retried while the server is unreachable;
                with a generated id, a retry that finds the run an earlier attempt created
                is accepted. With an id of yours it raises
                AlreadyExistsError (another producer may have taken it): continue the run
                with ``attach_run`` if it is yours.
            message: Optional note for RunStarted, for example the run's input (at most 4,096
                characters; a longer one raises InvalidArgumentError before the run is
                created).
            max_buffered: How many unacknowledged events (at least 1) the reporter holds
                before reporting calls wait (backpressure); they also wait while 64 MiB of
                events are, so a server out of reach costs bounded memory however large the
                events.
            targets: Goals for run-level metrics, e.g. ``Target("companies_found", 50)``; the
                server fires a milestone, once, when a reported metric reaches its target.
            cancel_task: When an operator cancels the run (``CancelRun``), cancel the task
                running inside ``async with run:`` so the workflow stops at once, even in
                the middle of a long await; the block then raises RunCancelledError (not
                CancelledError). With False, or without ``async with run:``, the workflow
                finds out at its next reporting call, which raises RunCancelledError, or by
                checking ``run.cancelled``. Default True.
            key_prefix: The prefix of the events' idempotency keys, ``"<prefix>:<n>"`` with
                n counting the reported events from 0 (RunStarted); random when None. See
                ``attach_run``. At most 108 characters, no control characters; checked
                before the run is created (InvalidArgumentError).
            linger: Seconds an event may wait for others to share its message (default 0:
                each leaves as soon as it is reported, or with those queued behind a send in
                progress). At a few hundred events a second, each in its own message, a
                linger of 0.02-0.1 s cuts the producer's CPU per event several times over, for
                that much added latency. ``flush()``, ``close()`` and the run's end send
                what is queued at once.

        Returns:
            The run's reporter; close it (or use ``async with``) when done.
        """
        _check_linger(linger)
        _check_max_buffered(max_buffered)
        arguments.key_prefix(key_prefix)  # before the run exists, like every argument
        if run_id == "":
            # The server would generate an id, a new one for each retry of a CreateRun whose
            # response was lost: one run per attempt, where None makes retries find theirs.
            raise InvalidArgumentError("run_id: must be a non-empty string (None generates one)")
        self._connection.open()
        generated = run_id is None
        new_run_id = run_id if run_id is not None else uuid.uuid4().hex
        request = rpc.create_run_request(
            new_run_id, workflow, display_name or "", labels, steps, list(targets)
        )
        builders.run_started_event(message)  # checks message before the run exists
        run = await self._create_run(request, generated=generated)
        # Stamped once the run exists: the server stamps RunCreated on arrival and takes
        # RunStarted's time as the run's start_time, which would precede its create_time.
        started = builders.run_started_event(message)
        reporter = self._reporter(run, max_buffered, cancel_task, key_prefix, linger)
        reporter._start(started)
        self._reporters.add(reporter)
        return reporter

    async def attach_run(
        self,
        run_id: str,
        *,
        key_prefix: str | None = None,
        max_buffered: int = 10_000,
        cancel_task: bool = True,
        linger: float = 0.0,
    ) -> RunReporter:
        """Continues reporting on a run that exists, e.g. after the producer process restarted.

        Reopens the run's report stream and returns its reporter once the server attached
        it, knowing what the new process needs to carry on: ``last_seq`` (the run's last
        event), ``paused`` (a paused run holds at the next step boundary as usual), and
        ``open_decisions`` (questions asked before and still open; ``ask()`` with the same
        ``decision_id`` waits for that answer instead of asking again).

        Idempotency keys are ``"<key_prefix>:<n>"``, n counting this reporter's events from 1
        (``start_run``'s RunStarted is 0). Give the key_prefix the run was started with and
        report the same events in the same order again (a workflow that replays from its
        start): the ones the server already stored are acknowledged once, with their
        original seqs, and only the new ones are appended. Only do that when the replay is
        the same: an event of the same kind under a stored key is taken for the stored one,
        another kind is refused (FailedPreconditionError from the call that reported it,
        naming the key and what it holds), and a replayed ``ask()`` finds the question
        stored under its key (the same question returns, or waits for, that decision's
        answer; another raises FailedPreconditionError). None generates a fresh prefix:
        everything reported is new. ``max_buffered``, ``cancel_task`` and ``linger`` are as
        in ``start_run``.

        Raises:
            NotFoundError: no such run.
            RunCancelledError: the run was cancelled.
            FailedPreconditionError: the run already ended.
        """
        _check_linger(linger)
        _check_max_buffered(max_buffered)
        arguments.key_prefix(key_prefix)
        self._connection.open()
        run = await self.get_run(run_id)
        if run.status == RunStatus.CANCELLED:
            raise RunCancelledError(run_id, run.cancel_reason)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            raise FailedPreconditionError(
                f"run {run_id!r} already ended ({run.status.name}); nothing can be reported"
            )
        reporter = self._reporter(run, max_buffered, cancel_task, key_prefix, linger)
        self._reporters.add(reporter)
        try:
            await reporter._attach()
        except BaseException:
            self._reporters.discard(reporter)
            await reporter._close_quietly()
            raise
        return reporter

    def _reporter(
        self,
        run: Run,
        max_buffered: int,
        cancel_task: bool,
        key_prefix: str | None,
        linger: float,
    ) -> RunReporter:
        return RunReporter(
            run=run,
            report_rpc=self._connection.report_service.Report,
            get_run=self.get_run,
            get_decision=self.get_decision,
            list_decisions=self.list_decisions,
            metadata=self._connection.call_metadata(),
            reconnect_timeout=self._connection.reconnect_timeout,
            max_buffered=max_buffered,
            cancel_task=cancel_task,
            key_prefix=key_prefix,
            linger=linger,
            diagnosis=self._connection.diagnosis,
        )

    async def _create_run(
        self, request: run_service_pb2.CreateRunRequest, *, generated: bool
    ) -> Run:
        backoff = Backoff()
        said = OutageLog(_log, f"CreateRun of workflow {request.workflow!r}")
        started = time.monotonic()
        while True:
            self._connection.open()  # a client closed meanwhile says so
            try:
                response: run_service_pb2.CreateRunResponse = await self._connection.call(
                    self._connection.run_service.CreateRun, request
                )
                said.back()
                return convert.run_from_pb(response.run)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ALREADY_EXISTS and generated:
                    # Nobody else knows an id this SDK just generated: the run is the one an
                    # earlier attempt created before its response was lost.
                    existing = await self.get_run(request.run_id)
                    if existing.workflow == request.workflow:
                        return existing
                    raise error_from_rpc(exc) from exc
                if not (is_retryable(exc) or code == grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise error_from_rpc(exc) from exc
                if error := await self._connection.diagnosis.at_once(exc):
                    raise error from exc
                limit = self._connection.reconnect_timeout
                if limit is not None and time.monotonic() - started > limit:
                    diagnosis = self._connection.diagnosis
                    raise await diagnosis.given_up(error_from_rpc(exc), exc) from exc
                backoff.hold(exc)
                said.lost(f"{code.name}: {exc.details()}", "retrying")
            await asyncio.sleep(backoff.next_delay())

    # --- operating a run -------------------------------------------------------------------

    async def cancel_run(self, run_id: str, *, reason: str = "", cancelled_by: str = "") -> Run:
        """Cancels a run and tells its producers; FailedPreconditionError if it already ended."""
        self._connection.open()
        response: run_service_pb2.CancelRunResponse = await self._connection.unary(
            self._connection.run_service.CancelRun,
            run_service_pb2.CancelRunRequest(
                run_id=run_id, reason=reason, cancelled_by=cancelled_by
            ),
            retry=False,
        )
        return convert.run_from_pb(response.run)

    async def pause_run(self, run_id: str, *, reason: str = "", requested_by: str = "") -> Run:
        """Pauses a run: its producers hold at their next step boundary until resumed.

        FailedPreconditionError unless the run is RUNNING or WAITING_FOR_INPUT.
        """
        self._connection.open()
        response: run_service_pb2.PauseRunResponse = await self._connection.unary(
            self._connection.run_service.PauseRun,
            run_service_pb2.PauseRunRequest(
                run_id=run_id, reason=reason, requested_by=requested_by
            ),
            retry=False,
        )
        return convert.run_from_pb(response.run)

    async def resume_run(self, run_id: str, *, reason: str = "", requested_by: str = "") -> Run:
        """Resumes a paused run. FailedPreconditionError unless the run is PAUSED."""
        self._connection.open()
        response: run_service_pb2.ResumeRunResponse = await self._connection.unary(
            self._connection.run_service.ResumeRun,
            run_service_pb2.ResumeRunRequest(
                run_id=run_id, reason=reason, requested_by=requested_by
            ),
            retry=False,
        )
        return convert.run_from_pb(response.run)

    # --- the server --------------------------------------------------------------------------

    async def get_stats(self) -> ServerStats:
        """The figures of the server replica that answers (StatsService.GetStats).
        PermissionDeniedError unless the token has the admin role, when tokens are required."""
        self._connection.open()
        response: stats_service_pb2.GetStatsResponse = await self._connection.unary(
            self._connection.stats_service.GetStats, stats_service_pb2.GetStatsRequest()
        )
        return stats_from_pb(response.stats)


def _check_linger(linger: float) -> None:
    if not 0 <= linger < float("inf"):  # also refuses NaN
        raise InvalidArgumentError(f"linger: must be a number of seconds >= 0, not {linger!r}")


def _check_max_buffered(max_buffered: int) -> None:
    # 0 or -1 read as "no limit", or "hold nothing", were taken as 1 without a word.
    if arguments.count("max_buffered", max_buffered) < 1:
        raise InvalidArgumentError("max_buffered: must be at least 1, got 0")
