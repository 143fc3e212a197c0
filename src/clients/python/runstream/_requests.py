"""The requests and responses of the calls with more than plain fields.

CreateRun, WatchRun, WatchRuns, Report, Interact and SubmitDecision: each request built from
the SDK's arguments, and each streamed response read into what its caller acts on (an
acknowledgement, a decision, a control, an event, a run). Also what the report stream asks of
a queued event (its size, its kind, its idempotency key) and the event filters of WatchRun and
ListEvents. The events themselves are built in ``_event_builders``; the resources and events a
response holds are read by ``_convert``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from runstream import _arguments as arguments
from runstream._convert import decision_from_pb, event_from_pb, run_from_pb
from runstream._errors import InvalidArgumentError, StatusCode
from runstream._event_builders import duration_to_pb
from runstream._events import PAYLOADS, EventKind
from runstream._readers import enum_value
from runstream._types import (
    AnswerResult,
    ControlAction,
    Decision,
    DecisionClosed,
    DecisionPrompt,
    Event,
    Run,
    RunStatus,
    StepSpec,
    Target,
)
from runstream.v1 import (
    decision_service_pb2,
    event_pb2,
    report_service_pb2,
    run_pb2,
    run_service_pb2,
)

# --- the resources a CreateRun request carries ---------------------------------------------


def _string(name: str, value: object) -> str:
    """A string field of CreateRun. What it holds is the server's to judge; its type is
    checked here, as protobuf says only "bad argument type for built-in operation"."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name}: must be a string, got {value!r:.60}")
    return value


def step_spec_to_pb(spec: StepSpec | str, where: str = "steps[0]") -> run_pb2.StepSpec:
    """The StepSpec message for a spec, or for a bare step id; ``where`` names it in a
    refusal."""
    if isinstance(spec, str):
        return run_pb2.StepSpec(step_id=spec)
    if not isinstance(spec, StepSpec):
        raise InvalidArgumentError(f"{where}: must be a StepSpec or a step id, not {spec!r:.60}")
    if isinstance(spec.depends_on, str):  # one id, not the list of its letters
        raise InvalidArgumentError(
            f"{where}.depends_on: must be a list of step ids, not {spec.depends_on!r:.60}"
        )
    return run_pb2.StepSpec(
        step_id=_string(f"{where}.step_id", spec.step_id),
        name=_string(f"{where}.name", spec.name),
        description=_string(f"{where}.description", spec.description),
        agent=_string(f"{where}.agent", spec.agent),
        depends_on=[
            _string(f"{where}.depends_on[{i}]", step) for i, step in enumerate(spec.depends_on)
        ],
        track=_string(f"{where}.track", spec.track),
        phase=_string(f"{where}.phase", spec.phase),
    )


def target_to_pb(target: Target, where: str = "targets[0]") -> run_pb2.Target:
    """The Target message for a target; ``where`` names it in a refusal."""
    if not isinstance(target, Target):
        raise InvalidArgumentError(f"{where}: must be a Target, not {target!r:.60}")
    return run_pb2.Target(
        metric=_string(f"{where}.metric", target.metric),
        value=arguments.finite(f"{where}.value", target.value),
        kind=int(target.kind),  # type: ignore[arg-type]
        title=_string(f"{where}.title", target.title),
    )


# --- requests and responses ----------------------------------------------------------------


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """CreateRun's labels, each key and value a string (see _string)."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidArgumentError(f"labels: must be a mapping, got {labels!r:.60}")
    for key, value in labels.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(f"labels: keys must be strings, got {key!r:.60}")
        _string(f"labels[{key!r}]", value)
    return dict(labels)


def create_run_request(
    run_id: str,
    workflow: str,
    display_name: str,
    labels: Mapping[str, str] | None,
    steps: Iterable[StepSpec | str],
    targets: Iterable[Target] = (),
) -> run_service_pb2.CreateRunRequest:
    """The CreateRun request."""
    if isinstance(steps, str):  # "plan" would plan the steps 'p', 'l', 'a' and 'n'
        raise InvalidArgumentError(
            f"steps: must be a list of steps (StepSpec or step ids), not {steps!r:.60}"
        )
    return run_service_pb2.CreateRunRequest(
        run_id=_string("run_id", run_id),
        workflow=_string("workflow", workflow),
        display_name=_string("display_name", display_name),
        labels=_labels(labels),
        steps=[step_spec_to_pb(s, f"steps[{i}]") for i, s in enumerate(steps)],
        targets=[target_to_pb(t, f"targets[{i}]") for i, t in enumerate(targets)],
    )


def watch_request(
    run_id: str,
    after_seq: int,
    kinds: Iterable[EventKind] | None,
    heartbeat_interval: timedelta | float | None,
    keep_open: bool,
) -> run_service_pb2.WatchRunRequest:
    """The WatchRun request that resumes after ``after_seq``."""
    request = run_service_pb2.WatchRunRequest(
        run_id=run_id,
        after_seq=arguments.count("after_seq", after_seq),
        kinds=[int(k) for k in event_kinds(kinds)],  # type: ignore[misc]
        keep_open=keep_open,
    )
    interval = arguments.duration("heartbeat_interval", heartbeat_interval)
    if interval is not None:
        request.heartbeat_interval.CopyFrom(duration_to_pb(interval))
    return request


def report_request(
    run_id: str, events: list[event_pb2.RunEvent], batch_id: int
) -> report_service_pb2.ReportRequest:
    """One batch of a Report stream."""
    return report_service_pb2.ReportRequest(run_id=run_id, events=events, batch_id=batch_id)


@dataclass(frozen=True, slots=True)
class ReportAck:
    """The parts of an AppendAck the reporter needs."""

    batch_id: int
    count: int
    max_seq: int
    last_seq: int
    # (position in the batch, seq) of each event the run already held under its key.
    duplicates: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ReportDecision:
    """A closed decision pushed down a Report stream."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class ReportControl:
    """A Control pushed down a Report stream."""

    action: ControlAction
    reason: str
    status: RunStatus
    seq: int


def parse_report_response(
    response: report_service_pb2.ReportResponse,
) -> ReportAck | ReportControl | ReportDecision | None:
    """The ack, control or decision a ReportResponse carries; None for a field this SDK does
    not know."""
    if response.HasField("ack"):
        ack = response.ack
        events = ack.events[:]  # a list: a loop over the field itself ends in an IndexError
        seqs = [e.seq for e in events]
        return ReportAck(
            batch_id=ack.batch_id,
            count=len(seqs),
            max_seq=max(seqs, default=0),
            last_seq=ack.last_seq,
            duplicates=tuple((i, seqs[i]) for i, e in enumerate(events) if e.duplicate),
        )
    if response.HasField("control"):
        control = response.control
        return ReportControl(
            action=enum_value(ControlAction, control.action),
            reason=control.reason,
            status=enum_value(RunStatus, control.status),
            seq=control.seq,
        )
    if response.HasField("decision"):
        return ReportDecision(decision_from_pb(response.decision))
    return None


def parse_watch_response(
    response: run_service_pb2.WatchRunResponse, run_id: str
) -> tuple[list[Event], int | None]:
    """The events of a WatchRunResponse, and the heartbeat's head_seq if it is a heartbeat."""
    events = [event_from_pb(e, run_id) for e in response.events]
    head_seq = response.heartbeat.head_seq if response.HasField("heartbeat") else None
    return events, head_seq


def event_size(event: event_pb2.RunEvent) -> int:
    """The encoded size of an event, for keeping batches under the message size limit."""
    return event.ByteSize()


def set_idempotency_key(event: event_pb2.RunEvent, key: str) -> None:
    """Stamps the producer's idempotency key on an event before it is queued."""
    event.idempotency_key = key


def payload_kind(event: event_pb2.RunEvent) -> EventKind | None:
    """The kind of an event's payload (None for one this SDK does not know)."""
    entry = PAYLOADS.get(event.WhichOneof("payload") or "")
    return entry[0] if entry is not None else None


def event_kind_filter(kinds: Iterable[EventKind]) -> str:
    """The ListEvents filter for these kinds: ``kind = A OR kind = B``."""
    return " OR ".join(f"kind = {k.name}" for k in event_kinds(kinds))


def event_filter(kinds: Iterable[EventKind], after_seq: int, before_seq: int | None) -> str:
    """The ListEvents filter for these kinds between these seqs (both bounds exclusive):
    ``seq > 10 AND seq < 20 AND kind = A OR kind = B`` (OR binds tighter than AND);
    InvalidArgumentError naming a bound that is not a seq."""
    terms = []
    if arguments.count("after_seq", after_seq, arguments.MAX_SEQ):
        terms.append(f"seq > {after_seq}")
    if before_seq is not None:
        terms.append(f"seq < {arguments.count('before_seq', before_seq, arguments.MAX_SEQ)}")
    kind_terms = event_kind_filter(kinds)
    return " AND ".join([*terms, kind_terms] if kind_terms else terms)


def event_kinds(kinds: Iterable[EventKind] | None) -> tuple[EventKind, ...]:
    """The kinds a watch or a listing keeps; InvalidArgumentError, naming the value, for one
    that is not an EventKind (the CLI's "milestone" is ``EventKind.MILESTONE`` here)."""
    if isinstance(kinds, (str, int)):
        raise InvalidArgumentError(f"kinds: must be a list of EventKind, not {kinds!r}")
    checked = []
    for kind in kinds or ():
        try:
            checked.append(EventKind(kind))
        except ValueError:
            name = kind.upper() if isinstance(kind, str) else ""
            hint = f" (EventKind.{name})" if name in EventKind.__members__ else ""
            raise InvalidArgumentError(f"kinds: {kind!r} is not an EventKind{hint}") from None
    return tuple(checked)


def submit_decision_request(
    run_id: str, decision_id: str, choice: str | None, skip: bool, answered_by: str
) -> decision_service_pb2.SubmitDecisionRequest:
    """The SubmitDecision request (also the body of an Interact answer)."""
    return decision_service_pb2.SubmitDecisionRequest(
        run_id=run_id,
        decision_id=decision_id,
        choice=choice or "",
        skip=skip,
        answered_by=answered_by,
    )


def interact_subscribe(run_ids: Iterable[str], viewer: str) -> decision_service_pb2.InteractRequest:
    """The Interact message that subscribes to runs."""
    return decision_service_pb2.InteractRequest(
        subscribe=decision_service_pb2.InteractSubscribe(run_ids=list(run_ids), viewer=viewer)
    )


def interact_answer(
    answer_id: int, request: decision_service_pb2.SubmitDecisionRequest
) -> decision_service_pb2.InteractRequest:
    """The Interact message that answers a decision."""
    return decision_service_pb2.InteractRequest(
        answer=decision_service_pb2.InteractAnswer(answer_id=answer_id, decision=request)
    )


def parse_interact_response(
    response: decision_service_pb2.InteractResponse,
) -> DecisionPrompt | DecisionClosed | AnswerResult | None:
    """What an InteractResponse carries; None for a field this SDK does not know."""
    if response.HasField("prompt"):
        return DecisionPrompt(decision_from_pb(response.prompt))
    if response.HasField("closed"):
        return DecisionClosed(decision_from_pb(response.closed))
    if response.HasField("answer_result"):
        result = response.answer_result
        try:
            code = StatusCode(result.code)
        except ValueError:
            code = StatusCode.UNKNOWN
        return AnswerResult(
            answer_id=result.answer_id,
            code=code,
            message=result.message,
            decision=decision_from_pb(result.decision) if result.HasField("decision") else None,
        )
    return None


def watch_runs_request(
    filter: str, heartbeat_interval: timedelta | float | None, initial_ended_limit: int | None
) -> run_service_pb2.WatchRunsRequest:
    """The WatchRuns request."""
    request = run_service_pb2.WatchRunsRequest(filter=filter)
    if initial_ended_limit is not None:
        limit = arguments.count(
            "initial_ended_limit", initial_ended_limit, arguments.MAX_INITIAL_ENDED_LIMIT
        )
        if not limit:  # on the wire 0 asks for every run: refused, not turned into that
            raise InvalidArgumentError("initial_ended_limit: must be at least 1 (None: every run)")
        request.initial_ended_limit = limit
    interval = arguments.duration("heartbeat_interval", heartbeat_interval)
    if interval is not None:
        request.heartbeat_interval.CopyFrom(duration_to_pb(interval))
    return request


def parse_watch_runs_response(
    response: run_service_pb2.WatchRunsResponse,
) -> tuple[list[Run], bool, bool]:
    """The runs of a WatchRunsResponse, whether it completes the initial state, and whether
    it is a heartbeat."""
    runs = [run_from_pb(r) for r in response.runs]
    return runs, response.initial_state_complete, response.HasField("heartbeat")
