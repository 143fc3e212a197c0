"""Reading the generated protobuf messages into the SDK's typed objects.

Resources (runs, steps, decisions, a run's details) into the dataclasses of ``_types``, and
events, each payload by its reader generated from the protos in ``_events``; what both share,
the well-known types and the nested messages, is in ``_readers``. Writing messages is
elsewhere: ``_event_builders`` builds the events the reporter sends, checking a reporting
call's arguments first, and ``_requests`` the requests and responses of the calls with more
than plain fields.

Other modules touch messages too, each a small part: the client method that sends a simple
unary request (GetRun, ListRuns, ListEvents, ListSteps, GetDecision, ListDecisions, CancelRun,
PauseRun, ResumeRun, GetStats) builds it from plain strings and numbers, ``_stats`` reads
GetStats' answer, ``_errors`` and ``_retry`` read a failed call's status details, and the
reporter's queue holds the events ``_event_builders`` built as messages. Public methods take
and return the typed objects; ``report_event`` and the ``raw`` attributes are the escape
hatches.
"""

from __future__ import annotations

from google.protobuf.message import Message

from runstream._events import PAYLOADS, EventKind
from runstream._readers import (
    artifact_from_pb,
    decision_option_from_pb,
    enum_value,
    error_info_from_pb,
    estimate_from_pb,
    optional_duration,
    optional_time,
    struct_to_dict,
    sub_step_details_from_pb,
    target_from_pb,
    timestamp_to_datetime,
)
from runstream._types import (
    ActiveAgent,
    ArtifactsSummary,
    Decision,
    DecisionOutcome,
    DecisionState,
    ErrorInfo,
    Event,
    ItemCounts,
    Run,
    RunDetails,
    RunHealth,
    RunProgress,
    RunStatus,
    Step,
    StepStatus,
)
from runstream.v1 import decision_pb2, event_pb2, run_pb2, run_service_pb2

# --- resources -----------------------------------------------------------------------------


def _error(message: Message, field_name: str) -> ErrorInfo | None:
    if not message.HasField(field_name):
        return None
    return error_info_from_pb(getattr(message, field_name))


def step_from_pb(message: run_pb2.Step) -> Step:
    """A Step dataclass from its message."""
    return Step(
        step_id=message.step_id,
        name=message.name,
        description=message.description,
        agent=message.agent,
        status=enum_value(StepStatus, message.status),
        start_time=optional_time(message, "start_time"),
        end_time=optional_time(message, "end_time"),
        duration=optional_duration(message, "duration"),
        percent=message.percent,
        sub_step=message.sub_step,
        detail=message.detail,
        tokens_processed=message.tokens_processed,
        artifacts=tuple(artifact_from_pb(a) for a in message.artifacts),
        metrics=dict(message.metrics),
        error=_error(message, "error"),
        skip_reason=message.skip_reason,
        attempts=message.attempts,
        raw=message,
        summary=message.summary,
        depends_on=tuple(message.depends_on),
        track=message.track,
        phase=message.phase,
        sub_step_details=(
            sub_step_details_from_pb(message.sub_step_details)
            if message.HasField("sub_step_details")
            else None
        ),
    )


def _active_agent_from_pb(message: run_pb2.ActiveAgent) -> ActiveAgent:
    return ActiveAgent(
        agent_id=message.agent_id,
        name=message.name,
        type=message.type,
        step_id=message.step_id,
        message=message.message,
        start_time=optional_time(message, "start_time"),
    )


def run_from_pb(message: run_pb2.Run) -> Run:
    """A Run dataclass from its message."""
    return Run(
        run_id=message.run_id,
        workflow=message.workflow,
        display_name=message.display_name,
        labels=dict(message.labels),
        status=enum_value(RunStatus, message.status),
        steps=tuple(step_from_pb(s) for s in message.steps),
        progress=RunProgress(
            percent=message.progress.percent,
            completed_steps=message.progress.completed_steps,
            total_steps=message.progress.total_steps,
            items=(
                _item_counts_from_pb(message.progress.items)
                if message.progress.HasField("items")
                else None
            ),
            unplanned=message.progress.unplanned,
        ),
        current_step_id=message.current_step_id,
        active_agents=tuple(_active_agent_from_pb(a) for a in message.active_agents),
        create_time=optional_time(message, "create_time"),
        start_time=optional_time(message, "start_time"),
        update_time=optional_time(message, "update_time"),
        end_time=optional_time(message, "end_time"),
        last_seq=message.last_seq,
        estimate=estimate_from_pb(message.estimate) if message.HasField("estimate") else None,
        health=enum_value(RunHealth, message.health),
        artifacts_summary=ArtifactsSummary(
            total=message.artifacts_summary.total,
            by_kind=dict(message.artifacts_summary.by_kind),
        ),
        error=_error(message, "error"),
        result_summary=message.result_summary,
        result=struct_to_dict(message.result),
        cancel_reason=message.cancel_reason,
        metrics=dict(message.metrics),
        viewer_count=message.viewer_count,
        targets=tuple(target_from_pb(t) for t in message.targets),
        purged_seq=message.purged_seq,
        raw=message,
        tenant=message.tenant,
        created_by=message.created_by,
        metric_units=dict(message.metric_units),
        metric_changes=dict(message.metric_changes),
        health_reason=message.health_reason,
    )


def _item_counts_from_pb(message: run_pb2.ItemCounts) -> ItemCounts:
    return ItemCounts(
        completed=message.completed,
        total=message.total,
        unit=message.unit,
        by_stage=dict(message.by_stage),
    )


def decision_from_pb(message: decision_pb2.Decision) -> Decision:
    """A Decision dataclass from its message."""
    return Decision(
        run_id=message.run_id,
        decision_id=message.decision_id,
        decision_type=message.decision_type,
        prompt=message.prompt,
        options=tuple(decision_option_from_pb(o) for o in message.options),
        default_option=message.default_option,
        timeout=optional_duration(message, "timeout"),
        can_skip=message.can_skip,
        context=struct_to_dict(message.context),
        affects_workflow=message.affects_workflow,
        state=enum_value(DecisionState, message.state),
        create_time=optional_time(message, "create_time"),
        deadline=optional_time(message, "deadline"),
        outcome=enum_value(DecisionOutcome, message.outcome),
        choice=message.choice,
        answered_by=message.answered_by,
        resolve_time=optional_time(message, "resolve_time"),
        requested_seq=message.requested_seq,
        resolved_seq=message.resolved_seq,
        raw=message,
    )


def run_details_from_pb(response: run_service_pb2.GetRunResponse) -> RunDetails:
    """The RunDetails of a GetRun response."""
    run = run_from_pb(response.run)
    return RunDetails(
        run=run,
        recent_activity=tuple(event_from_pb(e, run.run_id) for e in response.recent_activity),
        open_decisions=tuple(decision_from_pb(d) for d in response.open_decisions),
    )


# --- events: reading ---------------------------------------------------------------------


_PAYLOADS = PAYLOADS
"""The payload oneof's field name -> its kind and the reader of its message, generated from the
protos (runstream._events): one lookup for every event read."""


def event_from_pb(message: event_pb2.RunEvent, run_id: str = "") -> Event:
    """An Event from a RunEvent; a payload this SDK does not know gives kind UNSPECIFIED."""
    which = message.WhichOneof("payload")
    entry = _PAYLOADS.get(which) if which is not None else None
    if entry is None:
        kind, payload = EventKind.UNSPECIFIED, None
    else:
        kind, convert = entry
        payload = convert(getattr(message, which))
    # Positional, in the order of Event's fields: a third cheaper than by keyword, for every
    # event a watcher reads (tests/clients/test_api.py checks each field).
    return Event(
        message.run_id or run_id,
        message.seq,
        kind,
        timestamp_to_datetime(message.event_time),
        message.idempotency_key,
        payload,
        message,
    )
