"""Tables for `runstream runs` (also live, with --watch), `get`, `steps`, `decisions` and
`events`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import runstream
from runstream._arguments import CONTROL

from .fmt import (
    counted,
    enum_name,
    estimate_text,
    eta_clock,
    format_clock,
    format_duration,
    format_metric,
    health_text,
    items_text,
    literal,
    local_time,
    metric_text,
    ordered_metrics,
    outcome_text,
    percent_text,
    printable,
    quoted,
    run_status_text,
    span,
    step_status_text,
    text_lines,
    viewers_text,
)
from .render import HEARTBEAT_SECONDS, LOST_AFTER, context_line
from .view import RunView

T = TypeVar("T")
DETAIL_WIDTH = 44

# Text columns that give way when the terminal is narrow: rich narrows wrappable columns
# first, and a long word (an id, a workflow name) is cut with an ellipsis instead.
_SHRINKABLE: dict[str, Any] = {"no_wrap": False, "overflow": "ellipsis"}


@dataclass(frozen=True)
class _Column(Generic[T]):
    """A table column, its cell for a row, and the terminal width it needs to be shown."""

    header: str
    cell: Callable[[T], RenderableType]
    options: dict[str, Any] = field(default_factory=dict)
    shown_from: int = 0


def _table(rows: Sequence[T], columns: Sequence[_Column[T]], width: int) -> Table:
    # Ids, statuses and times must never be cut (people copy them). On a narrow terminal the
    # optional columns go first; then the text columns, the only ones rich may wrap, give way.
    shown = [column for column in columns if width >= column.shown_from]
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in shown:
        table.add_column(column.header, **{"no_wrap": True, **column.options})
    for row in rows:
        table.add_row(*(literal(column.cell(row)) for column in shown))
    return table


def _run_progress(run: runstream.Run) -> str:
    progress = run.progress
    if progress.items is not None and not progress.total_steps:
        items = progress.items
        counts = f"{items.completed}/{items.total}" if items.total else f"{items.completed}"
        return f"{percent_text(progress.percent)}  {counts}"
    return f"{percent_text(progress.percent)}  {progress.completed_steps}/{progress.total_steps}"


# --- JSON for scripts ---------------------------------------------------------------------


def as_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data, with the contract's own field names (``run_id``) and its
    integral numbers as integers: a Struct holds only doubles, so a context's ``3`` came out
    ``3.0`` (the SDK gives it back as 3, and so do other languages' proto3 JSON, grpcurl's)."""
    data: dict[str, Any] = _integral(
        json_format.MessageToDict(message, preserving_proto_field_name=True)
    )
    return data


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():  # never inf or NaN
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


# What json.dumps(ensure_ascii=False) writes as it is and a terminal would execute or show in
# another order than written: DEL, the C1 controls (U+009B is a CSI in terminals that honour C1
# in UTF-8), the line separators and the bidi controls (runstream._arguments.CONTROL without
# the C0 range, which json.dumps escapes itself and whose newlines indent writes).
_RAW_IN_JSON = re.compile(CONTROL.pattern.replace("\x00-\x1f", ""))
assert _RAW_IN_JSON.pattern != CONTROL.pattern, "CONTROL no longer starts with the C0 range"


def json_text(value: object, *, indent: int | None = None) -> str:
    """``value`` as JSON with its text readable (``é``, ``✔``, ``日本``), but every character
    of :data:`_RAW_IN_JSON` as its escape (``\\u009b``, ``\\u202e``): valid JSON that
    parses to the same strings, and a producer's text cannot steer the terminal of someone
    reading ``--json``. Such a character can only stand inside a JSON string, so escaping
    it where it stands keeps the JSON valid."""
    dumped = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found[0]):04x}", dumped)


def print_json(value: object) -> None:
    """JSON on stdout, uncoloured and unwrapped whatever the terminal, for jq and friends."""
    sys.stdout.write(json_text(value, indent=2) + "\n")
    sys.stdout.flush()


def _run_duration(run: runstream.Run) -> str:
    return format_duration(span(run.start_time, run.end_time)) if run.start_time else "—"


HEALTH_SHOWN_FROM = 130
"""The width from which `runs` has a HEALTH column; below it, STATUS says what is wrong."""


def _status_and_health(run: runstream.Run) -> Text:
    """A run's status, and its health when something is wrong with a run not ended: what
    the HEALTH column says, for a terminal too narrow for it ("● RUNNING · STALLED")."""
    text = run_status_text(run.status)
    if not run.status.is_terminal and enum_name(run.health) not in (
        "HEALTHY",
        "UNSPECIFIED",
        "0",
        "None",
    ):
        text.append(" · ")
        text.append_text(health_text(run.health))
    return text


def runs_table(
    runs: Sequence[runstream.Run], width: int = 200, *, now: datetime | None = None
) -> Table:
    """One row per run, most recent first, as ListRuns returns them. On a narrow terminal
    the columns that say least go first: the viewers, the name, the create time, the health
    (then said in STATUS), the ETA, the duration, and the workflow last. ETAs count down to
    `now` (while the server is out of reach, when it was last heard: they stand still)."""
    health_shown = width >= HEALTH_SHOWN_FROM
    columns: list[_Column[runstream.Run]] = [
        _Column(
            "RUN ID",
            lambda run: run.run_id,
            {"style": "bright_white", "min_width": _widest(run.run_id for run in runs)},
        ),
        _Column("WORKFLOW", lambda run: run.workflow, _SHRINKABLE, shown_from=80),
        _Column(
            "NAME",
            lambda run: run.display_name if run.display_name != run.workflow else "",
            {**_SHRINKABLE, "max_width": 40},
            shown_from=150,
        ),
        _Column(
            "STATUS",
            lambda run: run_status_text(run.status) if health_shown else _status_and_health(run),
            {"min_width": 13},
        ),
        _Column("PROGRESS", _run_progress, {"justify": "right", "min_width": 11}),
        _Column(
            "HEALTH",
            lambda run: health_text(run.health),
            {"min_width": 8},
            shown_from=HEALTH_SHOWN_FROM,
        ),
        _Column(
            "ETA",
            lambda run: "" if run.status.is_terminal else eta_clock(run.estimate, now),
            {"justify": "right", "min_width": 5},
            shown_from=105,
        ),
        _Column(
            "👁",
            lambda run: str(run.viewer_count) if run.viewer_count else "",
            {"justify": "right", "min_width": 2},
            shown_from=175,
        ),
        _Column(
            "CREATED",
            lambda run: local_time(run.create_time),
            {"style": "grey70", "min_width": 19},
            shown_from=140,
        ),
        _Column("DURATION", _run_duration, {"justify": "right", "min_width": 8}, shown_from=95),
    ]
    return _table(runs, columns, width)


def _step_duration(step: runstream.Step) -> str:
    duration = step.duration if step.end_time else span(step.start_time, step.end_time)
    return format_duration(duration) if duration is not None else "—"


def steps_table(steps: Sequence[runstream.Step], width: int = 200) -> Table:
    """One row per step, in plan order."""
    numbers = {id(step): str(index) for index, step in enumerate(steps, start=1)}
    columns: list[_Column[runstream.Step]] = [
        _Column(
            "#",
            lambda step: numbers[id(step)],
            {"justify": "right", "style": "grey50", "min_width": 2},
        ),
        _Column(
            "STEP",
            lambda step: step.step_id,
            {"min_width": _widest(step.step_id for step in steps)},
        ),
        _Column("NAME", _step_name, _SHRINKABLE),
        _Column(
            "AGENT",
            lambda step: step.agent,
            {**_SHRINKABLE, "style": "grey70"},
            shown_from=140,
        ),
        _Column("STATUS", lambda step: step_status_text(step.status), {"min_width": 13}),
        _Column(
            "%",
            lambda step: (
                percent_text(step.percent)
                if enum_name(step.status) not in ("PENDING", "SKIPPED")
                else ""
            ),
            {"justify": "right", "min_width": 4},
        ),
        _Column(
            "STARTED",
            lambda step: local_time(step.start_time),
            {"style": "grey70", "min_width": 19},
            shown_from=110,
        ),
        _Column("DURATION", _step_duration, {"justify": "right", "min_width": 8}),
        _Column("DETAIL", _step_detail, {"overflow": "ellipsis"}, shown_from=170),
    ]
    return _table(steps, columns, width)


def _step_name(step: runstream.Step) -> Text:
    """The step's name, and what it does (its description) under it."""
    text = Text(printable(step.name))
    if step.description:
        text.append("\n")
        text.append_text(text_lines(step.description, style="grey62"))
    return text


def _widest(values: Iterable[str]) -> int:
    return max((len(value) for value in values), default=0)


def _step_detail(step: runstream.Step) -> Text:
    status = enum_name(step.status)
    if status == "FAILED" and step.error is not None:
        return Text(printable(step.error.message), style="red")
    if status == "SKIPPED":
        return Text(printable(step.skip_reason), style="grey50")
    # A step done says what it came to; its last progress text ("generating — is writing")
    # is stale by then.
    parts = (
        [step.summary]
        if status == "SUCCEEDED"
        else [part for part in (step.sub_step, step.detail) if part]
    )
    details = step.sub_step_details
    if details is not None and status == "RUNNING":
        parts += [part for part in (details.operation.replace("_", " "), details.model) if part]
        if details.estimated_completion_time is not None:
            parts.append(f"done ~{local_time(details.estimated_completion_time, with_date=False)}")
    text = Text(printable(" — ".join(parts)), style="grey62")
    text.truncate(DETAIL_WIDTH, overflow="ellipsis")
    if step.attempts > 1:
        text.append(f" (attempt {step.attempts})", style="yellow")
    if step.artifacts:
        count = len(step.artifacts)
        text.append(f" [{counted(count, 'artifact')}]", style="cyan")
    return text


def run_details(
    run: runstream.Run,
    width: int = 200,
    open_decisions: Sequence[runstream.Decision] = (),
) -> RenderableType:
    """Everything GetRun says about a run (with why its health is not HEALTHY), its open
    decisions, then its steps."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="grey62", no_wrap=True)
    grid.add_column()

    def row(label: str, value: RenderableType | str) -> None:
        grid.add_row(label, literal(value))  # a str on one line; free text comes as Text

    row("Run ID", Text(printable(run.run_id), style="bold bright_white"))
    row("Workflow", run.workflow)
    if run.display_name and run.display_name != run.workflow:
        row("Name", run.display_name)
    if run.labels:
        row("Labels", ", ".join(f"{key}={value}" for key, value in sorted(run.labels.items())))
    row("Status", run_status_text(run.status))
    health = health_text(run.health)
    if run.health_reason:
        health.append("  ")
        health.append_text(text_lines(run.health_reason, style="grey62"))
    row("Health", health)
    if run.status == runstream.RunStatus.PENDING:
        row("Estimate", Text("none until the run starts", style="grey50"))
    elif not run.status.is_terminal:
        row("Estimate", estimate_text(run.estimate, with_end=True))
    row("Viewers", viewers_text(run.viewer_count))
    progress = run.progress
    counted = [f"{progress.completed_steps}/{progress.total_steps} steps"]
    if progress.items is not None:
        counted = [items_text(progress.items)] if not progress.total_steps else counted
        if progress.total_steps:
            counted.append(items_text(progress.items))
        if progress.items.by_stage:
            counted.append(
                ", ".join(f"{stage} {count}" for stage, count in progress.items.by_stage.items())
            )
    row("Progress", f"{percent_text(progress.percent)}  ({'; '.join(counted)})")
    current = next((s for s in run.steps if s.step_id == run.current_step_id), None)
    if current is not None:
        line = Text(printable(current.name), style="bold")
        if current.name != current.step_id:
            line.append(f" ({printable(current.step_id)})", style="grey62")
        if current.description:
            line.append("\n")
            line.append_text(text_lines(current.description, style="grey62"))
        row("Current step", line)
    elif run.current_step_id:
        row("Current step", run.current_step_id)
    if run.active_agents:
        row(
            "Active agents",
            ", ".join(agent.name or agent.agent_id for agent in run.active_agents),
        )
    row("Created", local_time(run.create_time))
    row("Started", local_time(run.start_time))
    row("Updated", local_time(run.update_time))
    row("Ended", local_time(run.end_time))
    if run.start_time is not None:
        row("Duration", format_duration(span(run.start_time, run.end_time)))
    events = str(run.last_seq)
    if run.purged_seq:
        events += f" (1..{run.purged_seq} purged by retention)"
    row("Events", events)
    if run.targets:
        row(
            "Targets",
            ", ".join(
                f"{target.title or target.metric}: "
                f"{format_metric(target.metric, run.metrics.get(target.metric, 0))}"
                f"/{format_metric(target.metric, target.value)}"
                + (" ✔" if run.metrics.get(target.metric, 0) >= target.value else "")
                for target in run.targets
            ),
        )
    summary = run.artifacts_summary
    if summary.total:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.by_kind.items()))
        row("Artifacts", f"{summary.total}" + (f" ({kinds})" if kinds else ""))
    if run.metrics:
        row(
            "Metrics",
            ", ".join(
                metric_text(
                    name, value, run.metric_units.get(name, ""), run.metric_changes.get(name)
                )
                for name, value in ordered_metrics(run.metrics)
            ),
        )
    if run.result_summary:
        row("Result", text_lines(run.result_summary))
    if run.error is not None:
        code = f"[{printable(run.error.code)}] " if run.error.code else ""
        row("Error", text_lines(f"{code}{run.error.message}", style="bold red"))
    if run.cancel_reason:
        row("Cancelled", text_lines(run.cancel_reason))
    parts: list[RenderableType] = [
        Panel(grid, title="[bold]Run[/]", title_align="left", border_style="grey42", expand=False)
    ]
    for decision in open_decisions:
        parts.append(_open_decision_panel(decision))
    if run.steps:
        parts.append(steps_table(run.steps, width))
    return Group(*parts)


def _open_decision_panel(decision: runstream.Decision) -> Panel:
    lines = Table.grid(padding=(0, 1))
    lines.add_column(no_wrap=True, style="bold cyan")
    lines.add_column()
    for number, option in enumerate(decision.options, start=1):
        label = Text(printable(option.value), style="bold")
        if option.label and option.label != option.value:
            label.append(f"  {printable(option.label)}")
        if option.value == decision.default_option:
            label.append("  (default)", style="yellow")
        lines.add_row(f"{number})", label)
    footer = Text()
    if decision.deadline is not None:
        left = (decision.deadline - datetime.now(UTC)).total_seconds()
        # What the deadline does: a fallback default is none of the options listed above.
        then = (
            f", then takes {printable(decision.default_option)}" if decision.default_option else ""
        )
        footer.append(f"closes in {format_duration(max(0.0, left))}{then}   ", style="yellow")
    footer.append(
        printable(f"runstream answer {decision.run_id} {decision.decision_id} CHOICE")
        + (" (or --skip)" if decision.can_skip else ""),
        style="grey62",
    )
    parts: list[RenderableType] = [text_lines(decision.prompt, style="bold")]
    if decision.context:
        parts.append(context_line(decision.context))
    return Panel(
        Group(*parts, lines, footer),
        # A Text, not markup: the id is the producer's.
        title=Text(f"⚑ Decision needed · {printable(decision.decision_id)}", style="bold yellow"),
        title_align="left",
        border_style="yellow",
        expand=False,
    )


def decisions_table(decisions: Sequence[runstream.Decision], width: int = 200) -> Table:
    """One row per decision, in the order they were asked."""

    def options(decision: runstream.Decision) -> Text:
        text = Text()
        for index, option in enumerate(decision.options):
            if index:
                text.append(" | ", style="grey50")
            style = "bold" if option.value == decision.choice else ""
            text.append(printable(option.value), style=style)
            if option.value == decision.default_option:
                text.append("*", style="yellow")
        if decision.default_option not in {"", *(option.value for option in decision.options)}:
            # A fallback no one can choose: what the deadline takes, said beside the choices.
            text.append(f" · default {printable(decision.default_option)}", style="yellow")
        return text

    def state(decision: runstream.Decision) -> Text:
        if decision.is_open:
            return Text("◐ OPEN", style="bold yellow")
        return outcome_text(decision.outcome, decision.choice)

    columns: list[_Column[runstream.Decision]] = [
        _Column(
            "DECISION",
            lambda d: d.decision_id,
            {"style": "bright_white", "min_width": _widest(d.decision_id for d in decisions)},
        ),
        _Column("STATE", state, {"min_width": 10}),
        _Column("PROMPT", lambda d: text_lines(d.prompt), {**_SHRINKABLE, "max_width": 60}),
        _Column("OPTIONS", options, _SHRINKABLE, shown_from=100),
        _Column("BY", lambda d: d.answered_by, {"style": "grey70"}),
        _Column("ASKED", lambda d: local_time(d.create_time), {"style": "grey70"}, shown_from=130),
        _Column(
            "CLOSED/DEADLINE",
            lambda d: local_time(d.resolve_time if not d.is_open else d.deadline),
            {"style": "grey70"},
            shown_from=150,
        ),
    ]
    return _table(decisions, columns, width)


async def show_decisions(
    client: runstream.Client,
    console: Console,
    run_id: str,
    *,
    only_open: bool,
    as_json: bool = False,
) -> None:
    """Prints a run's decisions."""
    state = runstream.DecisionState.OPEN if only_open else None
    decisions = await client.list_decisions(run_id, state=state)
    if as_json:
        print_json([as_dict(decision.raw) for decision in decisions])
        return
    if not decisions:
        console.print(
            Text(f"Run {run_id} has no {'open ' if only_open else ''}decisions", style="grey62")
        )
        return
    console.print(decisions_table(decisions, console.width))


_STEP_CONTEXT = (
    runstream.EventKind.RUN_CREATED,
    runstream.EventKind.STEP_STARTED,
    runstream.EventKind.STEP_PROGRESS,
    runstream.EventKind.STEP_COMPLETED,
    runstream.EventKind.STEP_FAILED,
    runstream.EventKind.STEP_SKIPPED,
)
"""The events a listing's lines about steps depend on: the plan and each step's course."""


class _Peekable:
    """A listing read in step with another one, by seq."""

    def __init__(self, events: AsyncIterator[runstream.Event]) -> None:
        self._events = events
        self._next: runstream.Event | None = None
        self._done = False

    async def until(self, seq: int) -> list[runstream.Event]:
        """The events before `seq` not yet taken; the one at `seq` itself is skipped, as the
        other listing has it."""
        taken: list[runstream.Event] = []
        while not self._done:
            if self._next is None:
                try:
                    self._next = await anext(self._events)
                except StopAsyncIteration:
                    self._done = True
                    break
            if self._next.seq > seq:
                break
            if self._next.seq < seq:
                taken.append(self._next)
            self._next = None
        return taken


async def show_events(
    client: runstream.Client,
    console: Console,
    run_id: str,
    *,
    kinds: Sequence[runstream.EventKind] | None,
    limit: int | None,
    as_json: bool = False,
    newest: bool = False,
    after: int = 0,
    before: int | None = None,
) -> None:
    """Prints a run's stored events (ListEvents), one line each, as `watch --plain` does;
    with `newest`, the newest first (the last `limit` of a long log, read from its end);
    only those between seqs `after` and `before` (both exclusive)."""
    from .render import PlainRenderer

    # No page fetches more than the listing shows: the newest 3 are one small call.
    listing = client.list_events(
        run_id,
        kinds=kinds,
        page_size=min(limit or 500, 500),
        newest_first=newest,
        after_seq=after,
        before_seq=before,
    )
    if as_json:
        found: list[dict[str, Any]] = []
        async for event in listing:
            found.append(as_dict(event.raw))
            if limit is not None and len(found) >= limit:
                break
        print_json(found)
        return

    view = RunView(run=await client.get_run(run_id), seen_after=None if newest else after)
    printer = PlainRenderer(console, view)
    # A window or a kinds filter leaves out the plan (RunCreated, seq 1) and step events the
    # lines need: steps read by their ids, without durations, counted within the window
    # ("1/2" for the second of two). Those are read as well, from seq 1, and folded unshown.
    partial = after > 0 or bool(kinds) or newest
    context = (
        _Peekable(aiter(client.list_events(run_id, kinds=_STEP_CONTEXT, before_seq=before)))
        if partial
        else None
    )
    newest_events: list[runstream.Event] = []
    shown = 0
    async for event in listing:
        if newest:
            newest_events.append(event)
        else:
            if context is not None:
                for earlier in await context.until(event.seq):
                    view.apply(earlier)
            printer.on_event(event, view.apply(event))
        shown += 1
        if limit is not None and shown >= limit:
            break
    # Folded in seq order, as a text stream's deltas add up, then printed newest first.
    notes: dict[int, Any] = {}
    for event in reversed(newest_events):
        if context is not None:
            for earlier in await context.until(event.seq):
                view.apply(earlier)
        notes[event.seq] = view.apply(event)
    for event in newest_events:
        printer.on_event(event, notes[event.seq])
    # A message whose last delta lies beyond the listing is printed once, as far as listed
    # (it was left out: a window of deltas printed nothing at all).
    for stream in view.texts.values():
        if not stream.final:
            printer.on_partial_text(stream)
    if not shown:
        console.print(Text(f"Run {run_id} has no such events", style="grey62"))


async def watch_runs(
    client: runstream.Client,
    console: Console,
    *,
    filter: str,
    ended_limit: int,
    live: bool,
    as_json: bool = False,
) -> None:
    """Follows every run matching `filter` (of those ended, the newest `ended_limit` at
    first): a live table on a terminal, else a line per change (with `as_json`, one JSON
    object per line). Runs until interrupted."""
    runs: dict[str, runstream.Run] = {}

    def watching() -> AsyncGenerator[runstream.RunsUpdate, None]:
        return client.watch_runs(filter, initial_ended_limit=ended_limit)

    if as_json:
        async for update in watching():
            for run in update.runs:
                sys.stdout.write(json_text(as_dict(run.raw)) + "\n")
            sys.stdout.flush()
        return
    if not live:
        async for update in watching():
            if update.initial:
                runs = {run.run_id: run for run in update.runs}
                console.print(
                    Text(
                        counted(len(runs), "run")
                        + (f" match {quoted(filter)}" if filter else "")
                        + (
                            f" (of those ended, the newest {ended_limit}: --limit shows more)"
                            if update.ended_runs_left_out
                            else ""
                        )
                        + "; following changes",
                        style="grey62",
                    )
                )
            for run in update.runs:
                console.print(_run_line(run), soft_wrap=True)
        return

    connected = False  # until the server's first answer the table knows of no runs at all
    left_out = False  # older ended runs than those shown exist
    # The stream reconnects on its own and says nothing while it does, so the table asks the
    # server about its filter every heartbeat: "live" only while one of the two answers.
    heard = time.monotonic()
    heard_at = datetime.now(UTC)  # the same moment by the wall clock, for the ETAs

    def state(shown: int, more_ended: bool) -> tuple[str, str]:
        silent = time.monotonic() - heard
        if not connected:
            return "  · connecting…", "grey50"
        if silent > LOST_AFTER:
            return f"  · {shown} · connection lost {format_clock(silent)}, reconnecting…", (
                "bold red"
            )
        older = f" (the newest {ended_limit} ended; --limit shows more)" if more_ended else ""
        return f"  · {shown}{older} · live", "grey50"

    def table() -> RenderableType:
        by_time = sorted(
            runs.values(),
            key=lambda r: r.create_time or datetime.min.replace(tzinfo=UTC),
            reverse=True,
        )
        # Runs not ended first, so no ended run pushes one below the fold; of those that ended,
        # the newest `ended_limit`, also as runs end while the table is up.
        ordered = [r for r in by_time if not r.status.is_terminal]
        ended = [r for r in by_time if r.status.is_terminal]
        ordered += ended[:ended_limit]
        title = Text.assemble(
            ("Runs", "bold"), (f"  {printable(filter)}" if filter else "  all", "grey62")
        )
        title.append(*state(len(ordered), left_out or len(ended) > ended_limit))
        if not connected:
            return Group(title, Text("Waiting for the server", style="grey62"))
        if not ordered:
            return Group(title, Text("No runs yet", style="grey62"))
        lost = time.monotonic() - heard > LOST_AFTER  # the ETAs stand still until it is back
        return Group(title, runs_table(ordered, console.width, now=heard_at if lost else None))

    async def probe() -> None:
        nonlocal heard, heard_at
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(runstream.RunstreamError, TimeoutError):
                async with asyncio.timeout(LOST_AFTER):
                    await client.list_runs_page(filter, page_size=1)
                heard, heard_at = time.monotonic(), datetime.now(UTC)

    with Live(table(), console=console, auto_refresh=False) as view:
        updates = watching()
        ticker = asyncio.create_task(_tick(view, table))
        prober = asyncio.create_task(probe())
        try:
            async for update in updates:
                connected = True
                heard, heard_at = time.monotonic(), datetime.now(UTC)
                if update.initial:
                    runs = {}
                    left_out = update.ended_runs_left_out
                for run in update.runs:
                    runs[run.run_id] = run
                view.update(table(), refresh=True)
        finally:
            ticker.cancel()
            prober.cancel()
            await updates.aclose()


async def _tick(view: Live, table: Callable[[], RenderableType]) -> None:
    # ETAs and durations move while nothing changes; redraw once a second.
    while True:
        await asyncio.sleep(1)
        view.update(table(), refresh=True)


def _run_line(run: runstream.Run) -> Text:
    parts: list[Any] = [
        (local_time(run.update_time, with_date=False), "grey50"),
        " ",
        (printable(run.run_id), "bright_white"),
        " ",
        (printable(run.workflow), "grey70"),
        " ",
        run_status_text(run.status),
        f" {_run_progress(run)}",
        "  health ",
        health_text(run.health),
    ]
    if not run.status.is_terminal:
        parts += ["  ETA ", eta_clock(run.estimate)]
    if run.viewer_count:
        parts.append(f"  👁 {run.viewer_count}")
    return Text.assemble(*parts)


async def show_runs(
    client: runstream.Client,
    console: Console,
    *,
    filter: str,
    limit: int,
    as_json: bool = False,
) -> None:
    """Prints up to `limit` runs matching `filter`."""
    runs: list[runstream.Run] = []
    async for run in client.list_runs(filter=filter, page_size=min(max(limit, 1), 1000)):
        runs.append(run)
        if len(runs) >= limit:
            break
    if as_json:
        print_json([as_dict(run.raw) for run in runs])
        return
    if not runs:
        console.print(
            Text("No runs" + (f" match {quoted(filter)}" if filter else " yet"), style="grey62")
        )
        return
    console.print(runs_table(runs, console.width))


async def show_run(
    client: runstream.Client, console: Console, run_id: str, *, as_json: bool = False
) -> None:
    """Prints one run's snapshot, its open decisions and its steps."""
    details = await client.get_run_details(run_id)
    if as_json:
        print_json(
            {
                "run": as_dict(details.run.raw),
                "recent_activity": [as_dict(event.raw) for event in details.recent_activity],
                "open_decisions": [as_dict(decision.raw) for decision in details.open_decisions],
            }
        )
        return
    console.print(run_details(details.run, console.width, details.open_decisions))


async def show_steps(
    client: runstream.Client, console: Console, run_id: str, *, as_json: bool = False
) -> None:
    """Prints one run's steps."""
    steps = await client.list_steps(run_id)
    if as_json:
        print_json([as_dict(step.raw) for step in steps])
        return
    if not steps:
        console.print(Text(f"Run {run_id} has no steps", style="grey62"))
        return
    console.print(steps_table(steps, console.width))
