import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from runstream.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PENDING: _ClassVar[RunStatus]
    RUN_STATUS_RUNNING: _ClassVar[RunStatus]
    RUN_STATUS_WAITING_FOR_INPUT: _ClassVar[RunStatus]
    RUN_STATUS_PAUSED: _ClassVar[RunStatus]
    RUN_STATUS_SUCCEEDED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]
    RUN_STATUS_CANCELLED: _ClassVar[RunStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_SUCCEEDED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]

class RunHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_HEALTH_UNSPECIFIED: _ClassVar[RunHealth]
    RUN_HEALTH_HEALTHY: _ClassVar[RunHealth]
    RUN_HEALTH_DEGRADED: _ClassVar[RunHealth]
    RUN_HEALTH_STALLED: _ClassVar[RunHealth]
    RUN_HEALTH_FAILING: _ClassVar[RunHealth]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_LOW: _ClassVar[Severity]
    SEVERITY_MEDIUM: _ClassVar[Severity]
    SEVERITY_HIGH: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]

class EstimateSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ESTIMATE_SOURCE_UNSPECIFIED: _ClassVar[EstimateSource]
    ESTIMATE_SOURCE_HISTORY: _ClassVar[EstimateSource]
    ESTIMATE_SOURCE_PRODUCER: _ClassVar[EstimateSource]

class TargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_KIND_UNSPECIFIED: _ClassVar[TargetKind]
    TARGET_KIND_COUNT: _ClassVar[TargetKind]
    TARGET_KIND_QUALITY: _ClassVar[TargetKind]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PENDING: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_WAITING_FOR_INPUT: RunStatus
RUN_STATUS_PAUSED: RunStatus
RUN_STATUS_SUCCEEDED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_CANCELLED: RunStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_SUCCEEDED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
RUN_HEALTH_UNSPECIFIED: RunHealth
RUN_HEALTH_HEALTHY: RunHealth
RUN_HEALTH_DEGRADED: RunHealth
RUN_HEALTH_STALLED: RunHealth
RUN_HEALTH_FAILING: RunHealth
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_LOW: Severity
SEVERITY_MEDIUM: Severity
SEVERITY_HIGH: Severity
SEVERITY_CRITICAL: Severity
ESTIMATE_SOURCE_UNSPECIFIED: EstimateSource
ESTIMATE_SOURCE_HISTORY: EstimateSource
ESTIMATE_SOURCE_PRODUCER: EstimateSource
TARGET_KIND_UNSPECIFIED: TargetKind
TARGET_KIND_COUNT: TargetKind
TARGET_KIND_QUALITY: TargetKind

class StepSpec(_message.Message):
    __slots__ = ("step_id", "name", "description", "agent", "depends_on", "track", "phase")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    name: str
    description: str
    agent: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    track: str
    phase: str
    def __init__(self, step_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., agent: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., track: _Optional[str] = ..., phase: _Optional[str] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("step_id", "name", "description", "agent", "status", "start_time", "end_time", "duration", "percent", "sub_step", "detail", "tokens_processed", "artifacts", "metrics", "error", "skip_reason", "attempts", "summary", "depends_on", "track", "phase", "sub_step_details")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SUB_STEP_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    TRACK_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    SUB_STEP_DETAILS_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    name: str
    description: str
    agent: str
    status: StepStatus
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    percent: float
    sub_step: str
    detail: str
    tokens_processed: int
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    metrics: _containers.ScalarMap[str, float]
    error: ErrorInfo
    skip_reason: str
    attempts: int
    summary: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    track: str
    phase: str
    sub_step_details: SubStepDetails
    def __init__(self, step_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., agent: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., percent: _Optional[float] = ..., sub_step: _Optional[str] = ..., detail: _Optional[str] = ..., tokens_processed: _Optional[int] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., skip_reason: _Optional[str] = ..., attempts: _Optional[int] = ..., summary: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., track: _Optional[str] = ..., phase: _Optional[str] = ..., sub_step_details: _Optional[_Union[SubStepDetails, _Mapping]] = ...) -> None: ...

class SubStepDetails(_message.Message):
    __slots__ = ("operation", "model", "estimated_completion_time")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COMPLETION_TIME_FIELD_NUMBER: _ClassVar[int]
    operation: str
    model: str
    estimated_completion_time: _timestamp_pb2.Timestamp
    def __init__(self, operation: _Optional[str] = ..., model: _Optional[str] = ..., estimated_completion_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ItemCounts(_message.Message):
    __slots__ = ("completed", "total", "unit", "by_stage")
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
    completed: int
    total: int
    unit: str
    by_stage: _containers.ScalarMap[str, int]
    def __init__(self, completed: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., by_stage: _Optional[_Mapping[str, int]] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("completed_steps", "total_steps", "percent", "items", "unplanned")
    COMPLETED_STEPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    UNPLANNED_FIELD_NUMBER: _ClassVar[int]
    completed_steps: int
    total_steps: int
    percent: float
    items: ItemCounts
    unplanned: bool
    def __init__(self, completed_steps: _Optional[int] = ..., total_steps: _Optional[int] = ..., percent: _Optional[float] = ..., items: _Optional[_Union[ItemCounts, _Mapping]] = ..., unplanned: _Optional[bool] = ...) -> None: ...

class ActiveAgent(_message.Message):
    __slots__ = ("agent_id", "name", "type", "step_id", "message", "start_time")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    type: str
    step_id: str
    message: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., step_id: _Optional[str] = ..., message: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Estimate(_message.Message):
    __slots__ = ("remaining", "end_time", "confidence", "remaining_low", "remaining_high", "history_runs", "source", "held")
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_LOW_FIELD_NUMBER: _ClassVar[int]
    REMAINING_HIGH_FIELD_NUMBER: _ClassVar[int]
    HISTORY_RUNS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    remaining: _duration_pb2.Duration
    end_time: _timestamp_pb2.Timestamp
    confidence: float
    remaining_low: _duration_pb2.Duration
    remaining_high: _duration_pb2.Duration
    history_runs: int
    source: EstimateSource
    held: bool
    def __init__(self, remaining: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confidence: _Optional[float] = ..., remaining_low: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., remaining_high: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., history_runs: _Optional[int] = ..., source: _Optional[_Union[EstimateSource, str]] = ..., held: _Optional[bool] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("metric", "value", "kind", "title")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    value: float
    kind: TargetKind
    title: str
    def __init__(self, metric: _Optional[str] = ..., value: _Optional[float] = ..., kind: _Optional[_Union[TargetKind, str]] = ..., title: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("artifact_id", "name", "kind", "uri", "size_bytes", "step_id", "metadata")
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    artifact_id: str
    name: str
    kind: str
    uri: str
    size_bytes: int
    step_id: str
    metadata: _struct_pb2.Struct
    def __init__(self, artifact_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., uri: _Optional[str] = ..., size_bytes: _Optional[int] = ..., step_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ArtifactsSummary(_message.Message):
    __slots__ = ("total", "by_kind")
    class ByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BY_KIND_FIELD_NUMBER: _ClassVar[int]
    total: int
    by_kind: _containers.ScalarMap[str, int]
    def __init__(self, total: _Optional[int] = ..., by_kind: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    details: _struct_pb2.Struct
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "workflow", "display_name", "labels", "status", "steps", "progress", "current_step_id", "active_agents", "create_time", "start_time", "update_time", "end_time", "last_seq", "estimate", "health", "artifacts_summary", "error", "result_summary", "result", "cancel_reason", "metrics", "viewer_count", "targets", "purged_seq", "tenant", "created_by", "metric_units", "metric_changes", "health_reason")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricUnitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricChangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_AGENTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULT_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PURGED_SEQ_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    METRIC_UNITS_FIELD_NUMBER: _ClassVar[int]
    METRIC_CHANGES_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    workflow: str
    display_name: str
    labels: _containers.ScalarMap[str, str]
    status: RunStatus
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    progress: RunProgress
    current_step_id: str
    active_agents: _containers.RepeatedCompositeFieldContainer[ActiveAgent]
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    last_seq: int
    estimate: Estimate
    health: RunHealth
    artifacts_summary: ArtifactsSummary
    error: ErrorInfo
    result_summary: str
    result: _struct_pb2.Struct
    cancel_reason: str
    metrics: _containers.ScalarMap[str, float]
    viewer_count: int
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    purged_seq: int
    tenant: str
    created_by: str
    metric_units: _containers.ScalarMap[str, str]
    metric_changes: _containers.ScalarMap[str, float]
    health_reason: str
    def __init__(self, run_id: _Optional[str] = ..., workflow: _Optional[str] = ..., display_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[RunStatus, str]] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., progress: _Optional[_Union[RunProgress, _Mapping]] = ..., current_step_id: _Optional[str] = ..., active_agents: _Optional[_Iterable[_Union[ActiveAgent, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seq: _Optional[int] = ..., estimate: _Optional[_Union[Estimate, _Mapping]] = ..., health: _Optional[_Union[RunHealth, str]] = ..., artifacts_summary: _Optional[_Union[ArtifactsSummary, _Mapping]] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., result_summary: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cancel_reason: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., viewer_count: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ..., purged_seq: _Optional[int] = ..., tenant: _Optional[str] = ..., created_by: _Optional[str] = ..., metric_units: _Optional[_Mapping[str, str]] = ..., metric_changes: _Optional[_Mapping[str, float]] = ..., health_reason: _Optional[str] = ...) -> None: ...
