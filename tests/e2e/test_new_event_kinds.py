"""An event of a kind the views have no case for shows, by its name and fields, with no edit.

A kind added to the protos used to be dropped by the terminal view (`runstream watch`,
`runstream events`) until it had a case for it. The view now says such an event generically:
the kind's name in words, then the fields its producer set, with control characters and bidi
marks escaped as in every producer's text.

The terminal test makes the kind it needs: protos one kind newer than this client's
(``budget_warning``, number 99, in a private descriptor pool). No server is involved there:
a server refuses a kind its own protos lack, as it should.
"""

from __future__ import annotations

import io

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from rich.console import Console
from runstream._convert import event_from_pb, run_from_pb
from runstream.cli.render import Dashboard, PlainRenderer
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, run_pb2

pytestmark = pytest.mark.timeout(180)

F = descriptor_pb2.FieldDescriptorProto
BUDGET_WARNING = 99
"""The new kind's field number in RunEvent's payload oneof (and its EventKind)."""


def _run_event_with_a_new_kind() -> type[Message]:
    """RunEvent as protos one kind newer than this client's have it: ``budget_warning``."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        if file is event_pb2.DESCRIPTOR:
            _add_budget_warning(proto)
        pool.Add(proto)
        added.add(file.name)

    add(event_pb2.DESCRIPTOR)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("runstream.v1.RunEvent"))


def _add_budget_warning(proto: descriptor_pb2.FileDescriptorProto) -> None:
    warning = proto.message_type.add(name="BudgetWarning")
    for number, (name, kind, type_name, label) in enumerate(
        [
            ("limit_usd", F.TYPE_DOUBLE, "", F.LABEL_OPTIONAL),
            ("spent_usd", F.TYPE_DOUBLE, "", F.LABEL_OPTIONAL),
            ("message", F.TYPE_STRING, "", F.LABEL_OPTIONAL),
            ("severity", F.TYPE_ENUM, ".runstream.v1.Severity", F.LABEL_OPTIONAL),
            ("data", F.TYPE_MESSAGE, ".google.protobuf.Struct", F.LABEL_OPTIONAL),
            ("error", F.TYPE_MESSAGE, ".runstream.v1.ErrorInfo", F.LABEL_OPTIONAL),
            ("step_ids", F.TYPE_STRING, "", F.LABEL_REPEATED),
            ("paused", F.TYPE_BOOL, "", F.LABEL_OPTIONAL),
        ],
        start=1,
    ):
        field = warning.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
    run_event = next(m for m in proto.message_type if m.name == "RunEvent")
    run_event.field.add(
        name="budget_warning",
        number=BUDGET_WARNING,
        type=F.TYPE_MESSAGE,
        type_name=".runstream.v1.BudgetWarning",
        label=F.LABEL_OPTIONAL,
        oneof_index=[o.name for o in run_event.oneof_decl].index("payload"),
    )
    kinds = next(e for e in proto.enum_type if e.name == "EventKind")
    kinds.value.add(name="EVENT_KIND_BUDGET_WARNING", number=BUDGET_WARNING)


def _budget_warning(seq: int) -> Message:
    run_event = _run_event_with_a_new_kind()
    message = run_event(run_id="r1", seq=seq)
    message.event_time.GetCurrentTime()
    warning = message.budget_warning  # type: ignore[attr-defined]
    warning.limit_usd = 100
    warning.spent_usd = 93.5
    warning.message = "Nearly out\x1b[2J of budget \u202eevil"  # a screen clear, a bidi override
    warning.severity = run_pb2.SEVERITY_HIGH
    warning.data.update({"model": "o3", "calls": 12, "by_step": {"research": 40}, "x": None})
    warning.error.message = "quota"
    warning.step_ids.extend(["research", "write", "review", "publish"])
    warning.paused = False  # unset in proto3: not shown
    return message


SAID = (
    "Budget warning — limit_usd: 100 · spent_usd: 93.5"
    " · message: Nearly out\\x1b[2J of budget \\u202eevil · severity: HIGH"
    " · data: {by_step: {…}, calls: 12, model: o3, +1 more} · error: {message: quota} · +1 more"
)


def test_the_terminal_view_says_a_kind_it_has_no_case_for_by_its_name_and_fields() -> None:
    """`runstream watch --plain` (and `runstream events`) printed nothing for it: the view
    skipped every kind without a case."""
    raw = _budget_warning(seq=5)
    event = event_from_pb(raw)  # type: ignore[arg-type]
    assert event.payload is None  # the SDK has no dataclass for it either
    view = RunView(run=run_from_pb(run_pb2.Run(run_id="r1", last_seq=4)))
    out = io.StringIO()
    plain = Console(file=out, width=300, color_system=None)
    PlainRenderer(plain, view).on_event(event, view.apply(event))
    (line,) = out.getvalue().splitlines()
    assert line.split(maxsplit=2)[1:] == ["#5", f"event     {SAID}"], line
    assert "\x1b" not in line and "\u202e" not in line
    # The live view's activity feed has the same line, cut to its column.
    live = Console(width=200, height=40, record=True, color_system=None)
    live.print(Dashboard(view))
    assert "Budget warning — limit_usd: 100 · spent_usd: 93.5 · message: Nearly out" in (
        live.export_text()
    )


def test_a_long_text_field_is_cut_and_many_fields_are_counted() -> None:
    raw = _budget_warning(seq=6)
    raw.budget_warning.message = "word " * 40  # type: ignore[attr-defined]
    view = RunView(run=run_from_pb(run_pb2.Run(run_id="r1", last_seq=5)))
    note = view.apply(event_from_pb(raw))  # type: ignore[arg-type]
    assert note is not None
    assert f"message: {('word ' * 16)[:79]}… · severity" in note.text
    assert note.text.endswith(" · +1 more")  # 7 fields set, 6 shown
