from runstream.v1 import decision_pb2 as _decision_pb2
from runstream.v1 import event_pb2 as _event_pb2
from runstream.v1 import options_pb2 as _options_pb2
from runstream.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ControlAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_ACTION_UNSPECIFIED: _ClassVar[ControlAction]
    CONTROL_ACTION_CANCEL: _ClassVar[ControlAction]
    CONTROL_ACTION_PAUSE: _ClassVar[ControlAction]
    CONTROL_ACTION_RESUME: _ClassVar[ControlAction]
CONTROL_ACTION_UNSPECIFIED: ControlAction
CONTROL_ACTION_CANCEL: ControlAction
CONTROL_ACTION_PAUSE: ControlAction
CONTROL_ACTION_RESUME: ControlAction

class ReportRequest(_message.Message):
    __slots__ = ("run_id", "events", "batch_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.RunEvent]
    batch_id: int
    def __init__(self, run_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_event_pb2.RunEvent, _Mapping]]] = ..., batch_id: _Optional[int] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("ack", "control", "decision")
    ACK_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ack: AppendAck
    control: Control
    decision: _decision_pb2.Decision
    def __init__(self, ack: _Optional[_Union[AppendAck, _Mapping]] = ..., control: _Optional[_Union[Control, _Mapping]] = ..., decision: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ...) -> None: ...

class AppendAck(_message.Message):
    __slots__ = ("batch_id", "events", "last_seq")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    events: _containers.RepeatedCompositeFieldContainer[EventAck]
    last_seq: int
    def __init__(self, batch_id: _Optional[int] = ..., events: _Optional[_Iterable[_Union[EventAck, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("seq", "idempotency_key", "duplicate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    idempotency_key: str
    duplicate: bool
    def __init__(self, seq: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("action", "reason", "status", "seq")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    action: ControlAction
    reason: str
    status: _run_pb2.RunStatus
    seq: int
    def __init__(self, action: _Optional[_Union[ControlAction, str]] = ..., reason: _Optional[str] = ..., status: _Optional[_Union[_run_pb2.RunStatus, str]] = ..., seq: _Optional[int] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("run_id", "events")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    events: _containers.RepeatedCompositeFieldContainer[_event_pb2.RunEvent]
    def __init__(self, run_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_event_pb2.RunEvent, _Mapping]]] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("events", "last_seq")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EventAck]
    last_seq: int
    def __init__(self, events: _Optional[_Iterable[_Union[EventAck, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...
