"""Field rules every request obeys before any handler sees it, from the contract.

Checked for every message a client sends, whatever the RPC, by a check compiled from the
descriptor of each message type (:func:`_compile`):

- every string, repeated field, map and ``google.protobuf.Struct`` is within the limit its
  ``(runstream.v1.limit)`` annotation in the protos gives it (:data:`FIELD_LIMITS`, read
  from the descriptors at import), so nothing the server stores can grow without bound;
- every string that is a single-line name or id (every string but the free text the
  annotations mark, and every map key) holds no control character
  (:func:`control_character`), so what a producer names a run, a step or an agent cannot
  move a viewer's cursor, clear their terminal or break a one-line layout;
- every enum field holds a value of its enum (``TargetKind 999`` is refused, not stored);
- every integer is non-negative (counts, sizes, attempts, seqs, cursors: none of the
  contract's integers can be negative);
- every float is finite; every Timestamp lies in 1970..9999; every Duration is non-negative.

A field without an annotation still gets :data:`DEFAULT_LIMIT`, but
``tests/server/test_hardening_descriptors.py`` fails until it has one, so adding a field to
the protos means choosing its limit there, beside the field (options.proto documents the
option). Errors name the field path the way the rest of the server does:
``events[2].agent_activity.activity: 999 is not a known AgentActivityType``.
"""

from __future__ import annotations

import importlib
import keyword
import math
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import runstream.v1
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from runstream.v1 import options_pb2

from runstream_server.errors import InvalidArgument

PACKAGE = "runstream.v1"
STRUCT_TYPE = "google.protobuf.Struct"

_Check = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class Limit:
    """The most a field may hold: characters of each string, entries, or Struct bytes; the
    contract's ``FieldLimit`` (protos/runstream/v1/options.proto). A part left 0 is
    :data:`DEFAULT_LIMIT`'s."""

    chars: int = 0
    """A string's characters; for a repeated string or a map, each value's."""
    items: int = 0
    """Entries of a repeated field or a map."""
    key_chars: int = 0
    """Characters of each map key."""
    struct_bytes: int = 0
    """Encoded size of a ``google.protobuf.Struct``."""
    free_text: bool = False
    """Its strings are free text (messages, descriptions, prompts, streamed output, reasons),
    where newlines and tabs belong, and are taken as written; otherwise each is a single-line
    name and must hold no control character. Map keys are names either way."""


# The limits the contract uses throughout, always with these values (options.proto's
# FieldLimit names them); what the server checks beside the protos uses them too (a token's
# name claims, NAME).
ID = Limit(chars=128)
NAME = Limit(chars=256)
# Free text is stored and relayed as the producer wrote it, control characters and all
# (even NUL, which protobuf, SQLite and Redis carry like any other): it is a model's output,
# a tool's log or an error's text, which a producer passes on rather than writes, and
# refusing one character would fail the whole batch the event came in. Viewers escape it
# where they print it: the CLI shows control characters escaped, the web dashboard sets it
# as text, never as HTML. Filters are free text too: their parsers refuse anything but
# whitespace between their terms, and the values compared in a ListRuns filter are names,
# held to the same rule as the names they match by queries.parse_filter.
TEXT = Limit(chars=4096, free_text=True)
LONG_TEXT = Limit(chars=65_536, free_text=True)
STRUCT = Limit(struct_bytes=1024 * 1024)
NAMES = Limit(items=100, chars=256)
DEFAULT_LIMIT = Limit(chars=1024, items=100, key_chars=128, struct_bytes=16_384)
"""The limit of a field without an annotation, and of each part an annotation leaves 0."""


def _declared(field: FieldDescriptor) -> Limit | None:
    """A field's limit, from its ``(runstream.v1.limit)`` annotation (None without one)."""
    options, extension = field.GetOptions(), cast(Any, options_pb2.limit)
    if not options.HasExtension(extension):
        return None
    limit: options_pb2.FieldLimit = options.Extensions[extension]
    return Limit(
        chars=limit.chars,
        items=limit.items,
        key_chars=limit.key_chars,
        struct_bytes=limit.struct_bytes,
        free_text=limit.free_text,
    )


def _contract() -> Iterator[Descriptor]:
    """Every message type of runstream.v1, nested ones included, from each generated module
    of the package (so a file added to the contract is read without a line here)."""
    for module in pkgutil.iter_modules(runstream.v1.__path__):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(f"runstream.v1.{module.name}").DESCRIPTOR
            found = list(file.message_types_by_name.values())
            while found:
                message = found.pop()
                found += message.nested_types
                yield message


FIELD_LIMITS: dict[str, Limit] = {
    field.full_name: limit
    for message in _contract()
    for field in message.fields
    if (limit := _declared(field)) is not None
}
"""Full field name (``runstream.v1.RunCreated.display_name``) -> its limit, read once from
the contract's annotations."""

_MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
# 100 years: a time plus any duration a client sends stays a valid time (the Duration type
# itself reaches 10,000 years, past the year 9999 that times end at).
_MAX_DURATION_SECONDS = 3_155_760_000

_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def needs_limit(field: FieldDescriptor) -> bool:
    """Whether a field can grow with what a client sends: strings, lists, maps, Structs."""
    if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return True
    return _is_repeated(field) or _is_struct(field)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def limit_of(field: FieldDescriptor) -> Limit:
    return FIELD_LIMITS.get(field.full_name, DEFAULT_LIMIT)


# Fields of a streamed request that its servicer checks itself, so that it can answer for
# one message without ending the stream: an Interact answer gets its InteractAnswerResult.
CHECKED_BY_SERVICER: dict[str, str] = {"runstream.v1.InteractRequest": "answer"}


def check_request(message: Message, encoded: bytes | None = None) -> None:
    """Raises InvalidArgument naming the first field that breaks a rule; see the module doc.
    Given the request as it came on the wire, skips the checks it cannot fail (:func:`_plain`)."""
    later = CHECKED_BY_SERVICER.get(message.DESCRIPTOR.full_name)
    if later is not None and message.HasField(later):
        rest = type(message)()
        rest.CopyFrom(message)
        rest.ClearField(later)
        message = rest
    check_message("", message, plain=encoded is not None and _plain(encoded))


def check_message(path: str, message: Message, *, plain: bool = False) -> None:
    """The same rules for a message found at `path` inside a request (``events[2]``)."""
    try:
        _check_message(message, plain)
    except _Broken as broken:
        where = "".join(reversed(broken.segments)).lstrip(".")
        raise InvalidArgument(f"{path}.{where}" if path else where, broken.problem) from None


class _Broken(Exception):
    """A rule broken deep inside a message; each level adds its segment of the field path
    on the way out, so that paths are only built for the one field that is wrong."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.segments: list[str] = []


_CHECKS: tuple[dict[Descriptor, _Check], dict[Descriptor, _Check]] = ({}, {})
"""Per message type, the check of one message of it, compiled on first use: in full
(``_CHECKS[False]``), and for a request whose encoding holds no Struct past a limit and no
number that is not finite (``_CHECKS[True]``, see :func:`_plain`), without those checks."""


def _check_message(message: Message, plain: bool = False) -> None:
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    check = _CHECKS[plain].get(descriptor) or _checker(descriptor, plain)
    check(message)


def _checker(descriptor: Descriptor, plain: bool) -> _Check:
    check = _CHECKS[plain].get(descriptor)
    if check is None:
        special = _SPECIAL.get(descriptor.full_name)
        check = _CHECKS[plain][descriptor] = special or _compile(descriptor, plain)
    return check


_SMALLEST_STRUCT = min(
    limit.struct_bytes for limit in (*FIELD_LIMITS.values(), DEFAULT_LIMIT) if limit.struct_bytes
)


def _plain(encoded: bytes) -> bool:
    """Whether a request, as it came on the wire, can hold neither a Struct past its limit
    (it is smaller than the smallest limit) nor a number that is not finite: a NaN or an
    infinity is a float whose exponent bits are all set, so that its last byte
    (little-endian) is 0x7F or 0xFF, and requests rarely hold either byte (UTF-8 text never
    holds 0xFF). Such a request skips both checks, which are most of what the field rules
    cost a small event with a Struct in it."""
    return len(encoded) <= _SMALLEST_STRUCT and 0x7F not in encoded and 0xFF not in encoded


def _compile(descriptor: Descriptor, plain: bool) -> _Check:
    """The check of a message of this type as one Python function, written out field by
    field: a request holds few of its fields, and reading each by name where it holds a
    string or a number costs less than listing the set ones and looking their checks up,
    which is paid for every event a producer sends.

    Fields are checked in field number order, a oneof at its first member's place; a field
    at its default (an empty string, a zero, an absent message) breaks no rule and is
    skipped. A message field's check is compiled when first needed, so that messages that
    hold each other compile. The source is made from the descriptors alone."""
    lines = ["def check(m):"]
    scope: dict[str, Any] = {"_Broken": _Broken, "_fail": _failed, "_search": _CONTROL.search}
    oneofs: set[str] = set()
    for field in sorted(descriptor.fields, key=lambda f: f.number):
        oneof = field.containing_oneof
        if oneof is None or _synthetic(oneof):
            lines += _field_lines(field, scope, plain)
        elif oneof.name not in oneofs:
            oneofs.add(oneof.name)
            members: dict[str, _Check] = {}
            for member in oneof.fields:
                members[member.name] = _member_check(member, members, plain)
            scope[f"o_{oneof.name}"] = members
            lines += [f"    w = m.WhichOneof({oneof.name!r})", "    if w is not None:"]
            lines += _guarded(f"o_{oneof.name}[w](getattr(m, w))", "'.' + w")
    lines.append("    return None")
    exec("\n".join(lines), scope)
    return scope["check"]  # type: ignore[no-any-return]


def _field_lines(field: FieldDescriptor, scope: dict[str, Any], plain: bool) -> list[str]:
    """The lines that check one field of `m` (outside a oneof)."""
    read, segment, kind = _attribute(field), f".{field.name}", field.type
    check = f"c_{field.name}"
    scope[check] = _member_check(field, scope, plain, check)
    if scope[check] is _check_nothing:
        return []
    call = f"        _fail({check}, v, {segment!r})"  # a value that breaks a rule
    if _is_repeated(field) and _is_message(field) and not _is_map(field):
        each = f"k_{field.name}"
        scope[each] = _member_check(field, scope, plain, each, each_item=True)
        items = limit_of(field).items or DEFAULT_LIMIT.items
        return [
            f"    v = m{read}",
            f"    if len(v) > {items}:",
            call,
            "    i = 0",
            "    for x in v[:]:",  # a list: see RunSteps.recompute_progress
            *_guarded(f"{each}(x)", f"{segment!r}, f'[{{i}}]'", indent=8),
            "        i += 1",
        ]
    if _is_repeated(field) or kind == FieldDescriptor.TYPE_BYTES:
        return [f"    v = m{read}", "    if v:", call]
    if kind == FieldDescriptor.TYPE_MESSAGE:
        has = f"    if m.HasField({field.name!r}):"
        return [has, *_guarded(f"{check}(m{read})", repr(segment))]
    if kind == FieldDescriptor.TYPE_STRING:
        chars = limit_of(field).chars or DEFAULT_LIMIT.chars
        name_rule = "" if limit_of(field).free_text else " or _search(v) is not None"
        return [f"    v = m{read}", f"    if v and (len(v) > {chars}{name_rule}):", call]
    if kind in _INTEGER_TYPES:
        return [f"    v = m{read}", "    if v < 0:", call]
    return [f"    v = m{read}", "    if v:", call]  # an enum's or a float's


def _attribute(field: FieldDescriptor) -> str:
    """How the source reads the field of ``m``: ``.name``, or by getattr for a name that is
    a Python keyword (protobuf keeps those names, reachable only that way)."""
    if keyword.iskeyword(field.name):
        return f".__getattribute__({field.name!r})"
    return f".{field.name}"


def _guarded(call: str, segments: str, indent: int = 8) -> list[str]:
    """Lines that make a call, adding `segments` (source of a tuple's items, the outer one
    first) to the path of a rule it finds broken; free until one is."""
    pad = " " * indent
    return [
        f"{pad}try:",
        f"{pad}    {call}",
        f"{pad}except _Broken as broken:",
        f"{pad}    broken.segments += reversed(({segments},))",
        f"{pad}    raise",
    ]


def _member_check(
    field: FieldDescriptor,
    table: dict[str, Any],
    plain: bool,
    key: str = "",
    *,
    each_item: bool = False,
) -> _Check:
    """The check of a field's value (of each item of a repeated message field when
    `each_item`); a message's is compiled on its first call, and put in `table` under `key`
    (the field's name by default) in its place."""
    message = field.message_type
    one = each_item or not _is_repeated(field)
    if plain and one and (field.type in _FLOAT_TYPES or _is_struct(field)):
        return _check_nothing
    if message is None or not one or _is_struct(field):
        return _field_check(field, plain)

    def first(value: Any) -> None:
        check = table[key or field.name] = _checker(message, plain)
        check(value)

    return first


def _is_message(field: FieldDescriptor) -> bool:
    return field.message_type is not None and not _is_struct(field)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_struct(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == STRUCT_TYPE


def _synthetic(oneof: Any) -> bool:
    """Whether a oneof is the one protobuf makes for a proto3 ``optional`` field."""
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


def _failed(check: _Check, value: Any, segment: str) -> None:
    """Runs a field's check; a broken rule gets the field's segment of the path."""
    try:
        check(value)
    except _Broken as broken:
        broken.segments.append(segment)
        raise


def _field_check(field: FieldDescriptor, plain: bool = False) -> _Check:
    limit = limit_of(field)
    if _is_map(field):
        value = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
        return _map_check(limit, _value_check(value, limit, plain))
    one = _value_check(field, limit, plain)
    return _list_check(limit.items, one) if _is_repeated(field) else one


def _list_check(limit: int, one: _Check) -> _Check:
    items = limit or DEFAULT_LIMIT.items

    def check(values: Any) -> None:
        if len(values) > items:
            raise _Broken(f"has {len(values)} entries; the limit is {items}")
        for i, item in enumerate(values):
            try:
                one(item)
            except _Broken as broken:
                broken.segments.append(f"[{i}]")
                raise

    return check


def _map_check(limit: Limit, one: _Check) -> _Check:
    key_chars = limit.key_chars or DEFAULT_LIMIT.key_chars
    items = limit.items or DEFAULT_LIMIT.items

    def check(entries: Any) -> None:
        if len(entries) > items:
            raise _Broken(f"has {len(entries)} entries; the limit is {items}")
        for key in entries:
            if isinstance(key, str) and len(key) > key_chars:
                raise _Broken(f"a key is {len(key)} characters; the limit is {key_chars}")
            try:
                if isinstance(key, str):
                    _check_name(key, "the key ")
                one(entries[key])
            except _Broken as broken:
                broken.segments.append(f"[{key!r}]")
                raise

    return check


def _value_check(field: FieldDescriptor, limit: Limit, plain: bool) -> _Check:
    """The check of one value of `field` (each item of a list, each value of a map)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING or kind == FieldDescriptor.TYPE_BYTES:
        chars = limit.chars or DEFAULT_LIMIT.chars
        unit = "characters" if kind == FieldDescriptor.TYPE_STRING else "bytes"

        def check_length(value: Any) -> None:
            if len(value) > chars:
                raise _Broken(f"is {len(value)} {unit}; the limit is {chars} {unit}")

        if kind == FieldDescriptor.TYPE_BYTES or limit.free_text:
            return check_length

        def check_length_and_name(value: Any) -> None:
            check_length(value)
            _check_name(value)

        return check_length_and_name
    if kind == FieldDescriptor.TYPE_MESSAGE:
        if _is_struct(field):
            return _check_nothing if plain else lambda value: _check_struct(value, limit)
        return lambda value: _check_message(value, plain)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        values = frozenset(field.enum_type.values_by_number)
        enum_name = field.enum_type.name

        def check_enum(value: Any) -> None:
            if value not in values:
                raise _Broken(f"{value} is not a known {enum_name} value")

        return check_enum
    if kind in _INTEGER_TYPES:
        return _check_not_negative
    if kind in _FLOAT_TYPES:
        return _check_nothing if plain else _check_finite
    return _check_nothing  # bools and unsigned integers hold nothing to refuse


# What no single-line name may hold: the C0 controls (NUL, tab, newline, carriage return,
# ESC ...), DEL and the C1 controls (CSI among them), which terminals execute or take for a
# line break; the line and paragraph separators, which break lines too; and the Unicode bidi
# controls (LRM, RLM, ALM, the embeddings, overrides and isolates), which make a name read
# backwards or hide part of it. Joiners and variation selectors stay allowed: emoji need them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def control_character(value: str) -> str | None:
    """Why `value` cannot be a single-line name (``must not contain control characters
    (U+001B at 3)``, counting characters from 0), or None when it can."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    return f"must not contain control characters (U+{ord(found[0]):04X} at {found.start()})"


def _check_name(value: str, what: str = "") -> None:
    problem = control_character(value)
    if problem is not None:
        raise _Broken(what + problem)


def _check_not_negative(value: Any) -> None:
    if value < 0:
        raise _Broken(f"must not be negative, got {value}")


def _check_finite(value: Any) -> None:
    if not math.isfinite(value):
        raise _Broken("must be a finite number")


def _check_nothing(value: Any) -> None:
    pass


def _check_struct(value: Message, limit: Limit) -> None:
    most = limit.struct_bytes or DEFAULT_LIMIT.struct_bytes
    encoded = value.SerializeToString()  # what ByteSize() would encode too, once
    if len(encoded) > most:
        raise _Broken(f"is {len(encoded)} bytes encoded; the limit is {most} bytes")
    # A NaN or an infinity is a double whose exponent bits are all set, so its last byte
    # (little-endian) is 0x7F or 0xFF. Encoded Structs rarely hold either byte (UTF-8 text
    # never holds 0xFF), so most skip the walk through every value.
    if 0x7F not in encoded and 0xFF not in encoded:  # ints: a byte string's search is slower
        return
    for number in _struct_numbers(value):
        if not math.isfinite(number):
            raise _Broken("numbers must be finite")


def _struct_numbers(message: Message) -> Iterator[float]:
    """Every number_value inside a Struct, ListValue or Value, depth first."""
    for field, value in message.ListFields():
        if field.name == "number_value":
            yield value
        elif field.message_type is None:
            continue
        elif field.message_type.GetOptions().map_entry:  # Struct.fields
            for item in value.values():
                yield from _struct_numbers(item)
        elif _is_repeated(field):  # ListValue.values
            for item in value:
                yield from _struct_numbers(item)
        else:
            yield from _struct_numbers(value)


def _check_timestamp(message: Any) -> None:
    seconds, nanos = message.seconds, message.nanos
    if not (0 <= seconds <= _MAX_TIMESTAMP_SECONDS and 0 <= nanos < 1_000_000_000):
        raise _Broken("must be a valid time between 1970 and 9999")


def _check_duration(message: Any) -> None:
    seconds, nanos = message.seconds, message.nanos
    if not (0 <= seconds <= _MAX_DURATION_SECONDS and 0 <= nanos < 1_000_000_000):
        raise _Broken("must be a non-negative duration of at most 100 years")


_SPECIAL: dict[str, Callable[[Message], None]] = {
    "google.protobuf.Timestamp": _check_timestamp,
    "google.protobuf.Duration": _check_duration,
}
