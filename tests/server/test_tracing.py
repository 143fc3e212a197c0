"""OpenTelemetry: a real OTLP/gRPC receiver (the collector's TraceService, hosted by this test
on grpc.aio) gets each run as one trace, and the server's RPC spans continue the producer's
trace. The producer is the SDK, called inside a span of the test's own tracer provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import runstream
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider
from runstream import DecisionState, RunStatus, StepSpec
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.observability import tracing
from runstream_server.observability.logs import SaidOnce
from runstream_server.observability.tracing import EXPORTER_LOG

from tests.conftest import ConfigFactory, free_port

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
ERROR = trace_pb2.Status.STATUS_CODE_ERROR
UNSET = trace_pb2.Status.STATUS_CODE_UNSET


@dataclass
class Span:
    """One received span, with its attributes and events as plain values."""

    raw: trace_pb2.Span
    service: str

    @property
    def name(self) -> str:
        return self.raw.name

    @property
    def trace_id(self) -> str:
        return self.raw.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.raw.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.raw.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return _attributes(self.raw.attributes)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [_attributes(e.attributes) for e in self.raw.events if e.name == name]


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP trace receiver of an OpenTelemetry collector, in memory."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Span]:
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(Span(span, resource.get("service.name", "")))
        return found


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(0)


async def traced_server(tmp_path: Path, port: int) -> RunstreamServer:
    """A server started on a SQLite file in `tmp_path`, sending its spans to the collector
    on `port`."""
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=tmp_path / "runstream.db",
            otlp_endpoint=f"http://127.0.0.1:{port}",
        )
    )
    await server.start()
    return server


async def test_a_run_arrives_as_one_trace_that_continues_the_producers(
    collector: tuple[Collector, int], tmp_path: Path
) -> None:
    receiver, port = collector
    server = await traced_server(tmp_path, port)
    producer_tracer = TracerProvider().get_tracer("the-producer")
    try:
        async with (
            runstream.connect(server.target) as producer,
            runstream.connect(server.target) as viewer,
        ):
            with producer_tracer.start_as_current_span("campaign job") as job:
                run = await producer.start_run(
                    "campaign",
                    steps=[
                        runstream.StepSpec("research", "Research", agent="researcher"),
                        runstream.StepSpec("persona", "Persona", agent="strategist"),
                        runstream.StepSpec("copy", "Copy", agent="copywriter"),
                    ],
                )
                async with run:
                    async with run.step("research"):
                        pass
                    async with run.step("persona"):
                        asking = asyncio.create_task(
                            run.ask(
                                "Which persona?",
                                ["hiker", "runner"],
                                decision_id="persona",
                                timeout=timedelta(minutes=5),
                            )
                        )
                        for _ in range(2000):
                            if await viewer.list_decisions(run.run_id, state=DecisionState.OPEN):
                                break
                            await asyncio.sleep(0.01)
                        await viewer.submit_decision(
                            run.run_id, "persona", "runner", answered_by="ana"
                        )
                        await asyncio.wait_for(asking, 20)
                    async with run.step("copy"):
                        pass
                    await run.complete(summary="done")

                failing = await producer.start_run("campaign", steps=["only"])
                with pytest.raises(RuntimeError):
                    async with failing, failing.step("only"):
                        raise RuntimeError("the model timed out")
            finished = await viewer.get_run(run.run_id)
            assert finished.status == RunStatus.SUCCEEDED
            assert (await viewer.get_run(failing.run_id)).status == RunStatus.FAILED
    finally:
        await server.stop(grace=0.5)  # flushes the batched spans to the receiver

    producer_trace = format(job.get_span_context().trace_id, "032x")
    producer_span = format(job.get_span_context().span_id, "016x")
    spans = receiver.spans()
    assert spans and {s.service for s in spans} == {"runstream"}

    # RPC spans: SERVER spans carrying the producer's trace id, children of its span.
    create = [s for s in spans if s.name == "runstream.v1.RunService/CreateRun"]
    assert len(create) == 2
    for span in create:
        assert span.raw.kind == SERVER
        assert (span.trace_id, span.parent_id) == (producer_trace, producer_span)
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.method"] == "CreateRun"
        assert span.attributes["rpc.grpc.status_code"] == 0
    reports = [s for s in spans if s.name == "runstream.v1.ReportService/Report"]
    assert reports and all(s.trace_id == producer_trace for s in reports)
    # Calls made outside any span (the two GetRun at the end) start traces of their own.
    get_runs = [s for s in spans if s.name == "runstream.v1.RunService/GetRun"]
    assert len(get_runs) == 2
    assert all(s.trace_id != producer_trace and not s.parent_id for s in get_runs)

    # The run: a root span (in the producer's trace, under the CreateRun call) ...
    roots = [s for s in spans if s.name == "run campaign"]
    root = next(s for s in roots if s.attributes["runstream.run_id"] == run.run_id)
    assert root.trace_id == producer_trace
    assert root.parent_id == next(s.span_id for s in create if s.span_id == root.parent_id)
    assert root.attributes["runstream.workflow"] == "campaign"
    assert root.attributes["runstream.status"] == "SUCCEEDED"
    assert root.attributes["runstream.events"] == finished.last_seq
    # ... each step a child span with its agent, status and duration, in plan order ...
    steps = sorted(
        (s for s in spans if s.parent_id == root.span_id and s.name.startswith("step ")),
        key=lambda s: s.raw.start_time_unix_nano,
    )
    assert [s.name for s in steps] == ["step research", "step persona", "step copy"]
    assert [s.attributes["runstream.agent"] for s in steps] == [
        "researcher",
        "strategist",
        "copywriter",
    ]
    # The plan's names (found in review: "" for a step the plan named and its start did not).
    assert [s.attributes["runstream.step.name"] for s in steps] == ["Research", "Persona", "Copy"]
    for step in steps:
        assert step.trace_id == producer_trace
        assert step.attributes["runstream.step.status"] == "completed"
        took = (step.raw.end_time_unix_nano - step.raw.start_time_unix_nano) / 1e6
        assert step.attributes["runstream.step.duration_ms"] == pytest.approx(took)
        assert root.raw.start_time_unix_nano <= step.raw.start_time_unix_nano
        assert step.raw.end_time_unix_nano <= root.raw.end_time_unix_nano
    assert steps[0].raw.end_time_unix_nano <= steps[1].raw.start_time_unix_nano
    # ... and the decision as span events, asked then answered.
    [asked] = root.events("decision.requested")
    assert asked["runstream.decision_id"] == "persona"
    assert asked["runstream.decision.options"] == ["hiker", "runner"]
    [resolved] = root.events("decision.resolved")
    assert resolved["runstream.decision.outcome"] == "ANSWERED"
    assert resolved["runstream.decision.choice"] == "runner"
    assert resolved["runstream.decision.answered_by"] == "ana"

    # A failed run: the error is an event and the status of its step and of the run.
    failed_root = next(s for s in roots if s.attributes["runstream.run_id"] == failing.run_id)
    assert failed_root.attributes["runstream.status"] == "FAILED"
    assert failed_root.raw.status.code == ERROR
    [step] = [s for s in spans if s.parent_id == failed_root.span_id]
    assert step.raw.status.code == ERROR
    assert step.attributes["runstream.step.status"] == "failed"
    assert any("the model timed out" in e["error.message"] for e in step.events("error"))
    assert failed_root.events("error")


async def test_a_server_whose_collector_is_down_stops_without_waiting_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The exporter retries an unreachable collector for ten seconds before it gives a batch
    up; a stopping server waits one second for its last spans, says it left them, and stops
    (found in review: 8.5 s)."""
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=tmp_path / "runstream.db",
            otlp_endpoint=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        )
    )
    await server.start()
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("wf", steps=["a"])
        async with run, run.step("a"):
            pass
    loop = asyncio.get_running_loop()
    began = loop.time()
    await server.stop(grace=0.5)
    assert loop.time() - began < 5
    assert "did not take the last spans within 1.0 s" in caplog.text


async def test_a_run_finished_by_another_process_is_exported_by_it(
    collector: tuple[Collector, int], tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A run created before a restart (or by another replica, as its producer moved) was
    never traced where it ended: no run span, no step span was exported (found in review).
    The process that sees it end exports its root, rebuilt from the snapshot, and the steps
    it saw end; each step span goes out once, from the process that saw the step end."""
    receiver, port = collector
    config = server_config(tmp_path / "runstream.db", otlp_endpoint=f"http://127.0.0.1:{port}")
    first = RunstreamServer(config)
    await first.start()
    try:
        async with runstream.connect(first.target) as producer:
            run = await producer.start_run(
                "campaign", steps=[StepSpec("research", agent="researcher"), "draft", "review"]
            )
            async with run.step("research"):
                pass
            await run.start_step("draft", agent="writer")
            await run.flush()
            await run.close()
    finally:
        await first.stop(grace=0.5)

    second = RunstreamServer(config)
    await second.start()
    try:
        async with runstream.connect(second.target) as producer:
            again = await producer.attach_run(run.run_id)
            async with again:
                await again.step("draft").complete()  # started before the restart
                await again.skip_step("review", reason="not needed")
                await again.complete(summary="done")
    finally:
        await second.stop(grace=0.5)  # flushes the batched spans to the receiver

    spans = [s for s in receiver.spans() if s.attributes.get("runstream.run_id") == run.run_id]
    (root,) = [s for s in spans if s.name == "run campaign"]  # the first never saw the end
    assert root.attributes["runstream.trace.continued"] is True
    assert not root.parent_id  # a trace of its own, not the call's that ended the run's step
    assert root.attributes["runstream.status"] == "SUCCEEDED"
    steps = [s for s in spans if s.name.startswith("step ")]
    by_id = {s.attributes["runstream.step_id"]: s for s in steps}
    assert sorted(s.attributes["runstream.step_id"] for s in steps) == ["draft", "research"]
    draft, research = by_id["draft"], by_id["research"]
    # The step that ran across the restart is in the continued trace, with its own times.
    assert (draft.trace_id, draft.parent_id) == (root.trace_id, root.span_id)
    assert draft.attributes["runstream.agent"] == "writer"
    assert draft.attributes["runstream.step.status"] == "completed"
    # The continued root starts at the run's creation, not when the second process took it
    # up (0.5 s and more later). The creation is stamped by the server's store clock (on
    # Redis, Redis's, as the replica estimates it) and the step's start is its event's time,
    # two clocks that CI saw 5 ms apart under load.
    skew = 50_000_000
    assert root.raw.start_time_unix_nano <= draft.raw.start_time_unix_nano + skew
    assert research.raw.end_time_unix_nano <= draft.raw.start_time_unix_nano
    assert research.trace_id != root.trace_id  # exported by the first process, in its trace


async def test_a_run_that_only_ends_in_another_process_is_exported_by_it(
    collector: tuple[Collector, int], tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A run created before a restart whose next event is its end (no step started or ended
    after the restart) is taken up at that end: the process that sees it end exports its
    root, or no process ever would."""
    receiver, port = collector
    config = server_config(tmp_path / "runstream.db", otlp_endpoint=f"http://127.0.0.1:{port}")
    first = RunstreamServer(config)
    await first.start()
    try:
        async with runstream.connect(first.target) as producer:
            run = await producer.start_run("campaign", steps=["research"])
            await run.flush()
            await run.close()
    finally:
        await first.stop(grace=0.5)
    second = RunstreamServer(config)
    await second.start()
    try:
        async with runstream.connect(second.target) as producer:
            again = await producer.attach_run(run.run_id)
            async with again:
                await again.complete(summary="done")
    finally:
        await second.stop(grace=0.5)  # flushes the batched spans to the receiver
    spans = [s for s in receiver.spans() if s.attributes.get("runstream.run_id") == run.run_id]
    (root,) = [s for s in spans if s.name == "run campaign"]
    assert root.attributes["runstream.trace.continued"] is True
    assert root.attributes["runstream.status"] == "SUCCEEDED"


async def test_past_the_runs_traced_at_once_the_oldest_trace_is_dropped(
    collector: tuple[Collector, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_TRACED_RUNS open traces the oldest run's spans are dropped, never those of
    the run just created: the newer run's trace is the one its creation began, and the
    older run, at its end, is taken up again as a run from another process is."""
    monkeypatch.setattr(tracing, "MAX_TRACED_RUNS", 1)
    receiver, port = collector
    server = await traced_server(tmp_path, port)
    try:
        async with runstream.connect(server.target) as producer:
            older = await producer.start_run("older", steps=["a"])
            await older.flush()
            newer = await producer.start_run("newer", steps=["a"])
            for run in (newer, older):
                async with run:
                    await run.complete()
    finally:
        await server.stop(grace=0.5)  # flushes the batched spans to the receiver
    roots = {
        s.name: s.attributes.get("runstream.trace.continued", False)
        for s in receiver.spans()
        if s.name.startswith("run ")
    }
    assert roots == {"run older": True, "run newer": False}


async def test_the_traces_endpoint_variable_wins_over_the_general_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is for traces alone and wins over
    OTEL_EXPORTER_OTLP_ENDPOINT, as the OpenTelemetry specification has it."""
    import logging

    caplog.set_level(logging.INFO)
    traces, general = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", general)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)
    server = RunstreamServer(
        ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "runstream.db")
    )
    await server.start()
    try:
        assert f"traces to {traces} (OTLP/gRPC)" in caplog.messages
    finally:
        await server.stop(grace=0.5)


def test_a_fault_said_once_is_said_again_later_with_how_many_were_held_back() -> None:
    """What SaidOnce holds back is not lost: the next line let through says how many like it
    were held back meanwhile."""
    import logging
    import time

    said = SaidOnce(every=0.06)

    def failed() -> logging.LogRecord:
        message = "Failed to export traces to %s"
        return logging.LogRecord(EXPORTER_LOG, logging.ERROR, __file__, 1, message, ("c",), None)

    first = failed()
    assert said.filter(first)
    assert first.getMessage() == "Failed to export traces to c"
    assert [said.filter(failed()) for _ in range(3)] == [False] * 3
    time.sleep(0.1)
    later = failed()
    assert said.filter(later)
    assert later.getMessage() == "Failed to export traces to c (3 more like it in 0.001 min)"


async def test_a_collector_that_stays_down_is_said_once_not_for_every_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: the exporter logged a WARNING and an ERROR for every batch it could
    not send, about twelve lines a minute, 17,000 a day of one outage; and the server said
    nowhere at start where its traces go, as it does for metrics."""
    import logging

    from runstream_server.observability.tracing import EXPORTER_LOG

    caplog.set_level(logging.INFO)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0", store_path=tmp_path / "runstream.db", otlp_endpoint=endpoint
        )
    )
    await server.start()
    try:
        assert f"traces to {endpoint} (OTLP/gRPC)" in caplog.text
        exporter = logging.getLogger(EXPORTER_LOG)
        for _ in range(5):  # the exporter's own lines for five failed batches
            exporter.warning("Transient error %s encountered while exporting traces", "UNAVAILABLE")
            exporter.error("Failed to export traces to %s", endpoint)
        said = [r for r in caplog.records if r.name == EXPORTER_LOG]
        assert [r.levelname for r in said] == ["WARNING", "ERROR"]
    finally:
        await server.stop(grace=0.5)


async def test_a_call_the_client_got_wrong_is_no_error_of_the_servers_span(
    collector: tuple[Collector, int], tmp_path: Path
) -> None:
    """OpenTelemetry's gRPC conventions: a SERVER span is an error for the server's faults
    (UNIMPLEMENTED, INTERNAL, UNAVAILABLE, ...), not for a request answered as it should be
    (NOT_FOUND, INVALID_ARGUMENT); each span carries its code. Marking every refusal an error
    made a trace backend count each client's typo as a server error."""
    receiver, port = collector
    server = await traced_server(tmp_path, port)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            for request in (rs.GetRunRequest(run_id="none-such"), rs.GetRunRequest()):
                with pytest.raises(grpc.aio.AioRpcError):
                    await runs.GetRun(request)
            assert server.runs is not None

            async def broken(run_id: str) -> Any:
                raise RuntimeError("a bug")  # answered INTERNAL

            server.runs.get_run_details = broken  # type: ignore[method-assign]
            with pytest.raises(grpc.aio.AioRpcError):
                await runs.GetRun(rs.GetRunRequest(run_id="any"))
    finally:
        await server.stop(grace=0.5)  # flushes the batched spans to the receiver
    names = {code.value[0]: code.name for code in grpc.StatusCode}
    codes = {
        names[s.attributes["rpc.grpc.status_code"]]: s.raw.status.code
        for s in receiver.spans()
        if s.attributes.get("rpc.system") == "grpc"
    }
    assert codes == {"NOT_FOUND": UNSET, "INVALID_ARGUMENT": UNSET, "INTERNAL": ERROR}
