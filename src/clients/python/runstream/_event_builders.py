"""Building the events the reporter sends, each from a reporting call's arguments.

Each builder checks its arguments against the server's rules for its event
(:mod:`runstream._arguments`) before building anything: a bad one raises InvalidArgumentError
naming it as the reporting call takes it, and nothing is queued. Here too: the writers of the
well-known types the events carry (Struct, Timestamp, Duration), the context a framework
integration reports in (``HAPPENED_NS``, ``HELD_WORK``, ``REFUSALS_TO``), and
:func:`reported_by`, which names the call behind a refused event. The requests that carry
these events are built in ``_requests``; messages are read in ``_convert``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from runstream import _arguments as arguments
from runstream._arguments import (
    ARTIFACT_KIND_CHARS,
    ID_CHARS,
    LONG_TEXT_CHARS,
    METRIC_NAME_CHARS,
    METRICS_ITEMS,
    NAME_CHARS,
    OPTIONS_ITEMS,
    PIPELINE_ITEMS,
    PIPELINE_NAME_CHARS,
    PROMPT_CHARS,
    STAGE_NAME_CHARS,
    STAGES_ITEMS,
    TEXT_CHARS,
    UNIT_CHARS,
    URI_CHARS,
)
from runstream._errors import InvalidArgumentError, RunstreamError
from runstream._events import AlertAction
from runstream._types import (
    ActivityType,
    AlertActionType,
    DecisionOption,
    MilestoneType,
    OptionLike,
    Severity,
    SubStepDetails,
)
from runstream.v1 import event_pb2, run_pb2

# --- well-known types and the nested messages events carry ---------------------------------


def fill_struct(target: struct_pb2.Struct, data: Mapping[str, Any] | None, name: str) -> None:
    """Copies ``data`` (JSON-like: dict, list, str, number, bool, None) into ``target``.

    Raises InvalidArgumentError, before anything is sent, for a value Struct cannot hold or
    the server refuses (NaN, infinity, more than STRUCT_BYTES encoded), naming the caller's
    argument ``name`` (``context``, ``metadata``, ...).
    """
    if not data:
        return
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{name}: must be a mapping (a dict), got {data!r:.60}")
    try:
        target.update(dict(data))
    except (TypeError, ValueError) as exc:
        problem = _json_problem(data, "") or "is not JSON-like"
        raise InvalidArgumentError(f"{name}: {problem}") from exc
    if _non_finite(data):  # Struct holds them, but the server refuses them (JSON has none)
        raise InvalidArgumentError(f"{name}: numbers must be finite (no NaN or infinity)")
    size = target.ByteSize()
    if size > arguments.STRUCT_BYTES:
        raise InvalidArgumentError(
            f"{name}: is {size} bytes encoded; the limit is {arguments.STRUCT_BYTES} bytes"
        )


_FINITE_LEAVES = frozenset({str, int, bool, type(None)})


def _non_finite(value: Any) -> bool:
    kind = type(value)
    if kind in _FINITE_LEAVES:  # most values: at once, before the abstract types' checks
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if kind is dict or isinstance(value, Mapping):
        values: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        values = value
    else:
        return False
    return any(map(_non_finite, values))


def _json_problem(value: Any, where: str) -> str | None:
    """What in `value` a Struct cannot hold, named by where it is (``'a'[0]``): a key that
    is not a string (said to be "not JSON-like" before, though a number is), or a value of
    another type; None when there is nothing."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                inside = f" in {where}" if where else ""
                return f"key {key!r:.40}{inside} is not a string (JSON's keys are strings)"
            problem = _json_problem(item, f"{where}[{key!r:.40}]" if where else f"{key!r:.40}")
            if problem is not None:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    if _struct_compatible(value):
        return None
    return f"value of {where} is not JSON-like (dict, list, str, number, bool or None)"


def _struct_compatible(value: Any) -> bool:
    try:
        struct_pb2.Struct().update({"v": value})
    except (TypeError, ValueError):
        return False
    return True


def datetime_to_pb(value: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp from an aware datetime (a naive one is taken as UTC)."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    return ts


def duration_to_pb(value: timedelta | float) -> duration_pb2.Duration:
    """A Duration from a timedelta or a number of seconds."""
    duration = duration_pb2.Duration()
    if isinstance(value, timedelta):
        duration.FromTimedelta(value)
    else:
        duration.FromNanoseconds(round(value * 1e9))
    return duration


def sub_step_details_to_pb(
    details: SubStepDetails, name: str = "details"
) -> run_pb2.SubStepDetails:
    """The SubStepDetails message for its dataclass, the argument ``name`` of a call;
    InvalidArgumentError naming the field the server would refuse."""
    if not isinstance(details, SubStepDetails):
        raise InvalidArgumentError(f"{name}: must be a SubStepDetails, got {details!r:.60}")
    message = run_pb2.SubStepDetails(
        operation=arguments.line(f"{name}.operation", details.operation, NAME_CHARS),
        model=arguments.line(f"{name}.model", details.model, NAME_CHARS),
    )
    end = arguments.moment(f"{name}.estimated_completion_time", details.estimated_completion_time)
    if end is not None:
        message.estimated_completion_time.CopyFrom(datetime_to_pb(end))
    return message


# --- events --------------------------------------------------------------------------------


HAPPENED_NS: ContextVar[int | None] = ContextVar("runstream_happened_ns", default=None)
"""When what the events built in this context report happened (``time.time_ns()``), where the
call that reports it runs later (a framework integration's queue behind a paused step); None:
now."""


HELD_WORK: ContextVar[bool] = ContextVar("runstream_held_work", default=False)
"""Whether the framework a ``HAPPENED_NS`` call reports for is held by a pause too (the Agents
SDK with RunstreamHooks): a step start that a pause held then starts when the pause ends, as
the workflow's own ``run.step()`` does, not when the framework told of it."""


REFUSALS_TO: ContextVar[Callable[[event_pb2.RunEvent, RunstreamError], None] | None] = ContextVar(
    "runstream_refusals_to", default=None
)
"""Who takes the server's refusal of an event queued in this context, instead of the
reporter's next ``flush()``: a framework integration, which logs it and lets the framework's
run go on (see ``OrderedReports``). None: the reporter raises it."""


def _event(**payload: Any) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(**payload)
    # stamp(), inline: this runs for every event a producer reports.
    seconds, nanos = divmod(HAPPENED_NS.get() or time.time_ns(), 1_000_000_000)
    stamped = event.event_time
    stamped.seconds = seconds
    stamped.nanos = nanos
    return event


def stamp(event: event_pb2.RunEvent, ns: int) -> None:
    """Sets the event's time (``time.time_ns()``); five times cheaper than
    Timestamp.GetCurrentTime(), which goes through datetime."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    stamp = event.event_time
    stamp.seconds = seconds
    stamp.nanos = nanos


def _error_info(
    message: str, code: str = "", details: Mapping[str, Any] | None = None
) -> run_pb2.ErrorInfo:
    info = run_pb2.ErrorInfo(
        code=arguments.line("code", code, NAME_CHARS),
        message=arguments.text("message", message, TEXT_CHARS, required=True),
    )
    fill_struct(info.details, details, "details")
    return info


def _step_ref(step_id: str) -> str:
    """A step id that may be empty (the event is then the run's)."""
    return arguments.identifier("step_id", step_id, required=False)


def artifact_to_pb(
    name: str,
    *,
    kind: str = "",
    uri: str | None = None,
    size_bytes: int | None = None,
    step_id: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> run_pb2.Artifact:
    """An Artifact message; the server assigns its artifact_id."""
    artifact = run_pb2.Artifact(
        name=arguments.line("name", name, NAME_CHARS, required=True),
        kind=arguments.line("kind", kind, ARTIFACT_KIND_CHARS),
        uri=arguments.line("uri", uri or "", URI_CHARS),
        size_bytes=arguments.count("size_bytes", size_bytes or 0),
        step_id=_step_ref(step_id),
    )
    fill_struct(artifact.metadata, metadata, "metadata")
    return artifact


def run_started_event(message: str = "") -> event_pb2.RunEvent:
    """A RunStarted event."""
    return _event(
        run_started=event_pb2.RunStarted(message=arguments.text("message", message, TEXT_CHARS))
    )


def run_completed_event(summary: str, result: Mapping[str, Any] | None) -> event_pb2.RunEvent:
    """A RunCompleted event."""
    payload = event_pb2.RunCompleted(summary=arguments.text("summary", summary, TEXT_CHARS))
    fill_struct(payload.result, result, "result")
    return _event(run_completed=payload)


def run_cancelled_event(reason: str, cancelled_by: str) -> event_pb2.RunEvent:
    """A RunCancelled event (the producer cancelling its own run)."""
    return _event(
        run_cancelled=event_pb2.RunCancelled(
            reason=arguments.text("reason", reason, TEXT_CHARS),
            cancelled_by=arguments.line("cancelled_by", cancelled_by, NAME_CHARS),
        )
    )


def run_failed_event(
    message: str, code: str, details: Mapping[str, Any] | None
) -> event_pb2.RunEvent:
    """A RunFailed event."""
    return _event(run_failed=event_pb2.RunFailed(error=_error_info(message, code, details)))


def step_started_event(step_id: str, name: str, description: str, agent: str) -> event_pb2.RunEvent:
    """A StepStarted event."""
    return _event(
        step_started=event_pb2.StepStarted(
            step_id=arguments.identifier("step_id", step_id),
            name=arguments.line("name", name, NAME_CHARS),
            description=arguments.text("description", description, TEXT_CHARS),
            agent=arguments.line("agent", agent, NAME_CHARS),
        )
    )


def step_progress_event(
    step_id: str,
    percent: float,
    sub_step: str,
    detail: str,
    tokens_processed: int,
    sub_step_details: SubStepDetails | None = None,
    estimated_time_remaining: timedelta | float | None = None,
) -> event_pb2.RunEvent:
    """A StepProgress event."""
    payload = event_pb2.StepProgress(
        step_id=arguments.identifier("step_id", step_id),
        percent=arguments.number("percent", percent, *arguments.PERCENT_RANGE),
        sub_step=arguments.line("sub_step", sub_step, NAME_CHARS),
        detail=arguments.text("detail", detail, TEXT_CHARS),
        tokens_processed=arguments.count("tokens_processed", tokens_processed),
    )
    if sub_step_details is not None:
        payload.sub_step_details.CopyFrom(sub_step_details_to_pb(sub_step_details))
    remaining = arguments.duration("estimated_time_remaining", estimated_time_remaining)
    if remaining is not None:
        payload.estimated_time_remaining.CopyFrom(duration_to_pb(remaining))
    return _event(step_progress=payload)


def item_progress_event(
    completed: int,
    total: int,
    unit: str,
    by_stage: Mapping[str, int] | None,
    estimated_time_remaining: timedelta | float | None,
) -> event_pb2.RunEvent:
    """An ItemProgress event."""
    payload = event_pb2.ItemProgress(
        completed=arguments.count("completed", completed),
        total=arguments.count("total", total),
        unit=arguments.line("unit", unit, NAME_CHARS),
        by_stage=arguments.entries(
            "by_stage", by_stage, arguments.count, most=STAGES_ITEMS, key_chars=STAGE_NAME_CHARS
        ),
    )
    remaining = arguments.duration("estimated_time_remaining", estimated_time_remaining)
    if remaining is not None:
        payload.estimated_time_remaining.CopyFrom(duration_to_pb(remaining))
    return _event(item_progress=payload)


def step_completed_event(
    step_id: str, summary: str, metrics: Mapping[str, float] | None, duration: timedelta | None
) -> event_pb2.RunEvent:
    """A StepCompleted event."""
    payload = event_pb2.StepCompleted(
        step_id=arguments.identifier("step_id", step_id),
        summary=arguments.text("summary", summary, TEXT_CHARS),
        metrics=arguments.entries(
            "metrics",
            metrics,
            arguments.finite,
            most=METRICS_ITEMS,
            key_chars=METRIC_NAME_CHARS,
            named=False,
        ),
    )
    took = arguments.duration("duration", duration)
    if took is not None:
        payload.duration.CopyFrom(duration_to_pb(took))
    return _event(step_completed=payload)


def step_failed_event(
    step_id: str, message: str, code: str, details: Mapping[str, Any] | None
) -> event_pb2.RunEvent:
    """A StepFailed event."""
    return _event(
        step_failed=event_pb2.StepFailed(
            step_id=arguments.identifier("step_id", step_id),
            error=_error_info(message, code, details),
        )
    )


def step_skipped_event(step_id: str, reason: str) -> event_pb2.RunEvent:
    """A StepSkipped event."""
    return _event(
        step_skipped=event_pb2.StepSkipped(
            step_id=arguments.identifier("step_id", step_id),
            reason=arguments.text("reason", reason, TEXT_CHARS),
        )
    )


def agent_activity_event(
    agent_id: str,
    activity: ActivityType,
    message: str,
    agent_name: str,
    agent_type: str,
    data: Mapping[str, Any] | None,
    step_id: str,
) -> event_pb2.RunEvent:
    """An AgentActivity event."""
    payload = event_pb2.AgentActivity(
        agent_id=arguments.line("agent_id", agent_id, ID_CHARS),
        agent_name=arguments.line("agent_name", agent_name, NAME_CHARS),
        agent_type=arguments.line("agent_type", agent_type, NAME_CHARS),
        activity=arguments.member("activity", activity, ActivityType, required=True),  # type: ignore[arg-type]
        message=arguments.text("message", message, TEXT_CHARS),
        step_id=_step_ref(step_id),
    )
    if not agent_id and not agent_name:
        raise InvalidArgumentError("agent_id: agent_id or agent_name is required")
    fill_struct(payload.data, data, "data")
    return _event(agent_activity=payload)


def thinking_event(
    analysis: str,
    thinking_type: str,
    stage: str,
    factors: Iterable[str],
    confidence: float,
    reasoning_depth: str,
    agent_id: str,
) -> event_pb2.RunEvent:
    """A Thinking event."""
    return _event(
        thinking=event_pb2.Thinking(
            thinking_type=arguments.line("thinking_type", thinking_type, NAME_CHARS),
            stage=arguments.line("stage", stage, NAME_CHARS),
            analysis=arguments.text("analysis", analysis, LONG_TEXT_CHARS),
            factors=arguments.texts("factors", factors),
            confidence=arguments.number("confidence", confidence, *arguments.CONFIDENCE_RANGE),
            reasoning_depth=arguments.line("reasoning_depth", reasoning_depth, NAME_CHARS),
            agent_id=arguments.line("agent_id", agent_id, ID_CHARS),
        )
    )


def model_allocation_event(
    agent_id: str,
    model: str,
    tier: str,
    reasoning: str,
    complexity: str,
    context_window: int,
    expected_cost_usd: float | None,
    factors: Iterable[str],
    performance_expectation: str,
) -> event_pb2.RunEvent:
    """A ModelAllocation event."""
    payload = event_pb2.ModelAllocation(
        agent_id=arguments.line("agent_id", agent_id, ID_CHARS),
        model=arguments.line("model", model, NAME_CHARS, required=True),
        tier=arguments.line("tier", tier, NAME_CHARS),
        reasoning=arguments.text("reasoning", reasoning, TEXT_CHARS),
        complexity=arguments.line("complexity", complexity, NAME_CHARS),
        context_window=arguments.count("context_window", context_window),
        factors=arguments.texts("factors", factors),
        performance_expectation=arguments.text(
            "performance_expectation", performance_expectation, TEXT_CHARS
        ),
    )
    if expected_cost_usd is not None:
        payload.expected_cost_usd = arguments.number("expected_cost_usd", expected_cost_usd, 0)
    return _event(model_allocation=payload)


def text_delta_event(
    agent_id: str, message_id: str, delta: str, final: bool, step_id: str
) -> event_pb2.RunEvent:
    """A TextDelta event."""
    return _event(
        text_delta=event_pb2.TextDelta(
            agent_id=arguments.line("agent_id", agent_id, ID_CHARS),
            message_id=arguments.line("message_id", message_id, ID_CHARS, required=True),
            delta=arguments.text("delta", delta, LONG_TEXT_CHARS),
            final=final,
            step_id=_step_ref(step_id),
        )
    )


def metric_values(values: Mapping[str, float]) -> dict[str, float]:
    """A metrics map's values as floats; InvalidArgumentError naming the first that is not a
    finite number, a blank or long name, or an empty or oversized map."""
    return arguments.entries(
        "values",
        values,
        arguments.finite,
        most=METRICS_ITEMS,
        key_chars=METRIC_NAME_CHARS,
        required=True,
    )


def metrics_event(
    values: Mapping[str, float], step_id: str, units: Mapping[str, str] | None = None
) -> event_pb2.RunEvent:
    """A MetricsUpdate event."""
    return _event(
        metrics_update=event_pb2.MetricsUpdate(
            values=metric_values(values),
            step_id=_step_ref(step_id),
            units=arguments.entries(
                "units",
                units,
                lambda name, unit: arguments.line(name, unit, UNIT_CHARS),
                most=METRICS_ITEMS,
                key_chars=METRIC_NAME_CHARS,
                named=False,
            ),
        )
    )


def milestone_event(
    title: str,
    type: MilestoneType,
    description: str,
    data: Mapping[str, Any] | None,
    milestone_id: str = "",
) -> event_pb2.RunEvent:
    """A Milestone event."""
    payload = event_pb2.Milestone(
        type=arguments.member("type", type, MilestoneType),  # type: ignore[arg-type]
        title=arguments.line("title", title, NAME_CHARS, required=True),
        description=arguments.text("description", description, TEXT_CHARS),
        milestone_id=arguments.line("milestone_id", milestone_id, ID_CHARS),
    )
    fill_struct(payload.data, data, "data")
    return _event(milestone=payload)


def alert_event(
    message: str,
    severity: Severity,
    suggested_action: str,
    code: str,
    data: Mapping[str, Any] | None,
    step_id: str = "",
    action: AlertAction | AlertActionType | None = None,
) -> event_pb2.RunEvent:
    """An Alert event; an ``action`` given as its type is labelled ``suggested_action``."""
    payload = event_pb2.Alert(
        severity=arguments.member("severity", severity, Severity),  # type: ignore[arg-type]
        message=arguments.text("message", message, TEXT_CHARS, required=True),
        suggested_action=arguments.text("suggested_action", suggested_action, TEXT_CHARS),
        code=arguments.line("code", code, NAME_CHARS),
        step_id=_step_ref(step_id),
    )
    if action is not None:
        label = "action.label"
        if not isinstance(action, AlertAction):
            action = AlertAction(
                arguments.member("action", action, AlertActionType), suggested_action
            )
            label = "suggested_action"  # it labels the action, with a shorter limit
        payload.action.type = arguments.member("action.type", action.type, AlertActionType)  # type: ignore[assignment]
        payload.action.label = arguments.line(label, action.label, NAME_CHARS)
    fill_struct(payload.data, data, "data")
    return _event(alert=payload)


def error_recovery_event(
    error_message: str,
    severity: Severity,
    recovery_strategy: str,
    can_continue: bool,
    affected_agents: Iterable[str],
    user_action_required: bool,
    attempt: int,
    step_id: str = "",
) -> event_pb2.RunEvent:
    """An ErrorRecovery event."""
    return _event(
        error_recovery=event_pb2.ErrorRecovery(
            error_message=arguments.text("error_message", error_message, TEXT_CHARS, required=True),
            severity=arguments.member("severity", severity, Severity),  # type: ignore[arg-type]
            recovery_strategy=arguments.text("recovery_strategy", recovery_strategy, TEXT_CHARS),
            can_continue=can_continue,
            affected_agents=arguments.texts("affected_agents", affected_agents),
            user_action_required=user_action_required,
            attempt=arguments.count("attempt", attempt, arguments.INT32_MAX),
            step_id=_step_ref(step_id),
        )
    )


def artifact_event(artifact: run_pb2.Artifact) -> event_pb2.RunEvent:
    """An ArtifactProduced event (``artifact_to_pb`` checked the artifact)."""
    return _event(artifact_produced=event_pb2.ArtifactProduced(artifact=artifact))


def workflow_state_event(
    change_type: str,
    current_stage: str,
    stages: Iterable[str],
    completion_percentage: float,
    active_agents: Iterable[str],
    pipeline_status: Mapping[str, bool] | None,
) -> event_pb2.RunEvent:
    """A WorkflowStateChange event."""
    return _event(
        workflow_state_change=event_pb2.WorkflowStateChange(
            change_type=arguments.line("change_type", change_type, NAME_CHARS, required=True),
            current_stage=arguments.line("current_stage", current_stage, NAME_CHARS),
            stages=arguments.texts("stages", stages),
            completion_percentage=arguments.number(
                "completion_percentage", completion_percentage, *arguments.PERCENT_RANGE
            ),
            active_agents=arguments.texts("active_agents", active_agents),
            pipeline_status=arguments.entries(
                "pipeline_status",
                pipeline_status,
                arguments.flag,
                most=PIPELINE_ITEMS,
                key_chars=PIPELINE_NAME_CHARS,
                named=False,
            ),
        )
    )


def decision_option(option: OptionLike) -> DecisionOption:
    """A DecisionOption from any OptionLike."""
    if isinstance(option, DecisionOption):
        return option
    if isinstance(option, str):
        return DecisionOption(option)
    if isinstance(option, tuple) and 1 <= len(option) <= 3:
        return DecisionOption(*option)
    raise InvalidArgumentError(
        f"options: {option!r} is not a DecisionOption, a value or a (value, label) tuple"
    )


def _decision_options(options: Iterable[DecisionOption]) -> list[event_pb2.DecisionOption]:
    """The options of a question; InvalidArgumentError for none, too many, a blank or long
    field, or a repeated value."""
    choices = list(options)
    if not choices:
        raise InvalidArgumentError("options: at least one option is required")
    if len(choices) > OPTIONS_ITEMS:
        raise InvalidArgumentError(
            f"options: has {len(choices)} entries; the limit is {OPTIONS_ITEMS}"
        )
    messages = [
        event_pb2.DecisionOption(
            value=arguments.line(f"options[{i}].value", o.value, NAME_CHARS, required=True),
            label=arguments.line(f"options[{i}].label", o.label, NAME_CHARS),
            description=arguments.text(f"options[{i}].description", o.description, TEXT_CHARS),
        )
        for i, o in enumerate(choices)
    ]
    values = [o.value for o in choices]
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise InvalidArgumentError(f"options: values must be unique; repeated: {repeated}")
    return messages


def decision_requested_event(
    decision_id: str,
    prompt: str,
    options: Iterable[DecisionOption],
    default: str | None,
    timeout: timedelta | float | None,
    can_skip: bool,
    context: Mapping[str, Any] | None,
    decision_type: str,
    affects_workflow: bool,
) -> event_pb2.RunEvent:
    """A DecisionRequested event, from ``ask()``'s arguments; the server sets its deadline."""
    payload = event_pb2.DecisionRequested(
        decision_id=arguments.identifier("decision_id", decision_id),
        decision_type=arguments.line("decision_type", decision_type, NAME_CHARS),
        prompt=arguments.text("prompt", prompt, PROMPT_CHARS, required=True),
        options=_decision_options(options),
        default_option=arguments.line("default", default or "", NAME_CHARS),
        can_skip=can_skip,
        affects_workflow=affects_workflow,
    )
    if isinstance(timeout, bool):  # an int to Python: True was a one-second deadline
        raise InvalidArgumentError(
            f"timeout: must be seconds or a timedelta (None waits until answered), got {timeout}"
        )
    if timeout is not None:
        seconds = (
            timeout.total_seconds()
            if isinstance(timeout, timedelta)
            else arguments.finite("timeout", timeout)
        )
        # Not 0 either (the server takes it), which would close the decision at once.
        if not 0 < seconds <= arguments.MAX_DECISION_TIMEOUT_SECONDS:
            raise InvalidArgumentError(
                "timeout: must be positive and at most 366 days (None waits until answered)"
            )
        payload.timeout.CopyFrom(duration_to_pb(timeout))
    fill_struct(payload.context, context, "context")
    return _event(decision_requested=payload)


def custom_event(type: str, data: Mapping[str, Any] | None) -> event_pb2.RunEvent:
    """A Custom event."""
    payload = event_pb2.Custom(type=arguments.line("type", type, NAME_CHARS, required=True))
    fill_struct(payload.data, data, "data")
    return _event(custom=payload)


# The call that reports each kind a producer writes, for messages about a refused event.
_CALLS: dict[str, str] = {
    "run_started": "start_run()",
    "run_completed": "run.complete()",
    "run_failed": "run.fail()",
    "run_cancelled": "the run's cancellation",
    "step_started": "step.start()",
    "step_progress": "step.progress()",
    "step_completed": "step.complete()",
    "step_failed": "step.fail()",
    "step_skipped": "run.skip_step()",
    "item_progress": "run.items()",
    "agent_activity": "run.activity()",
    "thinking": "run.thinking()",
    "model_allocation": "run.model_allocation()",
    "text_delta": "run.text()",
    "metrics_update": "run.metrics()",
    "milestone": "run.milestone()",
    "alert": "run.alert()",
    "error_recovery": "run.error_recovery()",
    "artifact_produced": "run.artifact()",
    "workflow_state_change": "run.workflow_state()",
    "decision_requested": "run.ask()",
    "custom": "run.custom()",
}


def reported_by(event: event_pb2.RunEvent, call: str | None = None) -> str:
    """The call that reported ``event`` (`call`, else the call of its kind) and the step it
    names, for a message about it: ``step.progress() of step 'draft'``, ``run.custom()``."""
    name = event.WhichOneof("payload")
    if name is None:
        return call or "an event"
    payload = getattr(event, name)
    call = call or _CALLS.get(name, name)
    owner = payload.artifact if name == "artifact_produced" else payload
    step_id = getattr(owner, "step_id", "")
    return f"{call} of step {step_id!r}" if step_id else call
