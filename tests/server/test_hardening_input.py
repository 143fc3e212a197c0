"""Issue 8, items 2, 4 and 17: malformed bytes, out-of-range values, and what the log says.

Every call here is raw bytes or a raw stub on a real server, as a client written from the
protos alone (or a fuzzer) would send them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc as rs_grpc
from runstream_server.api.errors import RejectionLog
from runstream_server.app import RunstreamServer
from runstream_server.auth import principal
from runstream_server.observability import logs
from runstream_server.observability.logs import RequestContextFilter

from tests.conftest import ServerProcess
from tests.server.support import append, create_run, ev, watch_all

TRUNCATED = rs.CreateRunRequest(workflow="wf", display_name="x" * 40).SerializeToString()[:-5]
NOT_UTF8 = "not-utf8"  # stands for: the method's first string field holding b"\xff\xfe\xfd"

METHODS = {
    "/runstream.v1.RunService/CreateRun": "unary",
    "/runstream.v1.RunService/ListRuns": "unary",
    "/runstream.v1.RunService/WatchRun": "server_stream",
    "/runstream.v1.ReportService/AppendEvents": "unary",
    "/runstream.v1.ReportService/Report": "bidi",
    "/runstream.v1.DecisionService/SubmitDecision": "unary",
    "/runstream.v1.DecisionService/Interact": "bidi",
}


def _raw(data: bytes) -> bytes:
    return data


def not_utf8(method: str) -> bytes:
    """A request for `method` whose first string field holds bytes that are not UTF-8."""
    service, name = method.strip("/").rsplit("/", 1)
    pool = descriptor_pool.Default()
    return _bad_string(pool.FindServiceByName(service).FindMethodByName(name).input_type)


def _bad_string(message: Any) -> bytes:
    """The encoding of `message` with its first string field (maybe nested) not UTF-8."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            inner = b"\xff\xfe\xfd"
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            inner = _bad_string(field.message_type)
        else:
            continue
        return bytes([field.number << 3 | 2, len(inner)]) + inner
    raise AssertionError(f"{message.full_name} has no string field")


async def call_raw(
    channel: grpc.aio.Channel, method: str, data: bytes | str
) -> grpc.aio.AioRpcError:
    """Sends `data` as the request (the only message, for streams); returns the error."""
    kind = METHODS[method]
    if data == NOT_UTF8:
        data = not_utf8(method)
    assert isinstance(data, bytes)
    options: dict[str, Callable[[bytes], bytes]] = {
        "request_serializer": _raw,
        "response_deserializer": _raw,
    }

    async def one() -> AsyncIterator[bytes]:
        yield data

    with pytest.raises(grpc.aio.AioRpcError) as info:
        if kind == "unary":
            await channel.unary_unary(method, **options)(data, timeout=10)
        elif kind == "server_stream":
            async for _ in channel.unary_stream(method, **options)(data, timeout=10):
                pass
        else:
            async for _ in channel.stream_stream(method, **options)(one(), timeout=10):
                pass
    return info.value


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("data", [TRUNCATED, NOT_UTF8], ids=["truncated", "not-utf8"])
async def test_undecodable_requests_are_invalid_argument_on_every_kind_of_rpc(
    stubs: Any, method: str, data: bytes | str
) -> None:
    err = await call_raw(stubs.channel, method, data)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert details.startswith("request: is not a valid runstream.v1.")
    assert "class" not in details and "DecodeError" not in details


async def test_undecodable_message_later_in_a_report_stream_ends_it_invalid_argument(
    stubs: Any,
) -> None:
    run = await create_run(stubs)
    good = ev.RunEvent(custom=ev.Custom(type="ok"), idempotency_key="a").SerializeToString()
    first = b"\x0a" + bytes([len(run.run_id)]) + run.run_id.encode() + b"\x12"
    first += bytes([len(good)]) + good

    async def messages() -> AsyncIterator[bytes]:
        yield first
        yield TRUNCATED

    call = stubs.channel.stream_stream(
        "/runstream.v1.ReportService/Report", request_serializer=_raw, response_deserializer=_raw
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call(messages(), timeout=10):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The good first batch was stored, the bad message nothing.
    events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    assert [e.WhichOneof("payload") for e in events.events] == ["run_created", "custom"]


async def test_the_server_still_serves_after_garbage(stubs: Any) -> None:
    for method in METHODS:
        await call_raw(stubs.channel, method, TRUNCATED)
    run = await create_run(stubs)
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.run_id == run.run_id


# --- item 4: values outside their enum, negative counts ---------------------------------------


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_target_kind_outside_the_enum_is_invalid_argument(stubs: Any) -> None:
    target = run_pb2.Target(metric="leads", value=10)
    target.kind = 999  # type: ignore[assignment]
    err = await rpc_error(create_run(stubs, targets=[target]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "targets[0].kind: 999 is not a known TargetKind value"
    listed = await stubs.runs.ListRuns(rs.ListRunsRequest())
    assert list(listed.runs) == []


async def test_activity_type_outside_the_enum_is_invalid_argument(stubs: Any) -> None:
    run = await create_run(stubs)
    activity = ev.AgentActivity(agent_id="writer")
    activity.activity = 999  # type: ignore[assignment]
    err = await rpc_error(append(stubs, run.run_id, ev.RunEvent(agent_activity=activity)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(
        "events[0].agent_activity.activity: 999 is not a known AgentActivityType"
    )
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.last_seq == 1


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"run_id": "abc\n"}, "run_id"),
        ({"labels": {"team\n": "growth"}}, "labels"),
        ({"step_ids": ["research\n"]}, "steps[0].step_id"),
    ],
    ids=["run_id", "label", "step_id"],
)
async def test_an_id_ending_in_a_newline_is_invalid_argument(
    stubs: Any, fields: dict[str, Any], named: str
) -> None:
    """A trailing newline is no part of an id: such a run would be a second run beside "abc",
    and its id would break the replicas' notices on Redis."""
    fields = dict(fields)  # the parametrized dict is shared by every store's run
    err = await rpc_error(create_run(stubs, *fields.pop("step_ids", ()), **fields))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(named)
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []


CENTURY_AND_A_DAY = duration_pb2.Duration(seconds=3_155_760_000 + 86_400)


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (
            ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=10)),
            "events[0].step_progress.estimated_time_remaining",
        ),
        (
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
            "events[0].step_completed.duration",
        ),
        (
            ev.RunEvent(
                decision_requested=ev.DecisionRequested(
                    decision_id="d", prompt="Go?", options=[ev.DecisionOption(value="yes")]
                )
            ),
            "events[0].decision_requested.timeout",
        ),
    ],
    ids=["estimate", "step-duration", "decision-timeout"],
)
async def test_a_duration_past_a_century_is_invalid_argument_naming_it(
    stubs: Any, event: ev.RunEvent, named: str
) -> None:
    """Durations a producer sends stay within 100 years, so that a time plus any of them is
    still a valid time: 9,000 years of "time remaining" used to fail the append INTERNAL."""
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    bad = ev.RunEvent()
    bad.CopyFrom(event)
    payload = getattr(bad, bad.WhichOneof("payload"))
    getattr(payload, named.rsplit(".", 1)[1]).CopyFrom(CENTURY_AND_A_DAY)
    err = await rpc_error(append(stubs, run.run_id, bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == f"{named}: must be a non-negative duration of at most 100 years"
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.last_seq == 2


async def test_a_workflow_whose_history_adds_up_to_millennia_still_takes_events(
    stubs: Any,
) -> None:
    """Estimates stop at 100 years: a finished run of 90 steps of a century each (9,000
    years, past what a time can say) used to fail every append to the workflow's next run."""
    steps = [f"s{i}" for i in range(90)]
    century = duration_pb2.Duration(seconds=3_155_760_000)
    done = await create_run(stubs, *steps, workflow="ages")
    for step_id in steps:
        await append(
            stubs,
            done.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id=step_id)),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id=step_id, duration=century)),
        )
    await append(stubs, done.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    run = await create_run(stubs, *steps, workflow="ages")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="s0")))
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
    assert 99 * 365 * 86_400 < estimate.remaining.seconds <= 3_155_760_000


async def test_a_metric_change_too_large_for_a_number_is_left_out_not_stored_infinite(
    stubs: Any,
) -> None:
    """The server refuses infinities on input, so it never writes one: from 1.7e308 to
    -1.7e308 the change overflows, and the update carries no change for that metric."""
    run = await create_run(stubs)
    for value in (1.7e308, -1.7e308, -1.6e308):
        update = ev.MetricsUpdate(values={"score": value, "cost": 1.0})
        await append(stubs, run.run_id, ev.RunEvent(metrics_update=update))
    got = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert got.metrics["score"] == -1.6e308
    assert dict(got.metric_changes) == {"score": pytest.approx(0.1e308), "cost": 0.0}
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    events = [e for r in await watch_all(stubs, run.run_id) for e in r.events]
    changes = [dict(e.metrics_update.changes) for e in events if e.HasField("metrics_update")]
    assert changes == [{}, {"cost": 0.0}, {"score": pytest.approx(0.1e308), "cost": 0.0}]


async def test_negative_attempt_is_invalid_argument(stubs: Any) -> None:
    run = await create_run(stubs)
    recovery = ev.ErrorRecovery(error_message="rate limited", attempt=-1)
    err = await rpc_error(append(stubs, run.run_id, ev.RunEvent(error_recovery=recovery)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "events[0].error_recovery.attempt: must not be negative, got -1"


async def test_a_negative_expected_cost_is_invalid_argument(stubs: Any) -> None:
    run = await create_run(stubs)
    allocation = ev.ModelAllocation(model="m", expected_cost_usd=-0.5)
    err = await rpc_error(append(stubs, run.run_id, ev.RunEvent(model_allocation=allocation)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "events[0].model_allocation.expected_cost_usd: must be at least 0, got -0.5"
    )
    allocation.expected_cost_usd = 0.0  # free, and said so
    await append(stubs, run.run_id, ev.RunEvent(model_allocation=allocation))


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
async def test_a_non_finite_number_deep_in_a_struct_is_invalid_argument(
    stubs: Any, number: float
) -> None:
    run = await create_run(stubs)
    event = ev.RunEvent(custom=ev.Custom(type="scores"))
    event.custom.data.update({"label": "ok", "nested": {"values": [1.0, 2.5, number]}})
    err = await rpc_error(append(stubs, run.run_id, event))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "events[0].custom.data: numbers must be finite"
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.last_seq == 1


async def test_finite_numbers_and_text_whose_bytes_look_like_infinity_are_stored(
    stubs: Any,
) -> None:
    # The largest double, the double just below 2 and a DEL character encode with the
    # bytes 0x7F and 0xFF that every NaN and infinity ends with; they are all valid.
    values = {"max": 1.7976931348623157e308, "below_two": 1.9999999999999998, "text": "a\x7fb"}
    run = await create_run(stubs)
    event = ev.RunEvent(custom=ev.Custom(type="edge"))
    event.custom.data.update(values)
    assert b"\xff" in event.custom.data.SerializeToString()
    await append(stubs, run.run_id, event)
    events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    stored = dict(events.events[-1].custom.data)
    assert stored == values


async def test_negative_and_unknown_values_in_read_requests_name_their_field(stubs: Any) -> None:
    run = await create_run(stubs)
    err = await rpc_error(stubs.runs.ListRuns(rs.ListRunsRequest(page_size=-5)))
    assert (err.code(), (err.details() or "").split(":")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    request = rs.WatchRunRequest(run_id=run.run_id)
    request.kinds.append(999)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stubs.runs.WatchRun(request):
            pass
    assert (info.value.code(), (info.value.details() or "").split(":")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "kinds[0]",
    )


# --- item 3 (the write side): every stored string and map has a limit ------------------------


async def test_a_huge_display_name_is_refused_and_lists_keep_working(stubs: Any) -> None:
    err = await rpc_error(create_run(stubs, display_name="x" * 2_500_000))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "display_name: is 2500000 characters; the limit is 256 characters"
    err = await rpc_error(create_run(stubs, labels={"team": "y" * 100_000}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith("labels['team']: is 100000 characters")
    await create_run(stubs, display_name="x" * 256, labels={"team": "y" * 256})
    listed = await stubs.runs.ListRuns(rs.ListRunsRequest())
    assert len(listed.runs) == 1


# --- item 17: rejections do not flood the log ---------------------------------------------------


async def test_many_rejected_calls_log_at_most_two_lines_and_no_traceback(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(server.target) as channel:
        for i in range(60):
            method = sorted(METHODS)[i % len(METHODS)]
            await call_raw(channel, method, TRUNCATED if i % 2 else NOT_UTF8)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.INFO
    assert lines[0].exc_info is None
    assert "rejected" in lines[0].getMessage()


def test_rejections_are_summarised_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rejections = RejectionLog(interval=60, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="runstream.api")
    for i in range(34_000):
        now[0] = i * 0.001  # 34 s of garbage
        rejections.note("/runstream.v1.ReportService/Report", "INVALID_ARGUMENT", "request: bad")
    now[0] = 61.0
    rejections.note("/runstream.v1.ReportService/Report", "INVALID_ARGUMENT", "request: bad")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert messages[1] == (
        "33999 more requests rejected since the last report: "
        "/runstream.v1.ReportService/Report INVALID_ARGUMENT x33999"
    )


async def test_the_summary_comes_when_the_interval_ends_even_if_rejections_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rejections = RejectionLog(interval=0.2)
    caplog.set_level(logging.INFO, logger="runstream.api")
    for _ in range(5):
        rejections.note("/runstream.v1.RunService/GetRun", "NOT_FOUND", "run 'x' not found")
    for _ in range(200):  # the timer fires 0.2 s after the first; allow for a busy machine
        if len(caplog.records) == 2:
            break
        await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records][1] == (
        "4 more requests rejected since the last report: "
        "/runstream.v1.RunService/GetRun NOT_FOUND x4"
    )


async def test_the_summary_carries_no_request_context(caplog: pytest.LogCaptureFixture) -> None:
    """The summary speaks for many requests: it must not carry the run id, method and caller
    of the one whose rejection started the interval's timer."""
    rejections = RejectionLog(interval=0.2)
    caplog.set_level(logging.INFO, logger="runstream.api")
    caplog.handler.addFilter(RequestContextFilter())  # the filter `serve` logs through

    async def handle(run_id: str) -> None:
        logs.request_scope("runstream.v1.RunService/GetRun", run_id)
        principal.bind(principal.Principal.of("alice", "acme", ["viewer"]))
        rejections.note("/runstream.v1.RunService/GetRun", "NOT_FOUND", f"run {run_id!r}")

    for run_id in ("run-1", "run-2", "run-3"):
        await asyncio.create_task(handle(run_id))
    for _ in range(200):
        if len(caplog.records) == 2:
            break
        await asyncio.sleep(0.05)
    first, summary = caplog.records
    assert (first.run_id, first.method) == ("run-1", "runstream.v1.RunService/GetRun")
    assert summary.getMessage().startswith("2 more requests rejected")
    assert (summary.run_id, summary.method) == (None, None)
    assert getattr(summary, "principal", None) is None


async def test_a_served_process_logs_garbage_calls_in_a_line_or_two_not_tracebacks(
    server_process: ServerProcess,
) -> None:
    """The report: 34,000 garbage Report/Interact calls wrote 24.5 MB of tracebacks."""
    server_process.start()
    log = server_process.store_path.with_suffix(".log")
    before = log.stat().st_size
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        for i in range(300):
            method = (
                "/runstream.v1.ReportService/Report",
                "/runstream.v1.DecisionService/Interact",
            )[i % 2]
            await call_raw(channel, method, TRUNCATED if i % 3 else NOT_UTF8)
    assert server_process.terminate() == 0
    written = log.read_text()[before:]
    assert "Traceback" not in written
    rejected = [line for line in written.splitlines() if "rejected" in line]
    assert 1 <= len(rejected) <= 2, written
    assert len(written) < 2000, written


async def test_a_run_id_holding_a_newline_stays_escaped_on_its_own_log_line(
    server_process: ServerProcess,
) -> None:
    """The report: an unauthenticated GetRun whose run id held a newline and a made-up log
    line made the text log show that line as the server's own."""
    forged = "2026-01-01 00:00:00,000 WARNING runstream.server: all runs deleted"
    server_process.start()
    log = server_process.store_path.with_suffix(".log")
    before = log.stat().st_size
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await rs_grpc.RunServiceStub(channel).GetRun(
                rs.GetRunRequest(run_id=f"abc\n{forged}\r\x1b[2K"), timeout=10
            )
    assert server_process.terminate() == 0
    lines = log.read_text()[before:].splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01")], lines
    [rejected] = [line for line in lines if "rejected" in line]
    assert rejected.endswith(
        f"[run_id=abc\\n{forged}\\r\\x1b[2K method=runstream.v1.RunService/GetRun]"
    )


def test_a_traceback_keeps_its_lines_under_an_escaped_first_line() -> None:
    """Only the record's own line is escaped: a traceback stays readable below it."""
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord(
        "runstream.api", logging.ERROR, __file__, 1, "unexpected error in %s", ("a\nb",), failure
    )
    record.run_id = "abc\r\nforged"
    first, *traceback = logs.TextFormatter(logs.TEXT_FORMAT).format(record).split("\n")
    assert first.endswith("runstream.api: unexpected error in a\\nb [run_id=abc\\r\\nforged]")
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"
