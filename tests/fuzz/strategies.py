"""Hypothesis strategies built from message descriptors: valid and invalid messages alike.

Every field of every message is covered from the descriptor alone, so a field added to the
protos is fuzzed without touching this file. Values lean towards what breaks servers: ids
the server knows (to get past NOT_FOUND), unknown enum numbers, negative and huge integers,
NaN and infinities, long strings, Structs, nested and repeated messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz.support import KNOWN_IDS

_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

_short_text = st.text(max_size=24)
_long_text = st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(100, 70_000))
_text = st.one_of(st.sampled_from(KNOWN_IDS), _short_text, _long_text)
_json_scalar = st.one_of(
    st.none(), st.booleans(), st.floats(), st.text(max_size=16), st.integers(-(2**60), 2**60)
)
_json = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _struct() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(values: dict[str, Any]) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        struct.update(values)
        return struct

    return st.builds(build, st.dictionaries(st.text(max_size=8), _json, max_size=4))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _text
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if kind == FieldDescriptor.TYPE_DOUBLE else 32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = sorted(field.enum_type.values_by_number)
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    low, high = _INT_BOUNDS[kind]
    return st.one_of(st.integers(max(low, -3), min(high, 1100)), st.integers(low, high))


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is None:
        return _scalar(field)
    return messages(field.message_type, depth + 1)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of this type, each field set or not, nested at most a few levels deep."""
    if descriptor.full_name == "google.protobuf.Struct":
        return _struct()
    cls = GetMessageClass(descriptor)
    if depth > 4:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
                items = draw(
                    st.dictionaries(_scalar(key_field), _value(value_field, depth), max_size=3)
                )
                target = getattr(message, field.name)
                for key, value in items.items():
                    if value_field.message_type is None:
                        target[key] = value
                    else:
                        target[key].CopyFrom(value)
            elif field.is_repeated:
                items = draw(st.lists(_value(field, depth), max_size=3))
                target = getattr(message, field.name)
                if field.message_type is None:
                    target.extend(items)
                else:
                    for item in items:
                        target.add().CopyFrom(item)
            elif field.message_type is not None:
                getattr(message, field.name).CopyFrom(draw(_value(field, depth)))
            else:
                setattr(message, field.name, draw(_scalar(field)))
        return message

    return build()


def mutated(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid encodings cut short, with bytes flipped, inserted or dropped; and plain noise."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        raw = bytearray(draw(data))
        for _ in range(draw(st.integers(1, 4))):
            action = draw(st.sampled_from(["cut", "flip", "insert", "drop"]))
            position = draw(st.integers(0, len(raw)))
            if action == "cut":
                del raw[position:]
            elif action == "flip" and position < len(raw):
                raw[position] ^= 1 << draw(st.integers(0, 7))
            elif action == "insert":
                raw[position:position] = draw(st.binary(min_size=1, max_size=6))
            elif action == "drop" and position < len(raw):
                del raw[position]
        return bytes(raw)

    return st.one_of(mutate(), st.binary(max_size=256))
