"""Issue 8, items 2, 4 and 17: malformed bytes, out-of-range values, and what the log says.

Every call here is raw bytes or a raw stub on a real server, as a client written from the
protos alone (or a fuzzer) would send them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from runstream.v1 import decision_pb2, run_pb2
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc as ds_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc as rs_grpc
from runstream_server import principal
from runstream_server.app import RunstreamServer
from runstream_server.observability import logs
from runstream_server.observability.logs import RequestContextFilter
from runstream_server.rpc.errors import MAX_STATUS_BYTES, RejectionLog

from tests.conftest import ServerProcess
from tests.server.conftest import BOTH_STORES
from tests.server.support import append, create_run, ev, rpc_error, watch_all

# Requests refused before any commit: the commit path changes nothing here.
STORES = BOTH_STORES

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


async def test_target_kind_outside_the_enum_is_invalid_argument(stubs: Any) -> None:
    target = run_pb2.Target(metric="leads", value=10)
    target.kind = 999  # type: ignore[assignment]
    err = await rpc_error(create_run(stubs, targets=[target]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "targets[0].kind: 999 is not a known TargetKind value"
    listed = await stubs.runs.ListRuns(rs.ListRunsRequest())
    assert list(listed.runs) == []


async def test_a_target_on_a_metric_name_no_update_may_carry_is_invalid_argument(
    stubs: Any,
) -> None:
    """Found in review: a target's metric could be 256 characters, a metric's name in an
    update 128, so a target on a longer name was taken and could never be reached."""
    err = await rpc_error(create_run(stubs, targets=[run_pb2.Target(metric="m" * 129, value=1)]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "targets[0].metric: is 129 characters; the limit is 128 characters"
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []

    run = await create_run(stubs, targets=[run_pb2.Target(metric="m" * 128, value=1)])
    await append(
        stubs, run.run_id, ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"m" * 128: 2}))
    )
    events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    assert [e.milestone.milestone_id for e in events.events if e.HasField("milestone")] == [
        "target-" + "m" * 128
    ]


async def test_an_id_or_a_label_key_refused_is_told_the_rule_ascii_letters_and_all(
    stubs: Any,
) -> None:
    """Found in review: the id rule said "letters", yet only ASCII ones pass, and a label
    key's refusal said "invalid label key", stating no rule."""
    err = await rpc_error(create_run(stubs, run_id="\u0440\u0443\u0436\u0430"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "run_id: '\u0440\u0443\u0436\u0430' is not a valid id (ASCII letters, digits, '.', "
        "'_', '-'; at most 128 characters; starting with a letter or digit)"
    )
    rule = "(ASCII letters, digits, '.', '_', '-'; at most 63 characters; starting with a letter "
    for key in ("-a", "a/b", ".a"):
        err = await rpc_error(create_run(stubs, labels={key: "v"}))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == f"labels[{key!r}]: {key!r} is not a valid label key {rule}or digit)"
    err = await rpc_error(stubs.runs.ListRuns(rs.ListRunsRequest(filter='labels.-a = "v"')))
    assert err.details() == f"filter: '-a' is not a valid label key {rule}or digit)"
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []


async def test_a_plan_over_the_limit_of_steps_says_how_many_it_had_and_may_have(
    stubs: Any,
) -> None:
    """Found in review: "steps: at most 1000 steps", with neither the count sent nor the
    2,000 steps a run may reach by starting more; the README named only the 2,000."""
    err = await rpc_error(create_run(stubs, *(f"s{i}" for i in range(1001))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "steps: has 1001 entries; a run plans at most 1000 steps (it may start more, 2,000 in all)"
    )
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []


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


async def test_an_event_of_a_kind_from_a_newer_release_is_refused_saying_so(stubs: Any) -> None:
    """A producer on a newer SDK, or a rollout that mixes releases on Redis, sends a kind
    this server's contract lacks: it said "exactly one event kind must be set" (found in
    review)."""
    run = await create_run(stubs)
    newer = ev.RunEvent()
    newer.MergeFromString(bytes([0x82, 0x03, 2, 0x0A, 0]))  # field 48, a message
    err = await rpc_error(append(stubs, run.run_id, newer))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(
        "events[0].payload: holds an event kind this server does not know (field 48), "
        "from a newer release"
    )
    err = await rpc_error(append(stubs, run.run_id, ev.RunEvent()))
    assert err.details() == "events[0].payload: exactly one event kind must be set"
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


async def test_a_metric_whose_change_overflows_shows_no_earlier_change_beside_it(
    stubs: Any,
) -> None:
    """A metric's change is that of its latest update: one too large for a number is left
    out, and the run does not show the update before's change beside the new value (+1e307
    next to a score that fell by 3.4e308)."""
    run = await create_run(stubs)
    for value in (1.6e308, 1.7e308, -1.7e308):
        update = ev.MetricsUpdate(values={"score": value})
        await append(stubs, run.run_id, ev.RunEvent(metrics_update=update))
    got = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert got.metrics["score"] == -1.7e308
    assert dict(got.metric_changes) == {}


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


def nested(levels: int) -> dict[str, Any]:
    """A JSON object `levels` objects deep, as a model's tool output may be."""
    data: dict[str, Any] = {"leaf": True}
    for _ in range(levels):
        data = {"inner": data}
    return data


async def test_a_struct_nested_deeper_than_protobuf_decodes_is_refused_naming_it(
    stubs: Any,
) -> None:
    run = await create_run(stubs)
    request = rp.AppendEventsRequest(run_id=run.run_id)
    request.events.add(custom=ev.Custom(type="fine"))
    deep = request.events.add(custom=ev.Custom(type="tool_output"))
    deep.custom.data.update(nested(40))  # 3 messages per level: past protobuf's 100
    err = await rpc_error(stubs.report.AppendEvents(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "events[1].custom.data: nests messages more than 100 deep, the most protobuf decodes "
        "(each level of a Struct inside a Struct takes 3 of them)"
    )
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.last_seq == 1
    # As deep as protobuf decodes is stored and reads back whole.
    deep.custom.data.Clear()
    deep.custom.data.update(nested(30))
    await stubs.report.AppendEvents(request)
    events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    assert events.events[-1].custom.data == deep.custom.data


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


async def test_a_workflow_is_held_to_128_characters_without_a_quote_as_documented(
    stubs: Any,
) -> None:
    """The field table said 256 and the create check 128, so 129 to 256 characters and 257
    got two different refusals, and the contract named no limit (found in review)."""
    for length in (129, 256, 257):
        err = await rpc_error(create_run(stubs, workflow="w" * length))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == f"workflow: is {length} characters; the limit is 128 characters"
    err = await rpc_error(create_run(stubs, workflow='say "hi"'))
    assert err.details() == "workflow: holds '\"', which a ListRuns filter could not quote"
    run = await create_run(stubs, workflow="w" * 128)
    listed = await stubs.runs.ListRuns(rs.ListRunsRequest(filter=f'workflow = "{"w" * 128}"'))
    assert [r.run_id for r in listed.runs] == [run.run_id]


# --- control characters in names -----------------------------------------------------------

CLEAR = "\x1b[2J"  # clears the terminal of whoever prints it


def _started(name: str) -> ev.RunEvent:
    return ev.RunEvent(step_started=ev.StepStarted(step_id="a", name=name))


def _refusal(field: str, character: str, at: int, what: str = "") -> str:
    return f"{field}: {what}must not contain control characters (U+{ord(character):04X} at {at})"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"display_name": f"Q3{CLEAR}"}, _refusal("display_name", "\x1b", 2)),
        ({"workflow": "campaign\nRUN SUCCEEDED"}, _refusal("workflow", "\n", 8)),
        ({"labels": {"team": "growth\u202e"}}, _refusal("labels['team']", "\u202e", 6)),
        ({"labels": {"te\tam": "growth"}}, _refusal("labels['te\\tam']", "\t", 2, "the key ")),
        (
            {"steps": [run_pb2.StepSpec(step_id="a", name="Research\r")]},
            _refusal("steps[0].name", "\r", 8),
        ),
        (
            {"steps": [run_pb2.StepSpec(step_id="a", agent="\x9b31mred")]},
            _refusal("steps[0].agent", "\x9b", 0),
        ),
    ],
    ids=["display-name", "workflow", "label-value", "label-key", "step-name", "step-agent"],
)
async def test_a_name_with_a_control_character_is_refused_naming_it_and_no_run_is_made(
    stubs: Any, fields: dict[str, Any], message: str
) -> None:
    """A producer could name a run so that `runstream runs` cleared the viewer's terminal or
    printed a made-up status line under it."""
    request = rs.CreateRunRequest(**{"workflow": "wf", **fields})
    err = await rpc_error(stubs.runs.CreateRun(request))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []


def _asking(label: str) -> ev.RunEvent:
    option = ev.DecisionOption(value="y", label=label)
    return ev.RunEvent(
        decision_requested=ev.DecisionRequested(decision_id="d", prompt="Go?", options=[option])
    )


def _producing(uri: str) -> ev.RunEvent:
    artifact = run_pb2.Artifact(name="page.html", uri=uri)
    return ev.RunEvent(artifact_produced=ev.ArtifactProduced(artifact=artifact))


@pytest.mark.parametrize(
    ("event", "named"),
    [
        (_started(f"abc{CLEAR}"), _refusal("step_started.name", "\x1b", 3)),
        (
            ev.RunEvent(agent_activity=ev.AgentActivity(agent_name="writer\x00", activity=1)),
            _refusal("agent_activity.agent_name", "\x00", 6),
        ),
        (
            ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"ctr\x1b[1A": 0.5})),
            _refusal("metrics_update.values['ctr\\x1b[1A']", "\x1b", 3, "the key "),
        ),
        (
            ev.RunEvent(thinking=ev.Thinking(analysis="fine", factors=["cost\n"])),
            _refusal("thinking.factors[0]", "\n", 4),
        ),
        (_asking("Y\u2066"), _refusal("decision_requested.options[0].label", "\u2066", 1)),
        (
            _producing("https://example.test/\x07"),
            _refusal("artifact_produced.artifact.uri", "\x07", 21),
        ),
    ],
    ids=["step-name", "agent-name", "metric-name", "thinking-factor", "option-label", "uri"],
)
async def test_an_event_naming_something_with_a_control_character_stores_nothing(
    stubs: Any, event: ev.RunEvent, named: str
) -> None:
    """Nothing of the batch is stored, not even its good first event."""
    run = await create_run(stubs, "a")
    good = ev.RunEvent(custom=ev.Custom(type="tick"))
    err = await rpc_error(append(stubs, run.run_id, good, event))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, f"events[1].{named}")
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.last_seq == 1
    assert (await append(stubs, run.run_id, good)).last_seq == 2


async def test_a_report_stream_refuses_a_control_character_in_a_name_and_keeps_the_rest(
    stubs: Any,
) -> None:
    run = await create_run(stubs)

    def working(name: str) -> ev.RunEvent:
        activity = ev.AgentActivity(agent_id="w", agent_name=name, activity=1)
        return ev.RunEvent(agent_activity=activity)

    async def batches() -> AsyncIterator[rp.ReportRequest]:
        yield rp.ReportRequest(run_id=run.run_id, events=[working("Writer")])
        yield rp.ReportRequest(run_id=run.run_id, events=[working(f"Writer{CLEAR}")])

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stubs.report.Report(batches()):
            pass
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "events[0].agent_activity.agent_name: must not contain control characters (U+001B at 6)",
    )
    got = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert (got.last_seq, [agent.name for agent in got.active_agents]) == (2, ["Writer"])


async def test_an_answer_with_a_control_character_in_who_gave_it_leaves_the_question_open(
    stubs: Any,
) -> None:
    decisions = ds_grpc.DecisionServiceStub(stubs.channel)
    run = await create_run(stubs)
    asked = ev.DecisionRequested(
        decision_id="d", prompt="Go?", options=[ev.DecisionOption(value="yes")]
    )
    await append(stubs, run.run_id, ev.RunEvent(decision_requested=asked))
    answer = ds.SubmitDecisionRequest(
        run_id=run.run_id, decision_id="d", choice="yes", answered_by=f"ana{CLEAR}"
    )
    err = await rpc_error(decisions.SubmitDecision(answer))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "answered_by: must not contain control characters (U+001B at 3)",
    )
    got = await decisions.GetDecision(ds.GetDecisionRequest(run_id=run.run_id, decision_id="d"))
    assert got.decision.state == decision_pb2.DECISION_STATE_OPEN

    async def interact() -> AsyncIterator[ds.InteractRequest]:
        yield ds.InteractRequest(
            subscribe=ds.InteractSubscribe(run_ids=[run.run_id]),
            answer=ds.InteractAnswer(answer_id=1, decision=answer),
        )
        await asyncio.sleep(30)  # the stream stays open until the test has its result

    stream = decisions.Interact(interact())
    result = None
    async for response in stream:
        if response.HasField("answer_result"):
            result = response.answer_result
            break
    stream.cancel()
    assert result is not None
    assert (result.code, result.message) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "answer.decision.answered_by: must not contain control characters (U+001B at 3)",
    )
    assert result.decision.state == decision_pb2.DECISION_STATE_OPEN


async def test_a_filter_comparing_a_name_with_a_control_character_is_refused(
    stubs: Any,
) -> None:
    await create_run(stubs, workflow="campaign")
    err = await rpc_error(stubs.runs.ListRuns(rs.ListRunsRequest(filter='workflow = "c\x1bx"')))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "filter: the value of workflow must not contain control characters (U+001B at 1)",
    )
    # Whitespace between a filter's terms is whitespace, tabs and newlines included.
    found = await stubs.runs.ListRuns(
        rs.ListRunsRequest(filter='status = PENDING\n\tAND workflow = "campaign"')
    )
    assert [run.workflow for run in found.runs] == ["campaign"]


async def test_free_text_keeps_its_newlines_tabs_and_whatever_a_model_wrote(
    stubs: Any,
) -> None:
    """Messages, descriptions, prompts, reasoning and streamed text are stored as written:
    they are a model's or a tool's output, and the viewers escape them where they print."""
    run = await create_run(stubs, "a")
    text = "line one\n\tline two\r\n\x1b[1mbold\x1b[0m"
    events = [
        ev.RunEvent(step_started=ev.StepStarted(step_id="a", description=text)),
        ev.RunEvent(agent_activity=ev.AgentActivity(agent_id="w", activity=1, message=text)),
        ev.RunEvent(thinking=ev.Thinking(analysis=text)),
        ev.RunEvent(text_delta=ev.TextDelta(message_id="m", delta=text)),
        ev.RunEvent(alert=ev.Alert(message=text, suggested_action=text)),
        ev.RunEvent(step_failed=ev.StepFailed(step_id="a", error=run_pb2.ErrorInfo(message=text))),
        ev.RunEvent(
            decision_requested=ev.DecisionRequested(
                decision_id="d",
                prompt=text,
                options=[ev.DecisionOption(value="y", description=text)],
            )
        ),
    ]
    await append(stubs, run.run_id, *events)
    stored = (await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))).events
    kinds = {e.WhichOneof("payload"): e for e in stored}
    assert [
        kinds["step_started"].step_started.description,
        kinds["agent_activity"].agent_activity.message,
        kinds["thinking"].thinking.analysis,
        kinds["text_delta"].text_delta.delta,
        kinds["alert"].alert.suggested_action,
        kinds["step_failed"].step_failed.error.message,
        kinds["decision_requested"].decision_requested.prompt,
        kinds["decision_requested"].decision_requested.options[0].description,
    ] == [text] * 8


async def test_runs_stored_with_control_characters_in_their_names_still_read_and_write(
    server: RunstreamServer, stubs: Any
) -> None:
    """Runs a store took before names were checked still list, load, replay and take events."""
    assert server.runs is not None
    old = await server.runs.create_run(  # the manager itself: no request check on the way
        run_id="old",
        workflow=f"wf{CLEAR}",
        display_name="Q3\r\nRUN SUCCEEDED",
        labels={"team": "growth\u202e"},
        steps=[run_pb2.StepSpec(step_id="a", name=f"Research{CLEAR}")],
    )
    await server.runs.append("old", [_started(f"Research{CLEAR}")])
    listed = (await stubs.runs.ListRuns(rs.ListRunsRequest())).runs
    assert [(r.run_id, r.workflow) for r in listed] == [("old", f"wf{CLEAR}")]
    got = (await stubs.runs.GetRun(rs.GetRunRequest(run_id="old"))).run
    assert (got.display_name, got.steps[0].name) == ("Q3\r\nRUN SUCCEEDED", f"Research{CLEAR}")
    await append(stubs, old.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    events = [e for r in await watch_all(stubs, "old") for e in r.events]
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[:2] == ["run_created", "step_started"] and "run_completed" in kinds
    assert events[0].run_created.workflow == f"wf{CLEAR}"
    assert events[1].step_started.name == f"Research{CLEAR}"


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


def test_a_rejection_line_is_cut_and_the_summary_names_who_was_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first line of an interval keeps 300 characters of what the refusal said (a
    refusal may repeat a whole request); the summary names the principal refused, as
    that first line does, so the log says whose calls the summary counts."""
    now = [0.0]
    rejections = RejectionLog(interval=60, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="runstream.api")
    bob = principal.Principal.of("bob", "globex", ["viewer"])
    cancel = "/runstream.v1.RunService/CancelRun"
    rejections.note(cancel, "INVALID_ARGUMENT", "filter: " + "x" * 10_000)
    for _ in range(2):
        rejections.note(cancel, "PERMISSION_DENIED", "CancelRun needs the 'operator' role", bob)
    rejections.flush()
    first, summary = (r.getMessage() for r in caplog.records)
    assert "x" * 292 in first and "x" * 293 not in first
    assert summary == (
        "2 more requests rejected since the last report: "
        f"{cancel} PERMISSION_DENIED for principal 'bob' in tenant 'globex' x2"
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
    line made the text log show that line as the server's own. Such an id is refused now
    before the call knows its run, and the rejection names it without its characters."""
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
    assert "INVALID_ARGUMENT: run_id: must not contain control characters (U+000A at 3)" in (
        rejected
    )
    assert rejected.endswith("[method=runstream.v1.RunService/GetRun]")
    written = log.read_bytes()[before:]
    assert b"\x1b" not in written and b"\r" not in written


def test_a_traceback_keeps_its_lines_under_an_escaped_first_line() -> None:
    """Only the record's own line is escaped: a traceback stays readable below it."""
    try:
        raise ValueError("boom")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord(
        "runstream.api",
        logging.ERROR,
        __file__,
        1,
        "unexpected error in %s",
        ("a\nb\u2028c",),  # a line separator too: str.splitlines() and some viewers break there
        failure,
    )
    record.run_id = "abc\r\nforged"
    first, *traceback = logs.TextFormatter(logs.TEXT_FORMAT).format(record).split("\n")
    assert first.endswith(
        "runstream.api: unexpected error in a\\nb\\u2028c [run_id=abc\\r\\nforged]"
    )
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: boom"


async def test_a_refusal_that_repeats_long_input_still_reaches_the_client(stubs: Any) -> None:
    """A wrong choice among 100 long options, an unreadable filter of 3,000 'é': the
    message repeated them whole, gRPC percent-encodes each byte outside ASCII in three
    characters, and the client refused the trailer (RESOURCE_EXHAUSTED "received metadata
    size exceeds") in place of the status, now and then or always. It is cut, keeping the
    field it names (found in review)."""
    run = await create_run(stubs)
    options = [ev.DecisionOption(value=f"{n:03}" + "é" * 125) for n in range(100)]
    asked = ev.DecisionRequested(decision_id="d", prompt="which?", options=options)
    await append(stubs, run.run_id, ev.RunEvent(decision_requested=asked))
    decisions = ds_grpc.DecisionServiceStub(stubs.channel)
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await decisions.SubmitDecision(
                ds.SubmitDecisionRequest(run_id=run.run_id, decision_id="d", choice="typo")
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = refused.value.details() or ""
        assert details.startswith("choice: 'typo' is not one of the options '000éé")
        assert details.endswith("more characters)")
    assert sent_size(details) <= MAX_STATUS_BYTES
    # '%' is percent-encoded too: 340 of them take more than the bound in fewer characters.
    for unreadable in ("é" * 3000, "%" * 340):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.runs.ListRuns(rs.ListRunsRequest(filter=unreadable))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = refused.value.details() or ""
        assert details.startswith("filter: ")
        assert sent_size(details) <= MAX_STATUS_BYTES


def sent_size(message: str) -> int:
    """The characters `message` takes in the grpc-message trailer (gRPC percent-encodes every
    byte outside printable ASCII, and '%' itself, in three), what a cut says it left out
    aside."""
    kept = re.sub(r"\.\.\. \(\d+ more characters\)$", "", message)
    return sum(1 if " " <= c <= "~" and c != "%" else 3 * len(c.encode()) for c in kept)
