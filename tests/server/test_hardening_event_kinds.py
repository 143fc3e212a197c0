"""Issue 8: every RunEvent payload kind is handled everywhere, derived from the descriptor.

A kind added to the protos used to need about eight edits, and a missing one failed only at
run time (``getattr(self, "_on_<kind>")`` raising inside a commit, an event the SDK or a
view silently dropped). The list of kinds here comes from RunEvent's ``payload`` oneof, so a
new kind fails these tests until each place has it:

- the server: the field's ``(runstream.v1.kind)`` annotation in event.proto (validation,
  server-only, terminal, whether it changes the derived state), which the server reads into
  ``domain.events.KINDS``, each rule shown here to reach what a producer gets; and, when the
  kind changes the derived state, a ``RunState._on_<kind>`` or ``RunSteps.on_<kind>`` method;
- the SDK: its ``EventKind`` member, its converter in ``_convert._PAYLOADS`` and a payload
  dataclass in ``EventPayload``, exported from ``runstream``;
- the views: a case in the terminal view (``cli/view_events.py``); in the web dashboard's model
  (``model.ts``), a FEED_KINDS entry and a describe() case, or a NOT_IN_FEED entry.
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import pytest
import runstream
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from runstream import EventKind
from runstream._convert import _PAYLOADS, event_from_pb, run_from_pb
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, options_pb2, run_pb2
from runstream_server.domain.events import CHECKS, KINDS
from runstream_server.domain.state import RunState
from runstream_server.domain.steps import RunSteps
from runstream_server.errors import RunstreamError

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, get_run, rpc_error

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


def _declared(name: str) -> options_pb2.KindRules:
    """The kind's rules as event.proto states them, read here from the descriptor (not from
    the server's KINDS, which is what these tests hold to them)."""
    return (
        event_pb2.RunEvent.DESCRIPTOR.fields_by_name[name].GetOptions().Extensions[options_pb2.kind]
    )


def test_every_kind_carries_its_rules_and_the_server_reads_them() -> None:
    missing = [
        name
        for name, _ in KIND_FIELDS
        if not event_pb2.RunEvent.DESCRIPTOR.fields_by_name[name]
        .GetOptions()
        .HasExtension(options_pb2.kind)
    ]
    assert missing == [], (
        f"annotate these fields of RunEvent's payload in event.proto with "
        f"[(runstream.v1.kind) = {{...}}] (protos/runstream/v1/options.proto): {missing}"
    )
    assert list(KINDS) == [name for name, _ in KIND_FIELDS]
    for name, rules in KINDS.items():
        declared = _declared(name)
        assert (rules.server_only, rules.terminal, rules.starts_run) == (
            declared.server_only,
            declared.terminal,
            declared.starts_run,
        ), name
        assert (rules.changes_state, rules.moves_estimate) == (
            declared.changes_state,
            declared.moves_estimate,
        ), name
    stale = set(CHECKS) - set(KINDS)
    assert not stale, f"CHECKS in domain/events.py names kinds the contract does not: {stale}"


def _field_at(message: Descriptor, path: str) -> FieldDescriptor:
    """The field at a dotted path ("error.message") inside a payload type; each step before
    the last a singular message field."""
    *through, last = path.split(".")
    for name in through:
        field = message.fields_by_name.get(name)
        assert field is not None and field.message_type is not None, f"{path}: no {name}"
        assert not field.is_repeated, f"{path}: {name} is repeated"
        message = field.message_type
    field = message.fields_by_name.get(last)
    assert field is not None, f"{message.full_name} has no field {last!r} ({path})"
    assert not field.is_repeated, f"{path} is repeated"
    return field


_NUMBERS = (
    FieldDescriptor.CPPTYPE_DOUBLE,
    FieldDescriptor.CPPTYPE_FLOAT,
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
)


@pytest.mark.parametrize(("name", "number"), KIND_FIELDS, ids=[n for n, _ in KIND_FIELDS])
def test_the_fields_a_kinds_rules_name_are_fields_of_its_payload(name: str, number: int) -> None:
    """A path the annotation misspells would fail only when an event of the kind comes."""
    declared = _declared(name)
    payload = event_pb2.RunEvent.DESCRIPTOR.fields_by_name[name].message_type
    assert payload is not None
    texts = [*declared.required, *declared.ids, *declared.optional_ids, *declared.step_refs]
    for path in texts:
        assert _field_at(payload, path).type == FieldDescriptor.TYPE_STRING, path
    for bounds in declared.ranges:
        assert _field_at(payload, bounds.path).cpp_type in _NUMBERS, bounds.path
        assert bounds.HasField("at_least") or bounds.HasField("at_most"), bounds.path
        if bounds.HasField("at_least") and bounds.HasField("at_most"):
            assert bounds.at_least < bounds.at_most, bounds.path


def _event(name: str, filled: Sequence[str] = (), **numbers: float) -> event_pb2.RunEvent:
    """An event of the kind, its text fields at `filled` set to "s1" (a valid id, and a step
    of the run below), and the number fields given (by dotted path, "__" for ".") set."""
    event = event_pb2.RunEvent()
    getattr(event, name).SetInParent()
    for path, value in [*((p, "s1") for p in filled), *numbers.items()]:
        *through, last = path.replace("__", ".").split(".")
        holder = getattr(event, name)
        for segment in through:
            holder = getattr(holder, segment)
        setattr(holder, last, value)
    return event


def _refusals(name: str) -> Iterator[tuple[event_pb2.RunEvent, str]]:
    """The events of the kind its annotation says a producer may not report, each with the
    field and the problem the refusal names."""
    declared = _declared(name)
    if declared.server_only:
        yield _event(name), f"{name}: is written by the server; producers cannot"
        return
    needed = [*declared.ids, *declared.required]
    if needed:
        yield _event(name), f"{name}.{needed[0]}: is required"
    for bounds in declared.ranges:
        low = bounds.at_least if bounds.HasField("at_least") else -math.inf
        high = bounds.at_most if bounds.HasField("at_most") else math.inf
        for value in (low - 1, high + 1):
            if math.isfinite(value):
                path = bounds.path
                if high == math.inf:
                    problem = f"must be at least {low:g}, got {value:g}"
                elif low == -math.inf:
                    problem = f"must be at most {high:g}, got {value:g}"
                else:
                    problem = f"must be between {low:g} and {high:g}, got {value:g}"
                event = _event(name, needed, **{path.replace(".", "__"): value})
                yield event, f"{name}.{path}: {problem}"


ENDED = (run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED)


async def test_each_kinds_rules_from_the_contract_reach_what_a_producer_gets(
    stubs: Stubs,
) -> None:
    """For every kind, as event.proto annotates it: a server-only kind a producer reports is
    refused naming it; an empty payload is refused naming its first id, else its first
    required field; a number past each bound is refused naming it; a terminal kind ends the
    run. Annotating a kind otherwise changes what a producer gets, and what this expects."""
    run = await create_run(stubs, "s1")
    named = set()
    for name, _ in KIND_FIELDS:
        for event, said in _refusals(name):
            error = await rpc_error(append(stubs, run.run_id, event))
            assert (error.code(), error.details()) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"events[0].{said}",
            )
            named.add(said.partition(":")[0])
    assert {
        "decision_resolved",  # server-only
        "run_failed.error.message",  # required
        "step_started.step_id",  # an id
        "step_progress.percent",  # a range
        "model_allocation.expected_cost_usd",  # a range with no upper bound
    } <= named
    terminal = [name for name, _ in KIND_FIELDS if _declared(name).terminal]
    assert len(terminal) >= 3
    for name in terminal:
        ended = await create_run(stubs)
        declared = _declared(name)
        await append(stubs, ended.run_id, _event(name, [*declared.ids, *declared.required]))
        status = (await get_run(stubs, ended.run_id)).status
        assert status in ENDED, f"{name}: {run_pb2.RunStatus.Name(status)}"


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
    """The SDK's part is generated from the protos (runstream/_events.py): a kind missing
    here means `make gen` was not run after the proto changed."""
    assert EventKind(number).name == name.upper(), f"{name}: run `make gen`"
    assert name in _PAYLOADS, f"{name}: no reader in runstream._events.PAYLOADS; run `make gen`"
    event = event_from_pb(_event_of(name))
    assert event.kind == EventKind(number)
    assert isinstance(event.payload, typing.get_args(runstream.EventPayload))
    # The terminal view's `case runstream.<Class>()` needs the class exported: runstream
    # exports every class the generated module lists in its __all__.
    cls = type(event.payload)
    assert getattr(runstream, cls.__name__, None) is cls, (
        f"{name}: runstream does not export {cls.__name__} (runstream/__init__.py takes the "
        "generated module's __all__)"
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
