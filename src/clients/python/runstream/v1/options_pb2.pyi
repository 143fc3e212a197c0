from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
KIND_FIELD_NUMBER: _ClassVar[int]
kind: _descriptor.FieldDescriptor
LIMIT_FIELD_NUMBER: _ClassVar[int]
limit: _descriptor.FieldDescriptor

class KindRules(_message.Message):
    __slots__ = ("required", "ids", "optional_ids", "step_refs", "ranges", "server_only", "terminal", "changes_state", "starts_run", "moves_estimate")
    class Range(_message.Message):
        __slots__ = ("path", "at_least", "at_most")
        PATH_FIELD_NUMBER: _ClassVar[int]
        AT_LEAST_FIELD_NUMBER: _ClassVar[int]
        AT_MOST_FIELD_NUMBER: _ClassVar[int]
        path: str
        at_least: float
        at_most: float
        def __init__(self, path: _Optional[str] = ..., at_least: _Optional[float] = ..., at_most: _Optional[float] = ...) -> None: ...
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_IDS_FIELD_NUMBER: _ClassVar[int]
    STEP_REFS_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    SERVER_ONLY_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    CHANGES_STATE_FIELD_NUMBER: _ClassVar[int]
    STARTS_RUN_FIELD_NUMBER: _ClassVar[int]
    MOVES_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    required: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[str]
    optional_ids: _containers.RepeatedScalarFieldContainer[str]
    step_refs: _containers.RepeatedScalarFieldContainer[str]
    ranges: _containers.RepeatedCompositeFieldContainer[KindRules.Range]
    server_only: bool
    terminal: bool
    changes_state: bool
    starts_run: bool
    moves_estimate: bool
    def __init__(self, required: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[str]] = ..., optional_ids: _Optional[_Iterable[str]] = ..., step_refs: _Optional[_Iterable[str]] = ..., ranges: _Optional[_Iterable[_Union[KindRules.Range, _Mapping]]] = ..., server_only: _Optional[bool] = ..., terminal: _Optional[bool] = ..., changes_state: _Optional[bool] = ..., starts_run: _Optional[bool] = ..., moves_estimate: _Optional[bool] = ...) -> None: ...

class FieldLimit(_message.Message):
    __slots__ = ("chars", "items", "key_chars", "struct_bytes", "free_text")
    CHARS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KEY_CHARS_FIELD_NUMBER: _ClassVar[int]
    STRUCT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_TEXT_FIELD_NUMBER: _ClassVar[int]
    chars: int
    items: int
    key_chars: int
    struct_bytes: int
    free_text: bool
    def __init__(self, chars: _Optional[int] = ..., items: _Optional[int] = ..., key_chars: _Optional[int] = ..., struct_bytes: _Optional[int] = ..., free_text: _Optional[bool] = ...) -> None: ...
