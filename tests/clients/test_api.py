"""The SDK's public surface: pinned exports, enums mirroring the contract, tolerance of the new."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import runstream
from google.protobuf.timestamp_pb2 import Timestamp
from runstream import _convert, _event_builders, _events, _readers, _requests
from runstream.v1 import decision_pb2, event_pb2, report_service_pb2, run_pb2

PAYLOAD_CLASSES = {
    field.message_type.name
    for field in event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"].fields
}
"""Each event kind's payload dataclass, named as its message: the kinds are the fields of
RunEvent's ``payload`` oneof, so a kind added to the protos is expected without an edit here."""

EXPECTED_EXPORTS = {
    # entry points
    "connect", "Client", "RunReporter", "StepReporter", "Interaction",
    # resources and events (each kind's payload: PAYLOAD_CLASSES)
    "StepSpec", "Run", "Step", "RunProgress", "ActiveAgent", "Estimate", "Artifact",
    "ArtifactsSummary", "ErrorInfo", "Event", "EventPayload", "DecisionOption", "OptionLike",
    "Decision", "DecisionResult", "DecisionPrompt", "DecisionClosed", "AnswerResult",
    "InteractionUpdate", "Target", "RunDetails", "RunsUpdate", "ServerStats",
    "ItemCounts", "SubStepDetails", "AlertAction", "WatchLink",
    # enums
    "EventKind", "RunStatus", "StepStatus", "RunHealth", "Severity", "ActivityType",
    "MilestoneType", "DecisionOutcome", "ControlAction", "StatusCode", "DecisionState",
    "TargetKind", "EstimateSource", "AlertActionType", "LinkState",
    # errors
    "RunstreamError", "RequestCancelledError", "UnknownError", "InvalidArgumentError",
    "DeadlineExceededError", "NotFoundError", "AlreadyExistsError", "PermissionDeniedError",
    "ResourceExhaustedError", "FailedPreconditionError", "RunCancelledError", "AbortedError",
    "OutOfRangeError", "UnimplementedError", "InternalError", "UnavailableError",
    "DataLossError", "UnauthenticatedError", "TokenProviderError", "ErrorDetails",
    "__version__",
}  # fmt: skip


def test_exports_are_pinned() -> None:
    """The hand-written surface, pinned, and each kind's payload; beside them only what the
    protos generate (runstream/_events.py: a message or enum a new kind's payload nests)."""
    assert len(PAYLOAD_CLASSES) >= 27
    exported = set(runstream.__all__)
    missing = (EXPECTED_EXPORTS | PAYLOAD_CLASSES) - exported
    assert not missing, f"runstream does not export {sorted(missing)}"
    assert exported - EXPECTED_EXPORTS - PAYLOAD_CLASSES <= set(_events.__all__)
    for name in runstream.__all__:
        assert hasattr(runstream, name), name


REPORTER_MEMBERS = {
    # the run and what the reporter knows of it
    "run_id", "workflow", "run", "events_reported", "events_acknowledged", "last_seq",
    "key_prefix",
    # lifecycle and steps
    "flush", "close", "complete", "fail", "step", "start_step", "skip_step",
    # typed events (RunEvents)
    "activity", "thinking", "model_allocation", "text", "metrics", "items", "milestone",
    "alert", "error_recovery", "artifact", "workflow_state", "custom", "report_event",
    # decisions (RunDecisions) and controls (RunControl)
    "ask", "wait_if_paused", "open_decisions", "paused", "cancelled", "cancel_reason",
    "cancel_task",
}  # fmt: skip

STEP_REPORTER_MEMBERS = {
    "step_id", "run", "start", "progress", "artifact", "metrics", "set_summary", "complete",
    "fail",
}  # fmt: skip


def _public(members: object) -> set[str]:
    return {name for name in dir(members) if not name.startswith("_")}


async def test_the_reporters_public_members_are_pinned(client: runstream.Client) -> None:
    """What the reporters' parts do (the report stream's callbacks on_control, on_refused,
    ..., its gate, the run's controls and decisions) is theirs, private: a producer calling
    one could corrupt the reporter, so none may become API. Read from a run and a step
    started on a server, so that an attribute set in __init__ counts as much as a method."""
    run = await client.start_run("api")
    step = await run.start_step("draft")
    for reporter, pinned in [(run, REPORTER_MEMBERS), (step, STEP_REPORTER_MEMBERS)]:
        public = _public(reporter)
        kind = type(reporter).__name__
        assert not public - pinned, f"new public members of {kind}: {sorted(public - pinned)}"
        assert not pinned - public, f"{kind}'s members gone: {sorted(pinned - public)}"
    assert _public(runstream.RunReporter) == REPORTER_MEMBERS
    assert _public(runstream.StepReporter) == STEP_REPORTER_MEMBERS
    await step.complete()
    await run.complete()


def test_enums_mirror_the_proto_enums_number_for_number() -> None:
    pairs = [
        (runstream.EventKind, event_pb2.EventKind, "EVENT_KIND_"),
        (runstream.RunStatus, run_pb2.RunStatus, "RUN_STATUS_"),
        (runstream.StepStatus, run_pb2.StepStatus, "STEP_STATUS_"),
        (runstream.RunHealth, run_pb2.RunHealth, "RUN_HEALTH_"),
        (runstream.Severity, run_pb2.Severity, "SEVERITY_"),
        (runstream.ActivityType, event_pb2.AgentActivityType, "AGENT_ACTIVITY_TYPE_"),
        (runstream.MilestoneType, event_pb2.MilestoneType, "MILESTONE_TYPE_"),
        (runstream.DecisionOutcome, event_pb2.DecisionOutcome, "DECISION_OUTCOME_"),
        (runstream.ControlAction, report_service_pb2.ControlAction, "CONTROL_ACTION_"),
        (runstream.DecisionState, decision_pb2.DecisionState, "DECISION_STATE_"),
        (runstream.TargetKind, run_pb2.TargetKind, "TARGET_KIND_"),
    ]
    for sdk_enum, proto_enum, prefix in pairs:
        proto = {name.removeprefix(prefix): number for name, number in proto_enum.items()}
        assert {m.name: m.value for m in sdk_enum} == proto, sdk_enum


def test_an_event_read_keeps_each_field_of_its_message() -> None:
    message = event_pb2.RunEvent(run_id="run-1", seq=7, idempotency_key="p:3")
    message.custom.type = "checkpoint"
    message.custom.data.update({"pages": 12})
    message.event_time.seconds, message.event_time.nanos = 1_700_000_000, 123_456_789
    event = _convert.event_from_pb(message, "watched")
    assert (event.run_id, event.seq, event.kind, event.idempotency_key) == (
        "run-1",
        7,
        runstream.EventKind.CUSTOM,
        "p:3",
    )
    assert event.event_time == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert event.payload == runstream.Custom(type="checkpoint", data={"pages": 12})
    assert event.raw is message
    message.ClearField("run_id")  # a watch's events name their run in the stream, not each
    assert _convert.event_from_pb(message, "watched").run_id == "watched"


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (-1, 999_999_999),  # before the epoch
        (1_700_000_000, 999),  # nanoseconds below a microsecond: truncated
        (253_402_300_799, 999_999_999),  # the last second datetime holds
        (-62_135_596_800, 0),  # its first
    ],
)
def test_a_time_is_read_as_protobuf_reads_it(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    read = _readers.timestamp_to_datetime(ts)
    assert read == ts.ToDatetime(tzinfo=UTC)
    assert read.tzinfo is UTC


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(253_402_300_800, 0), (-62_135_596_801, 0), (0, -1), (0, 1_000_000_000)],
)
def test_a_time_datetime_cannot_hold_is_refused_as_protobuf_refuses_it(
    seconds: int, nanos: int
) -> None:
    with pytest.raises(ValueError):
        _readers.timestamp_to_datetime(Timestamp(seconds=seconds, nanos=nanos))


def test_enum_values_added_later_read_as_unspecified() -> None:
    step = run_pb2.Step(step_id="s")
    step.status = 42  # type: ignore[assignment]
    assert _convert.step_from_pb(step).status == runstream.StepStatus.UNSPECIFIED


def test_errors_form_one_hierarchy() -> None:
    assert issubclass(runstream.RunCancelledError, runstream.FailedPreconditionError)
    for name in runstream.__all__:
        value = getattr(runstream, name)
        if isinstance(value, type) and name.endswith("Error"):
            assert issubclass(value, runstream.RunstreamError), name
    error = runstream.NotFoundError("run 'x' not found")
    assert error.code == runstream.StatusCode.NOT_FOUND
    assert str(error) == "NOT_FOUND: run 'x' not found"


def test_ask_options_accept_values_tuples_and_option_objects() -> None:
    decision_option = _event_builders.decision_option
    assert decision_option("a") == runstream.DecisionOption("a", "", "")
    assert decision_option(("a", "A")) == runstream.DecisionOption("a", "A", "")
    assert decision_option(("a", "A", "why")) == runstream.DecisionOption("a", "A", "why")
    option = runstream.DecisionOption("b", label="B")
    assert decision_option(option) is option


def test_a_step_spec_written_with_a_list_is_the_same_spec_and_hashable() -> None:
    """``depends_on=["fetch"]`` was kept as the list: the spec could not go in a set or be a
    dict key (unhashable type: 'list'), and differed from the same spec with a tuple."""
    written = runstream.StepSpec("rank", depends_on=["fetch"])
    assert written == runstream.StepSpec("rank", depends_on=("fetch",))
    assert written.depends_on == ("fetch",)
    assert len({written, runstream.StepSpec("rank", depends_on=("fetch",))}) == 1


def test_event_kind_filter_names_kinds_the_way_list_events_parses_them() -> None:
    kinds = [runstream.EventKind.STEP_PROGRESS, runstream.EventKind.MILESTONE]
    assert _requests.event_kind_filter(kinds) == "kind = STEP_PROGRESS OR kind = MILESTONE"
    assert _requests.event_kind_filter([]) == ""


def test_a_target_holding_a_password_is_refused_without_repeating_it() -> None:
    """A user and password before a target's '@' were repeated whole in the refusal (and in
    gRPC's resolver errors after it, for the whole reconnect timeout): found in review."""
    for wrong, shown in [
        ("user:hunter2pw@127.0.0.1:50051", "'***@127.0.0.1:50051'"),
        ("http://user:hunter2pw@collector:50051", "'http://***@collector:50051'"),
        ("dns:///user:hunter2/pw@collector:50051", "'dns:///***@collector:50051'"),
    ]:
        with pytest.raises(ValueError) as raised:
            runstream.connect(wrong)
        said = str(raised.value)
        assert "hunter2" not in said and said.startswith(shown), said
        assert "has a user or password, which a gRPC target does not take" in said


def test_a_target_grpc_cannot_use_is_refused_at_connect_saying_why() -> None:
    """gRPC took each of these and failed only when connecting: a URL or an address without
    a host was retried as UNAVAILABLE for the whole reconnect timeout, port 99999 dialled
    34463, and an empty target logged C-core errors before failing UNKNOWN."""
    for wrong, says in [
        ("http://127.0.0.1:50051", "http:// is not a gRPC address"),
        ("127.0.0.1:99999", "'127.0.0.1:99999': a port is 1 to 65535"),
        ("127.0.0.1:50051/", "not a port: '50051/'"),
        (":50051", "has no host"),
        ("", "an empty address"),
        ("my host:50051", "has a space"),
        ("[::1]x", "is not [IPV6]:PORT"),
        # gRPC tried these for the whole connect timeout, then "Unparsable name"; an empty
        # port became the default one (found in review).
        ("[::1", "'[::1' is not [IPV6]:PORT"),
        ("[my-host]:50051", "'my-host' in brackets is not an IPv6 address"),
        ("127.0.0.1:", "'127.0.0.1:' has no port after its colon"),
        ("[::1]:", "'[::1]:' has no port after its colon"),
        # Digits to str.isdigit, not to a port: one failed in int(), one was dialled.
        ("localhost:\u00b2", "not a port: '\u00b2'"),
        ("localhost:\u0663", "not a port: '\u0663'"),
        # Several addresses: a space after a comma, or no scheme (found in review).
        ("ipv4:127.0.0.1:50051, 127.0.0.1:50052", "has a space"),
        ("10.0.0.1:50051,10.0.0.2:50051", "(several addresses: ipv4:HOST:PORT,HOST:PORT)"),
        # Both were dialled, and failed UNAVAILABLE, for the whole reconnect timeout: a port
        # a server never listens on, and a scheme naming nothing (found in review).
        ("localhost:0", "'localhost:0': port 0 is no server's port"),
        ("unix:", "'unix:' names no address after unix:"),
        ("dns:///", "'dns:///' names no address after dns:"),
    ]:
        with pytest.raises(ValueError, match=re.escape(says)):
            runstream.connect(wrong)
    for right in ["localhost:50051", "[::1]:50051", "::1", "unix:/tmp/rs.sock", "example.com"]:
        assert runstream.connect(right).target == right


def test_type_checkers_see_the_names_the_package_loads() -> None:
    """runstream/__init__.py loads its exports on first use (PEP 562) and imports them under
    TYPE_CHECKING for type checkers: both must name the same thing from the same module."""
    tree = ast.parse(Path(runstream.__file__).read_text())
    for_type_checkers = {
        alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module != "runstream._events"
        for alias in node.names
    }
    assert for_type_checkers == runstream._HOMES
