import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from runstream.v1 import event_pb2 as _event_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecisionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_STATE_UNSPECIFIED: _ClassVar[DecisionState]
    DECISION_STATE_OPEN: _ClassVar[DecisionState]
    DECISION_STATE_RESOLVED: _ClassVar[DecisionState]
DECISION_STATE_UNSPECIFIED: DecisionState
DECISION_STATE_OPEN: DecisionState
DECISION_STATE_RESOLVED: DecisionState

class Decision(_message.Message):
    __slots__ = ("run_id", "decision_id", "decision_type", "prompt", "options", "default_option", "timeout", "can_skip", "context", "affects_workflow", "state", "create_time", "deadline", "outcome", "choice", "answered_by", "resolve_time", "requested_seq", "resolved_seq")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_OPTION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CAN_SKIP_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    AFFECTS_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_SEQ_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    decision_id: str
    decision_type: str
    prompt: str
    options: _containers.RepeatedCompositeFieldContainer[_event_pb2.DecisionOption]
    default_option: str
    timeout: _duration_pb2.Duration
    can_skip: bool
    context: _struct_pb2.Struct
    affects_workflow: bool
    state: DecisionState
    create_time: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    outcome: _event_pb2.DecisionOutcome
    choice: str
    answered_by: str
    resolve_time: _timestamp_pb2.Timestamp
    requested_seq: int
    resolved_seq: int
    def __init__(self, run_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., decision_type: _Optional[str] = ..., prompt: _Optional[str] = ..., options: _Optional[_Iterable[_Union[_event_pb2.DecisionOption, _Mapping]]] = ..., default_option: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., can_skip: _Optional[bool] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., affects_workflow: _Optional[bool] = ..., state: _Optional[_Union[DecisionState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[_event_pb2.DecisionOutcome, str]] = ..., choice: _Optional[str] = ..., answered_by: _Optional[str] = ..., resolve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requested_seq: _Optional[int] = ..., resolved_seq: _Optional[int] = ...) -> None: ...
