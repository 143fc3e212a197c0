"""Issue 8: every RunEvent payload kind is handled everywhere, derived from the descriptor.

A kind added to the protos used to need about eight edits, and a missing one failed only at
run time (``getattr(self, "_on_<kind>")`` raising inside a commit, an event the SDK or a
view silently dropped). The list of kinds here comes from RunEvent's ``payload`` oneof, so a
new kind fails these tests until each place has it:

- the server: an entry in ``domain.events.KINDS`` (validation, server-only, terminal, whether
  it changes the derived state) and, when it does, a ``RunState._on_<kind>`` or
  ``RunSteps.on_<kind>`` method;
- the SDK: its ``EventKind`` member, its converter in ``_convert._PAYLOADS`` and a payload
  dataclass in ``EventPayload``, exported from ``runstream``;
- the views: a case in the terminal view (``cli/view_events.py``); in the web dashboard's model
  (``model.ts``), a FEED_KINDS entry and a describe() case, or a NOT_IN_FEED entry.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import runstream
from google.protobuf.message import Message
from runstream import EventKind
from runstream._convert import _PAYLOADS, event_from_pb, run_from_pb
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, run_pb2
from runstream_server.domain.events import KINDS
from runstream_server.domain.state import RunState
from runstream_server.domain.steps import RunSteps
from runstream_server.errors import RunstreamError

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = event_pb2.RunEvent.DESCRIPTOR.oneofs_by_name["payload"]
KIND_FIELDS = [(f.name, f.number) for f in PAYLOAD.fields]


def _event_of(name: str) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(run_id="r", seq=2)
    getattr(event, name).SetInParent()
    event.event_time.GetCurrentTime()
    return event


def test_the_kinds_come_from_the_descriptor() -> None:
    assert len(KIND_FIELDS) >= 26
    for name, number in KIND_FIELDS:
        assert event_pb2.EventKind.Value(f"EVENT_KIND_{name.upper()}") == number, name


def test_every_kind_has_an_entry_in_the_servers_table() -> None:
    names = [name for name, _ in KIND_FIELDS]
    assert sorted(KINDS) == sorted(names), "add the kind to KINDS in domain/events.py"


@pytest.mark.parametrize(("name", "number"), KIND_FIELDS, ids=[n for n, _ in KIND_FIELDS])
def test_the_derived_state_handles_every_kind(name: str, number: int) -> None:
    assert (name in _kinds_with_a_fold()) == KINDS[name].changes_state, (
        f"{name}: changes_state in KINDS and RunState._on_{name} or RunSteps.on_{name} must agree"
    )
    state = RunState(
        run_pb2.Run(
            run_id="r",
            last_seq=1,
            status=run_pb2.RUN_STATUS_RUNNING,
            steps=[run_pb2.Step(step_id="", status=run_pb2.STEP_STATUS_RUNNING)],
        )
    )
    try:
        state.apply(_event_of(name))
    except RunstreamError:
        pass  # an empty payload may be refused, precisely; never a crash
    else:
        assert state.last_seq == 2


def test_no_handler_is_left_for_a_kind_that_is_gone() -> None:
    assert set(_kinds_with_a_fold()) <= {name for name, _ in KIND_FIELDS}


def _kinds_with_a_fold() -> set[str]:
    """The kinds with a fold: RunState._on_<kind> or RunSteps.on_<kind>."""
    own = {n.removeprefix("_on_") for n in vars(RunState) if n.startswith("_on_")}
    return own | {n.removeprefix("on_") for n in vars(RunSteps) if n.startswith("on_")}


@pytest.mark.parametrize(("name", "number"), KIND_FIELDS, ids=[n for n, _ in KIND_FIELDS])
def test_the_sdk_converts_every_kind(name: str, number: int) -> None:
    assert EventKind(number).name == name.upper()
    assert name in _PAYLOADS, f"{name}: add its converter to runstream._convert._PAYLOADS"
    event = event_from_pb(_event_of(name))
    assert event.kind == EventKind(number)
    assert isinstance(event.payload, typing.get_args(runstream.EventPayload))
    # EventPayload comes from runstream._types: it holds the class whether or not the
    # package exports it, and the terminal view's `case runstream.<Class>()` needs the export.
    cls = type(event.payload)
    assert getattr(runstream, cls.__name__, None) is cls, (
        f"{name}: export {cls.__name__} from runstream (runstream/__init__.py, its import "
        "and __all__; and EXPECTED_EXPORTS in tests/clients/test_api.py)"
    )


def _filled(message: Message, depth: int = 0) -> set[str]:
    """Sets every singular field of the message (strings to "<field>-said", numbers to 1,
    enums to their first value, messages one level deep); returns the strings it set."""
    said: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated or (field.containing_oneof and depth == 0):
            continue
        if field.type == field.TYPE_STRING:
            setattr(message, field.name, f"{field.name}-said")
            said.add(f"{field.name}-said")
        elif field.type == field.TYPE_BOOL:
            setattr(message, field.name, True)
        elif field.enum_type is not None:
            setattr(message, field.name, field.enum_type.values[1].number)
        elif field.type == field.TYPE_MESSAGE:
            if depth == 0 and field.message_type.full_name.startswith("runstream."):
                said |= _filled(getattr(message, field.name), depth + 1)
        else:
            setattr(message, field.name, 1)
    return said


@pytest.mark.parametrize(("name", "number"), KIND_FIELDS, ids=[n for n, _ in KIND_FIELDS])
def test_the_terminal_view_says_every_kind_in_a_line(name: str, number: int) -> None:
    """Every kind has a line in the terminal view that names it or shows what its producer
    wrote: a case of its own in ``describe()`` (cli/view_events.py), or else its name and its
    fields (cli/view_fields.py), which a new kind gets with no edit."""
    event = _event_of(name)
    said = _filled(getattr(event, name))
    view = RunView(run=run_from_pb(run_pb2.Run(run_id="r", last_seq=1)))
    note = view.apply(event_from_pb(event))
    assert note is not None and note.text.strip(), f"{name}: the terminal view says nothing"
    named = any(word in note.text.lower() for word in name.split("_") if word != "run")
    assert named or any(text in note.text for text in said), (name, note.text)


@pytest.mark.parametrize(("name", "number"), KIND_FIELDS, ids=[n for n, _ in KIND_FIELDS])
def test_the_terminal_view_describes_every_kind(name: str, number: int) -> None:
    """The view's `match` runs for each kind: a case naming a class the package does not
    export (``runstream.<Class>``) raises AttributeError here, not in `runstream watch`."""
    view = RunView(run=run_from_pb(run_pb2.Run(run_id="r", last_seq=1)))
    view.apply(event_from_pb(_event_of(name)))
    assert view.last_seq == 2


MODEL_TS = ROOT / "src/clients/web/src/dashboard/model.ts"


def _kind_list(source: str, name: str) -> set[str]:
    """The EventKind names in model.ts's ``export const <name>: readonly EventKind[] = [...]``."""
    found = re.search(rf"export const {name}\b[^=]*=\s*\[(.*?)\];", source, re.DOTALL)
    assert found, f"model.ts has no `export const {name}: readonly EventKind[] = [...]`"
    return set(re.findall(r"EventKind\.(\w+)", found.group(1)))


def _describe(source: str) -> str:
    """model.ts's ``describe()``: the feed's lines."""
    found = re.search(r"\nexport function describe\(.*?\n}\n", source, re.DOTALL)
    assert found, "model.ts has no `export function describe(`"
    return found.group(0)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_web_dashboard_handles_every_kind() -> None:
    """The dashboard's feed shows every kind but those in NOT_IN_FEED, the kinds it leaves
    out on purpose: FEED_KINDS is the rest of the payload oneof, and describe() gives each a
    line, a case of its own or, past its cases, the kind's name and the fields its producer
    set (tests/e2e/test_new_event_kinds.py shows one in Chromium). A case for a kind left out
    of the feed would never run."""
    source = MODEL_TS.read_text()
    kinds = {name.upper(): _camel(name) for name, _ in KIND_FIELDS}
    left_out = _kind_list(source, "NOT_IN_FEED")
    assert left_out <= set(kinds), f"NOT_IN_FEED names no kind: {left_out - set(kinds)}"
    feed = re.search(r"export const FEED_KINDS\b.*?;\n", source, re.DOTALL)
    assert feed and "RunEventSchema" in source and "NOT_IN_FEED" in feed.group(0), (
        "FEED_KINDS is every kind of RunEvent's payload oneof but NOT_IN_FEED's"
    )
    describe = _describe(source)
    cases = set(re.findall(r'case "(\w+)"', describe))
    assert cases <= set(kinds.values()), f"describe() has cases for no kind: {cases}"
    dead = sorted(kind for kind in left_out if kinds[kind] in cases)
    assert dead == [], f"describe() has cases for kinds NOT_IN_FEED leaves out: {dead}"
    generic = describe[describe.index("default:") :]
    assert "fieldsText(" in generic and "EventKind[kind]" in generic, (
        "describe()'s default line names the kind and says its fields"
    )
