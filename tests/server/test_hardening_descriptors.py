"""Issue 8, "make the class impossible": rules derived from the descriptors, not from memory.

Every field a client can send that can grow (strings, lists, maps, Structs), in every request
of every RPC and every message inside them, must carry its limit in the protos, a
``(runstream.v1.limit)`` annotation (protos/runstream/v1/options.proto), which the server
reads into ``runstream_server.domain.fields.FIELD_LIMITS``: a field added to the protos
without one fails here. Each limit is then shown to bite, through the same check the server
runs on every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from runstream.v1 import options_pb2
from runstream_server.api.decoding import safe_deserializer
from runstream_server.app import SERVICE_NAMES
from runstream_server.domain import fields
from runstream_server.domain.fields import (
    CHECKED_BY_SERVICER,
    FIELD_LIMITS,
    check_message,
    check_request,
    limit_of,
    needs_limit,
)
from runstream_server.errors import InvalidArgument

Path = tuple[FieldDescriptor, ...]


def request_types() -> list[Descriptor]:
    pool = descriptor_pool.Default()
    return [m.input_type for s in SERVICE_NAMES for m in pool.FindServiceByName(s).methods]


def reachable_fields() -> Iterator[tuple[Descriptor, Path]]:
    """(request type, path of fields from it) for every field a client can fill in."""
    seen: set[str] = set()
    for root in request_types():
        queue: list[tuple[Descriptor, Path]] = [(root, ())]
        while queue:
            message, path = queue.pop()
            for field in message.fields:
                if field.full_name in seen or not field.full_name.startswith("runstream."):
                    continue
                seen.add(field.full_name)
                yield root, (*path, field)
                entry = field.message_type
                if entry is None or entry.full_name.startswith("google.protobuf."):
                    continue
                if entry.GetOptions().map_entry:
                    value = entry.fields_by_name["value"].message_type
                    if value is not None and value.full_name.startswith("runstream."):
                        queue.append((value, (*path, field)))
                else:
                    queue.append((entry, (*path, field)))


GROWING = [(root, path) for root, path in reachable_fields() if needs_limit(path[-1])]
REACHABLE = {path[-1].full_name for _, path in reachable_fields()}


def _annotated(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().HasExtension(options_pb2.limit))


def test_every_growing_field_a_client_can_send_has_a_limit() -> None:
    missing = sorted({path[-1].full_name for _, path in GROWING if not _annotated(path[-1])})
    assert missing == [], (
        "annotate these fields with [(runstream.v1.limit) = {...}] in their proto file "
        f"(protos/runstream/v1/options.proto says how): {missing}"
    )
    # The server read each of them, and no annotation sits where it limits nothing.
    assert {path[-1].full_name for _, path in GROWING} <= set(FIELD_LIMITS)
    pool = descriptor_pool.Default()
    for name in FIELD_LIMITS:
        message, field = name.rsplit(".", 1)
        assert needs_limit(pool.FindMessageTypeByName(message).fields_by_name[field]), name
    assert len(GROWING) > 80  # the walk reached into events, steps, decisions, artifacts


def test_the_limits_the_server_names_are_the_ones_the_contract_uses() -> None:
    """The server's own checks use the contract's names and ids limits (a token's name
    claims, the SDK's checks): each is what the contract's annotations say, and the
    contract's ids and names all use them."""
    annotated = {name.removeprefix("runstream.v1."): limit for name, limit in FIELD_LIMITS.items()}
    assert annotated["RunEvent.run_id"] == annotated["StepSpec.step_id"] == fields.ID
    assert annotated["StepSpec.name"] == annotated["RunCreated.display_name"] == fields.NAME
    assert annotated["ErrorInfo.message"] == annotated["StepSpec.description"] == fields.TEXT
    assert annotated["TextDelta.delta"] == annotated["Thinking.analysis"] == fields.LONG_TEXT
    assert annotated["Custom.data"] == annotated["Artifact.metadata"] == fields.STRUCT
    assert annotated["Thinking.factors"] == annotated["WorkflowStateChange.stages"] == fields.NAMES
    for name, limit in annotated.items():
        field = name.rsplit(".", 1)[1]
        if field == "run_id" or field.endswith(("step_id", "agent_id", "decision_id")):
            assert limit == fields.ID, name


def _leading_to(root: Descriptor, path: Path) -> tuple[Message, Message, list[str]]:
    """A request of type `root`, the message in it that holds the last field of `path` (one
    item of each list and the entry "k" of each map on the way), and the path to it."""
    request = GetMessageClass(root)()
    target: Message = request
    where: list[str] = []
    for field in path[:-1]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            target = getattr(target, field.name)["k"]
            where.append(f"{field.name}['k']")
        elif field.is_repeated:
            target = getattr(target, field.name).add()
            where.append(f"{field.name}[0]")
        else:
            target = getattr(target, field.name)
            where.append(field.name)
    return request, target, where


def _over_the_limit(root: Descriptor, path: Path) -> tuple[Message, str]:
    """A request with the field at `path` just past its limit, and the field path to blame."""
    request, target, where = _leading_to(root, path)
    field = path[-1]
    limit = limit_of(field)
    where.append(field.name)
    entry = field.message_type
    if entry is not None and entry.full_name == "google.protobuf.Struct":
        getattr(target, field.name).update({"blob": "x" * limit.struct_bytes})
    elif entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        items = getattr(target, field.name)
        for i in range(limit.items + 1):
            if value_field.message_type is None:
                items[f"k{i}"] = _scalar(value_field)
            else:
                items.get_or_create(f"k{i}")
    elif field.is_repeated:
        items = getattr(target, field.name)
        for _ in range(limit.items + 1):
            if field.message_type is None:
                items.append(_scalar(field))
            else:
                items.add()
    else:
        setattr(target, field.name, "x" * (limit.chars + 1))
    return request, ".".join(where)


def _scalar(field: FieldDescriptor) -> object:
    return {
        FieldDescriptor.TYPE_STRING: "v",
        FieldDescriptor.TYPE_BOOL: True,
        FieldDescriptor.TYPE_DOUBLE: 1.0,
        FieldDescriptor.TYPE_ENUM: 0,
    }.get(field.type, 1)


@pytest.mark.parametrize(
    ("root", "path"),
    GROWING,
    ids=[path[-1].full_name.removeprefix("runstream.v1.") for _, path in GROWING],
)
def test_each_limit_bites_with_the_field_named(root: Descriptor, path: Path) -> None:
    request, where = _over_the_limit(root, path)
    later = CHECKED_BY_SERVICER.get(root.full_name)
    if later == path[0].name:  # the servicer checks that field itself (an Interact answer)
        check_request(request)  # so the decoding lets it through
        with pytest.raises(InvalidArgument) as info:
            check_message(later, getattr(request, later))
    else:
        with pytest.raises(InvalidArgument) as info:
            check_both_ways(request)
    assert info.value.field == where


def check_both_ways(request: Message) -> None:
    """check_request on the message alone, and as the server's decoding calls it, with the
    request's encoding (which lets it skip checks the bytes show it cannot fail): the two
    must agree, passing or naming the same field the same way."""
    outcomes: list[InvalidArgument | None] = []
    for encoded in (None, request.SerializeToString()):
        try:
            check_request(request, encoded)
        except InvalidArgument as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    plain, decoded = outcomes
    assert str(plain) == str(decoded)
    if decoded is not None:
        raise decoded


# --- numbers: every float a client can send is finite ------------------------------------------


def _holds_floats(field: FieldDescriptor) -> bool:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        field = entry.fields_by_name["value"]
    return field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


FLOATS = [
    (root, path)
    for root, path in reachable_fields()
    if _holds_floats(path[-1]) and CHECKED_BY_SERVICER.get(root.full_name) != path[0].name
]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    ("root", "path"),
    FLOATS,
    ids=[path[-1].full_name.removeprefix("runstream.v1.") for _, path in FLOATS],
)
def test_every_float_refuses_what_is_not_a_finite_number_as_decoded(
    root: Descriptor, path: Path, number: float
) -> None:
    """Through the server's own decoding of the request's bytes, which skips the check for
    bytes that cannot hold such a number: it must not skip these."""
    request, where = _holding(root, path, number)
    decode = safe_deserializer(GetMessageClass(root).FromString)
    refused = decode(request.SerializeToString())
    assert isinstance(refused, InvalidArgument)
    assert str(refused) == f"{where}: must be a finite number"
    passed = decode(_holding(root, path, 2.5)[0].SerializeToString())
    assert not isinstance(passed, InvalidArgument)


_SIGNED = (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64)  # every signed kind


def _rule_of(field: FieldDescriptor) -> tuple[Any, str] | None:
    """A value that breaks the rule of the field's kind (of a map's values), and the error
    it gets; None for a kind without one."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        field = entry.fields_by_name["value"]
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return 999, f"999 is not a known {field.enum_type.name} value"
    if field.cpp_type in _SIGNED:
        return -1, "must not be negative, got -1"
    message = "" if field.message_type is None else field.message_type.full_name
    if message == "google.protobuf.Timestamp":
        return -1, "must be a valid time between 1970 and 9999"
    if message == "google.protobuf.Duration":
        return -1, "must be a non-negative duration of at most 100 years"
    return None


RULED = [
    (root, path)
    for root, path in reachable_fields()
    if _rule_of(path[-1]) is not None and CHECKED_BY_SERVICER.get(root.full_name) != path[0].name
]


@pytest.mark.parametrize(
    ("root", "path"),
    RULED,
    ids=[path[-1].full_name.removeprefix("runstream.v1.") for _, path in RULED],
)
def test_every_enum_integer_and_time_keeps_its_rule_as_decoded(
    root: Descriptor, path: Path
) -> None:
    """An unknown enum value, a negative integer, a time before 1970 and a negative duration,
    in each field of those kinds, refused through the server's own decoding."""
    rule = _rule_of(path[-1])
    assert rule is not None
    value, problem = rule
    request, target, where = _leading_to(root, path)
    field = path[-1]
    holder = getattr(target, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        if entry.fields_by_name["value"].message_type is None:
            holder["k"] = value
        else:
            holder["k"].seconds = value
        where.append(f"{field.name}['k']")
    elif field.is_repeated:
        if field.message_type is None:
            holder.append(value)
        else:
            holder.add().seconds = value
        where.append(f"{field.name}[0]")
    else:
        if field.message_type is None:
            setattr(target, field.name, value)
        else:
            holder.seconds = value
        where.append(field.name)
    refused = safe_deserializer(GetMessageClass(root).FromString)(request.SerializeToString())
    assert isinstance(refused, InvalidArgument)
    assert str(refused) == f"{'.'.join(where)}: {problem}"


def test_the_walk_reached_fields_of_each_ruled_kind() -> None:
    names = {path[-1].full_name.removeprefix("runstream.v1.") for _, path in RULED}
    assert {
        "AgentActivity.activity",  # an enum
        "ErrorRecovery.attempt",  # an integer
        "RunEvent.event_time",  # a Timestamp
        "DecisionRequested.timeout",  # a Duration
    } <= names


def test_the_walk_reached_the_float_fields() -> None:
    names = {path[-1].full_name.removeprefix("runstream.v1.") for _, path in FLOATS}
    assert {"StepProgress.percent", "MetricsUpdate.values", "Target.value"} <= names


# --- control characters: names refuse them, free text keeps them -----------------------------

# The strings a person or a model writes at length, where a newline or a tab belongs; and the
# filter and ordering expressions, whose parsers take tabs and newlines for spaces. Every other
# string a client sends is a single-line name or id.
FREE_TEXT = {
    f"runstream.v1.{name}"
    for name in (
        "CancelRunRequest.reason",
        "PauseRunRequest.reason",
        "ResumeRunRequest.reason",
        "ListRunsRequest.filter",
        "WatchRunsRequest.filter",
        "ListEventsRequest.filter",
        "ListEventsRequest.order_by",
        "ListDecisionsRequest.filter",
        "StepSpec.description",
        "ErrorInfo.message",
        "DecisionOption.description",
        "RunStarted.message",
        "RunStatusChanged.reason",
        "RunCompleted.summary",
        "RunCancelled.reason",
        "StepStarted.description",
        "StepProgress.detail",
        "StepCompleted.summary",
        "StepSkipped.reason",
        "AgentActivity.message",
        "Thinking.analysis",
        "ModelAllocation.reasoning",
        "ModelAllocation.performance_expectation",
        "TextDelta.delta",
        "Milestone.description",
        "Alert.message",
        "Alert.suggested_action",
        "ErrorRecovery.error_message",
        "ErrorRecovery.recovery_strategy",
        "HealthChanged.reason",
        "DecisionRequested.prompt",
    )
}


def _string_values(path: Path) -> bool:
    field = path[-1]
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        return entry.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING
    return field.type == FieldDescriptor.TYPE_STRING


STRINGS = [(root, path) for root, path in GROWING if _string_values(path)]
KEYED = [
    (root, path)
    for root, path in GROWING
    if path[-1].message_type is not None
    and path[-1].message_type.GetOptions().map_entry
    and path[-1].message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_STRING
]


def _holding(
    root: Descriptor, path: Path, value: str | float, key: str = "k"
) -> tuple[Message, str]:
    """A request with `value` in the field at `path` (its one item, or the value of `key` in
    a map, a placeholder where it does not fit the map's values), and the field path an
    error names."""
    request, target, where = _leading_to(root, path)
    field = path[-1]
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        items = getattr(target, field.name)
        if value_field.message_type is None:
            fits = isinstance(value, str) == (value_field.type == FieldDescriptor.TYPE_STRING)
            items[key] = value if fits else _scalar(value_field)
        else:
            items.get_or_create(key)
        where.append(f"{field.name}[{key!r}]")
    elif field.is_repeated:
        getattr(target, field.name).append(value)
        where.append(f"{field.name}[0]")
    else:
        setattr(target, field.name, value)
        where.append(field.name)
    return request, ".".join(where)


def _check(root: Descriptor, path: Path, request: Message) -> None:
    """The check the server runs on the request, or on the Interact answer inside it."""
    later = CHECKED_BY_SERVICER.get(root.full_name)
    if later == path[0].name:
        check_message(later, getattr(request, later))
    else:
        check_both_ways(request)


def test_the_free_text_is_what_the_contract_marks_free_text() -> None:
    """FREE_TEXT is this test's own list: a field marked free_text by mistake (a name that
    would then take a terminal's escape codes) fails here, as does free text left unmarked."""
    marked = {name for name, limit in FIELD_LIMITS.items() if limit.free_text and name in REACHABLE}
    assert sorted(marked - FREE_TEXT) == [], "marked free_text in the protos, not in FREE_TEXT"
    assert sorted(FREE_TEXT - marked) == [], "in FREE_TEXT, not marked free_text in the protos"


@pytest.mark.parametrize(
    ("root", "path"),
    STRINGS,
    ids=[path[-1].full_name.removeprefix("runstream.v1.") for _, path in STRINGS],
)
def test_a_name_refuses_control_characters_and_free_text_keeps_them(
    root: Descriptor, path: Path
) -> None:
    name = path[-1].full_name
    request, where = _holding(root, path, "Q3\x1b[2J")
    if name in FREE_TEXT:
        _check(root, path, request)  # as written: the viewers escape it where they print it
        _check(root, path, _holding(root, path, "line one\n\tline two\r\n\x00")[0])
    else:
        with pytest.raises(InvalidArgument) as info:
            _check(root, path, request)
        assert str(info.value) == (f"{where}: must not contain control characters (U+001B at 2)")


@pytest.mark.parametrize("character", ["\n", "\t", "\x00", "\x7f", "\x85", "\u202e", "\u2028"])
def test_each_kind_of_control_character_is_refused_in_a_name(character: str) -> None:
    request, where = _holding(*STRINGS[0], f"ab{character}")
    with pytest.raises(InvalidArgument) as info:
        _check(*STRINGS[0], request)
    assert str(info.value) == (
        f"{where}: must not contain control characters (U+{ord(character):04X} at 2)"
    )


def test_names_may_hold_any_other_character() -> None:
    """Accents, other scripts, emoji joined with a zero-width joiner, and punctuation."""
    request, _ = _holding(*STRINGS[0], 'Zoë · 東京 👩‍💻 [bold] "q" \\ ok')
    _check(*STRINGS[0], request)


@pytest.mark.parametrize(
    ("root", "path"),
    KEYED,
    ids=[path[-1].full_name.removeprefix("runstream.v1.") for _, path in KEYED],
)
def test_a_map_key_is_a_name_whatever_its_values(root: Descriptor, path: Path) -> None:
    request, where = _holding(root, path, "v", key="ab\tc")
    with pytest.raises(InvalidArgument) as info:
        _check(root, path, request)
    assert str(info.value) == (
        f"{where}: the key must not contain control characters (U+0009 at 2)"
    )


def test_a_field_named_as_a_python_keyword_is_checked_too() -> None:
    """The checks are compiled from the descriptors into Python source: a field protobuf
    allows but Python reserves (``from``, ``class``) is read by name all the same."""
    from google.protobuf import descriptor_pb2

    file = descriptor_pb2.FileDescriptorProto(name="keywords.proto", package="kw", syntax="proto3")
    odd = file.message_type.add(name="Odd")
    odd.field.add(name="from", number=1, type=FieldDescriptor.TYPE_STRING, label=1)
    odd.field.add(name="class", number=2, type=FieldDescriptor.TYPE_INT64, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    message = GetMessageClass(pool.FindMessageTypeByName("kw.Odd"))()
    setattr(message, "from", "a\tb")
    with pytest.raises(InvalidArgument) as info:
        check_message("", message)
    assert str(info.value) == "from: must not contain control characters (U+0009 at 1)"
    setattr(message, "from", "ab")
    setattr(message, "class", -1)
    with pytest.raises(InvalidArgument) as info:
        check_message("", message)
    assert str(info.value) == "class: must not be negative, got -1"
