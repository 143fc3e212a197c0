from runstream.v1 import decision_pb2 as _decision_pb2
from runstream.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitDecisionRequest(_message.Message):
    __slots__ = ("run_id", "decision_id", "choice", "skip", "answered_by")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CHOICE_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    decision_id: str
    choice: str
    skip: bool
    answered_by: str
    def __init__(self, run_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., choice: _Optional[str] = ..., skip: _Optional[bool] = ..., answered_by: _Optional[str] = ...) -> None: ...

class SubmitDecisionResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: _decision_pb2.Decision
    def __init__(self, decision: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("run_id", "page_size", "page_token", "filter")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    page_size: int
    page_token: str
    filter: str
    def __init__(self, run_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions", "next_page_token")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[_decision_pb2.Decision]
    next_page_token: str
    def __init__(self, decisions: _Optional[_Iterable[_Union[_decision_pb2.Decision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("run_id", "decision_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    decision_id: str
    def __init__(self, run_id: _Optional[str] = ..., decision_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: _decision_pb2.Decision
    def __init__(self, decision: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ...) -> None: ...

class InteractRequest(_message.Message):
    __slots__ = ("subscribe", "answer")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    subscribe: InteractSubscribe
    answer: InteractAnswer
    def __init__(self, subscribe: _Optional[_Union[InteractSubscribe, _Mapping]] = ..., answer: _Optional[_Union[InteractAnswer, _Mapping]] = ...) -> None: ...

class InteractSubscribe(_message.Message):
    __slots__ = ("run_ids", "viewer")
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    VIEWER_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    viewer: str
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ..., viewer: _Optional[str] = ...) -> None: ...

class InteractAnswer(_message.Message):
    __slots__ = ("answer_id", "decision")
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    answer_id: int
    decision: SubmitDecisionRequest
    def __init__(self, answer_id: _Optional[int] = ..., decision: _Optional[_Union[SubmitDecisionRequest, _Mapping]] = ...) -> None: ...

class InteractResponse(_message.Message):
    __slots__ = ("prompt", "closed", "answer_result")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    ANSWER_RESULT_FIELD_NUMBER: _ClassVar[int]
    prompt: _decision_pb2.Decision
    closed: _decision_pb2.Decision
    answer_result: InteractAnswerResult
    def __init__(self, prompt: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ..., closed: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ..., answer_result: _Optional[_Union[InteractAnswerResult, _Mapping]] = ...) -> None: ...

class InteractAnswerResult(_message.Message):
    __slots__ = ("answer_id", "code", "message", "decision")
    ANSWER_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    answer_id: int
    code: int
    message: str
    decision: _decision_pb2.Decision
    def __init__(self, answer_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., decision: _Optional[_Union[_decision_pb2.Decision, _Mapping]] = ...) -> None: ...
