"""An event of a kind the views have no case for shows, by its name and fields, with no edit.

A kind added to the protos used to be dropped by the terminal view (`runstream watch`,
`runstream events`) and the dashboard's feed until each had a case for it. Each now says such
an event generically: the kind's name in words, then the fields its producer set, escaped as
every producer's text is (control characters and bidi marks in a terminal, HTML in the page).

The terminal test makes the kind it needs: protos one kind newer than this client's
(``budget_warning``, number 99, in a private descriptor pool). No server is involved there:
a server refuses a kind its own protos lack, as it should. The browser test runs the page
built from its sources with one kind's case taken out of the feed's ``describe()``, against a
real server, through real Envoy.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import runstream
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from rich.console import Console
from runstream._convert import event_from_pb, run_from_pb
from runstream.cli.render import Dashboard, PlainRenderer
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, run_pb2
from runstream_server.app import RunstreamServer

from .conftest import Web
from .web_support import WEB, browser, run_node

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


# --- the dashboard ----------------------------------------------------------------------------


async def _page_without_a_case_for(case: str, tmp_path: Path) -> Path:
    """The dashboard's app.js built from its sources with describe()'s case for `case` taken
    out, as a kind added to the protos arrives before anyone writes it one."""
    web = tmp_path / "web"
    shutil.copytree(WEB / "src", web / "src")
    (web / "scripts").mkdir()
    shutil.copy(WEB / "scripts" / "build.mjs", web / "scripts" / "build.mjs")
    (web / "node_modules").symlink_to(WEB / "node_modules")
    model = web / "src" / "dashboard" / "model.ts"
    source = model.read_text()
    feed_lines = source.index("\nexport function describe(")
    taken_out = source[feed_lines:].replace(f'case "{case}":', f'case "{case} (taken out)":', 1)
    assert taken_out != source[feed_lines:], f'describe() has no case "{case}"'
    model.write_text(source[:feed_lines] + taken_out)
    await run_node(str(web / "scripts" / "build.mjs"), "--outdir", str(tmp_path / "static"))
    return tmp_path / "static" / "app.js"


FEED_ITEM = "document.querySelector('.feed [data-kind=\"ALERT\"]')"
MARKUP = '<img src="x" onerror="window.pwned = 1">'


async def test_the_dashboard_feed_shows_a_kind_it_has_no_case_for_by_its_name_and_fields(
    server: RunstreamServer, web: Web, tmp_path: Path
) -> None:
    """The feed showed only the kinds listed in FEED_KINDS with a case in describe(): a new
    kind was missing from it until both were written. Its fields are text, never markup."""
    app = await _page_without_a_case_for("alert", tmp_path)
    async with runstream.connect(server.target) as client, browser() as page:
        await page.serve("**/app.js", app)
        run = await client.start_run("budget", steps=["research"])
        await run.alert(
            f"Nearly out of budget {MARKUP}",
            severity=runstream.Severity.MEDIUM,
            data={"spent_usd": 93.5, "note": "<b>bold</b>"},
            action=runstream.AlertActionType.PAUSE_RUN,
        )
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{FEED_ITEM} !== null")
        title = await page.eval(f"{FEED_ITEM}.querySelector('.feed-title').textContent")
        detail = await page.eval(f"{FEED_ITEM}.querySelector('.feed-detail').textContent")
        assert title == "Alert"
        assert detail == (
            f"severity: MEDIUM · message: Nearly out of budget {MARKUP}"
            " · data: {note: <b>bold</b>, spent_usd: 93.5} · action: {type: PAUSE_RUN}"
        )
        assert await page.eval(f"{FEED_ITEM}.querySelectorAll('img, b').length") == 0
        assert await page.eval("window.pwned === undefined")
        await page.screenshot("feed-kind-without-a-case.png", full_page=False)
        await run.complete()
        await run.close()
        assert await page.errors() == []
