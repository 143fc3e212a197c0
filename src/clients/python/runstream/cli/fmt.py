"""Formatting shared by the tables and the live view: colours, icons, durations, times.

Enums are looked up by name rather than by value so a server that is newer than this client
(and sends a status this client does not know) still renders, as the proto asks of clients.

Whatever a producer or another viewer wrote (names, messages, prompts, streamed text) reaches
the terminal through :func:`printable`, which shows control characters as escapes
(``\\x1b``) instead of letting the terminal execute them, and never as rich markup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import Enum

from rich.console import RenderableType
from rich.text import Text

import runstream
from runstream._arguments import CONTROL

RUN_STATUS_STYLES: dict[str, str] = {
    "PENDING": "grey62",
    "RUNNING": "bold cyan",
    "WAITING_FOR_INPUT": "bold yellow",
    "PAUSED": "yellow",
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
}

RUN_STATUS_ICONS: dict[str, str] = {
    "PENDING": "○",
    "RUNNING": "●",
    "WAITING_FOR_INPUT": "◐",
    "PAUSED": "❚❚",
    "SUCCEEDED": "✔",
    "FAILED": "✖",
    "CANCELLED": "⊘",
}

STEP_STATUS_STYLES: dict[str, str] = {
    "PENDING": "grey50",
    "RUNNING": "bold cyan",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "SKIPPED": "grey50 italic",
}

STEP_STATUS_ICONS: dict[str, str] = {
    "PENDING": "○",
    "RUNNING": "◉",
    "SUCCEEDED": "✔",
    "FAILED": "✖",
    "SKIPPED": "↷",
}

HEALTH_STYLES: dict[str, str] = {
    "HEALTHY": "green",
    "DEGRADED": "yellow",
    "STALLED": "dark_orange",
    "FAILING": "bold red",
}

SEVERITY_STYLES: dict[str, str] = {
    "INFO": "blue",
    "LOW": "cyan",
    "MEDIUM": "yellow",
    "HIGH": "bold dark_orange",
    "CRITICAL": "bold red",
}

TERMINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


# What a terminal would execute, take for a line break, or show in another order than written
# (runstream._arguments.CONTROL, the server's rule for names; runs stored before it, and free
# text, still hold them). Free text printed on lines of its own keeps its tabs and newlines.
_IN_A_LINE = CONTROL
_IN_LINES = re.compile(CONTROL.pattern.replace("\x00-\x1f", "\x00-\x08\x0b-\x1f"))
assert _IN_LINES.pattern != CONTROL.pattern, "CONTROL no longer starts with the C0 range"


def _escape(found: re.Match[str]) -> str:
    return found[0].encode("unicode_escape").decode("ascii")  # "\\x1b", "\\n", "\\u202e"


def counted(n: int, noun: str) -> str:
    """``"1 step"``, ``"3 steps"``: a count and its noun, in the singular for one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def printable(value: str, *, lines: bool = False) -> str:
    """`value` with every control character shown as its escape (ESC as ``\\x1b``, a newline
    as ``\\n``), so a name holding ``\\x1b[2J`` reads as such instead of clearing the screen,
    and one holding a newline stays on its line. With `lines`, for free text printed on lines
    of its own, newlines (``\\r\\n`` too) and tabs stay as they are."""
    if lines:
        return _IN_LINES.sub(_escape, value.replace("\r\n", "\n"))
    return _IN_A_LINE.sub(_escape, value)


def quoted(value: str) -> str:
    """`value` as the user typed it, in quotes: in single ones, or in double ones when it
    holds a single quote and no double one. Not repr, which doubles each backslash typed
    (a filter's ``"x\\"y"`` read as ``"x\\\\"y"``); control characters show escaped
    (:func:`printable`)."""
    quote = '"' if "'" in value and '"' not in value else "'"
    return f"{quote}{printable(value)}{quote}"


def literal(value: RenderableType) -> RenderableType:
    """A table cell shown as given, on one line: rich reads a plain ``str`` cell as markup,
    so a run name, an agent or a prompt holding ``[bold]`` would lose it, and ``[/x]`` would
    crash; control characters show escaped (:func:`printable`)."""
    return Text(printable(value)) if isinstance(value, str) else value


def text_lines(value: str, style: str = "") -> Text:
    """Free text (a prompt, a description, an error message, streamed output) on lines of
    its own: its newlines and tabs kept, other control characters escaped."""
    return Text(printable(value, lines=True), style=style)


def enum_name(value: object) -> str:
    """The short name of an SDK enum value ("RUNNING"), or the raw value for unknown ones."""
    name = value.name if isinstance(value, Enum) else str(value)
    for prefix in (
        "RUN_STATUS_",
        "STEP_STATUS_",
        "RUN_HEALTH_",
        "SEVERITY_",
        "DECISION_OUTCOME_",
        "DECISION_STATE_",
    ):
        name = name.removeprefix(prefix)
    return name


def run_status_text(status: object, *, icon: bool = True) -> Text:
    """A coloured run status, for example a green "✔ SUCCEEDED"."""
    name = enum_name(status)
    style = RUN_STATUS_STYLES.get(name, "")
    label = f"{RUN_STATUS_ICONS.get(name, '?')} {name}" if icon else name
    return Text(label, style=style)


def step_status_text(status: object, *, icon: bool = True) -> Text:
    """A coloured step status, for example a cyan "◉ RUNNING"."""
    name = enum_name(status)
    style = STEP_STATUS_STYLES.get(name, "")
    label = f"{STEP_STATUS_ICONS.get(name, '?')} {name}" if icon else name
    return Text(label, style=style)


def health_text(health: object) -> Text:
    """A coloured run health; a dim dash when the server has not assessed it."""
    name = enum_name(health)
    if name in ("UNSPECIFIED", "0", "None"):
        return Text("—", style="grey50")
    return Text(name, style=HEALTH_STYLES.get(name, ""))


def format_duration(value: timedelta | float | None) -> str:
    """A compact, human duration: "<1ms", "850ms", "12.3s", "4m 05s", "2h 03m"."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0 or math.isnan(seconds):
        seconds = 0.0
    if 0 < seconds < 0.0005:
        return "<1ms"  # a run that failed as it started took 0.27 ms, not nothing ("0ms")
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_clock(value: timedelta | float | None) -> str:
    """A stopwatch reading, "01:07" or "1:02:03", for elapsed time and ETA."""
    if value is None:
        return "—"
    seconds = max(0, int(value.total_seconds() if isinstance(value, timedelta) else value))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def local_time(value: datetime | None, *, with_date: bool = True) -> str:
    """A timestamp in the viewer's local time zone; naive values are taken as UTC."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def feed_time(value: datetime | None, now: datetime | None = None) -> str:
    """A time in a feed of events: the time of day for today's (in the viewer's time zone),
    with the date for another day's. Only the time was shown, so an event from another day
    (an old run, a producer whose clock is off) sat among today's without a hint."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    today = (now or datetime.now(UTC)).astimezone().date()
    return local_time(value, with_date=value.astimezone().date() != today)


def span(
    start: datetime | None, end: datetime | None, now: datetime | None = None
) -> timedelta | None:
    """The time from start to end, or to now while still open; None before it started."""
    if start is None:
        return None
    if end is None:
        end = now or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end - start


def format_metric(name: str, value: float) -> str:
    """A metric value as a person reads it: thousands separators, rates as percent, money."""
    lowered = name.lower()
    if ("ctr" in lowered or "rate" in lowered) and 0 <= value <= 1:
        return f"{value * 100:.2f}%"
    if lowered.endswith("_usd") or lowered.startswith("cost"):
        return f"${value:,.2f}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


# Metrics people look for first; the rest follow alphabetically. Protobuf maps have no order,
# so without this the tiles would shuffle between snapshots.
METRIC_ORDER = ("impressions", "clicks", "ctr", "conversions", "tokens", "cost_usd", "assets")


def ordered_metrics(values: Mapping[str, float]) -> list[tuple[str, float]]:
    """Metrics in a stable, reader-friendly order."""

    def key(item: tuple[str, float]) -> tuple[int, str]:
        name = item[0]
        rank = METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER)
        return rank, name

    return sorted(values.items(), key=key)


def metric_label(name: str) -> str:
    """A metric name as a tile title: "cost_usd" -> "Cost (USD)", "ctr" -> "CTR"."""
    special = {"ctr": "CTR", "cost_usd": "Cost (USD)", "fps": "FPS"}
    if name.lower() in special:
        return special[name.lower()]
    return printable(name.replace("_", " ").replace(".", " ").strip().capitalize())


def live_estimate(
    estimate: object, now: datetime | None = None
) -> tuple[timedelta, timedelta | None, timedelta | None] | None:
    """The estimate's remaining time and range as of `now`: counted down by its end time, the
    range with it (so the remaining time never leaves its range), or as the server holds it
    while the run waits. None without an estimate."""
    remaining = getattr(estimate, "remaining", None)
    if not isinstance(remaining, timedelta):
        return None
    low = getattr(estimate, "remaining_low", None)
    high = getattr(estimate, "remaining_high", None)
    low = low if isinstance(low, timedelta) else None
    high = high if isinstance(high, timedelta) else None
    end_time = getattr(estimate, "end_time", None)
    if getattr(estimate, "held", False) is True or not isinstance(end_time, datetime):
        return remaining, low, high
    left = end_time - (now or datetime.now(UTC))
    passed = remaining - left
    zero = timedelta(0)
    low = max(zero, low - passed) if low is not None else None
    high = max(zero, high - passed) if high is not None else None
    return max(zero, left), low, high


def remaining_text(remaining: timedelta) -> str:
    """ "~2m 10s left", or "any moment" rather than "~0ms left" for something still running."""
    if remaining < timedelta(seconds=1):
        return "any moment"
    return f"~{format_duration(remaining)} left"


def estimate_text(estimate: object, *, with_end: bool = False) -> Text:
    """An ETA as a person reads it: "~2m 10s left (1m 50s to 2m 40s, 70% confidence)", "on
    hold" while the run waits, or a dim "unknown" when the server has no estimate (it says
    unknown rather than guess)."""
    live = live_estimate(estimate)
    if live is None:
        return Text("unknown", style="grey50")
    remaining, low, high = live
    held = getattr(estimate, "held", False) is True
    if held:
        text = Text(f"on hold at ~{format_duration(remaining)}", style="bold yellow")
    else:
        text = Text(remaining_text(remaining), style="bold")
    details: list[str] = []
    if getattr(estimate, "source", None) == runstream.EstimateSource.PRODUCER:
        details.append("the producer's estimate")
    if low is not None and high is not None and high > low:
        details.append(f"{format_duration(low)} to {format_duration(high)}")
    confidence = getattr(estimate, "confidence", 0.0)
    if isinstance(confidence, float) and confidence:
        details.append(f"{confidence:.0%} confidence")
    history = getattr(estimate, "history_runs", 0)
    if isinstance(history, int) and history:
        details.append(f"from {counted(history, 'run')}")
    if details:
        text.append(f" ({', '.join(details)})", style="grey62")
    end_time = getattr(estimate, "end_time", None)
    if with_end and isinstance(end_time, datetime) and not held:
        text.append(f", ends ~{local_time(end_time)}", style="grey62")
    return text


def eta_clock(estimate: object, now: datetime | None = None) -> str:
    """A compact ETA for tables and the live header: "02:10", "hold 02:10" while the run
    waits, "<00:01" when due, or "—"."""
    live = live_estimate(estimate, now)
    if live is None:
        return "—"
    remaining = live[0]
    if getattr(estimate, "held", False) is True:
        return f"hold {format_clock(remaining)}"
    if remaining < timedelta(seconds=1):
        return "<00:01"
    return format_clock(remaining)


def format_change(change: float, unit: str = "", name: str = "") -> str:
    """A metric's change since its last value, as the metric itself reads: "+500", "-0.5 %",
    "+0.02%" for a rate, "+$0.03" for a cost."""
    return f"{'+' if change >= 0 else '-'}{format_metric_unit(name, abs(change), unit)}"


def format_metric_unit(name: str, value: float, unit: str) -> str:
    """A metric with its unit: "5.0 %", "1,200 USD"; by its name when it has none."""
    if not unit:
        return format_metric(name, value)
    if unit == "%":
        return f"{value:,.1f} %"
    number = f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{number} {printable(unit)}"


def metric_text(name: str, value: float, unit: str = "", change: float | None = None) -> str:
    """ "Impressions 10,500 (+500)", "CTR 5.0 %": a metric with its unit and change."""
    text = f"{metric_label(name)} {format_metric_unit(name, value, unit)}"
    return text if change is None else f"{text} ({format_change(change, unit, name)})"


def items_text(items: object) -> str:
    """ "15 of 25 companies" (or "15 companies" without a total)."""
    completed = getattr(items, "completed", 0)
    total = getattr(items, "total", 0)
    unit = printable(getattr(items, "unit", "")) or "items"
    return f"{completed} of {total} {unit}" if total else f"{completed} {unit}"


def viewers_text(count: int) -> Text:
    """ "3 watching" or a dim "no viewers"."""
    if count <= 0:
        return Text("no viewers", style="grey50")
    return Text(f"👁 {count} watching", style="bright_blue")


def outcome_text(outcome: object, choice: str = "") -> Text:
    """How a decision closed: "ANSWERED: summiteer", "DEFAULTED: wanderer", "SKIPPED"."""
    name = enum_name(outcome)
    style = {
        "ANSWERED": "green",
        "DEFAULTED": "yellow",
        "SKIPPED": "grey62",
        "TIMED_OUT": "dark_orange",
        "CANCELLED": "magenta",
    }.get(name, "")
    return Text(f"{name}: {printable(choice)}" if choice else name, style=style)


def percent_text(percent: float) -> str:
    """A percent without noise: "47%", "100%"; rounded down, so a run that still runs never
    reads "100%" (99.98 is "99%")."""
    return f"{math.floor(max(0.0, min(100.0, percent)))}%"
