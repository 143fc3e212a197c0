"""Event kinds, stored-event encoding and the per-event validation producers are held to.

Validation here is stateless (the shape of one event); what an event may do given the run's
current state is decided by :mod:`runstream_server.domain.state`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from google.protobuf import timestamp_pb2, unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from runstream.v1 import event_pb2, options_pb2

from runstream_server.errors import InvalidArgument, ResourceExhausted
from runstream_server.store.base import StoredEvent

if TYPE_CHECKING:
    from runstream_server.domain.limits import Limits
    from runstream_server.domain.state import RunState

# EventKind numbers equal the field numbers of RunEvent's `payload` oneof, so the kind of an
# event is the number of its set payload field.
_PAYLOAD = event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"]
KIND_BY_FIELD: dict[str, int] = {f.name: f.number for f in _PAYLOAD.fields}
VALID_KINDS = frozenset(KIND_BY_FIELD.values())
_FIELD_BY_KIND = {number: name for name, number in KIND_BY_FIELD.items()}


def kind_name(kind: int) -> str:
    """The payload field an EventKind number stands for ("step_started")."""
    return _FIELD_BY_KIND.get(kind, f"event of kind {kind}")


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
MAX_KEY_LENGTH = 128
SERVER_KEY_PREFIX = "runstream."
"""Idempotency keys under this prefix are the server's own (a decision's deadline)."""


def check_id(field_path: str, value: str, *, required: bool = True) -> None:
    """Rejects identifiers that are empty (when required), too long or oddly shaped."""
    if not value:
        if required:
            raise InvalidArgument(field_path, "is required")
        return
    if not _ID_RE.match(value):
        raise InvalidArgument(
            field_path,
            f"{value[:40]!r} is not a valid id (ASCII letters, digits, '.', '_', '-'; "
            "at most 128 characters; starting with a letter or digit)",
        )


Frame = Callable[[bytes], bytes]
"""Encodes an event's bytes as one element of a watch response's repeated events field (its
tag, its length, the bytes). A repeated message field is just its elements' encodings behind
a tag and a length, so a response for many watchers is built by concatenating pre-framed
events: each event is serialized once, whatever the number of watchers. The API makes it from
the contract (:func:`runstream_server.api.run_service.frame_event`): the domain joins framed
events without knowing the RPC's field numbers."""


@dataclass(frozen=True, slots=True)
class EncodedEvent(StoredEvent):
    """A stored event with its WatchRun framing (``frame(data)``), computed once for every
    watcher."""

    framed: bytes = field(repr=False, compare=False, default=b"")

    @staticmethod
    def wrap(stored: StoredEvent, frame: Frame) -> EncodedEvent:
        """The store's record, framed (itself when it already is)."""
        if isinstance(stored, EncodedEvent):
            return stored
        data = stored.data
        return EncodedEvent(stored.seq, stored.kind, stored.idempotency_key, data, frame(data))


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
        got = repr(value) if f"{value:g}" in (f"{low:g}", f"{high:g}") else f"{value:g}"
        if low == -math.inf:
            raise InvalidArgument(field_path, f"must be at most {high:g}, got {got}")
        if high == math.inf:
            raise InvalidArgument(field_path, f"must be at least {low:g}, got {got}")
        raise InvalidArgument(field_path, f"must be between {low:g} and {high:g}, got {got}")


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
            f"{path}: event is {size} bytes, more than the limit of {max_event_bytes} bytes",
            reason="EVENT_TOO_LARGE",
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
    if event.idempotency_key.startswith(SERVER_KEY_PREFIX):
        # A producer's event stored under a deadline's key kept that deadline from ever
        # being written: the decision never closed.
        raise InvalidArgument(
            f"{path}.idempotency_key", f"must not start with {SERVER_KEY_PREFIX!r} (the server's)"
        )
    name = payload_field(event)
    if name is None:
        raise InvalidArgument(f"{path}.payload", _no_kind(event))
    rules = kind_rules(f"{path}.{name}", name)
    if rules.server_only:
        raise InvalidArgument(f"{path}.{name}", "is written by the server; producers cannot")
    rules.validate(f"{path}.{name}", getattr(event, name))
    return name


_FIRST_KIND_NUMBER = min(
    f.number for f in event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"].fields
)


def _no_kind(event: event_pb2.RunEvent) -> str:
    """Why an event has no kind this server knows: none set, or one of a newer release (a
    field number this server's contract does not have, past the first kind's), as from a
    producer on a newer SDK, or through a replica of this release during a rollout."""
    found = unknown_fields.UnknownFieldSet(event)
    numbers = (found[i].field_number for i in range(len(found)))
    newer = sorted({number for number in numbers if number >= _FIRST_KIND_NUMBER})
    if not newer:
        return "exactly one event kind must be set"
    return (
        f"holds an event kind this server does not know (field {newer[0]}), from a newer "
        "release: report it to a server of that release, or upgrade this one"
    )


def check_batch(run_id: str, events: Sequence[event_pb2.RunEvent], limits: Limits) -> None:
    """A producer batch's own checks, which need no run: INVALID_ARGUMENT naming the field,
    or RESOURCE_EXHAUSTED for a batch or an event over its size limit."""
    check_id("run_id", run_id)
    if not events:
        raise InvalidArgument("events", "at least one event is required")
    if len(events) > limits.max_batch_events:
        raise ResourceExhausted(
            f"events: {len(events)} events in one batch; the limit is {limits.max_batch_events}",
            reason="BATCH_TOO_LARGE",
        )
    for i, event in enumerate(events):
        validate_produced_event(f"events[{i}]", event, run_id, limits.max_event_bytes)


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
    # Checked here too, not only with the request's fields (fields.py): a caller of the
    # domain that skips those must not get a question that times out before it is asked.
    if d.timeout.seconds < 0 or d.timeout.nanos < 0:
        raise InvalidArgument(f"{p}.timeout", "must not be negative")
    if d.timeout.seconds > MAX_DECISION_TIMEOUT_SECONDS:
        raise InvalidArgument(f"{p}.timeout", "must be at most 366 days")
    if d.HasField("deadline"):
        raise InvalidArgument(
            f"{p}.deadline", "is written by the server from timeout; leave it unset"
        )


# A batch that ends its run may take the snapshot this much past the limit, so that a run
# at its limit can still complete, fail or be cancelled with a summary.
TERMINAL_HEADROOM_BYTES = 512 * 1024


def check_snapshot_size(state: RunState, encoded: bytes, limit: int) -> None:
    """Refuses a write that would grow the run's snapshot (`encoded`: the state's run,
    encoded) past `limit` bytes.

    The snapshot is what GetRun, WatchRun and the store send and keep whole, so it must stay
    well under the message limit whatever producers report: steps they add, artifacts,
    agents, metrics.
    """
    size = len(encoded)
    most = limit + (TERMINAL_HEADROOM_BYTES if state.is_terminal else 0)
    if size > most:
        raise ResourceExhausted(
            f"events: this would grow the snapshot of run {state.run.run_id!r} to {size} "
            f"bytes, past its limit of {most} bytes; report fewer steps, artifacts, agents or "
            "metric names, or shorter texts",
            reason="SNAPSHOT_TOO_LARGE",
        )


# --- the kinds, in one table ------------------------------------------------------------------


def field_at(message: Message, dotted: str) -> Any:
    """The field at `dotted` ("artifact.step_id") of `message`."""
    value: Any = message
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


class KindWithoutFold(TypeError):
    """An event kind the contract says changes a run's state, with no fold in the server's
    code. Raised as the domain is imported, so the server cannot start; `runstream serve`
    says it in one line, as it is a message to a developer who added the kind, not a bug."""


@dataclass(frozen=True, slots=True)
class KindRules:
    """What the server knows about one event kind (one field of RunEvent's payload oneof).

    The contract states it: each payload field in event.proto carries a
    ``(runstream.v1.kind)`` annotation (protos/runstream/v1/options.proto documents each of
    its fields, which are these), read into :data:`KINDS` at import. Only what a kind needs
    beyond that is code: its :data:`CHECKS` entry, and, when it changes the derived state, a
    ``RunState._on_<kind>`` or ``RunSteps.on_<kind>`` method.
    ``tests/server/test_hardening_event_kinds.py`` derives the list of kinds from the
    descriptor and fails until every one of those has what it needs.
    Generic rules (sizes, enums, signs, finite numbers) come from :mod:`.fields`.
    """

    required: tuple[str, ...] = ()
    """Text fields (dotted paths inside the payload) that must not be blank."""
    ids: tuple[str, ...] = ()
    """Id fields that must hold a valid id."""
    optional_ids: tuple[str, ...] = ()
    """Id fields that may be empty, and otherwise must hold a valid id."""
    step_refs: tuple[str, ...] = ()
    """Id fields that may be empty, and otherwise must name one of the run's steps (the
    state checks that the step exists: INVALID_ARGUMENT naming the field if not)."""
    ranges: tuple[tuple[str, float, float], ...] = ()
    """(field, low, high): numbers that must lie within bounds (-inf or inf where one is
    unbounded)."""
    check: Callable[[str, Any], None] | None = None
    """Anything more, given the payload's path and message."""
    server_only: bool = False
    """Only the server writes it: a producer forging it would make the derived state lie."""
    terminal: bool = False
    """It ends the run."""
    changes_state: bool = True
    """RunState folds it into the snapshot (``RunState._on_<kind>`` or ``RunSteps.on_<kind>``);
    else watchers see it only."""
    starts_run: bool = True
    """A PENDING run it is stored in starts (RUNNING); False for the run's creation, a status
    change, and what the server writes of a run never started (its HealthChanged to STALLED,
    an estimate)."""
    moves_estimate: bool = True
    """It may move the run's estimate (its steps, items, start, status or the producer's own
    figure): a producer batch holding one makes the estimate again; other batches do only
    every :data:`~.insight.ESTIMATE_EVERY` seconds, when just the clock moved it."""

    def validate(self, path: str, payload: Message) -> None:
        for name in self.ids:
            check_id(f"{path}.{name}", field_at(payload, name))
        for name in self.optional_ids + self.step_refs:
            check_id(f"{path}.{name}", field_at(payload, name), required=False)
        for name in self.required:
            _required(f"{path}.{name}", field_at(payload, name))
        for name, low, high in self.ranges:
            _in_range(f"{path}.{name}", field_at(payload, name), low, high)
        if self.check is not None:
            self.check(path, payload)


def _agent_activity(p: str, aa: event_pb2.AgentActivity) -> None:
    if not aa.agent_id and not aa.agent_name:
        raise InvalidArgument(f"{p}.agent_id", "agent_id or agent_name is required")
    if aa.activity == event_pb2.AGENT_ACTIVITY_TYPE_UNSPECIFIED:
        raise InvalidArgument(f"{p}.activity", "is required")


def _metrics_update(p: str, mu: event_pb2.MetricsUpdate) -> None:
    if not mu.values:
        raise InvalidArgument(f"{p}.values", "at least one metric is required")
    _names(f"{p}.values", mu.values, "metric")
    if mu.changes:
        raise InvalidArgument(f"{p}.changes", "is written by the server; leave it empty")


def _item_progress(p: str, items: event_pb2.ItemProgress) -> None:
    _names(f"{p}.by_stage", items.by_stage, "stage")


def _names(field_path: str, keys: Iterable[str], what: str) -> None:
    """A map's keys, each a name: a blank one is refused as such (its map is not empty)."""
    for key in keys:
        if not key.strip():
            raise InvalidArgument(field_path, f"a {what} name must not be blank, got {key!r}")


CHECKS: dict[str, Callable[[str, Any], None]] = {
    "item_progress": _item_progress,  # negative counts are refused by the rules of .fields
    "agent_activity": _agent_activity,
    "metrics_update": _metrics_update,
    "decision_requested": _validate_decision,
}
"""The checks of the kinds that need more than their annotation says, by payload field name:
given the payload's path and message, they raise InvalidArgument naming the field."""


def _declared(payload: FieldDescriptor) -> KindRules | None:
    """A payload field's rules, from its ``(runstream.v1.kind)`` annotation (None without
    one), with its check from :data:`CHECKS`."""
    options, extension = payload.GetOptions(), cast(Any, options_pb2.kind)
    if not options.HasExtension(extension):
        return None
    kind: options_pb2.KindRules = options.Extensions[extension]
    return KindRules(
        required=tuple(kind.required),
        ids=tuple(kind.ids),
        optional_ids=tuple(kind.optional_ids),
        step_refs=tuple(kind.step_refs),
        ranges=tuple(
            (
                bounds.path,
                bounds.at_least if bounds.HasField("at_least") else -math.inf,
                bounds.at_most if bounds.HasField("at_most") else math.inf,
            )
            for bounds in kind.ranges
        ),
        check=CHECKS.get(payload.name),
        server_only=kind.server_only,
        terminal=kind.terminal,
        changes_state=kind.changes_state,
        starts_run=kind.starts_run,
        moves_estimate=kind.moves_estimate,
    )


KINDS: dict[str, KindRules] = {
    field.name: rules
    for field in _PAYLOAD.fields
    if (rules := _declared(cast(FieldDescriptor, field))) is not None
}
"""Every event kind the server accepts, by payload field name, read once from the contract:
each field of RunEvent's payload oneof carries its rules (see :class:`KindRules`)."""

SERVER_ONLY_FIELDS = frozenset(name for name, rules in KINDS.items() if rules.server_only)
TERMINAL_FIELDS = frozenset(name for name, rules in KINDS.items() if rules.terminal)
ESTIMATE_INPUTS = frozenset(name for name, rules in KINDS.items() if rules.moves_estimate)


def kind_rules(path: str, name: str) -> KindRules:
    """The rules of a kind; INVALID_ARGUMENT for a kind this server has no entry for."""
    rules = KINDS.get(name)
    if rules is None:
        raise InvalidArgument(path, "is an event kind this server does not accept yet")
    return rules
