"""OpenTelemetry traces: a SERVER span per request, and each run exported as a trace.

Enabled by ``--otlp-endpoint`` or the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_ENDPOINT`` variables; spans go out over OTLP/gRPC in batches, and the
service is named by ``OTEL_SERVICE_NAME`` (default ``runstream``) with
``OTEL_RESOURCE_ATTRIBUTES`` added. The server keeps a tracer provider of its own rather than
the process-wide one, so an application that embeds the server keeps its own tracing.

- :class:`RpcTracer`: one SERVER span per call, named ``package.Service/Method``, child of
  the trace context the client sent (W3C ``traceparent`` metadata, which the SDK sends when
  the producer runs inside a span), with ``rpc.*`` attributes and the status code.
- :class:`RunTracer`: a run is a root span ``run WORKFLOW`` from its creation to its end
  (child of the CreateRun call's span, so it joins the producer's trace when there is one);
  each step is a child span ``step STEP_ID`` with its agent, status and duration; decisions,
  errors, alerts and recoveries are span events at the time they happened. The spans carry
  the events' own times, so the trace shows the run as it happened. A run created by another
  process (before a restart, or on another replica) is picked up at its next traced event:
  its trace is rebuilt from its snapshot (see :meth:`RunTracer._adopt`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.events import KIND_BY_FIELD, TERMINAL_FIELDS
from runstream_server.observability.logs import SaidOnce

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - the observability extra is not installed
    TracerProvider = None  # type: ignore[assignment,misc]

__all__ = ["RpcTracer", "RunTracer", "TracingUnavailable", "otlp_endpoint", "tracer_provider"]

log = logging.getLogger("runstream.tracing")

CLOSE_WAIT = 1.0
"""Seconds a stopping server waits for the trace collector to take its last spans."""

MAX_TRACED_RUNS = 10_000
"""Runs whose spans stay open at once; past that the oldest run's trace is dropped."""


EXPORTER_LOG = "opentelemetry.exporter.otlp.proto.grpc.exporter"
"""The OTLP exporter's logger, which says each failed batch again (every few seconds)."""


class TracingUnavailable(RuntimeError):
    """The OpenTelemetry packages are not installed."""


def otlp_endpoint(flag: str | None) -> str | None:
    """The flag's endpoint, else the standard environment variables', else None (off)."""
    return (
        flag
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def tracer_provider(endpoint: str) -> Any:
    """A provider exporting to `endpoint` over OTLP/gRPC (plaintext unless https://)."""
    if TracerProvider is None:
        raise TracingUnavailable(
            "tracing needs the OpenTelemetry packages: pip install 'runstream[observability]'"
        )
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    defaults = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "runstream"}
    provider = TracerProvider(resource=Resource.create(defaults))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # A collector down: the exporter says a warning and an error for every batch. One filter
    # per process, made afresh with each exporter (a server started again says it again).
    exporter_log = logging.getLogger(EXPORTER_LOG)
    for old in [f for f in exporter_log.filters if isinstance(f, SaidOnce)]:
        exporter_log.removeFilter(old)
    exporter_log.addFilter(SaidOnce())
    return provider


_SERVER_SPAN_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
"""The codes that mark a call's SERVER span as an error, as OpenTelemetry's gRPC conventions
say: the others (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, ...) answer the client's
request as the server should, and a trace backend counting them as server errors would page
on every client's typo. The code itself is on every span (``rpc.grpc.status_code``)."""


class RpcTracer:
    """SERVER spans for calls, continuing the caller's trace."""

    def __init__(self, provider: Any) -> None:
        self._tracer = provider.get_tracer("runstream.server")

    def start(self, full_method: str, metadata: Iterable[tuple[str, Any]]) -> Any:
        carrier = {key: value for key, value in metadata if isinstance(value, str)}
        parent = propagate.extract(carrier)
        service, _, method = full_method.partition("/")
        span = self._tracer.start_span(
            full_method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def end(self, handle: Any, code: str) -> None:
        span, token = handle
        span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
        if code in _SERVER_SPAN_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()
        with contextlib.suppress(Exception):
            otel_context.detach(token)


@dataclass
class _RunSpans:
    root: Any
    steps: dict[str, Any] = field(default_factory=dict)


def _when(event: event_pb2.RunEvent) -> int:
    return event.event_time.ToNanoseconds()


_STEP_ENDS = frozenset({"step_completed", "step_failed", "step_skipped"})
_ADOPTED_ON = _STEP_ENDS | {"step_started"} | TERMINAL_FIELDS


class RunTracer:
    """Turns each run's committed events into its trace."""

    @property
    def kinds(self) -> frozenset[int]:
        """The event kinds a trace shows; only these are decoded and handed to the tracer."""
        return _TRACED_KINDS

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("runstream.runs")
        self._runs: dict[str, _RunSpans] = {}

    def committed(self, run: run_pb2.Run, events: Sequence[event_pb2.RunEvent]) -> None:
        if run.run_id not in self._runs and any(
            e.WhichOneof("payload") in _ADOPTED_ON for e in events
        ):
            self._adopt(run, events)
        for event in events:
            self._apply(run, event)

    def _adopt(self, run: run_pb2.Run, events: Sequence[event_pb2.RunEvent]) -> None:
        """A run this process did not see created (created before a restart, or by another
        replica, as a producer moves between them), at its first step or end here: a root
        span from the run's creation and a span for each step still running, rebuilt from
        the snapshot, go on from here, so the process that sees the run end exports its root.
        Steps that ended before are not rebuilt: the process that saw them end exported
        them. It is a trace of its own (the creating call's is another process's), marked
        ``runstream.trace.continued``. A decision answered or an alert raised here alone
        does not adopt a run (a replica answering a question would hold spans it may never
        end)."""
        spans = self._open_root(
            run.run_id,
            run.workflow,
            run.display_name,
            len(run.steps),
            context=otel_context.Context(),  # a new trace
            start_time=run.create_time.ToNanoseconds(),
            continued=True,
        )
        # `run` is the snapshot after `events`, which are applied next: a step they start is
        # opened by its event, one they end was running before them.
        started_now = {e.step_started.step_id for e in events if e.HasField("step_started")}
        ended_now = {
            getattr(e, name).step_id
            for e in events
            if (name := e.WhichOneof("payload")) in _STEP_ENDS
        }
        for step in run.steps:
            if step.step_id in started_now or not step.HasField("start_time"):
                continue
            if step.status == run_pb2.STEP_STATUS_RUNNING or step.step_id in ended_now:
                started = event_pb2.StepStarted(
                    step_id=step.step_id, name=step.name, agent=step.agent
                )
                self._open_step(run, spans, started, step.start_time.ToNanoseconds())

    def _apply(self, run: run_pb2.Run, event: event_pb2.RunEvent) -> None:
        which = event.WhichOneof("payload")
        if which == "run_created":
            self._open_run(run, event)
            return
        spans = self._runs.get(run.run_id)
        shown = _SHOWN.get(which or "")
        if spans is not None and shown is not None:
            shown(self, run, spans, event, _when(event))

    def _step_started(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        self._open_step(run, spans, event.step_started, at)

    def _step_completed(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        done = event.step_completed
        self._close_step(spans, done.step_id, "completed", at, summary=done.summary)

    def _step_failed(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        failed = event.step_failed
        step = spans.steps.get(failed.step_id, spans.root)
        step.add_event("error", _error_attributes(failed.error), timestamp=at)
        self._close_step(spans, failed.step_id, "failed", at, error=failed.error.message)

    def _step_skipped(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        skipped = event.step_skipped
        self._close_step(spans, skipped.step_id, "skipped", at, summary=skipped.reason)

    def _decision_requested(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        asked = event.decision_requested
        spans.root.add_event(
            "decision.requested",
            {
                "runstream.decision_id": asked.decision_id,
                "runstream.decision.prompt": asked.prompt,
                "runstream.decision.options": [o.value for o in asked.options],
            },
            timestamp=at,
        )

    def _decision_resolved(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        resolved = event.decision_resolved
        outcome = event_pb2.DecisionOutcome.Name(resolved.outcome)
        spans.root.add_event(
            "decision.resolved",
            {
                "runstream.decision_id": resolved.decision_id,
                "runstream.decision.outcome": outcome.removeprefix("DECISION_OUTCOME_"),
                "runstream.decision.choice": resolved.choice,
                "runstream.decision.answered_by": resolved.answered_by,
            },
            timestamp=at,
        )

    def _error_recovery(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        recovery = event.error_recovery
        self._current(run, spans).add_event(
            "error_recovery",
            {
                "error.message": recovery.error_message,
                "runstream.recovery_strategy": recovery.recovery_strategy,
                "runstream.can_continue": recovery.can_continue,
            },
            timestamp=at,
        )

    def _alert(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        alert = event.alert
        self._current(run, spans).add_event(
            "alert",
            {"runstream.alert.code": alert.code, "runstream.alert.message": alert.message},
            timestamp=at,
        )

    def _open_run(self, run: run_pb2.Run, event: event_pb2.RunEvent) -> None:
        created = event.run_created
        self._open_root(
            run.run_id,
            created.workflow,
            created.display_name,
            len(created.steps),
            # The CreateRun call's span when requests are traced.
            context=otel_context.get_current(),
            start_time=_when(event),
        )

    def _open_root(
        self,
        run_id: str,
        workflow: str,
        display_name: str,
        steps: int,
        *,
        context: Any,
        start_time: int,
        continued: bool = False,
    ) -> _RunSpans:
        """Opens the run's root span ``run WORKFLOW`` and keeps it (the oldest run's spans
        are dropped past MAX_TRACED_RUNS)."""
        attributes: dict[str, Any] = {
            "runstream.run_id": run_id,
            "runstream.workflow": workflow,
            "runstream.display_name": display_name,
            "runstream.steps": steps,
        }
        if continued:
            attributes["runstream.trace.continued"] = True
        root = self._tracer.start_span(
            f"run {workflow}",
            context=context,
            kind=SpanKind.INTERNAL,
            start_time=start_time,
            attributes=attributes,
        )
        spans = self._runs[run_id] = _RunSpans(root)
        while len(self._runs) > MAX_TRACED_RUNS:
            del self._runs[next(iter(self._runs))]
        return spans

    def _open_step(
        self, run: run_pb2.Run, spans: _RunSpans, started: event_pb2.StepStarted, at: int
    ) -> None:
        planned = next((s for s in run.steps if s.step_id == started.step_id), None)
        agent = started.agent or (planned.agent if planned is not None else "")
        name = started.name or (planned.name if planned is not None else "")
        spans.steps[started.step_id] = self._tracer.start_span(
            f"step {started.step_id}",
            context=trace.set_span_in_context(spans.root),
            kind=SpanKind.INTERNAL,
            start_time=at,
            attributes={
                "runstream.run_id": run.run_id,
                "runstream.step_id": started.step_id,
                "runstream.step.name": name,
                "runstream.agent": agent,
            },
        )

    def _close_step(
        self,
        spans: _RunSpans,
        step_id: str,
        status: str,
        at: int,
        *,
        summary: str = "",
        error: str = "",
    ) -> None:
        span = spans.steps.pop(step_id, None)
        if span is None:
            return
        span.set_attribute("runstream.step.status", status)
        span.set_attribute("runstream.step.duration_ms", (at - span.start_time) / 1e6)
        if summary:
            span.set_attribute("runstream.step.summary", summary)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=at)

    @staticmethod
    def _current(run: run_pb2.Run, spans: _RunSpans) -> Any:
        return spans.steps.get(run.current_step_id, spans.root)

    def _close_run(
        self, run: run_pb2.Run, spans: _RunSpans, event: event_pb2.RunEvent, at: int
    ) -> None:
        del self._runs[run.run_id]
        for step_id in list(spans.steps):
            self._close_step(spans, step_id, "unfinished", at)
        root = spans.root
        status = run_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_")
        root.set_attribute("runstream.status", status)
        root.set_attribute("runstream.events", run.last_seq)
        if event.HasField("run_failed"):
            root.add_event("error", _error_attributes(event.run_failed.error), timestamp=at)
            root.set_status(Status(StatusCode.ERROR, event.run_failed.error.message))
        elif event.HasField("run_cancelled"):
            cancelled = event.run_cancelled
            root.add_event(
                "cancelled",
                {"runstream.reason": cancelled.reason, "runstream.by": cancelled.cancelled_by},
                timestamp=at,
            )
        root.end(end_time=at)

    def close(self) -> None:
        """Exports what is finished, waiting at most CLOSE_WAIT seconds for the collector;
        runs still open are not exported half-done."""
        self._runs.clear()
        # The exporter retries an unreachable collector for up to its timeout (10 s) before
        # giving a batch up; a stopping server does not wait that long for its last spans.
        handing_over = threading.Thread(
            target=self.provider.shutdown, name="runstream-trace-close", daemon=True
        )
        handing_over.start()
        handing_over.join(CLOSE_WAIT)
        if handing_over.is_alive():
            log.warning(
                "the trace collector did not take the last spans within %s s; leaving them",
                CLOSE_WAIT,
            )


_Shown = Callable[[RunTracer, run_pb2.Run, _RunSpans, event_pb2.RunEvent, int], None]

_SHOWN: dict[str, _Shown] = {
    "step_started": RunTracer._step_started,
    "step_completed": RunTracer._step_completed,
    "step_failed": RunTracer._step_failed,
    "step_skipped": RunTracer._step_skipped,
    "decision_requested": RunTracer._decision_requested,
    "decision_resolved": RunTracer._decision_resolved,
    "error_recovery": RunTracer._error_recovery,
    "alert": RunTracer._alert,
    **{name: RunTracer._close_run for name in TERMINAL_FIELDS},
}
"""What a run's trace shows of each kind after its creation, by payload field: every
terminal kind (its ``terminal`` annotation) ends the run's root span."""

_TRACED_KINDS = frozenset(KIND_BY_FIELD[name] for name in ("run_created", *_SHOWN))


def _error_attributes(error: run_pb2.ErrorInfo) -> dict[str, str]:
    return {"error.code": error.code, "error.message": error.message}
