"""Tables for `runstream runs`, `runstream get` and `runstream steps`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import runstream

from .fmt import (
    enum_name,
    format_duration,
    format_metric,
    health_text,
    local_time,
    metric_label,
    percent_text,
    run_status_text,
    span,
    step_status_text,
)

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
        table.add_row(*(column.cell(row) for column in shown))
    return table


def _run_progress(run: runstream.Run) -> str:
    progress = run.progress
    return f"{percent_text(progress.percent)}  {progress.completed_steps}/{progress.total_steps}"


def _run_duration(run: runstream.Run) -> str:
    return format_duration(span(run.start_time, run.end_time)) if run.start_time else "—"


def runs_table(runs: Sequence[runstream.Run], width: int = 200) -> Table:
    """One row per run, most recent first, as ListRuns returns them."""
    columns: list[_Column[runstream.Run]] = [
        _Column(
            "RUN ID",
            lambda run: run.run_id,
            {"style": "bright_white", "min_width": _widest(run.run_id for run in runs)},
        ),
        _Column("WORKFLOW", lambda run: run.workflow, _SHRINKABLE, shown_from=110),
        _Column(
            "NAME",
            lambda run: run.display_name if run.display_name != run.workflow else "",
            {**_SHRINKABLE, "max_width": 40},
            shown_from=150,
        ),
        _Column("STATUS", lambda run: run_status_text(run.status), {"min_width": 13}),
        _Column("PROGRESS", _run_progress, {"justify": "right", "min_width": 11}),
        _Column("HEALTH", lambda run: health_text(run.health), {"min_width": 8}, shown_from=130),
        _Column(
            "CREATED",
            lambda run: local_time(run.create_time),
            {"style": "grey70", "min_width": 19},
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
        _Column("NAME", lambda step: step.name, _SHRINKABLE),
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


def _widest(values: Iterable[str]) -> int:
    return max((len(value) for value in values), default=0)


def _step_detail(step: runstream.Step) -> Text:
    status = enum_name(step.status)
    if status == "FAILED" and step.error is not None:
        return Text(step.error.message, style="red")
    if status == "SKIPPED":
        return Text(step.skip_reason, style="grey50")
    parts = [part for part in (step.sub_step, step.detail) if part]
    text = Text(" — ".join(parts), style="grey62")
    text.truncate(DETAIL_WIDTH, overflow="ellipsis")
    if step.attempts > 1:
        text.append(f" (attempt {step.attempts})", style="yellow")
    if step.artifacts:
        count = len(step.artifacts)
        text.append(f" [{count} artifact{'s' if count != 1 else ''}]", style="cyan")
    return text


def run_details(run: runstream.Run, width: int = 200) -> RenderableType:
    """Everything GetRun says about a run, then its steps."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="grey62", no_wrap=True)
    grid.add_column()

    def row(label: str, value: RenderableType | str) -> None:
        grid.add_row(label, value)

    row("Run ID", Text(run.run_id, style="bold bright_white"))
    row("Workflow", run.workflow)
    if run.display_name and run.display_name != run.workflow:
        row("Name", run.display_name)
    if run.labels:
        row("Labels", ", ".join(f"{key}={value}" for key, value in sorted(run.labels.items())))
    row("Status", run_status_text(run.status))
    row("Health", health_text(run.health))
    progress = run.progress
    row(
        "Progress",
        f"{percent_text(progress.percent)}  "
        f"({progress.completed_steps}/{progress.total_steps} steps)",
    )
    if run.current_step_id:
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
    row("Events", str(run.last_seq))
    estimate = run.estimate
    if estimate is not None and estimate.remaining is not None:
        row(
            "Estimate",
            f"{format_duration(estimate.remaining)} left, "
            f"ends ~{local_time(estimate.end_time)} ({estimate.confidence:.0%} confidence)",
        )
    summary = run.artifacts_summary
    if summary.total:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(summary.by_kind.items()))
        row("Artifacts", f"{summary.total}" + (f" ({kinds})" if kinds else ""))
    if run.metrics:
        row(
            "Metrics",
            ", ".join(
                f"{metric_label(name)} {format_metric(name, value)}"
                for name, value in run.metrics.items()
            ),
        )
    if run.result_summary:
        row("Result", run.result_summary)
    if run.error is not None:
        code = f"[{run.error.code}] " if run.error.code else ""
        row("Error", Text(f"{code}{run.error.message}", style="bold red"))
    if run.cancel_reason:
        row("Cancelled", run.cancel_reason)
    parts: list[RenderableType] = [
        Panel(grid, title="[bold]Run[/]", title_align="left", border_style="grey42", expand=False)
    ]
    if run.steps:
        parts.append(steps_table(run.steps, width))
    return Group(*parts)


async def show_runs(client: runstream.Client, console: Console, *, filter: str, limit: int) -> None:
    """Prints up to `limit` runs matching `filter`."""
    runs: list[runstream.Run] = []
    async for run in client.list_runs(filter=filter, page_size=min(max(limit, 1), 1000)):
        runs.append(run)
        if len(runs) >= limit:
            break
    if not runs:
        console.print(
            Text("No runs" + (f" match {filter!r}" if filter else " yet"), style="grey62")
        )
        return
    console.print(runs_table(runs, console.width))


async def show_run(client: runstream.Client, console: Console, run_id: str) -> None:
    """Prints one run's snapshot and its steps."""
    console.print(run_details(await client.get_run(run_id), console.width))


async def show_steps(client: runstream.Client, console: Console, run_id: str) -> None:
    """Prints one run's steps."""
    steps = await client.list_steps(run_id)
    if not steps:
        console.print(Text(f"Run {run_id} has no steps", style="grey62"))
        return
    console.print(steps_table(steps, console.width))
