import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from runstream.v1 import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: ServerStats
    def __init__(self, stats: _Optional[_Union[ServerStats, _Mapping]] = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("server_version", "start_time", "uptime", "runs_by_status", "watchers", "producers", "watch_runs_streams", "interact_streams", "open_decisions", "events_appended_last_minute", "events_delivered_last_minute", "append_latency_p50", "append_latency_p99", "events_appended_total", "events_delivered_total", "store_errors_total", "store_kind", "store_size_bytes")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    RUNS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    WATCH_RUNS_STREAMS_FIELD_NUMBER: _ClassVar[int]
    INTERACT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    OPEN_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_APPENDED_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DELIVERED_LAST_MINUTE_FIELD_NUMBER: _ClassVar[int]
    APPEND_LATENCY_P50_FIELD_NUMBER: _ClassVar[int]
    APPEND_LATENCY_P99_FIELD_NUMBER: _ClassVar[int]
    EVENTS_APPENDED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DELIVERED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STORE_ERRORS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STORE_KIND_FIELD_NUMBER: _ClassVar[int]
    STORE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    start_time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    runs_by_status: _containers.RepeatedCompositeFieldContainer[RunStatusCount]
    watchers: int
    producers: int
    watch_runs_streams: int
    interact_streams: int
    open_decisions: int
    events_appended_last_minute: int
    events_delivered_last_minute: int
    append_latency_p50: _duration_pb2.Duration
    append_latency_p99: _duration_pb2.Duration
    events_appended_total: int
    events_delivered_total: int
    store_errors_total: int
    store_kind: str
    store_size_bytes: int
    def __init__(self, server_version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., runs_by_status: _Optional[_Iterable[_Union[RunStatusCount, _Mapping]]] = ..., watchers: _Optional[int] = ..., producers: _Optional[int] = ..., watch_runs_streams: _Optional[int] = ..., interact_streams: _Optional[int] = ..., open_decisions: _Optional[int] = ..., events_appended_last_minute: _Optional[int] = ..., events_delivered_last_minute: _Optional[int] = ..., append_latency_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., append_latency_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., events_appended_total: _Optional[int] = ..., events_delivered_total: _Optional[int] = ..., store_errors_total: _Optional[int] = ..., store_kind: _Optional[str] = ..., store_size_bytes: _Optional[int] = ...) -> None: ...

class RunStatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: _run_pb2.RunStatus
    count: int
    def __init__(self, status: _Optional[_Union[_run_pb2.RunStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...
