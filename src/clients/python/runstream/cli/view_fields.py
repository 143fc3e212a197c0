"""An event of a kind the terminal view has no case for, said from its proto descriptor.

A kind added to the contract shows in ``runstream watch`` with no edit here: the kind's name
in words ("Budget warning"), then the fields its producer set as ``name: value``, in the
proto's order. The fields come from the event's ``raw`` message, so the view needs neither a
case nor an SDK dataclass for the kind, only protos that have it; a kind even those lack is
skipped quietly, as the proto asks. The line is escaped with every other note
(:meth:`~runstream.cli.view.RunView.apply`), whatever its producer wrote.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from runstream import Event

from .fmt import format_duration, local_time
from .view_items import Note

__all__ = ["FIELDS_SHOWN", "ITEMS_SHOWN", "VALUE_CHARS", "fields_note", "fields_text"]

FIELDS_SHOWN = 6
"""The set fields an event's line shows; the rest are counted ("+2 more")."""

ITEMS_SHOWN = 3
"""The entries of a list, a map or a Struct a field's value shows; the rest are counted."""

VALUE_CHARS = 80
"""The characters of a text a field's value shows, with "…" where it is cut."""

_NESTED = 2
"""How deep messages inside the payload are opened: deeper ones show as "{…}"."""


def fields_note(event: Event) -> Note | None:
    """The line for an event the view has no case for; None for one of a kind that even
    this client's protos do not know (its payload unset)."""
    kind = event.raw.WhichOneof("payload")
    if kind is None:
        return None
    said = fields_text(getattr(event.raw, kind))
    title = kind.replace("_", " ").capitalize()
    return Note("•", "event", f"{title} — {said}" if said else title, "grey70")


def fields_text(message: Message, depth: int = 1) -> str:
    """ "limit_usd: 100 · spent_usd: 93.5 · +2 more": the message's set fields."""
    shown = message.ListFields()
    parts = [f"{field.name}: {_value(field, value, depth)}" for field, value in shown]
    return _listed(parts, FIELDS_SHOWN, " · ")


def _listed(parts: list[str], most: int, between: str) -> str:
    more = f"{between}+{len(parts) - most} more" if len(parts) > most else ""
    return between.join(parts[:most]) + more


def _value(field: FieldDescriptor, value: Any, depth: int) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        of = field.message_type.fields_by_name["value"]
        entries = [f"{key}: {_single(of, value[key], depth)}" for key in sorted(value)]
        return "{" + _listed(entries, ITEMS_SHOWN, ", ") + "}"
    if field.is_repeated:
        return "[" + _listed([_single(field, v, depth) for v in value], ITEMS_SHOWN, ", ") + "]"
    return _single(field, value, depth)


def _single(field: FieldDescriptor, value: Any, depth: int) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _message(value, depth + 1)
    if field.enum_type is not None:
        return _enum(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return f"{len(value)} bytes"
    return _scalar(value)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        rounded = float(f"{value:.6g}")  # six significant digits, as the dashboard shows them
        return str(int(rounded)) if rounded.is_integer() and abs(rounded) < 1e15 else repr(rounded)
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _enum(enum: EnumDescriptor, number: int) -> str:
    """ "HIGH" for SEVERITY_HIGH: the value's name without its enum's prefix."""
    found = enum.values_by_number.get(number)
    if found is None:
        return str(number)  # a value newer than this client's protos
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    return found.name.removeprefix(prefix)


def _message(message: Message, depth: int) -> str:
    name = message.DESCRIPTOR.full_name
    if name in _JSON:
        return _json(json_format.MessageToDict(message))
    if name == "google.protobuf.Timestamp":
        return local_time(message.ToDatetime(tzinfo=UTC))  # type: ignore[attr-defined]
    if name == "google.protobuf.Duration":
        return format_duration(message.ToTimedelta())  # type: ignore[attr-defined]
    return "{…}" if depth > _NESTED else "{" + fields_text(message, depth) + "}"


_JSON = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})


def _json(value: object, nested: bool = False) -> str:
    """A Struct: its keys in order with their scalars, a nested object or list as "{…}",
    "[…]"."""
    if isinstance(value, list):
        items = [_json(item, nested=True) for item in value]
        return "[…]" if nested else "[" + _listed(items, ITEMS_SHOWN, ", ") + "]"
    if isinstance(value, dict):
        entries = [f"{key}: {_json(value[key], nested=True)}" for key in sorted(value)]
        return "{…}" if nested else "{" + _listed(entries, ITEMS_SHOWN, ", ") + "}"
    return "null" if value is None else _scalar(value)
