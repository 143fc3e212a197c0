"""The client: one gRPC channel to a Runstream server, for producing, watching and querying."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import grpc

from runstream import _convert as convert
from runstream._errors import RunstreamError, error_from_rpc
from runstream._reporter import RunReporter
from runstream._retry import Backoff, is_retryable
from runstream._types import Event, EventKind, Run, Step, StepSpec
from runstream._watch import watch_run
from runstream.v1 import (
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
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
)


def connect(
    target: str,
    *,
    metadata: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    timeout: float | None = 10.0,
    reconnect_timeout: float | None = 60.0,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
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
    """
    return Client(
        target,
        metadata=metadata,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        credentials=credentials,
        options=options,
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
    ) -> None:
        self._target = target
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
                self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self._target, self._credentials, options=self._options
                )
            self._run_stub = run_service_pb2_grpc.RunServiceStub(self._channel)  # type: ignore[no-untyped-call]
            self._report_stub = report_service_pb2_grpc.ReportServiceStub(  # type: ignore[no-untyped-call]
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
            return await method(request, timeout=self._timeout, metadata=self._metadata)
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

        Returns:
            The run's reporter; close it (or use ``async with``) when done.
        """
        self._ensure_channel()
        generated = run_id is None
        new_run_id = run_id if run_id is not None else uuid.uuid4().hex
        request = convert.create_run_request(
            new_run_id, workflow, display_name or "", labels, list(steps)
        )
        run = await self._create_run(request, generated=generated)
        reporter = RunReporter(
            run=run,
            report_rpc=self._report_stub.Report,
            get_run=self.get_run,
            metadata=self._metadata,
            reconnect_timeout=self._reconnect_timeout,
            max_buffered=max_buffered,
        )
        reporter._start(message)
        self._reporters.add(reporter)
        return reporter

    async def _create_run(
        self, request: run_service_pb2.CreateRunRequest, *, generated: bool
    ) -> Run:
        backoff = Backoff()
        started = time.monotonic()
        while True:
            try:
                response: run_service_pb2.CreateRunResponse = await self._run_stub.CreateRun(
                    request, timeout=self._timeout, metadata=self._metadata
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
            metadata=self._metadata,
            reconnect_timeout=self._reconnect_timeout,
        )

    # --- queries ----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        """The run's current snapshot. NotFoundError for an unknown run."""
        self._ensure_channel()
        response: run_service_pb2.GetRunResponse = await self._unary(
            self._run_stub.GetRun, run_service_pb2.GetRunRequest(run_id=run_id)
        )
        return convert.run_from_pb(response.run)

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
