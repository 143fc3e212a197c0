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

import ast
import re
import typing
from pathlib import Path

import pytest
import runstream
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


def _view_cases() -> set[str]:
    """The payload classes the terminal view's ``describe()`` has a case for (``fold()``
    has cases only for the kinds that change the view)."""
    tree = ast.parse((ROOT / "src/clients/python/runstream/cli/view_events.py").read_text())
    describe = next(
        node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "describe"
    )
    return {
        node.cls.attr
        for node in ast.walk(describe)
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Attribute)
    }


def test_the_terminal_view_has_a_case_for_every_kind() -> None:
    cases = _view_cases()
    missing = [
        name
        for name, _ in KIND_FIELDS
        if type(event_from_pb(_event_of(name)).payload).__name__ not in cases
    ]
    assert missing == [], f"add a case to describe() in cli/view_events.py for {missing}"


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


def _describe_cases(source: str) -> set[str]:
    """The payload cases of model.ts's ``describe()``: the feed lines it can make."""
    found = re.search(r"\nexport function describe\(.*?\n}\n", source, re.DOTALL)
    assert found, "model.ts has no `export function describe(`"
    return set(re.findall(r'case "(\w+)"', found.group(0)))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_the_web_dashboard_handles_every_kind() -> None:
    """Each kind is in the dashboard's feed, which takes both a FEED_KINDS entry and a
    describe() case (either alone shows nothing), or in NOT_IN_FEED, the kinds it leaves out
    of the feed on purpose."""
    source = MODEL_TS.read_text()
    feed, left_out = _kind_list(source, "FEED_KINDS"), _kind_list(source, "NOT_IN_FEED")
    described = _describe_cases(source)
    problems = []
    for name, _ in KIND_FIELDS:
        kind, case = name.upper(), _camel(name)
        if kind in feed and kind in left_out:
            problems.append(f"{name}: in both FEED_KINDS and NOT_IN_FEED")
        elif kind in feed and case not in described:
            problems.append(
                f'{name}: in FEED_KINDS but describe() has no case "{case}": the feed drops it'
            )
        elif kind not in feed and case in described:
            problems.append(
                f'{name}: describe() has a case "{case}" but FEED_KINDS does not list '
                f"EventKind.{kind}: the feed never shows it"
            )
        elif kind not in feed and kind not in left_out:
            problems.append(
                f"{name}: list EventKind.{kind} in FEED_KINDS with a describe() case "
                f'"{case}", or in NOT_IN_FEED if the feed should leave it out'
            )
    assert problems == [], "the dashboard (src/clients/web/src/dashboard/model.ts):\n" + (
        "\n".join(problems)
    )
