"""Each event kind reaches SDK users as its dataclass, generated from the protos
(scripts/gen_sdk_events.py writes runstream/_events.py): every field of the kind's message
read into it, and a kind added to the protos typed and exported with no edit of the SDK."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import runstream
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from runstream._convert import event_from_pb
from runstream.v1 import event_pb2

ROOT = Path(__file__).resolve().parents[2]
KINDS = list(event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"].fields)
BASE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
WELL_KNOWN = "google.protobuf."


def _value(field: FieldDescriptor, i: int) -> Any:
    """A scalar value of the field's own: no two fields (nor two elements) share one."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{i}"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return field.number + i + 0.5
    if field.type == FieldDescriptor.TYPE_ENUM:
        return max(value.number for value in field.enum_type.values)
    return field.number * 10 + i


def _fill_message(message: Message, field: FieldDescriptor, i: int) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        message.FromDatetime(BASE + timedelta(minutes=field.number, microseconds=i))
    elif name == "google.protobuf.Duration":
        message.FromTimedelta(timedelta(seconds=field.number + i, milliseconds=250))
    elif name == "google.protobuf.Struct":
        message.update({"field": field.name, "n": i})  # type: ignore[attr-defined]
    else:
        fill(message)


def fill(message: Message) -> None:
    """Sets every field of the message, nested messages and each map and list with two
    entries included."""
    for field in message.DESCRIPTOR.fields:
        container = getattr(message, field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            for i in (1, 2):
                if value.message_type is not None:
                    _fill_message(container[_value(key, i)], value, i)
                else:
                    container[_value(key, i)] = _value(value, i)
        elif field.is_repeated:
            for i in (1, 2):
                if entry is not None:
                    _fill_message(container.add(), field, i)
                else:
                    container.append(_value(field, i))
        elif entry is not None:
            _fill_message(container, field, 0)
        else:
            setattr(message, field.name, _value(field, 0))


def _read(field: FieldDescriptor, value: Any) -> Any:
    """What the SDK should hold for one value of a field, None for a message of its own."""
    name = field.message_type.full_name if field.message_type is not None else ""
    if name == "google.protobuf.Timestamp":
        return value.ToDatetime(tzinfo=UTC)
    if name == "google.protobuf.Duration":
        return value.ToTimedelta()
    if name == "google.protobuf.Struct":
        return {key: value[key] for key in value}
    return value


def check(message: Message, read: Any, where: str) -> None:
    """The dataclass `read` has the message's fields, in proto order, each with its value."""
    names = [field.name for field in message.DESCRIPTOR.fields]
    assert [f.name for f in dataclasses.fields(read)] == names, where
    for field in message.DESCRIPTOR.fields:
        value, got, at = getattr(message, field.name), getattr(read, field.name), where + "."
        entry = field.message_type
        own = entry is not None and not entry.full_name.startswith(WELL_KNOWN)
        if entry is not None and entry.GetOptions().map_entry:
            item = entry.fields_by_name["value"]
            assert got == {key: _read(item, value[key]) for key in value}, at + field.name
        elif field.is_repeated and own:
            assert isinstance(got, tuple) and len(got) == len(value) == 2, at + field.name
            for i, (element, element_read) in enumerate(zip(value, got, strict=True)):
                check(element, element_read, f"{at}{field.name}[{i}]")
        elif field.is_repeated:
            assert got == tuple(_read(field, element) for element in value), at + field.name
        elif own:
            check(value, got, at + field.name)
        else:
            assert got == _read(field, value), at + field.name
            assert got not in (None, "", 0, {}), f"{at}{field.name}: the filler left it unset"


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_a_kinds_dataclass_carries_every_field_of_its_message(kind: FieldDescriptor) -> None:
    event = event_pb2.RunEvent(run_id="r", seq=3)
    fill(getattr(event, kind.name))
    read = event_from_pb(event)
    assert read.kind == runstream.EventKind(kind.number)
    assert type(read.payload).__name__ == kind.message_type.name
    assert getattr(runstream, kind.message_type.name) is type(read.payload)
    check(getattr(event, kind.name), read.payload, kind.name)


def _enum_fields(message: Any) -> list[str]:
    return [f.name for f in message.fields if f.type == FieldDescriptor.TYPE_ENUM]


@pytest.mark.parametrize(
    "kind",
    [kind for kind in KINDS if _enum_fields(kind.message_type)],
    ids=lambda kind: kind.name,
)
def test_an_enum_value_this_sdk_does_not_know_reads_as_unspecified(
    kind: FieldDescriptor,
) -> None:
    event = event_pb2.RunEvent(run_id="r", seq=3)
    payload = getattr(event, kind.name)
    for name in _enum_fields(kind.message_type):
        setattr(payload, name, 999)
    read = event_from_pb(event).payload
    for name in _enum_fields(kind.message_type):
        assert getattr(read, name).name == "UNSPECIFIED", name


NEW_KIND = """
// The run's spending neared its budget.
message BudgetWarning {
  // Dollars spent so far.
  double spent_usd = 1;
  // How serious it is.
  Severity severity = 2;
  // The budget that is nearly used up.
  BudgetLimit limit = 3;
  // When the producer noticed.
  google.protobuf.Timestamp notice_time = 4;
  // What the budget covers.
  BudgetScope scope = 5;
  // The agents that spent most.
  repeated string agents = 6;
}

// A spending limit.
message BudgetLimit {
  // The limit in US dollars.
  double usd = 1;
}

// What a budget covers.
enum BudgetScope {
  // Not said.
  BUDGET_SCOPE_UNSPECIFIED = 0;
  // The whole run.
  BUDGET_SCOPE_RUN = 1;
}
"""

USE_NEW_KIND = """
import dataclasses, typing
import runstream
from runstream._convert import event_from_pb
from runstream.v1 import event_pb2

event = event_pb2.RunEvent(run_id="r", seq=2)
event.budget_warning.spent_usd = 41.5
event.budget_warning.severity = 4  # SEVERITY_HIGH
event.budget_warning.limit.usd = 50
event.budget_warning.notice_time.seconds = 1_700_000_000
event.budget_warning.scope = 1
event.budget_warning.agents.extend(["writer", "critic"])
read = event_from_pb(event)
assert read.kind == runstream.EventKind.BUDGET_WARNING == 61, read.kind
assert read.payload == runstream.BudgetWarning(
    41.5,
    runstream.Severity.HIGH,
    runstream.BudgetLimit(50.0),
    read.payload.notice_time,
    runstream.BudgetScope.RUN,
    ("writer", "critic"),
), read.payload
assert read.payload.notice_time.timestamp() == 1_700_000_000
assert runstream.BudgetWarning in typing.get_args(runstream.EventPayload)
assert {"BudgetWarning", "BudgetLimit", "BudgetScope"} <= set(runstream.__all__)
assert runstream.BudgetWarning.__dataclass_params__.frozen
assert "The run's spending neared its budget." in runstream.BudgetWarning.__doc__
assert "spent_usd: Dollars spent so far." in runstream.BudgetWarning.__doc__
assert runstream.BudgetWarning.__annotations__ == {
    "spent_usd": "float",
    "severity": "Severity",
    "limit": "BudgetLimit | None",
    "notice_time": "datetime | None",
    "scope": "BudgetScope",
    "agents": "tuple[str, ...]",
}
# Every field of a kind added later, and a field added later to a kind that exists, has a
# default: code that builds the dataclasses without them keeps working.
assert runstream.BudgetWarning() == runstream.BudgetWarning(0.0, runstream.Severity(0))
assert runstream.StepSkipped("s", "why").retries == 0
print("ok")
"""


def test_a_kind_added_to_the_protos_reaches_the_sdk_typed_with_no_edit_of_it(
    tmp_path: Path,
) -> None:
    """A copy of the project's protos with a new kind, whose payload nests a new message and
    a new enum, and of the SDK; `scripts/gen.sh` alone makes it a typed, exported,
    documented dataclass that watchers read, generated code that lint takes as it is."""
    (tmp_path / "scripts").mkdir()
    for script in ("gen.sh", "gen_sdk_events.py"):
        shutil.copy2(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    sdk = tmp_path / "src/clients/python/runstream"
    shutil.copytree(
        ROOT / "src/clients/python/runstream",
        sdk,
        ignore=shutil.ignore_patterns("__pycache__", "dashboard", "cli", "integrations"),
    )
    proto = tmp_path / "protos/runstream/v1/event.proto"
    text = proto.read_text()
    for anchor, addition in [
        (
            "  EVENT_KIND_CUSTOM = 60;\n",
            "  // See BudgetWarning.\n  EVENT_KIND_BUDGET_WARNING = 61;\n",
        ),
        (
            "    Custom custom = 60 [(runstream.v1.kind) = {\n",
            "    // Spending neared the budget.\n"
            "    BudgetWarning budget_warning = 61"
            " [(runstream.v1.kind) = {changes_state: false}];\n",
        ),
    ]:
        assert anchor in text
        text = text.replace(anchor, addition + anchor if "Custom" in anchor else anchor + addition)
    skipped = text.index("message StepSkipped {")
    end = text.index("\n}\n", skipped) + 1
    text = text[:end] + "  // How often it was tried.\n  int32 retries = 3;\n" + text[end:]
    proto.write_text(text + NEW_KIND)

    env = {**os.environ, "PY": sys.executable, "PYTHONPATH": str(tmp_path / "src/clients/python")}
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(ROOT / "pyproject.toml"), "-q"]
    for step, command in [
        ("gen.sh", ["bash", str(tmp_path / "scripts/gen.sh")]),
        ("the new kind read", [sys.executable, "-c", textwrap.dedent(USE_NEW_KIND)]),
        ("ruff check", [*ruff, "check", *config, str(sdk / "_events.py")]),
        ("ruff format", [*ruff, "format", "--check", *config, str(sdk / "_events.py")]),
    ]:
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{step}:\n{done.stdout}{done.stderr}"
