"""Rendering a run as it happens: a rich live dashboard on a terminal, plain lines elsewhere.

:func:`follow_run` is the loop shared by ``runstream watch`` and ``runstream demo``: it reads
the run's events through the SDK's ``watch`` (which resumes after a disconnect on its own),
folds them into a :class:`~runstream.cli.view.RunView`, and keeps the server-derived header
(status, progress, health, estimate, active agents) fresh with throttled ``get_run`` calls.

The live view is redrawn from the event loop by a ticker rather than by rich's refresh
thread, so the view is never read while an event is being folded into it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType

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
    enum_name,
    format_clock,
    format_duration,
    format_metric,
    health_text,
    local_time,
    metric_label,
    ordered_metrics,
    percent_text,
    run_status_text,
    span,
)
from .view import FEED_SIZE, Note, RunView, StepRow

TEXT_LINES = 6
WIDE_LAYOUT = 140
NARROW_LAYOUT = 110
MAX_TILES = 8
REFRESH_PER_SECOND = 10

# --- the dashboard -----------------------------------------------------------------------


class Dashboard:
    """The live view of one run, rebuilt from its RunView on every refresh."""

    def __init__(self, view: RunView, *, title: str = "Runstream") -> None:
        self.view = view
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = datetime.now(UTC)
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
        yield Group(self._header(now), body, footer)

    def _header(self, now: datetime) -> Panel:
        run = self.view.run
        title_line = Text.assemble(
            (run.display_name or run.workflow, "bold"),
            ("  ", ""),
            (run.workflow, "grey62"),
            ("  ·  run ", "grey50"),
            (run.run_id, "bold bright_white"),
        )
        elapsed = span(run.start_time, run.end_time, now)
        facts = Text.assemble(
            run_status_text(run.status),
            ("   health ", "grey50"),
            health_text(run.health),
            ("   elapsed ", "grey50"),
            (format_clock(elapsed), "bold"),
        )
        estimate = run.estimate
        if (
            estimate is not None
            and estimate.remaining is not None
            and enum_name(run.status) not in TERMINAL_RUN_STATUSES
        ):
            facts.append("   ETA ", "grey50")
            facts.append(format_clock(estimate.remaining), "bold")
            if estimate.confidence:
                facts.append(f" ({estimate.confidence:.0%})", "grey50")
        facts.append(f"   events {max(run.last_seq, self.view.last_seq)}", "grey50")

        percent = run.progress.percent
        done, total = self.view.completed_steps, self.view.total_steps
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
            Text.assemble(
                (f"{percent_text(percent):>4}", "bold"), (f"  {done}/{total} steps", "grey70")
            ),
        )
        return Panel(
            Group(title_line, facts, bar),
            title=f"[bold cyan]{self.title}[/]",
            title_align="left",
            border_style=bar_style,
            padding=(0, 1),
        )

    def _steps(self, now: datetime, show_agents: bool, bar_width: int) -> Panel:
        table = Table.grid(expand=True, padding=(0, 1))
        table.add_column(width=2, no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", min_width=12, ratio=None)
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
                agent.name or agent.agent_id,
                agent.message or self.view.step_name(agent.step_id),
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
        tiles.add_row(
            *(
                Panel(
                    Group(
                        Text(
                            format_metric(name, value), style="bold bright_white", justify="center"
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
    doing = Text(row.sub_step, style="italic cyan") if row.status == "RUNNING" else None
    return (
        icon,
        Text(row.name, style=name_style),
        doing if doing is not None and row.sub_step else row.agent,
        bar,
        Text(percent_text(row.percent) if row.status != "PENDING" else "", style=style),
        Text(format_duration(duration) if duration is not None else "", style="grey62"),
    )


class TailText:
    """The last lines of the text an agent is streaming, wrapped to the panel's width."""

    def __init__(self, view: RunView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        stream = self.view.texts.get(self.view.current_text or "")
        width = max(10, options.max_width - 4)
        if stream is None:
            body = Text("waiting for an agent to write…", style="grey50")
            lines = [body]
            title = "Agent output"
        else:
            body = Text(stream.text, style="bright_white")
            if not stream.final:
                body.append("▌", style="bold cyan blink")
            lines = list(body.wrap(console, width))[-TEXT_LINES:]
            state = "done" if stream.final else "writing…"
            title = f"✍ {stream.agent} · {state}"
        padded = Text("\n").join([*lines, *(Text("") for _ in range(TEXT_LINES - len(lines)))])
        yield Panel(padded, title=title, title_align="left", border_style="grey42", width=None)


# --- sinks: live or plain ------------------------------------------------------------------


class LiveRenderer:
    """Draws the dashboard with rich.live, redrawn from the event loop at a fixed rate."""

    def __init__(self, console: Console, view: RunView, *, title: str = "Runstream") -> None:
        self.live = Live(
            Dashboard(view, title=title),
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
            (local_time(event.event_time, with_date=False), "grey50"),
            " ",
            (f"#{event.seq:<5}", "grey42"),
            (f"{note.label:<9}", "bold " + note.style if note.style else "bold"),
            " ",
            (note.text, note.style),
        )
        self.console.print(line, soft_wrap=True)
        if isinstance(event.payload, runstream.TextDelta) and event.payload.final:
            stream = self.view.texts.get(event.payload.message_id)
            if stream is not None:
                for text_line in stream.text.strip().splitlines():
                    self.console.print(
                        Text(f"    │ {text_line}", style="bright_white"), soft_wrap=True
                    )


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
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.idle_interval)
            self._dirty.clear()
            # A failed refresh is not worth interrupting the view for: the watch stream
            # reconnects on its own and the next refresh catches up.
            with contextlib.suppress(runstream.RunstreamError):
                self.view.apply_snapshot(await self.client.get_run(self.view.run.run_id))
            await asyncio.sleep(self.min_interval)


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
) -> runstream.Run:
    """Shows a run's events until it ends (or, when it already ended, replays them).

    Returns the run's final snapshot. Raises the SDK's errors (NotFoundError for an unknown
    run, OutOfRangeError for a cursor beyond the head ...).
    """
    kinds = list(kinds) if kinds else None
    snapshot = await client.get_run(run_id)
    if after_seq == 0 and not kinds:
        # Replaying the whole log: start from the plan and let the events rebuild the
        # steps, so a replay reads as the run happened rather than as its final state.
        view = RunView(run=snapshot)
    else:
        view = RunView.from_snapshot(snapshot)

    renderer: LiveRenderer | PlainRenderer
    refresher: SnapshotRefresher | None = None
    if live:
        renderer = LiveRenderer(console, view, title=title)
        refresher = SnapshotRefresher(client, view)
    else:
        renderer = PlainRenderer(console, view)

    async with renderer, refresher or contextlib.nullcontext():
        async for event in client.watch(run_id, after_seq=after_seq, kinds=kinds):
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
            (run.run_id, "bold bright_white"),
            f" · {run.workflow}",
            f" · {run.display_name}"
            if run.display_name and run.display_name != run.workflow
            else "",
            f" · {run.progress.total_steps} steps · ",
            run_status_text(run.status),
        ),
        soft_wrap=True,
    )
