"""The client: one gRPC channel to a Runstream server, for producing, watching and querying."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from runstream import _convert as convert
from runstream._auth import TokenProvider, auth_interceptors, channel_credentials
from runstream._errors import (
    FailedPreconditionError,
    RunCancelledError,
    RunstreamError,
    error_from_rpc,
)
from runstream._interaction import Interaction
from runstream._reporter import RunReporter
from runstream._retry import Backoff, is_retryable
from runstream._stats import ServerStats, stats_from_pb
from runstream._tracing import trace_metadata
from runstream._types import (
    Decision,
    DecisionState,
    Event,
    EventKind,
    Run,
    RunDetails,
    RunStatus,
    RunsUpdate,
    Step,
    StepSpec,
    Target,
)
from runstream._watch import watch_run, watch_runs
from runstream.v1 import (
    decision_service_pb2,
    decision_service_pb2_grpc,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    stats_service_pb2,
    stats_service_pb2_grpc,
)

__all__ = ["Client", "connect"]

_log = logging.getLogger("runstream.client")

# Reconnect quickly after a server restart: grpc's own defaults back off up to 120 s between
# connection attempts, which would outlast the SDK's reconnect timeout.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # Keepalive: while a call is open, ping every 30 s and give up on a connection whose
    # ping goes unanswered for 10 s. Long, quiet streams (a producer waiting for an answer,
    # a watcher of an idle run) then survive proxies and NATs that drop idle connections
    # (cloud load balancers after 350-600 s), and a dead path is noticed in 40 s rather than
    # at the next TCP timeout. gRPC otherwise stops pinging after two pings without data.
    # The server accepts pings every 5 s or slower, so this never trips its abuse guard.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)


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
) -> Client:
    """A client for the Runstream server at ``target`` ("host:port").

    Use it as ``async with runstream.connect(target) as client:`` or call ``await
    client.close()`` when done. The channel connects lazily, on the first call.

    Args:
        target: The server's address, for example "127.0.0.1:50051".
        metadata: gRPC metadata sent with every call, for example an authorization header.
        timeout: Deadline in seconds of each unary call (None: no deadline). Streams have none.
        reconnect_timeout: How long reporters and watchers keep reconnecting to an
            unreachable server before they raise UnavailableError (None: forever). Default 60 s.
        credentials: TLS channel credentials; plaintext when None.
        options: Extra gRPC channel options; they override the SDK's defaults.
        token: A bearer JWT sent on every call, or a function (sync or async) returning one;
            a function is asked again shortly before each token expires, and streams the
            server ends at expiry resume with the new token (see ``runstream._auth``).
        ca_file: PEM file of the CA that signed the server's certificate: connect with TLS.
        client_cert: PEM client certificate for mutual TLS (with ``client_key``).
        client_key: PEM private key of ``client_cert``.
    """
    if credentials is None:
        credentials = channel_credentials(ca_file, client_cert, client_key)
    return Client(
        target,
        metadata=metadata,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        credentials=credentials,
        options=options,
        token=token,
    )


class Client:
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
    ) -> None:
        self._target = target
        self._interceptors = auth_interceptors(token)
        if isinstance(metadata, Mapping):
            self._metadata: tuple[tuple[str, str], ...] = tuple(metadata.items())
        else:
            self._metadata = tuple(metadata or ())
        self._timeout = timeout
        self._reconnect_timeout = reconnect_timeout
        self._credentials = credentials
        overridden = {name for name, _ in options}
        self._options = [o for o in _CHANNEL_OPTIONS if o[0] not in overridden] + list(options)
        self._channel: grpc.aio.Channel | None = None
        self._run_stub: Any = None
        self._report_stub: Any = None
        self._decision_stub: Any = None
        self._stats_stub: Any = None
        self._reporters: weakref.WeakSet[RunReporter] = weakref.WeakSet()
        self._closed = False

    @property
    def target(self) -> str:
        """The server address this client talks to."""
        return self._target

    def _ensure_channel(self) -> None:
        if self._closed:
            raise RuntimeError("the Runstream client is closed")
        if self._channel is None:
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

    @property
    def raw_run_service(self) -> run_service_pb2_grpc.RunServiceStub:
        """The generated RunService stub on this client's channel (escape hatch)."""
        self._ensure_channel()
        stub: run_service_pb2_grpc.RunServiceStub = self._run_stub
        return stub

    @property
    def raw_report_service(self) -> report_service_pb2_grpc.ReportServiceStub:
        """The generated ReportService stub on this client's channel (escape hatch)."""
        self._ensure_channel()
        stub: report_service_pb2_grpc.ReportServiceStub = self._report_stub
        return stub

    @property
    def raw_decision_service(self) -> decision_service_pb2_grpc.DecisionServiceStub:
        """The generated DecisionService stub on this client's channel (escape hatch)."""
        self._ensure_channel()
        stub: decision_service_pb2_grpc.DecisionServiceStub = self._decision_stub
        return stub

    async def __aenter__(self) -> Client:
        self._ensure_channel()
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
        if self._closed:
            return
        for reporter in list(self._reporters):
            try:
                await reporter.close()
            except RunstreamError as exc:
                _log.warning("closing the reporter of run %s failed: %s", reporter.run_id, exc)
        self._closed = True
        if self._channel is not None:
            await self._channel.close(grace=None)

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(
                request, timeout=self._timeout, metadata=self._metadata + trace_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

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
    ) -> RunReporter:
        """Creates a run, opens its report stream and reports RunStarted.

        Args:
            workflow: The workflow the run executes, for example "campaign-generator".
            steps: The planned steps, in order (StepSpec, or a bare step id).
            display_name: Human-readable name; the server uses the workflow name when unset.
            labels: Labels for filtering, for example {"team": "growth"}.
            run_id: The run's id; the SDK generates one when unset. CreateRun is retried while
                the server is unreachable; a retry that finds the run it created is accepted.
            message: Optional note for RunStarted, for example the run's input.
            max_buffered: How many unacknowledged events the reporter holds before reporting
                calls wait (backpressure).
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
                ``attach_run``.

        Returns:
            The run's reporter; close it (or use ``async with``) when done.
        """
        self._ensure_channel()
        generated = run_id is None
        new_run_id = run_id if run_id is not None else uuid.uuid4().hex
        request = convert.create_run_request(
            new_run_id, workflow, display_name or "", labels, list(steps), list(targets)
        )
        run = await self._create_run(request, generated=generated)
        reporter = self._reporter(run, max_buffered, cancel_task, key_prefix)
        reporter._start(message)
        self._reporters.add(reporter)
        return reporter

    async def attach_run(
        self,
        run_id: str,
        *,
        key_prefix: str | None = None,
        max_buffered: int = 10_000,
        cancel_task: bool = True,
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
        the same; a different event under a stored key is dropped as a duplicate. None
        generates a fresh prefix: everything reported is new.

        Raises:
            NotFoundError: no such run.
            RunCancelledError: the run was cancelled.
            FailedPreconditionError: the run already ended.
        """
        self._ensure_channel()
        run = await self.get_run(run_id)
        if run.status == RunStatus.CANCELLED:
            raise RunCancelledError(run_id, run.cancel_reason)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            raise FailedPreconditionError(
                f"run {run_id!r} already ended ({run.status.name}); nothing can be reported"
            )
        reporter = self._reporter(run, max_buffered, cancel_task, key_prefix)
        self._reporters.add(reporter)
        try:
            await reporter._attach(self.list_decisions)
        except BaseException:
            self._reporters.discard(reporter)
            await reporter._close_quietly()
            raise
        return reporter

    def _reporter(
        self, run: Run, max_buffered: int, cancel_task: bool, key_prefix: str | None
    ) -> RunReporter:
        return RunReporter(
            run=run,
            report_rpc=self._report_stub.Report,
            get_run=self.get_run,
            get_decision=self.get_decision,
            metadata=self._metadata + trace_metadata(),
            reconnect_timeout=self._reconnect_timeout,
            max_buffered=max_buffered,
            cancel_task=cancel_task,
            key_prefix=key_prefix,
        )

    async def _create_run(
        self, request: run_service_pb2.CreateRunRequest, *, generated: bool
    ) -> Run:
        backoff = Backoff()
        started = time.monotonic()
        while True:
            try:
                response: run_service_pb2.CreateRunResponse = await self._run_stub.CreateRun(
                    request, timeout=self._timeout, metadata=self._metadata + trace_metadata()
                )
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
                retryable = is_retryable(exc) or code == grpc.StatusCode.DEADLINE_EXCEEDED
                elapsed = time.monotonic() - started
                if not retryable or (
                    self._reconnect_timeout is not None and elapsed > self._reconnect_timeout
                ):
                    raise error_from_rpc(exc) from exc
                backoff.hold(exc)
                _log.info("CreateRun failed (%s); retrying", code.name)
            await asyncio.sleep(backoff.next_delay())

    # --- watching ---------------------------------------------------------------------------

    def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Iterable[EventKind] | None = None,
        heartbeat_interval: timedelta | float | None = None,
        keep_open: bool = False,
    ) -> AsyncGenerator[Event, None]:
        """Streams the run's events after ``after_seq``, live, until the run ends.

        Reconnects with exponential backoff when the server or the connection goes away and
        resumes after the last event seen, so no event is lost or repeated. Raises
        NotFoundError for an unknown run, OutOfRangeError when ``after_seq`` is beyond the
        run's last event, UnavailableError when the server stays unreachable longer than the
        client's ``reconnect_timeout``.

        Args:
            run_id: The run to watch.
            after_seq: Start after this seq: 0 for the whole log, the last seq seen to resume.
            kinds: Deliver only these kinds of events (all when None or empty).
            heartbeat_interval: How long the stream may be idle before the server sends a
                heartbeat (seconds or timedelta; the server's default when None).
            keep_open: Keep watching after the run's terminal event, until the caller stops.

        Close the iterator when stopping early (``contextlib.aclosing``, or ``break`` in an
        ``async for`` inside it) so the stream is cancelled promptly.
        """
        self._ensure_channel()
        return watch_run(
            self._run_stub.WatchRun,
            run_id,
            after_seq=after_seq,
            kinds=kinds,
            heartbeat_interval=heartbeat_interval,
            keep_open=keep_open,
            metadata=self._metadata + trace_metadata(),
            reconnect_timeout=self._reconnect_timeout,
        )

    def watch_runs(
        self, filter: str = "", *, heartbeat_interval: timedelta | float | None = None
    ) -> AsyncGenerator[RunsUpdate, None]:
        """Follows every run matching ``filter``: their current state, then their changes.

        The first update has ``initial=True`` and holds every matching run (without steps);
        later ones hold the runs whose status, progress, estimate, health or viewers changed,
        including runs created after the watch began. Reconnects on its own with exponential
        backoff; after a reconnect another ``initial=True`` update brings the complete state
        again. Runs until the caller stops iterating.

        Args:
            filter: As for ``list_runs``, e.g. ``workflow = "campaign-generator"``; "" for all.
            heartbeat_interval: How long the stream may be idle before the server sends a
                heartbeat (kept internal; it only keeps proxies from cutting the stream).
        """
        self._ensure_channel()
        return watch_runs(
            self._run_stub.WatchRuns,
            filter=filter,
            heartbeat_interval=heartbeat_interval,
            metadata=self._metadata + trace_metadata(),
            reconnect_timeout=self._reconnect_timeout,
        )

    # --- queries ----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """The run's current snapshot. NotFoundError for an unknown run."""
        return (await self.get_run_details(run_id)).run

    async def get_run_details(self, run_id: str) -> RunDetails:
        """The run's snapshot with its last 50 agent activities and its open decisions."""
        self._ensure_channel()
        response: run_service_pb2.GetRunResponse = await self._unary(
            self._run_stub.GetRun, run_service_pb2.GetRunRequest(run_id=run_id)
        )
        return convert.run_details_from_pb(response)

    async def list_events_page(
        self,
        run_id: str,
        *,
        kinds: Iterable[EventKind] | None = None,
        page_size: int = 100,
        page_token: str = "",
    ) -> tuple[list[Event], str]:
        """One page of a run's stored events in seq order, and the next page's token ("" last).

        FailedPreconditionError when the page would start inside history the server's
        retention policy purged (see ``Run.purged_seq``).
        """
        self._ensure_channel()
        response: run_service_pb2.ListEventsResponse = await self._unary(
            self._run_stub.ListEvents,
            run_service_pb2.ListEventsRequest(
                run_id=run_id,
                page_size=page_size,
                page_token=page_token,
                filter=convert.event_kind_filter(kinds or ()),
            ),
        )
        return [convert.event_from_pb(e, run_id) for e in response.events], (
            response.next_page_token
        )

    async def list_events(
        self, run_id: str, *, kinds: Iterable[EventKind] | None = None, page_size: int = 500
    ) -> AsyncGenerator[Event, None]:
        """Every stored event of the run (of these kinds), in seq order, page by page.

        The history view: unlike ``watch`` it returns what is stored now and ends, live run
        or not. NotFoundError for an unknown run.
        """
        kind_filter = list(kinds or ())
        page_token = ""
        while True:
            events, page_token = await self.list_events_page(
                run_id, kinds=kind_filter, page_size=page_size, page_token=page_token
            )
            for event in events:
                yield event
            if not page_token:
                return

    async def list_runs_page(
        self, filter: str = "", page_size: int = 50, page_token: str = ""
    ) -> tuple[list[Run], str]:
        """One page of runs, most recently created first, and the next page's token ("" last).

        ``filter`` is a conjunction of comparisons such as ``status = RUNNING AND
        workflow = "campaign-generator" AND labels.team = "growth"``. Runs come without steps.
        """
        self._ensure_channel()
        response: run_service_pb2.ListRunsResponse = await self._unary(
            self._run_stub.ListRuns,
            run_service_pb2.ListRunsRequest(
                filter=filter, page_size=page_size, page_token=page_token
            ),
        )
        return [convert.run_from_pb(r) for r in response.runs], response.next_page_token

    async def list_runs(self, filter: str = "", page_size: int = 50) -> AsyncGenerator[Run, None]:
        """Every run matching ``filter``, most recent first, fetching pages as needed."""
        page_token = ""
        while True:
            runs, page_token = await self.list_runs_page(
                filter=filter, page_size=page_size, page_token=page_token
            )
            for run in runs:
                yield run
            if not page_token:
                return

    async def list_steps(self, run_id: str) -> list[Step]:
        """Every step of the run, in plan order. NotFoundError for an unknown run."""
        self._ensure_channel()
        steps: list[Step] = []
        page_token = ""
        while True:
            response: run_service_pb2.ListStepsResponse = await self._unary(
                self._run_stub.ListSteps,
                run_service_pb2.ListStepsRequest(
                    run_id=run_id, page_size=1000, page_token=page_token
                ),
            )
            steps.extend(convert.step_from_pb(s) for s in response.steps)
            page_token = response.next_page_token
            if not page_token:
                return steps

    async def cancel_run(self, run_id: str, reason: str = "", cancelled_by: str = "") -> Run:
        """Cancels a run and tells its producers; FailedPreconditionError if it already ended."""
        self._ensure_channel()
        response: run_service_pb2.CancelRunResponse = await self._unary(
            self._run_stub.CancelRun,
            run_service_pb2.CancelRunRequest(
                run_id=run_id, reason=reason, cancelled_by=cancelled_by
            ),
        )
        return convert.run_from_pb(response.run)

    async def pause_run(self, run_id: str, reason: str = "", requested_by: str = "") -> Run:
        """Pauses a run: its producers hold at their next step boundary until resumed.

        FailedPreconditionError unless the run is RUNNING or WAITING_FOR_INPUT.
        """
        self._ensure_channel()
        response: run_service_pb2.PauseRunResponse = await self._unary(
            self._run_stub.PauseRun,
            run_service_pb2.PauseRunRequest(
                run_id=run_id, reason=reason, requested_by=requested_by
            ),
        )
        return convert.run_from_pb(response.run)

    async def resume_run(self, run_id: str, reason: str = "", requested_by: str = "") -> Run:
        """Resumes a paused run. FailedPreconditionError unless the run is PAUSED."""
        self._ensure_channel()
        response: run_service_pb2.ResumeRunResponse = await self._unary(
            self._run_stub.ResumeRun,
            run_service_pb2.ResumeRunRequest(
                run_id=run_id, reason=reason, requested_by=requested_by
            ),
        )
        return convert.run_from_pb(response.run)

    # --- decisions --------------------------------------------------------------------------

    async def submit_decision(
        self,
        run_id: str,
        decision_id: str,
        choice: str | None = None,
        *,
        skip: bool = False,
        answered_by: str = "",
    ) -> Decision:
        """Answers (or, with ``skip=True``, skips) a decision; returns it closed.

        The first valid answer wins. Raises InvalidArgumentError for a choice that is not an
        option or a skip that is not allowed, NotFoundError for an unknown run or decision,
        FailedPreconditionError when the run already ended, and AbortedError when the
        decision was already closed otherwise (the message names the winning answer). The
        same answer again returns the same decision.
        """
        self._ensure_channel()
        response: decision_service_pb2.SubmitDecisionResponse = await self._unary(
            self._decision_stub.SubmitDecision,
            convert.submit_decision_request(run_id, decision_id, choice, skip, answered_by),
        )
        return convert.decision_from_pb(response.decision)

    async def get_stats(self) -> ServerStats:
        """The figures of the server replica that answers (StatsService.GetStats).
        PermissionDeniedError unless the token has the admin role, when tokens are required."""
        self._ensure_channel()
        response: stats_service_pb2.GetStatsResponse = await self._unary(
            self._stats_stub.GetStats, stats_service_pb2.GetStatsRequest()
        )
        return stats_from_pb(response.stats)

    async def get_decision(self, run_id: str, decision_id: str) -> Decision:
        """One decision of a run. NotFoundError when the run or decision is unknown."""
        self._ensure_channel()
        response: decision_service_pb2.GetDecisionResponse = await self._unary(
            self._decision_stub.GetDecision,
            decision_service_pb2.GetDecisionRequest(run_id=run_id, decision_id=decision_id),
        )
        return convert.decision_from_pb(response.decision)

    async def list_decisions(
        self, run_id: str, state: DecisionState | None = None
    ) -> list[Decision]:
        """The run's decisions in the order they were asked; only OPEN or RESOLVED ones when
        ``state`` says so. NotFoundError for an unknown run."""
        self._ensure_channel()
        filter = "" if state in (None, DecisionState.UNSPECIFIED) else f"state = {state.name}"
        decisions: list[Decision] = []
        page_token = ""
        while True:
            response: decision_service_pb2.ListDecisionsResponse = await self._unary(
                self._decision_stub.ListDecisions,
                decision_service_pb2.ListDecisionsRequest(
                    run_id=run_id, page_size=1000, page_token=page_token, filter=filter
                ),
            )
            decisions.extend(convert.decision_from_pb(d) for d in response.decisions)
            page_token = response.next_page_token
            if not page_token:
                return decisions

    def interact(
        self, run_ids: Iterable[str], viewer: str = "", *, max_updates: int = 1000
    ) -> Interaction:
        """A live, two-way connection to the decisions of these runs (DecisionService.Interact).

        Use ``async with client.interact([run_id], viewer="ana") as interaction:`` and
        ``async for update in interaction:`` for DecisionPrompt, DecisionClosed and
        AnswerResult updates; answer with ``await interaction.answer(run_id, decision_id,
        choice)``. ``viewer`` is recorded as who answered when an answer names nobody.
        At most ``max_updates`` updates wait for the caller to iterate; past that, the
        waiting ones are replaced by a resync of the open decisions (see Interaction).
        """
        self._ensure_channel()
        return Interaction(
            self._decision_stub.Interact,
            run_ids,
            viewer=viewer,
            metadata=self._metadata + trace_metadata(),
            reconnect_timeout=self._reconnect_timeout,
            max_updates=max_updates,
        )
