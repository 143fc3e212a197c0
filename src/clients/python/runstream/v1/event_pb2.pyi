import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from runstream.v1 import options_pb2 as _options_pb2
from runstream.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_RUN_CREATED: _ClassVar[EventKind]
    EVENT_KIND_RUN_STARTED: _ClassVar[EventKind]
    EVENT_KIND_RUN_STATUS_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_RUN_COMPLETED: _ClassVar[EventKind]
    EVENT_KIND_RUN_FAILED: _ClassVar[EventKind]
    EVENT_KIND_RUN_CANCELLED: _ClassVar[EventKind]
    EVENT_KIND_STEP_STARTED: _ClassVar[EventKind]
    EVENT_KIND_STEP_PROGRESS: _ClassVar[EventKind]
    EVENT_KIND_STEP_COMPLETED: _ClassVar[EventKind]
    EVENT_KIND_STEP_FAILED: _ClassVar[EventKind]
    EVENT_KIND_STEP_SKIPPED: _ClassVar[EventKind]
    EVENT_KIND_ITEM_PROGRESS: _ClassVar[EventKind]
    EVENT_KIND_AGENT_ACTIVITY: _ClassVar[EventKind]
    EVENT_KIND_THINKING: _ClassVar[EventKind]
    EVENT_KIND_MODEL_ALLOCATION: _ClassVar[EventKind]
    EVENT_KIND_TEXT_DELTA: _ClassVar[EventKind]
    EVENT_KIND_METRICS_UPDATE: _ClassVar[EventKind]
    EVENT_KIND_MILESTONE: _ClassVar[EventKind]
    EVENT_KIND_ALERT: _ClassVar[EventKind]
    EVENT_KIND_ERROR_RECOVERY: _ClassVar[EventKind]
    EVENT_KIND_ARTIFACT_PRODUCED: _ClassVar[EventKind]
    EVENT_KIND_WORKFLOW_STATE_CHANGE: _ClassVar[EventKind]
    EVENT_KIND_HEALTH_CHANGED: _ClassVar[EventKind]
    EVENT_KIND_ESTIMATE_UPDATED: _ClassVar[EventKind]
    EVENT_KIND_DECISION_REQUESTED: _ClassVar[EventKind]
    EVENT_KIND_DECISION_RESOLVED: _ClassVar[EventKind]
    EVENT_KIND_CUSTOM: _ClassVar[EventKind]

class AgentActivityType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_ACTIVITY_TYPE_UNSPECIFIED: _ClassVar[AgentActivityType]
    AGENT_ACTIVITY_TYPE_STARTED: _ClassVar[AgentActivityType]
    AGENT_ACTIVITY_TYPE_PROGRESS: _ClassVar[AgentActivityType]
    AGENT_ACTIVITY_TYPE_COMPLETED: _ClassVar[AgentActivityType]
    AGENT_ACTIVITY_TYPE_FAILED: _ClassVar[AgentActivityType]

class MilestoneType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MILESTONE_TYPE_UNSPECIFIED: _ClassVar[MilestoneType]
    MILESTONE_TYPE_PROGRESS: _ClassVar[MilestoneType]
    MILESTONE_TYPE_TARGET_REACHED: _ClassVar[MilestoneType]
    MILESTONE_TYPE_QUALITY: _ClassVar[MilestoneType]
    MILESTONE_TYPE_SPEED: _ClassVar[MilestoneType]
    MILESTONE_TYPE_COMPLETION: _ClassVar[MilestoneType]
    MILESTONE_TYPE_GROWTH: _ClassVar[MilestoneType]
    MILESTONE_TYPE_CUSTOM: _ClassVar[MilestoneType]

class AlertActionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_ACTION_TYPE_UNSPECIFIED: _ClassVar[AlertActionType]
    ALERT_ACTION_TYPE_PAUSE_RUN: _ClassVar[AlertActionType]
    ALERT_ACTION_TYPE_RESUME_RUN: _ClassVar[AlertActionType]
    ALERT_ACTION_TYPE_CANCEL_RUN: _ClassVar[AlertActionType]

class DecisionOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_OUTCOME_UNSPECIFIED: _ClassVar[DecisionOutcome]
    DECISION_OUTCOME_ANSWERED: _ClassVar[DecisionOutcome]
    DECISION_OUTCOME_DEFAULTED: _ClassVar[DecisionOutcome]
    DECISION_OUTCOME_TIMED_OUT: _ClassVar[DecisionOutcome]
    DECISION_OUTCOME_SKIPPED: _ClassVar[DecisionOutcome]
    DECISION_OUTCOME_CANCELLED: _ClassVar[DecisionOutcome]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_RUN_CREATED: EventKind
EVENT_KIND_RUN_STARTED: EventKind
EVENT_KIND_RUN_STATUS_CHANGED: EventKind
EVENT_KIND_RUN_COMPLETED: EventKind
EVENT_KIND_RUN_FAILED: EventKind
EVENT_KIND_RUN_CANCELLED: EventKind
EVENT_KIND_STEP_STARTED: EventKind
EVENT_KIND_STEP_PROGRESS: EventKind
EVENT_KIND_STEP_COMPLETED: EventKind
EVENT_KIND_STEP_FAILED: EventKind
EVENT_KIND_STEP_SKIPPED: EventKind
EVENT_KIND_ITEM_PROGRESS: EventKind
EVENT_KIND_AGENT_ACTIVITY: EventKind
EVENT_KIND_THINKING: EventKind
EVENT_KIND_MODEL_ALLOCATION: EventKind
EVENT_KIND_TEXT_DELTA: EventKind
EVENT_KIND_METRICS_UPDATE: EventKind
EVENT_KIND_MILESTONE: EventKind
EVENT_KIND_ALERT: EventKind
EVENT_KIND_ERROR_RECOVERY: EventKind
EVENT_KIND_ARTIFACT_PRODUCED: EventKind
EVENT_KIND_WORKFLOW_STATE_CHANGE: EventKind
EVENT_KIND_HEALTH_CHANGED: EventKind
EVENT_KIND_ESTIMATE_UPDATED: EventKind
EVENT_KIND_DECISION_REQUESTED: EventKind
EVENT_KIND_DECISION_RESOLVED: EventKind
EVENT_KIND_CUSTOM: EventKind
AGENT_ACTIVITY_TYPE_UNSPECIFIED: AgentActivityType
AGENT_ACTIVITY_TYPE_STARTED: AgentActivityType
AGENT_ACTIVITY_TYPE_PROGRESS: AgentActivityType
AGENT_ACTIVITY_TYPE_COMPLETED: AgentActivityType
AGENT_ACTIVITY_TYPE_FAILED: AgentActivityType
MILESTONE_TYPE_UNSPECIFIED: MilestoneType
MILESTONE_TYPE_PROGRESS: MilestoneType
MILESTONE_TYPE_TARGET_REACHED: MilestoneType
MILESTONE_TYPE_QUALITY: MilestoneType
MILESTONE_TYPE_SPEED: MilestoneType
MILESTONE_TYPE_COMPLETION: MilestoneType
MILESTONE_TYPE_GROWTH: MilestoneType
MILESTONE_TYPE_CUSTOM: MilestoneType
ALERT_ACTION_TYPE_UNSPECIFIED: AlertActionType
ALERT_ACTION_TYPE_PAUSE_RUN: AlertActionType
ALERT_ACTION_TYPE_RESUME_RUN: AlertActionType
ALERT_ACTION_TYPE_CANCEL_RUN: AlertActionType
DECISION_OUTCOME_UNSPECIFIED: DecisionOutcome
DECISION_OUTCOME_ANSWERED: DecisionOutcome
DECISION_OUTCOME_DEFAULTED: DecisionOutcome
DECISION_OUTCOME_TIMED_OUT: DecisionOutcome
DECISION_OUTCOME_SKIPPED: DecisionOutcome
DECISION_OUTCOME_CANCELLED: DecisionOutcome

class RunEvent(_message.Message):
    __slots__ = ("run_id", "seq", "event_time", "idempotency_key", "receive_time", "run_created", "run_started", "run_status_changed", "run_completed", "run_failed", "run_cancelled", "step_started", "step_progress", "step_completed", "step_failed", "step_skipped", "item_progress", "agent_activity", "thinking", "model_allocation", "text_delta", "metrics_update", "milestone", "alert", "error_recovery", "artifact_produced", "workflow_state_change", "health_changed", "estimate_updated", "decision_requested", "decision_resolved", "custom")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_CREATED_FIELD_NUMBER: _ClassVar[int]
    RUN_STARTED_FIELD_NUMBER: _ClassVar[int]
    RUN_STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    RUN_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    RUN_FAILED_FIELD_NUMBER: _ClassVar[int]
    RUN_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STEP_STARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STEP_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    STEP_FAILED_FIELD_NUMBER: _ClassVar[int]
    STEP_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ITEM_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    THINKING_FIELD_NUMBER: _ClassVar[int]
    MODEL_ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    METRICS_UPDATE_FIELD_NUMBER: _ClassVar[int]
    MILESTONE_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    ERROR_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_PRODUCED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_STATE_CHANGE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_UPDATED_FIELD_NUMBER: _ClassVar[int]
    DECISION_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DECISION_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    seq: int
    event_time: _timestamp_pb2.Timestamp
    idempotency_key: str
    receive_time: _timestamp_pb2.Timestamp
    run_created: RunCreated
    run_started: RunStarted
    run_status_changed: RunStatusChanged
    run_completed: RunCompleted
    run_failed: RunFailed
    run_cancelled: RunCancelled
    step_started: StepStarted
    step_progress: StepProgress
    step_completed: StepCompleted
    step_failed: StepFailed
    step_skipped: StepSkipped
    item_progress: ItemProgress
    agent_activity: AgentActivity
    thinking: Thinking
    model_allocation: ModelAllocation
    text_delta: TextDelta
    metrics_update: MetricsUpdate
    milestone: Milestone
    alert: Alert
    error_recovery: ErrorRecovery
    artifact_produced: ArtifactProduced
    workflow_state_change: WorkflowStateChange
    health_changed: HealthChanged
    estimate_updated: EstimateUpdated
    decision_requested: DecisionRequested
    decision_resolved: DecisionResolved
    custom: Custom
    def __init__(self, run_id: _Optional[str] = ..., seq: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_created: _Optional[_Union[RunCreated, _Mapping]] = ..., run_started: _Optional[_Union[RunStarted, _Mapping]] = ..., run_status_changed: _Optional[_Union[RunStatusChanged, _Mapping]] = ..., run_completed: _Optional[_Union[RunCompleted, _Mapping]] = ..., run_failed: _Optional[_Union[RunFailed, _Mapping]] = ..., run_cancelled: _Optional[_Union[RunCancelled, _Mapping]] = ..., step_started: _Optional[_Union[StepStarted, _Mapping]] = ..., step_progress: _Optional[_Union[StepProgress, _Mapping]] = ..., step_completed: _Optional[_Union[StepCompleted, _Mapping]] = ..., step_failed: _Optional[_Union[StepFailed, _Mapping]] = ..., step_skipped: _Optional[_Union[StepSkipped, _Mapping]] = ..., item_progress: _Optional[_Union[ItemProgress, _Mapping]] = ..., agent_activity: _Optional[_Union[AgentActivity, _Mapping]] = ..., thinking: _Optional[_Union[Thinking, _Mapping]] = ..., model_allocation: _Optional[_Union[ModelAllocation, _Mapping]] = ..., text_delta: _Optional[_Union[TextDelta, _Mapping]] = ..., metrics_update: _Optional[_Union[MetricsUpdate, _Mapping]] = ..., milestone: _Optional[_Union[Milestone, _Mapping]] = ..., alert: _Optional[_Union[Alert, _Mapping]] = ..., error_recovery: _Optional[_Union[ErrorRecovery, _Mapping]] = ..., artifact_produced: _Optional[_Union[ArtifactProduced, _Mapping]] = ..., workflow_state_change: _Optional[_Union[WorkflowStateChange, _Mapping]] = ..., health_changed: _Optional[_Union[HealthChanged, _Mapping]] = ..., estimate_updated: _Optional[_Union[EstimateUpdated, _Mapping]] = ..., decision_requested: _Optional[_Union[DecisionRequested, _Mapping]] = ..., decision_resolved: _Optional[_Union[DecisionResolved, _Mapping]] = ..., custom: _Optional[_Union[Custom, _Mapping]] = ...) -> None: ...

class RunCreated(_message.Message):
    __slots__ = ("workflow", "display_name", "labels", "steps", "targets", "tenant", "created_by")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    display_name: str
    labels: _containers.ScalarMap[str, str]
    steps: _containers.RepeatedCompositeFieldContainer[_run_pb2.StepSpec]
    targets: _containers.RepeatedCompositeFieldContainer[_run_pb2.Target]
    tenant: str
    created_by: str
    def __init__(self, workflow: _Optional[str] = ..., display_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., steps: _Optional[_Iterable[_Union[_run_pb2.StepSpec, _Mapping]]] = ..., targets: _Optional[_Iterable[_Union[_run_pb2.Target, _Mapping]]] = ..., tenant: _Optional[str] = ..., created_by: _Optional[str] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class RunStatusChanged(_message.Message):
    __slots__ = ("previous_status", "status", "reason", "changed_by")
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    previous_status: _run_pb2.RunStatus
    status: _run_pb2.RunStatus
    reason: str
    changed_by: str
    def __init__(self, previous_status: _Optional[_Union[_run_pb2.RunStatus, str]] = ..., status: _Optional[_Union[_run_pb2.RunStatus, str]] = ..., reason: _Optional[str] = ..., changed_by: _Optional[str] = ...) -> None: ...

class RunCompleted(_message.Message):
    __slots__ = ("summary", "result")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    summary: str
    result: _struct_pb2.Struct
    def __init__(self, summary: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RunFailed(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: _run_pb2.ErrorInfo
    def __init__(self, error: _Optional[_Union[_run_pb2.ErrorInfo, _Mapping]] = ...) -> None: ...

class RunCancelled(_message.Message):
    __slots__ = ("reason", "cancelled_by")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    reason: str
    cancelled_by: str
    def __init__(self, reason: _Optional[str] = ..., cancelled_by: _Optional[str] = ...) -> None: ...

class StepStarted(_message.Message):
    __slots__ = ("step_id", "name", "description", "agent")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    name: str
    description: str
    agent: str
    def __init__(self, step_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., agent: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("step_id", "percent", "sub_step", "detail", "tokens_processed", "sub_step_details", "estimated_time_remaining")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SUB_STEP_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    SUB_STEP_DETAILS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TIME_REMAINING_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    percent: float
    sub_step: str
    detail: str
    tokens_processed: int
    sub_step_details: _run_pb2.SubStepDetails
    estimated_time_remaining: _duration_pb2.Duration
    def __init__(self, step_id: _Optional[str] = ..., percent: _Optional[float] = ..., sub_step: _Optional[str] = ..., detail: _Optional[str] = ..., tokens_processed: _Optional[int] = ..., sub_step_details: _Optional[_Union[_run_pb2.SubStepDetails, _Mapping]] = ..., estimated_time_remaining: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ItemProgress(_message.Message):
    __slots__ = ("completed", "total", "unit", "by_stage", "estimated_time_remaining")
    class ByStageEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BY_STAGE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TIME_REMAINING_FIELD_NUMBER: _ClassVar[int]
    completed: int
    total: int
    unit: str
    by_stage: _containers.ScalarMap[str, int]
    estimated_time_remaining: _duration_pb2.Duration
    def __init__(self, completed: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., by_stage: _Optional[_Mapping[str, int]] = ..., estimated_time_remaining: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StepCompleted(_message.Message):
    __slots__ = ("step_id", "artifacts", "metrics", "duration", "summary")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    artifacts: _containers.RepeatedCompositeFieldContainer[_run_pb2.Artifact]
    metrics: _containers.ScalarMap[str, float]
    duration: _duration_pb2.Duration
    summary: str
    def __init__(self, step_id: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[_run_pb2.Artifact, _Mapping]]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., summary: _Optional[str] = ...) -> None: ...

class StepFailed(_message.Message):
    __slots__ = ("step_id", "error")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    error: _run_pb2.ErrorInfo
    def __init__(self, step_id: _Optional[str] = ..., error: _Optional[_Union[_run_pb2.ErrorInfo, _Mapping]] = ...) -> None: ...

class StepSkipped(_message.Message):
    __slots__ = ("step_id", "reason")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    reason: str
    def __init__(self, step_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentActivity(_message.Message):
    __slots__ = ("agent_id", "agent_name", "agent_type", "activity", "message", "data", "step_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent_name: str
    agent_type: str
    activity: AgentActivityType
    message: str
    data: _struct_pb2.Struct
    step_id: str
    def __init__(self, agent_id: _Optional[str] = ..., agent_name: _Optional[str] = ..., agent_type: _Optional[str] = ..., activity: _Optional[_Union[AgentActivityType, str]] = ..., message: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., step_id: _Optional[str] = ...) -> None: ...

class Thinking(_message.Message):
    __slots__ = ("thinking_type", "stage", "analysis", "factors", "confidence", "reasoning_depth", "agent_id")
    THINKING_TYPE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REASONING_DEPTH_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    thinking_type: str
    stage: str
    analysis: str
    factors: _containers.RepeatedScalarFieldContainer[str]
    confidence: float
    reasoning_depth: str
    agent_id: str
    def __init__(self, thinking_type: _Optional[str] = ..., stage: _Optional[str] = ..., analysis: _Optional[str] = ..., factors: _Optional[_Iterable[str]] = ..., confidence: _Optional[float] = ..., reasoning_depth: _Optional[str] = ..., agent_id: _Optional[str] = ...) -> None: ...

class ModelAllocation(_message.Message):
    __slots__ = ("agent_id", "model", "tier", "reasoning", "complexity", "context_window", "expected_cost_usd", "factors", "performance_expectation")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    FACTORS_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_EXPECTATION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    model: str
    tier: str
    reasoning: str
    complexity: str
    context_window: int
    expected_cost_usd: float
    factors: _containers.RepeatedScalarFieldContainer[str]
    performance_expectation: str
    def __init__(self, agent_id: _Optional[str] = ..., model: _Optional[str] = ..., tier: _Optional[str] = ..., reasoning: _Optional[str] = ..., complexity: _Optional[str] = ..., context_window: _Optional[int] = ..., expected_cost_usd: _Optional[float] = ..., factors: _Optional[_Iterable[str]] = ..., performance_expectation: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("agent_id", "message_id", "delta", "final", "step_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    message_id: str
    delta: str
    final: bool
    step_id: str
    def __init__(self, agent_id: _Optional[str] = ..., message_id: _Optional[str] = ..., delta: _Optional[str] = ..., final: _Optional[bool] = ..., step_id: _Optional[str] = ...) -> None: ...

class MetricsUpdate(_message.Message):
    __slots__ = ("values", "step_id", "units", "changes")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class UnitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ChangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.ScalarMap[str, float]
    step_id: str
    units: _containers.ScalarMap[str, str]
    changes: _containers.ScalarMap[str, float]
    def __init__(self, values: _Optional[_Mapping[str, float]] = ..., step_id: _Optional[str] = ..., units: _Optional[_Mapping[str, str]] = ..., changes: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Milestone(_message.Message):
    __slots__ = ("type", "title", "description", "data", "milestone_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MILESTONE_ID_FIELD_NUMBER: _ClassVar[int]
    type: MilestoneType
    title: str
    description: str
    data: _struct_pb2.Struct
    milestone_id: str
    def __init__(self, type: _Optional[_Union[MilestoneType, str]] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., milestone_id: _Optional[str] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("severity", "message", "suggested_action", "code", "data", "step_id", "action")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_ACTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    severity: _run_pb2.Severity
    message: str
    suggested_action: str
    code: str
    data: _struct_pb2.Struct
    step_id: str
    action: AlertAction
    def __init__(self, severity: _Optional[_Union[_run_pb2.Severity, str]] = ..., message: _Optional[str] = ..., suggested_action: _Optional[str] = ..., code: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., step_id: _Optional[str] = ..., action: _Optional[_Union[AlertAction, _Mapping]] = ...) -> None: ...

class AlertAction(_message.Message):
    __slots__ = ("type", "label")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    type: AlertActionType
    label: str
    def __init__(self, type: _Optional[_Union[AlertActionType, str]] = ..., label: _Optional[str] = ...) -> None: ...

class ErrorRecovery(_message.Message):
    __slots__ = ("error_message", "severity", "recovery_strategy", "can_continue", "affected_agents", "user_action_required", "attempt", "step_id")
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CAN_CONTINUE_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    USER_ACTION_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    error_message: str
    severity: _run_pb2.Severity
    recovery_strategy: str
    can_continue: bool
    affected_agents: _containers.RepeatedScalarFieldContainer[str]
    user_action_required: bool
    attempt: int
    step_id: str
    def __init__(self, error_message: _Optional[str] = ..., severity: _Optional[_Union[_run_pb2.Severity, str]] = ..., recovery_strategy: _Optional[str] = ..., can_continue: _Optional[bool] = ..., affected_agents: _Optional[_Iterable[str]] = ..., user_action_required: _Optional[bool] = ..., attempt: _Optional[int] = ..., step_id: _Optional[str] = ...) -> None: ...

class ArtifactProduced(_message.Message):
    __slots__ = ("artifact",)
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    artifact: _run_pb2.Artifact
    def __init__(self, artifact: _Optional[_Union[_run_pb2.Artifact, _Mapping]] = ...) -> None: ...

class WorkflowStateChange(_message.Message):
    __slots__ = ("change_type", "current_stage", "stages", "completion_percentage", "active_agents", "pipeline_status")
    class PipelineStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    CHANGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_AGENTS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_STATUS_FIELD_NUMBER: _ClassVar[int]
    change_type: str
    current_stage: str
    stages: _containers.RepeatedScalarFieldContainer[str]
    completion_percentage: float
    active_agents: _containers.RepeatedScalarFieldContainer[str]
    pipeline_status: _containers.ScalarMap[str, bool]
    def __init__(self, change_type: _Optional[str] = ..., current_stage: _Optional[str] = ..., stages: _Optional[_Iterable[str]] = ..., completion_percentage: _Optional[float] = ..., active_agents: _Optional[_Iterable[str]] = ..., pipeline_status: _Optional[_Mapping[str, bool]] = ...) -> None: ...

class DecisionOption(_message.Message):
    __slots__ = ("value", "label", "description")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    value: str
    label: str
    description: str
    def __init__(self, value: _Optional[str] = ..., label: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class DecisionRequested(_message.Message):
    __slots__ = ("decision_id", "decision_type", "prompt", "options", "default_option", "timeout", "can_skip", "context", "affects_workflow", "deadline")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_OPTION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CAN_SKIP_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    AFFECTS_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    decision_type: str
    prompt: str
    options: _containers.RepeatedCompositeFieldContainer[DecisionOption]
    default_option: str
    timeout: _duration_pb2.Duration
    can_skip: bool
    context: _struct_pb2.Struct
    affects_workflow: bool
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., decision_type: _Optional[str] = ..., prompt: _Optional[str] = ..., options: _Optional[_Iterable[_Union[DecisionOption, _Mapping]]] = ..., default_option: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., can_skip: _Optional[bool] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., affects_workflow: _Optional[bool] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DecisionResolved(_message.Message):
    __slots__ = ("decision_id", "outcome", "choice", "answered_by")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    outcome: DecisionOutcome
    choice: str
    answered_by: str
    def __init__(self, decision_id: _Optional[str] = ..., outcome: _Optional[_Union[DecisionOutcome, str]] = ..., choice: _Optional[str] = ..., answered_by: _Optional[str] = ...) -> None: ...

class Custom(_message.Message):
    __slots__ = ("type", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: str
    data: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class HealthChanged(_message.Message):
    __slots__ = ("previous_health", "health", "reason")
    PREVIOUS_HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    previous_health: _run_pb2.RunHealth
    health: _run_pb2.RunHealth
    reason: str
    def __init__(self, previous_health: _Optional[_Union[_run_pb2.RunHealth, str]] = ..., health: _Optional[_Union[_run_pb2.RunHealth, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class EstimateUpdated(_message.Message):
    __slots__ = ("estimate",)
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    estimate: _run_pb2.Estimate
    def __init__(self, estimate: _Optional[_Union[_run_pb2.Estimate, _Mapping]] = ...) -> None: ...
