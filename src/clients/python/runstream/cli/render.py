"""Rendering a run as it happens: a rich live dashboard on a terminal, plain lines elsewhere.

:func:`follow_run` is the loop shared by ``runstream watch`` and ``runstream demo``: it reads
the run's events through the SDK's ``watch`` (which resumes after a disconnect on its own),
folds them into a :class:`~runstream.cli.view.RunView`, and keeps the server-derived header
(status, progress, health, estimate, active agents) fresh with throttled ``get_run`` calls.

The live view is redrawn from the event loop by a ticker rather than by rich's refresh
thread, so the view is never read while an event is being folded into it.

When the run asks a human something, the live view shows the open prompt with numbered
options; on an interactive terminal :class:`PromptKeys` reads single key presses (1-9 to
choose, s to skip) and submits the answer with ``SubmitDecision``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

import runstream

from .fmt import (
    TERMINAL_RUN_STATUSES,
    counted,
    enum_name,
    estimate_text,
    eta_clock,
    feed_time,
    format_change,
    format_clock,
    format_duration,
    format_metric_unit,
    health_text,
    items_text,
    literal,
    live_estimate,
    local_time,
    metric_label,
    ordered_metrics,
    percent_text,
    printable,
    run_status_text,
    span,
    text_lines,
)
from .view import FEED_SIZE, RunView
from .view_items import Note, OpenPrompt, StepRow, TextStream

TEXT_LINES = 6
WIDE_LAYOUT = 140
NARROW_LAYOUT = 110
# Below this width or height the live view switches to its compact layout (80x24 fits).
COMPACT_WIDTH = 100
COMPACT_HEIGHT = 32
# The live view asks the server for a heartbeat this often; silent for 2.5 of them, the view
# says the connection is lost (and its ETA stands still until it is back).
HEARTBEAT_SECONDS = 2.0
LOST_AFTER = 2.5 * HEARTBEAT_SECONDS
MAX_TILES = 8
REFRESH_PER_SECOND = 10
CONTEXT_SHOWN = 6
"""The keys of a decision's context its prompt shows (sorted, as the SDK gives them)."""

# --- the dashboard -----------------------------------------------------------------------


def context_line(context: dict[str, Any]) -> Text:
    """ "context: file_count 3 · sheet_id abc123 · +2 more": a decision's first
    CONTEXT_SHOWN keys, in the SDK's sorted order, under its prompt."""
    shown = list(context.items())[:CONTEXT_SHOWN]
    line = Text("context: ", style="grey50")
    line.append(printable(" · ".join(f"{key} {value}" for key, value in shown)), style="grey70")
    if len(context) > len(shown):
        line.append(f" · +{len(context) - len(shown)} more", style="grey50")
    return line


class Dashboard:
    """The live view of one run, rebuilt from its RunView on every refresh."""

    def __init__(
        self, view: RunView, *, title: str = "Runstream", interactive: bool = False
    ) -> None:
        self.view = view
        self.title = title
        self.interactive = interactive

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = datetime.now(UTC)
        height = options.height or console.height
        if options.max_width < COMPACT_WIDTH or height < COMPACT_HEIGHT:
            yield from self._compact(now, options.max_width, height)
            return
        # Below this width the agent column would shrink to a few letters; the running
        # agents are listed in their own panel anyway, so drop the column instead.
        show_agents = options.max_width >= WIDE_LAYOUT
        body = Table.grid(expand=True, padding=(0, 1))
        body.add_column(ratio=1)
        body.add_column(ratio=1)
        bar_width = 10 if options.max_width >= NARROW_LAYOUT else 5
        body.add_row(
            self._steps(now, show_agents, bar_width), Group(self._feed(), TailText(self.view))
        )
        footer = Table.grid(expand=True, padding=(0, 1))
        footer.add_column(ratio=2)
        footer.add_column(ratio=3)
        footer.add_row(self._agents(), self._tiles())
        prompt = self.view.current_prompt
        if prompt is not None:
            yield Group(self._header(now), self._prompt(prompt, now), body, footer)
        else:
            yield Group(self._header(now), body, footer)

    def _header(self, now: datetime) -> Panel:
        run = self.view.run
        title_line = Text.assemble(
            (printable(run.display_name or run.workflow), "bold"),
            ("  ", ""),
            (printable(run.workflow), "grey62"),
            ("  ·  run ", "grey50"),
            (printable(run.run_id), "bold bright_white"),
        )
        elapsed = span(run.start_time, run.end_time, now)
        facts = Text.assemble(
            run_status_text(run.status),
            ("   health ", "grey50"),
            health_text(run.health),
            ("   elapsed ", "grey50"),
            (format_clock(elapsed), "bold"),
        )
        facts.append_text(self._eta(now, "   ETA "))
        if run.viewer_count:
            facts.append(f"   👁 {run.viewer_count}", "bright_blue")
        facts.append(f"   events {max(run.last_seq, self.view.last_seq)}", "grey50")
        lost = self._lost()
        if lost is not None:
            facts.append_text(lost)
        lines: list[RenderableType] = [title_line, facts]
        if run.health_reason:  # why it is not HEALTHY, as the server said it
            why = Text.assemble(("why ", "grey50"), (printable(run.health_reason), "grey70"))
            lines.append(why)

        percent = run.progress.percent
        if enum_name(run.status) == "SUCCEEDED":
            percent = 100.0
        status = enum_name(run.status)
        bar_style = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "magenta"}.get(
            status, "cyan"
        )
        bar = Table.grid(padding=(0, 1))
        bar.add_column(ratio=1)
        bar.add_column(no_wrap=True)
        bar.add_row(
            ProgressBar(
                total=100,
                completed=percent,
                complete_style=bar_style,
                finished_style=bar_style,
                pulse=False,
            ),
            Text.assemble((f"{percent_text(percent):>4}", "bold"), (self._counted(), "grey70")),
        )
        return Panel(
            Group(*lines, bar),
            title=Text(self.title, style="bold cyan"),
            title_align="left",
            border_style=bar_style,
            padding=(0, 1),
        )

    def _counted(self) -> str:
        """ "  3/17 steps", or "  15 of 25 companies" for a run counted in items."""
        items = self.view.run.progress.items
        if items is not None and not self.view.total_steps:
            return f"  {items_text(items)}"
        return f"  {self.view.completed_steps}/{self.view.total_steps} steps"

    def _lost(self) -> Text | None:
        """The connection-lost indicator, once the server has been silent for 2.5 heartbeats."""
        if enum_name(self.view.run.status) in TERMINAL_RUN_STATUSES:
            return None
        silent = self.view.silent_for()
        if silent <= LOST_AFTER:
            return None
        return Text(f"   ⚠ connection lost {format_clock(silent)}, reconnecting…", "bold red")

    def _eta(self, now: datetime, label: str) -> Text:
        """The ETA, its range counted down with it, "hold" while the run waits, and frozen
        while the connection is lost."""
        run = self.view.run
        text = Text()
        if enum_name(run.status) in TERMINAL_RUN_STATUSES:
            return text
        text.append(label, "grey50")
        if self.view.silent_for() > LOST_AFTER:
            # Where it stood when the loss was said, not 2.5 heartbeats before: it would
            # jump back up by those seconds as "connection lost" appears.
            now = self.view.last_heard_at + timedelta(seconds=LOST_AFTER)
        live = live_estimate(run.estimate, now)
        if live is None:
            text.append("unknown", "grey50")
            return text
        text.append(eta_clock(run.estimate, now), "bold")
        _, low, high = live
        if low is not None and high is not None and high > low:
            text.append(f" ({format_clock(low)}-{format_clock(high)})", "grey50")
        if run.estimate is not None and run.estimate.source == runstream.EstimateSource.PRODUCER:
            text.append(" producer's", "grey50")
        return text

    def _compact(self, now: datetime, width: int, height: int) -> RenderResult:
        """80x24 and up: status line, progress, the steps around the current one (with their
        status icons), one line per active text stream, the metrics on one line, the latest
        activity."""
        run = self.view.run
        status = enum_name(run.status)
        facts = Text.assemble(("  ", ""), run_status_text(run.status))
        facts.append("  ♥ ", "grey50")
        facts.append_text(health_text(run.health))
        facts.append_text(self._eta(now, "  ETA "))
        lost = self._lost()
        if lost is not None:
            facts.append_text(lost)
        # The name gives way to what the line is for (status, health, ETA, connection lost).
        name = Text(printable(run.display_name or run.workflow), style="bold")
        name.truncate(max(8, width - facts.cell_len), overflow="ellipsis")
        head = Text.assemble(name, facts)
        head.truncate(width, overflow="ellipsis")
        yield head
        percent = 100.0 if status == "SUCCEEDED" else run.progress.percent
        bar = Table.grid(padding=(0, 1), expand=True)
        bar.add_column(ratio=1)
        bar.add_column(no_wrap=True)
        bar.add_row(
            ProgressBar(total=100, completed=percent, pulse=False),
            Text.assemble((percent_text(percent), "bold"), (self._counted(), "grey70")),
        )
        yield bar
        prompt = self.view.current_prompt
        prompt_lines = 0
        if prompt is not None:
            panel = self._prompt(prompt, now)
            prompt_lines = 4 + len(prompt.options) + (1 if prompt.context else 0)
            yield panel
        streams = self.view.streams(limit=3)
        feed_lines = 3
        fixed = 2 + prompt_lines + len(streams) + 1 + feed_lines
        room = max(3, height - fixed - 1)
        rows = list(self.view.steps.values())
        yield from self._step_window(rows, room, now)
        for stream in streams:
            tail = printable(" ".join(stream.text.split()))[-max(10, width - 20) :]
            line = Text.assemble(
                ("✍ ", "bold"), (f"{printable(stream.agent)}: ", "bold"), (tail, "bright_white")
            )
            line.truncate(width, overflow="ellipsis")
            yield line
        yield self._metrics_line(width)
        for entry in list(self.view.feed)[-feed_lines:]:
            line = Text.assemble(
                (local_time(entry.time, with_date=False), "grey50"),
                " ",
                (entry.note.icon, entry.note.style),
                " ",
                (entry.note.text, entry.note.style),
            )
            line.truncate(width, overflow="ellipsis")
            yield line

    def _step_window(
        self, rows: list[StepRow], room: int, now: datetime
    ) -> Iterable[RenderableType]:
        """The steps that fit, around the first running (or next pending) one."""
        focus = next(
            (i for i, r in enumerate(rows) if r.status in ("RUNNING", "FAILED")),
            next((i for i, r in enumerate(rows) if r.status == "PENDING"), len(rows) - 1),
        )
        if len(rows) <= room:
            start, end = 0, len(rows)
        else:
            start = max(0, min(focus - room // 3, len(rows) - room + 1))
            end = min(len(rows), start + room - 1)
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(width=2, no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(width=5, no_wrap=True)
        table.add_column(width=4, justify="right", no_wrap=True)
        table.add_column(width=7, justify="right", no_wrap=True)
        if start > 0:
            table.add_row("", Text(f"✔ {start} earlier", style="grey50"), "", "", "")
        for row in rows[start:end]:
            icon, name, _doing, bar, pct, took = _step_cells(row, now, 5)
            label = name if isinstance(name, Text) else Text(str(name))
            if row.status == "RUNNING" and row.sub_step:
                label = label.copy()
                label.append(f"  {printable(row.sub_step)}", "italic cyan")
            table.add_row(icon, label, bar, pct, took)
        if end < len(rows):
            table.add_row("", Text(f"○ {len(rows) - end} more", style="grey50"), "", "", "")
        if not rows:
            table.add_row("", Text("no steps planned", style="grey50"), "", "", "")
        yield table

    def _metrics_line(self, width: int) -> Text:
        view = self.view
        line = Text()
        for name, value in ordered_metrics(view.metrics)[:MAX_TILES]:
            if line:
                line.append(" · ", "grey50")
            line.append(f"{metric_label(name)} ", "grey62")
            line.append(format_metric_unit(name, value, view.units.get(name, "")), "bold")
            if name in view.changes:
                line.append(
                    f" {format_change(view.changes[name], view.units.get(name, ''), name)}", "green"
                )
        if not line:
            line.append("no metrics yet", "grey50")
        line.truncate(width, overflow="ellipsis")
        return line

    def _prompt(self, prompt: OpenPrompt, now: datetime) -> Panel:
        lines: list[RenderableType] = [text_lines(prompt.prompt, style="bold")]
        if prompt.context:
            lines.append(context_line(prompt.context))
        options = Table.grid(padding=(0, 1))
        options.add_column(no_wrap=True)
        options.add_column(ratio=1)
        for number, option in enumerate(prompt.options, start=1):
            label = Text(printable(option.label or option.value), style="bold bright_white")
            if option.value == prompt.default_option:
                label.append("  (default)", style="yellow")
            if option.description:
                label.append("  ")
                label.append_text(text_lines(option.description, style="grey62"))
            key = f"[{number}]" if number <= 9 else "   "
            options.add_row(Text(key, style="bold cyan"), label)
        if prompt.can_skip:
            options.add_row(Text("[s]", style="bold cyan"), Text("skip", style="grey70"))
        lines.append(options)
        status = Text()
        if prompt.deadline is not None:
            left = max(0.0, (prompt.deadline - now).total_seconds())
            what = "default" if prompt.default_option else "closes"
            if prompt.default_option not in {"", *(o.value for o in prompt.options)}:
                what = f"default {printable(prompt.default_option)}"  # offered to nobody
            status.append(f"{what} in {format_duration(left)}   ", style="yellow")
        if self.interactive:
            keys = f"1-{min(len(prompt.options), 9)}" if len(prompt.options) > 1 else "1"
            status.append(f"press {keys} to answer", style="bold cyan")
            if prompt.can_skip:
                status.append(", s to skip", style="bold cyan")
        else:
            status.append(
                f"answer: runstream answer {self.view.run.run_id} {prompt.decision_id} CHOICE",
                style="grey62",
            )
        more = len(self.view.prompts) - 1
        if more > 0:
            status.append(f"   (+{more} more waiting)", style="grey62")
        lines.append(status)
        if self.view.answer_feedback is not None:
            text, style = self.view.answer_feedback
            lines.append(Text(printable(text), style=style))
        return Panel(
            Group(*lines),
            title=Text(f"⚑ Decision needed · {printable(prompt.decision_id)}", style="bold yellow"),
            title_align="left",
            border_style="yellow",
            padding=(0, 1),
        )

    def _steps(self, now: datetime, show_agents: bool, bar_width: int) -> Panel:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=2, no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", min_width=12, ratio=2)
        if show_agents:
            table.add_column(ratio=1, no_wrap=True, overflow="ellipsis", style="grey58")
        table.add_column(width=bar_width, no_wrap=True)
        table.add_column(width=4, justify="right", no_wrap=True)
        table.add_column(width=7, justify="right", no_wrap=True)
        for row in self.view.steps.values():
            cells = list(_step_cells(row, now, bar_width))
            if not show_agents:
                del cells[2]
            table.add_row(*cells)
        if not self.view.steps:
            table.add_row("", Text("no steps planned", style="grey50"))
        return Panel(table, title="Steps", title_align="left", border_style="grey42")

    def _feed(self) -> Panel:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=8, no_wrap=True, style="grey50")
        table.add_column(width=2, no_wrap=True)
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        lines = list(self.view.feed)
        for line in lines:
            table.add_row(
                local_time(line.time, with_date=False),
                Text(line.note.icon, style=line.note.style),
                Text(line.note.text, style=line.note.style),
            )
        for _ in range(FEED_SIZE - len(lines)):
            table.add_row("", "", "")
        return Panel(table, title="Activity", title_align="left", border_style="grey42")

    def _agents(self) -> Panel:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=1, no_wrap=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis", style="grey62")
        for agent in self.view.run.active_agents:
            table.add_row(
                Spinner("dots", style="bright_blue"),
                literal(agent.name or agent.agent_id),
                literal(agent.message or self.view.step_name(agent.step_id)),
            )
        if not self.view.run.active_agents:
            table.add_row("", Text("no agent at work", style="grey50"), "")
        return Panel(table, title="Active agents", title_align="left", border_style="grey42")

    def _tiles(self) -> RenderableType:
        metrics = ordered_metrics(self.view.metrics)[:MAX_TILES]
        if not metrics:
            return Panel(
                Text("no metrics yet", style="grey50"),
                title="Metrics",
                title_align="left",
                border_style="grey42",
            )
        # One column per tile, sharing the width, so the tiles stay on one row and shrink
        # with the terminal rather than wrapping under each other.
        tiles = Table.grid(expand=True)
        for _ in metrics:
            tiles.add_column(ratio=1, min_width=9)
        units, changes = self.view.units, self.view.changes
        tiles.add_row(
            *(
                Panel(
                    Group(
                        Text(
                            format_metric_unit(name, value, units.get(name, ""))
                            + (
                                f" {format_change(changes[name], units.get(name, ''), name)}"
                                if name in changes
                                else ""
                            ),
                            style="bold bright_white",
                            justify="center",
                            no_wrap=True,
                            overflow="ellipsis",
                        ),
                        Text(
                            metric_label(name),
                            style="grey62",
                            justify="center",
                            no_wrap=True,
                            overflow="ellipsis",
                        ),
                    ),
                    border_style="grey42",
                    padding=(0, 0),
                )
                for name, value in metrics
            )
        )
        return tiles


_PERCENT_SHOWN = ("RUNNING", "SUCCEEDED", "FAILED")
"""The step statuses whose rows say their percent: a pending step has none yet, a
skipped one none to say."""


def _step_cells(row: StepRow, now: datetime, bar_width: int) -> Sequence[RenderableType]:
    style = {
        "RUNNING": "bold cyan",
        "SUCCEEDED": "green",
        "FAILED": "bold red",
        "SKIPPED": "grey50 italic",
    }.get(row.status, "grey58")
    icon: RenderableType
    if row.status == "RUNNING":
        icon = Spinner("dots", style="cyan")
    else:
        icon = Text(
            {"SUCCEEDED": "✔", "FAILED": "✖", "SKIPPED": "↷"}.get(row.status, "○"), style=style
        )
    name_style = (
        "bold" if row.status == "RUNNING" else ("grey58" if row.status == "PENDING" else "")
    )
    bar_style = {"FAILED": "red", "SKIPPED": "grey42"}.get(row.status, "green")
    bar: RenderableType = ProgressBar(
        total=100,
        completed=row.percent if row.status != "SKIPPED" else 100,
        width=bar_width,
        complete_style="cyan" if row.status == "RUNNING" else bar_style,
        finished_style=bar_style,
    )
    if row.status == "PENDING":
        bar = Text("·" * bar_width, style="grey30")
    duration = row.duration if row.end_time else span(row.start_time, row.end_time, now)
    # A running step shows what it is doing in place of its agent, who is listed among the
    # active agents anyway; one line per step keeps the list's height steady.
    doing = Text(printable(row.sub_step), style="italic cyan") if row.status == "RUNNING" else None
    return (
        icon,
        Text(printable(row.name), style=name_style),
        doing if doing is not None and row.sub_step else Text(printable(row.agent)),
        bar,
        # A skipped step's full grey bar says it is out of the way; "0%" beside it said
        # the opposite.
        Text(percent_text(row.percent) if row.status in _PERCENT_SHOWN else "", style=style),
        Text(format_duration(duration) if duration is not None else "", style="grey62"),
    )


def _writing(writing: int, shown: int) -> str:
    """Says how many agents write, e.g. "6 writing, 4 shown" (counting those not shown)."""
    return f"{writing} writing" + (f", {shown} shown" if writing > shown else "")


class TailText:
    """The last lines of the text an agent is streaming, wrapped to the panel's width."""

    def __init__(self, view: RunView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        streams = self.view.streams()
        width = max(10, options.max_width - 4)
        if len(streams) > 1:
            # Several agents writing at once: a few lines for each, every one visible.
            share = max(1, TEXT_LINES // len(streams) - 1)
            lines: list[Text] = []
            for each in streams:
                lines.append(Text(f"✍ {printable(each.agent)} · writing…", style="bold"))
                body = text_lines(each.text, style="bright_white")
                body.append("▌", style="bold cyan blink")
                lines.extend(list(body.wrap(console, width))[-share:])
            yield Panel(
                Text("\n").join(lines),
                title=f"Agent output · {_writing(self.view.writing, len(streams))}",
                title_align="left",
                border_style="grey42",
            )
            return
        stream = streams[0] if streams else None
        if stream is None:
            body = Text("waiting for an agent to write…", style="grey50")
            lines = [body]
            title = Text("Agent output")
        else:
            body = text_lines(stream.text, style="bright_white")
            ended = self.view.run.status.is_terminal
            if not stream.final and not ended:
                body.append("▌", style="bold cyan blink")
            lines = list(body.wrap(console, width))[-TEXT_LINES:]
            state = "done" if stream.final else "cut off" if ended else "writing…"
            title = Text(f"✍ {printable(stream.agent)} · {state}")
        padded = Text("\n").join([*lines, *(Text("") for _ in range(TEXT_LINES - len(lines)))])
        yield Panel(padded, title=title, title_align="left", border_style="grey42", width=None)


# --- sinks: live or plain ------------------------------------------------------------------


class LiveRenderer:
    """Draws the dashboard with rich.live, redrawn from the event loop at a fixed rate."""

    def __init__(
        self,
        console: Console,
        view: RunView,
        *,
        title: str = "Runstream",
        interactive: bool = False,
    ) -> None:
        self.live = Live(
            Dashboard(view, title=title, interactive=interactive),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveRenderer:
        self.live.start(refresh=True)
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.live.refresh()
        self.live.stop()

    def on_event(self, event: runstream.Event, note: Note | None) -> None:
        """The ticker redraws; nothing to do per event."""

    async def _tick(self) -> None:
        while True:
            self.live.refresh()
            await asyncio.sleep(1 / REFRESH_PER_SECOND)


class PlainRenderer:
    """One line per meaningful event, for CI logs, pipes and `--plain`."""

    def __init__(self, console: Console, view: RunView) -> None:
        self.console = console
        self.view = view

    async def __aenter__(self) -> PlainRenderer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def on_event(self, event: runstream.Event, note: Note | None) -> None:
        if note is None:
            return
        line = Text.assemble(
            (feed_time(event.event_time), "grey50"),
            " ",
            (f"#{event.seq:<5}", "grey42"),
            (f"{note.label:<9}", "bold " + note.style if note.style else "bold"),
            " ",
            (note.text, note.style),
        )
        self.console.print(line, soft_wrap=True)
        if isinstance(event.payload, runstream.DecisionRequested):
            for text, style in _question_lines(event.run_id, event.payload):
                self.console.print(Text(f"    {printable(text)}", style=style), soft_wrap=True)
        if isinstance(event.payload, runstream.TextDelta) and event.payload.final:
            stream = self.view.texts.get(event.payload.message_id)
            if stream is not None:
                self._print_text(stream)

    def on_partial_text(self, stream: TextStream) -> None:
        """A message whose final delta is beyond what was listed: as far as it goes, at its
        last delta listed."""
        span = f"#{stream.first_seq}" + (
            f"-#{stream.last_seq}" if stream.last_seq != stream.first_seq else ""
        )
        line = Text.assemble(
            (local_time(stream.last_time, with_date=False), "grey50") if stream.last_time else "",
            " " if stream.last_time else "",
            (f"#{stream.last_seq:<5}", "grey42"),
            (f"{'text':<9}", "bold bright_white"),
            " ",
            (
                printable(
                    f"{stream.agent} was writing: {len(stream.text.split())} words in "
                    f"{span}, and the message goes on"
                ),
                "bright_white",
            ),
        )
        self.console.print(line, soft_wrap=True)
        self._print_text(stream)

    def _print_text(self, stream: TextStream) -> None:
        for text_line in stream.text.strip().splitlines():
            self.console.print(
                Text(f"    │ {printable(text_line)}", style="bright_white"), soft_wrap=True
            )


def _question_lines(run_id: str, payload: runstream.DecisionRequested) -> Iterator[tuple[str, str]]:
    """The plain lines under a question: its context, options, deadline and how to answer."""
    if payload.context:
        context = ", ".join(f"{key}={value}" for key, value in payload.context.items())
        yield f"context: {context}", "grey70"
    for number, option in enumerate(payload.options, start=1):
        default = " (default)" if option.value == payload.default_option else ""
        about = f" — {option.description}" if option.description else ""
        yield f"{number}) {option.value}: {option.label or option.value}{default}{about}", "yellow"
    if payload.timeout is not None:
        then = f"takes {payload.default_option}" if payload.default_option else "closes"
        yield (
            f"unanswered after {format_duration(payload.timeout.total_seconds())} it {then}",
            "yellow",
        )
    skip = " (or --skip)" if payload.can_skip else ""
    yield f"answer: runstream answer {run_id} {payload.decision_id} CHOICE{skip}", "grey62"


# --- keeping the snapshot fresh ----------------------------------------------------------


class SnapshotRefresher:
    """Re-reads the run's server-derived snapshot after state changes, at most ~5 times/s.

    Status, percent, health, estimate and active agents are computed by the server; rather than
    re-deriving them here, the view asks for them again when an event may have changed them,
    and once a second while the run is quiet so the estimate and health stay current.
    """

    def __init__(
        self,
        client: runstream.Client,
        view: RunView,
        *,
        min_interval: float = 0.2,
        idle_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.view = view
        self.min_interval = min_interval
        self.idle_interval = idle_interval
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SnapshotRefresher:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as what it waits for completes (a poke for the run's last event, then the
        # view closing), and this loop would never end.
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_interval):
                    await self._dirty.wait()
            self._dirty.clear()
            # A failed refresh is not worth interrupting the view for: the watch stream
            # reconnects on its own and the next refresh catches up.
            with contextlib.suppress(runstream.RunstreamError, TimeoutError):
                async with asyncio.timeout(LOST_AFTER):
                    details = await self.client.get_run_details(self.view.run.run_id)
                self.view.apply_details(details)
                self.view.heard()
            await asyncio.sleep(self.min_interval)


# --- answering from the keyboard -----------------------------------------------------------


class PromptKeys:
    """Single key presses answer the live view's open prompt: 1-9 pick, s skips.

    Active only when stdin is a terminal whose foreground this process is: it switches the
    terminal to cbreak mode (keys arrive without Enter and are not echoed; Ctrl-C still
    interrupts) and restores it on exit. A process in the background (`timeout` runs its
    command so, as does the shell's `&`) is stopped by SIGTTOU when it changes the
    terminal's modes, and stays stopped through SIGTERM, so it reads no keys.
    Keys are read by a small thread that waits with select(): registering stdin with the
    event loop would make the terminal's file description non-blocking, which it shares with
    stdout, and the live view's large writes would then be cut short mid-frame.
    """

    def __init__(self, client: runstream.Client, view: RunView, *, viewer: str) -> None:
        self.client = client
        self.view = view
        self.viewer = viewer
        self._fd: int | None = None
        self._saved: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._submitting: asyncio.Task[None] | None = None

    @staticmethod
    def available() -> bool:
        try:
            import termios  # noqa: F401
        except ImportError:  # pragma: no cover - not on Windows
            return False
        if not sys.stdin.isatty():
            return False
        try:
            return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
        except OSError:  # a terminal this process's session does not control
            return False

    async def __aenter__(self) -> PromptKeys:
        if not self.available():
            return self
        import termios
        import tty

        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd, termios.TCSANOW)
        self._fd = fd
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._read_keys, args=(fd, loop), name="runstream-keys", daemon=True
        )
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 1.0)
            self._thread = None
        if self._fd is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._fd = None
        if self._submitting is not None and not self._submitting.done():
            self._submitting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._submitting

    def _read_keys(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(fd, 64).decode(errors="ignore")
            except OSError:
                return
            if not data:
                return  # end of input
            for key in data:
                loop.call_soon_threadsafe(self.press, key)

    def press(self, key: str) -> None:
        """Handles one key press."""
        prompt = self.view.current_prompt
        if prompt is None or (self._submitting is not None and not self._submitting.done()):
            return
        if key.isdigit() and 1 <= int(key) <= min(9, len(prompt.options)):
            option = prompt.options[int(key) - 1]
            self._submitting = asyncio.create_task(self._submit(prompt, option.value, False))
        elif key in "sS" and prompt.can_skip:
            self._submitting = asyncio.create_task(self._submit(prompt, None, True))

    async def _submit(self, prompt: OpenPrompt, choice: str | None, skip: bool) -> None:
        what = (
            f"skipping {prompt.decision_id}"
            if skip
            else f"answering {prompt.option_label(choice or '')}"
        )
        self.view.answer_feedback = (f"… {what}", "grey62")
        try:
            decision = await self.client.submit_decision(
                self.view.run.run_id,
                prompt.decision_id,
                choice,
                skip=skip,
                answered_by=self.viewer,
            )
        except runstream.RunstreamError as exc:
            self.view.answer_feedback = (f"✗ not accepted: {exc.message}", "bold red")
            return
        outcome = enum_name(decision.outcome).lower()
        shown = prompt.option_label(decision.choice) if decision.choice else ""
        self.view.answer_feedback = (
            f"✓ {outcome}" + (f": {shown}" if shown else "") + f" (by {decision.answered_by})",
            "bold green",
        )


# --- following a run -----------------------------------------------------------------------


async def follow_run(
    client: runstream.Client,
    run_id: str,
    *,
    console: Console,
    live: bool,
    after_seq: int = 0,
    kinds: Iterable[runstream.EventKind] | None = None,
    title: str = "Runstream",
    interactive: bool = False,
    viewer: str = "",
) -> runstream.Run:
    """Shows a run's events until it ends (or, when it already ended, replays them).

    With ``interactive`` (live only, on a terminal) the open prompt's options can be picked
    with number keys; answers are recorded as given by ``viewer``. Returns the run's final
    snapshot. Raises the SDK's errors (NotFoundError for an unknown run, OutOfRangeError for
    a cursor beyond the head ...).
    """
    kinds = list(kinds) if kinds else None
    details = await client.get_run_details(run_id)
    if after_seq == 0 and not kinds:
        # Replaying the whole log: start from the plan and let the events rebuild the
        # steps, so a replay reads as the run happened rather than as its final state.
        view = RunView(run=details.run)
    else:
        view = RunView.from_details(details)
    view.seen_after = after_seq  # a message begun before it shows its words after it only

    renderer: LiveRenderer | PlainRenderer
    refresher: SnapshotRefresher | None = None
    keys: PromptKeys | None = None
    if live:
        interactive = interactive and PromptKeys.available()
        renderer = LiveRenderer(console, view, title=title, interactive=interactive)
        refresher = SnapshotRefresher(client, view)
        if interactive:
            keys = PromptKeys(client, view, viewer=viewer)
    else:
        renderer = PlainRenderer(console, view)

    async with (
        renderer,
        refresher or contextlib.nullcontext(),
        keys or contextlib.nullcontext(),
    ):
        watching = client.watch(
            run_id, after_seq=after_seq, kinds=kinds, heartbeat_interval=HEARTBEAT_SECONDS
        )
        async for event in watching:
            view.heard()
            note = view.apply(event)
            renderer.on_event(event, note)
            if refresher is not None and event.kind is not runstream.EventKind.TEXT_DELTA:
                refresher.poke()
        final = await client.get_run(run_id)
        view.apply_snapshot(final)
    return final


def print_run_header(console: Console, run: runstream.Run) -> None:
    """The line a plain follower prints before the events."""
    console.print(
        Text.assemble(
            ("Run ", "bold"),
            (printable(run.run_id), "bold bright_white"),
            f" · {printable(run.workflow)}",
            f" · {printable(run.display_name)}"
            if run.display_name and run.display_name != run.workflow
            else "",
            f" · {counted(run.progress.total_steps, 'step')} · ",
            run_status_text(run.status),
            " · health ",
            health_text(run.health),
            *(() if run.status.is_terminal else (" · ETA ", estimate_text(run.estimate))),
            f" · {run.viewer_count} watching" if run.viewer_count else "",
        ),
        soft_wrap=True,
    )
