"""Reading messages into the SDK's types: the well-known types, the enums, and the messages
with hand-written dataclasses that events nest (ErrorInfo, Artifact, Target, ...).

The layer under both readers of events: the generated ``runstream._events``, whose payload
readers call these by message (``<snake_name>_from_pb``, the name scripts/gen_sdk_events.py
expects for each message it does not generate), and ``runstream._convert``, which reads runs,
steps and decisions with them.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from runstream import _arguments as arguments
from runstream._types import (
    Artifact,
    DecisionOption,
    ErrorInfo,
    Estimate,
    EstimateSource,
    StepSpec,
    SubStepDetails,
    Target,
    TargetKind,
)

if TYPE_CHECKING:
    from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
    from google.protobuf.message import Message

    from runstream.v1 import event_pb2, run_pb2

_E = TypeVar("_E", bound=enum.IntEnum)
_MAX_EXACT_INT = 2**53


def enum_value(cls: type[_E], number: int) -> _E:
    """``cls(number)``, or ``cls.UNSPECIFIED`` for a value added to the contract later.

    Looked up in the enum's own map of values first: calling an enum class costs five times
    as much, for every enum field of every event a watcher reads."""
    member = cls._value2member_map_.get(number)
    if member is not None:
        return member  # type: ignore[return-value]
    try:
        return cls(number)
    except ValueError:
        return cls["UNSPECIFIED"]


# --- well-known types ------------------------------------------------------------------------


def _value_to_python(value: struct_pb2.Value) -> Any:
    which = value.WhichOneof("kind")
    if which == "number_value":
        number = value.number_value
        # Struct only has doubles; give integral numbers back as int, as a JSON decoder would,
        # so {"variants": 12} round-trips as 12 rather than 12.0.
        if math.isfinite(number) and number.is_integer() and abs(number) <= _MAX_EXACT_INT:
            return int(number)
        return number
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "struct_value":
        return struct_to_dict(value.struct_value)
    if which == "list_value":
        return [_value_to_python(item) for item in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict (integral numbers as int), its keys sorted: a Struct is a map,
    whose order changes from process to process, so two people shown the same context saw
    its keys in different orders."""
    fields = struct.fields
    if not fields:  # most events' data: nothing to sort
        return {}
    return {key: _value_to_python(fields[key]) for key in sorted(fields)}


def timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (microseconds: the nanoseconds truncated).

    The epoch plus a timedelta, as ``ToDatetime`` computes it, without its checks and time
    zone conversion, which cost twice as much for every event a watcher reads; a Timestamp
    out of datetime's range, or with nanos outside 0 to 999,999,999, still goes to
    ``ToDatetime`` and raises its ValueError."""
    nanos = ts.nanos
    if 0 <= nanos < 1_000_000_000:
        try:
            return arguments.EPOCH + timedelta(seconds=ts.seconds, microseconds=nanos // 1000)
        except OverflowError:
            pass
    return ts.ToDatetime(tzinfo=UTC)


def optional_time(message: Message, field_name: str) -> datetime | None:
    """The message's Timestamp field as a datetime; None when unset."""
    if not message.HasField(field_name):
        return None
    return timestamp_to_datetime(getattr(message, field_name))


def optional_duration(message: Message, field_name: str) -> timedelta | None:
    """The message's Duration field as a timedelta; None when unset."""
    if not message.HasField(field_name):
        return None
    value: duration_pb2.Duration = getattr(message, field_name)
    return value.ToTimedelta()


# --- the hand-written dataclasses that events nest -------------------------------------------


def error_info_from_pb(message: run_pb2.ErrorInfo) -> ErrorInfo:
    """An ErrorInfo dataclass from its message."""
    return ErrorInfo(
        code=message.code, message=message.message, details=struct_to_dict(message.details)
    )


def artifact_from_pb(message: run_pb2.Artifact) -> Artifact:
    """An Artifact dataclass from its message."""
    return Artifact(
        artifact_id=message.artifact_id,
        name=message.name,
        kind=message.kind,
        uri=message.uri,
        size_bytes=message.size_bytes,
        step_id=message.step_id,
        metadata=struct_to_dict(message.metadata),
    )


def step_spec_from_pb(message: run_pb2.StepSpec) -> StepSpec:
    """A StepSpec dataclass from its message."""
    return StepSpec(
        step_id=message.step_id,
        name=message.name,
        description=message.description,
        agent=message.agent,
        depends_on=tuple(message.depends_on),
        track=message.track,
        phase=message.phase,
    )


def sub_step_details_from_pb(message: run_pb2.SubStepDetails) -> SubStepDetails:
    """A SubStepDetails dataclass from its message."""
    return SubStepDetails(
        operation=message.operation,
        model=message.model,
        estimated_completion_time=optional_time(message, "estimated_completion_time"),
    )


def estimate_from_pb(message: run_pb2.Estimate) -> Estimate:
    """An Estimate dataclass from its message."""
    return Estimate(
        remaining=optional_duration(message, "remaining"),
        end_time=optional_time(message, "end_time"),
        confidence=message.confidence,
        remaining_low=optional_duration(message, "remaining_low"),
        remaining_high=optional_duration(message, "remaining_high"),
        history_runs=message.history_runs,
        source=enum_value(EstimateSource, message.source) or EstimateSource.HISTORY,
        held=message.held,
    )


def target_from_pb(message: run_pb2.Target) -> Target:
    """A Target dataclass from its message."""
    return Target(
        metric=message.metric,
        value=message.value,
        kind=enum_value(TargetKind, message.kind),
        title=message.title,
    )


def decision_option_from_pb(message: event_pb2.DecisionOption) -> DecisionOption:
    """A DecisionOption dataclass from its message."""
    return DecisionOption(value=message.value, label=message.label, description=message.description)
