"""Event kinds, stored-event encoding and the per-event validation producers are held to.

Validation here is stateless (the shape of one event); what an event may do given the run's
current state is decided by :mod:`runstream_server.domain.state`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf import timestamp_pb2
from runstream.v1 import event_pb2

from runstream_server.errors import InvalidArgument, ResourceExhausted
from runstream_server.store.base import StoredEvent

if TYPE_CHECKING:
    from runstream_server.domain.state import RunState

# EventKind numbers equal the field numbers of RunEvent's `payload` oneof, so the kind of an
# event is the number of its set payload field.
_PAYLOAD = event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"]
KIND_BY_FIELD: dict[str, int] = {f.name: f.number for f in _PAYLOAD.fields}
VALID_KINDS = frozenset(KIND_BY_FIELD.values())

# Kinds only the server writes: they record server-side facts, and letting a producer forge
# them would make the derived run state lie.
SERVER_ONLY_FIELDS = frozenset(
    {"run_created", "run_status_changed", "decision_resolved", "health_changed", "estimate_updated"}
)
TERMINAL_FIELDS = frozenset({"run_completed", "run_failed", "run_cancelled"})

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_KEY_LENGTH = 128


def check_id(field_path: str, value: str, *, required: bool = True) -> None:
    """Rejects identifiers that are empty (when required), too long or oddly shaped."""
    if not value:
        if required:
            raise InvalidArgument(field_path, "is required")
        return
    if not _ID_RE.match(value):
        raise InvalidArgument(
            field_path,
            f"{value[:40]!r} is not a valid id (letters, digits, '.', '_', '-'; "
            "at most 128 characters; starting with a letter or digit)",
        )


def _frame(data: bytes) -> bytes:
    """Encodes `data` as field 2 (`events`) of WatchRunResponse: tag, length, bytes.

    A repeated message field is just its elements' encodings behind a tag and a length, so
    a response for many watchers is built by concatenating these pre-framed events: each
    event is serialized once, whatever the number of watchers.
    """
    length = len(data)
    out = bytearray(b"\x12")
    while length > 0x7F:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + data


@dataclass(frozen=True, slots=True)
class EncodedEvent(StoredEvent):
    """A stored event with its WatchRun framing, computed once for every watcher."""

    framed: bytes = field(repr=False, compare=False, default=b"")

    @staticmethod
    def of(seq: int, kind: int, idempotency_key: str, data: bytes) -> EncodedEvent:
        return EncodedEvent(seq, kind, idempotency_key, data, _frame(data))

    @staticmethod
    def wrap(stored: StoredEvent) -> EncodedEvent:
        """The store's record, framed (itself when it already is)."""
        if isinstance(stored, EncodedEvent):
            return stored
        return EncodedEvent.of(stored.seq, stored.kind, stored.idempotency_key, stored.data)

    def decode(self) -> event_pb2.RunEvent:
        return event_pb2.RunEvent.FromString(self.data)


def payload_field(event: event_pb2.RunEvent) -> str | None:
    """The name of the event's set payload field, or None."""
    name: str | None = event.WhichOneof("payload")
    return name


# Timestamps the server can turn into dates and back: years 1970 to 9999.
_MAX_SECONDS = 253_402_300_799
MAX_DECISION_TIMEOUT_SECONDS = 366 * 24 * 3600


def _check_time(field_path: str, ts: timestamp_pb2.Timestamp) -> None:
    if not (0 <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument(field_path, "must be a valid time between 1970 and 9999")


def _finite(field_path: str, value: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field_path, "must be a finite number")


def _in_range(field_path: str, value: float, low: float, high: float) -> None:
    _finite(field_path, value)
    if not low <= value <= high:
        raise InvalidArgument(field_path, f"must be between {low:g} and {high:g}, got {value:g}")


def _required(field_path: str, value: str) -> None:
    if not value.strip():
        raise InvalidArgument(field_path, "is required")


def validate_produced_event(
    path: str, event: event_pb2.RunEvent, run_id: str, max_event_bytes: int
) -> str:
    """Checks one producer event's shape and returns its payload field name.

    `path` is the event's position in the request (``events[3]``) so every message names the
    exact field to fix.
    """
    size = event.ByteSize()
    if size > max_event_bytes:
        raise ResourceExhausted(
            f"{path}: event is {size} bytes, more than the limit of {max_event_bytes} bytes"
        )
    if event.seq != 0:
        raise InvalidArgument(f"{path}.seq", "must be 0; the server assigns seqs")
    if event.run_id and event.run_id != run_id:
        raise InvalidArgument(
            f"{path}.run_id", f"{event.run_id!r} does not match the run {run_id!r}"
        )
    if event.HasField("event_time"):
        _check_time(f"{path}.event_time", event.event_time)
    if len(event.idempotency_key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"{path}.idempotency_key", "is longer than 128 characters")
    name = payload_field(event)
    if name is None:
        raise InvalidArgument(f"{path}.payload", "exactly one event kind must be set")
    if name in SERVER_ONLY_FIELDS:
        raise InvalidArgument(f"{path}.{name}", "is written by the server; producers cannot")
    _validate_payload(f"{path}.{name}", name, event)
    return name


def _validate_payload(p: str, name: str, event: event_pb2.RunEvent) -> None:
    """Kind-specific checks: required fields and ranges, one branch per kind that has any."""
    if name == "run_failed":
        _required(f"{p}.error.message", event.run_failed.error.message)
    elif name in ("step_started", "step_completed", "step_skipped"):
        check_id(f"{p}.step_id", getattr(event, name).step_id)
    elif name == "step_progress":
        sp = event.step_progress
        check_id(f"{p}.step_id", sp.step_id)
        _in_range(f"{p}.percent", sp.percent, 0, 100)
        if sp.tokens_processed < 0:
            raise InvalidArgument(f"{p}.tokens_processed", "must not be negative")
    elif name == "step_failed":
        check_id(f"{p}.step_id", event.step_failed.step_id)
        _required(f"{p}.error.message", event.step_failed.error.message)
    elif name == "agent_activity":
        aa = event.agent_activity
        if not aa.agent_id and not aa.agent_name:
            raise InvalidArgument(f"{p}.agent_id", "agent_id or agent_name is required")
        if aa.activity == event_pb2.AGENT_ACTIVITY_TYPE_UNSPECIFIED:
            raise InvalidArgument(f"{p}.activity", "is required")
        check_id(f"{p}.step_id", aa.step_id, required=False)
    elif name == "thinking":
        _in_range(f"{p}.confidence", event.thinking.confidence, 0, 1)
    elif name == "model_allocation":
        _required(f"{p}.model", event.model_allocation.model)
        if event.model_allocation.context_window < 0:
            raise InvalidArgument(f"{p}.context_window", "must not be negative")
    elif name == "text_delta":
        _required(f"{p}.message_id", event.text_delta.message_id)
    elif name == "metrics_update":
        if not event.metrics_update.values:
            raise InvalidArgument(f"{p}.values", "at least one metric is required")
        for key, value in event.metrics_update.values.items():
            _required(f"{p}.values", key)
            _finite(f"{p}.values[{key!r}]", value)
        check_id(f"{p}.step_id", event.metrics_update.step_id, required=False)
    elif name == "milestone":
        _required(f"{p}.title", event.milestone.title)
    elif name == "alert":
        _required(f"{p}.message", event.alert.message)
    elif name == "error_recovery":
        _required(f"{p}.error_message", event.error_recovery.error_message)
    elif name == "artifact_produced":
        art = event.artifact_produced.artifact
        _required(f"{p}.artifact.name", art.name)
        check_id(f"{p}.artifact.step_id", art.step_id, required=False)
        if art.size_bytes < 0:
            raise InvalidArgument(f"{p}.artifact.size_bytes", "must not be negative")
    elif name == "workflow_state_change":
        _required(f"{p}.change_type", event.workflow_state_change.change_type)
    elif name == "decision_requested":
        _validate_decision(p, event.decision_requested)
    elif name == "custom":
        _required(f"{p}.type", event.custom.type)


def _validate_decision(p: str, d: event_pb2.DecisionRequested) -> None:
    check_id(f"{p}.decision_id", d.decision_id)
    _required(f"{p}.prompt", d.prompt)
    if not d.options:
        raise InvalidArgument(f"{p}.options", "at least one option is required")
    values = [o.value for o in d.options]
    for i, value in enumerate(values):
        _required(f"{p}.options[{i}].value", value)
    if len(set(values)) != len(values):
        raise InvalidArgument(f"{p}.options", "option values must be unique")
    if d.default_option and d.default_option not in values:
        raise InvalidArgument(
            f"{p}.default_option", f"{d.default_option!r} is not one of the options"
        )
    if d.HasField("timeout") and (
        d.timeout.seconds < 0
        or d.timeout.nanos < 0
        or d.timeout.seconds > MAX_DECISION_TIMEOUT_SECONDS
    ):
        raise InvalidArgument(f"{p}.timeout", "must be between 0 and 366 days")


# A batch that ends its run may take the snapshot this much past the limit, so that a run
# at its limit can still complete, fail or be cancelled with a summary.
TERMINAL_HEADROOM_BYTES = 512 * 1024


def check_snapshot_size(state: RunState, limit: int) -> None:
    """Refuses a write that would grow the run's snapshot past `limit` bytes.

    The snapshot is what GetRun, WatchRun and the store send and keep whole, so it must stay
    well under the message limit whatever producers report: steps they add, artifacts,
    agents, metrics.
    """
    size = state.run.ByteSize()
    most = limit + (TERMINAL_HEADROOM_BYTES if state.is_terminal else 0)
    if size > most:
        raise ResourceExhausted(
            f"events: this would grow run {state.run.run_id!r}'s snapshot to {size} bytes, past "
            f"its limit of {most} bytes; report fewer steps, artifacts, agents or metric names, "
            "or shorter texts"
        )
