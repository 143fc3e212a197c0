"""The state behind the live view: a run's snapshot plus the events seen since.

The server derives a run's status, progress, health and active agents, so the header comes
from `GetRun` snapshots. Between snapshots, events keep the step list, the activity feed, the
streamed text and the metrics current. The rule that keeps the two consistent: the step rows
are "the snapshot at seq S, plus every event after S", so an event at or below the snapshot's
`last_seq` is already reflected in it and only feeds the activity log.

Nothing here draws; :mod:`runstream.cli.render` turns a :class:`RunView` into a dashboard or
into plain lines.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import runstream
from runstream import DecisionOption, Event, Run, Step

from .fmt import (
    SEVERITY_STYLES,
    counted,
    enum_name,
    format_duration,
    items_text,
    metric_text,
    ordered_metrics,
    percent_text,
    printable,
)

FEED_SIZE = 12


@dataclass
class StepRow:
    """One row of the step list."""

    step_id: str
    name: str
    agent: str
    status: str = "PENDING"
    description: str = ""
    percent: float = 0.0
    sub_step: str = ""
    detail: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: timedelta | None = None
    tokens: int = 0
    attempts: int = 0

    @classmethod
    def from_step(cls, step: Step) -> StepRow:
        return cls(
            step_id=step.step_id,
            name=step.name or step.step_id,
            agent=step.agent,
            status=enum_name(step.status),
            description=step.description,
            percent=step.percent,
            sub_step=step.sub_step,
            detail=step.detail,
            start_time=step.start_time,
            end_time=step.end_time,
            duration=step.duration,
            tokens=step.tokens_processed,
            attempts=step.attempts,
        )


@dataclass(frozen=True)
class OpenPrompt:
    """A decision of the run that waits for an answer, as the live view shows it."""

    decision_id: str
    prompt: str
    options: tuple[DecisionOption, ...]
    default_option: str
    can_skip: bool
    deadline: datetime | None
    context: dict[str, Any]

    @classmethod
    def of(cls, decision: runstream.Decision | runstream.DecisionRequested) -> OpenPrompt:
        return cls(
            decision_id=decision.decision_id,
            prompt=decision.prompt,
            options=decision.options,
            default_option=decision.default_option,
            can_skip=decision.can_skip,
            deadline=decision.deadline,
            context=decision.context,
        )

    def option_label(self, value: str) -> str:
        option = next((o for o in self.options if o.value == value), None)
        return (option.label or option.value) if option is not None else value


def options_text(prompt: OpenPrompt) -> str:
    """ "1) Weekend Wanderer*  2) City Summiteer" with the default starred."""
    parts = [
        f"{number}) {option.label or option.value}"
        + ("*" if option.value == prompt.default_option else "")
        for number, option in enumerate(prompt.options, start=1)
    ]
    return "  ".join(parts)


@dataclass(frozen=True)
class Note:
    """What one event means to a person.

    Attributes:
        icon: A one-character glyph for the feed.
        label: The event's category in plain output ("step", "agent", "alert" ...).
        text: The human sentence.
        style: The rich style of the sentence.
        feed: Whether the line belongs in the live activity feed (progress ticks do not; they
            show in the step list instead).
    """

    icon: str
    label: str
    text: str
    """One line, its control characters escaped (:meth:`RunView.apply` sees to it)."""
    style: str = ""
    feed: bool = True


@dataclass(frozen=True)
class FeedLine:
    """A line of the activity feed."""

    time: datetime
    note: Note


@dataclass
class TextStream:
    """An agent's message as its deltas arrive."""

    message_id: str
    agent: str
    step_id: str
    text: str = ""
    final: bool = False
    first_seq: int = 0
    """The seq of the first of its deltas this view saw."""
    last_seq: int = 0
    last_time: datetime | None = None
    partial: bool = False
    """The view started inside the log: deltas before `first_seq` may be missing."""

    def words(self) -> str:
        """How many words it has, "from #N on" when its start may be missing."""
        count = f"{len(self.text.split())} words"
        return f"{count} from #{self.first_seq} on" if self.partial else count


@dataclass
class RunView:
    """Everything the live view shows for one run."""

    run: Run
    steps: dict[str, StepRow] = field(default_factory=dict)
    snapshot_seq: int = 0
    last_seq: int = 0
    feed: deque[FeedLine] = field(default_factory=lambda: deque(maxlen=FEED_SIZE))
    texts: dict[str, TextStream] = field(default_factory=dict)
    current_text: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    changes: dict[str, float] = field(default_factory=dict)
    agent_names: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, OpenPrompt] = field(default_factory=dict)
    answer_feedback: tuple[str, str] | None = None
    """The outcome of this viewer's last answer: (text, style)."""
    seen_after: int | None = 0
    """The view holds every event after this seq (None: not known, a newest-first listing);
    a message begun before it shows only its words after it."""
    last_heard: float = field(default_factory=time.monotonic)
    """When the server last answered this view (an event or a snapshot), monotonic."""
    last_heard_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The same moment on the wall clock: the ETA stands still there while the link is lost."""

    def heard(self) -> None:
        """The server answered: the link works."""
        self.last_heard = time.monotonic()
        self.last_heard_at = datetime.now(UTC)

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    @property
    def writing(self) -> int:
        """How many messages agents are writing now (:meth:`streams` shows `limit` of them):
        none once the run ended, whatever was left unfinished (cut off)."""
        if self.run.status.is_terminal:
            return 0
        return sum(1 for stream in self.texts.values() if not stream.final)

    def streams(self, limit: int = 4) -> list[TextStream]:
        """The messages agents are writing now, newest first; the latest one when nobody is
        writing (or the run ended)."""
        writing = [stream for stream in self.texts.values() if not stream.final]
        if writing and not self.run.status.is_terminal:
            return writing[::-1][:limit]
        current = self.texts.get(self.current_text or "")
        return [current] if current is not None else []

    @classmethod
    def from_snapshot(cls, run: Run) -> RunView:
        view = cls(run=run)
        view.apply_snapshot(run)
        return view

    @classmethod
    def from_details(cls, details: runstream.RunDetails) -> RunView:
        view = cls(run=details.run)
        view.apply_details(details)
        return view

    # --- snapshots -------------------------------------------------------------------------

    def apply_snapshot(self, run: Run) -> None:
        """Takes a fresh `GetRun` snapshot; step rows only if it is at least as new as them."""
        self.run = run
        if run.last_seq < self.last_seq:
            # Older than events already applied: its header is still the freshest derived
            # view there is, but its steps and metrics would step backwards.
            return
        self.snapshot_seq = run.last_seq
        self.metrics.update(run.metrics)
        self.units.update(run.metric_units)
        self.changes.update(run.metric_changes)
        if run.steps:
            self.steps = {step.step_id: StepRow.from_step(step) for step in run.steps}

    def apply_details(self, details: runstream.RunDetails) -> None:
        """Takes a `GetRun` snapshot with its open decisions."""
        fresh = details.run.last_seq >= self.last_seq
        self.apply_snapshot(details.run)
        if fresh:
            self.prompts = {d.decision_id: OpenPrompt.of(d) for d in details.open_decisions}

    @property
    def current_prompt(self) -> OpenPrompt | None:
        """The oldest open decision: the one the view offers to answer."""
        return next(iter(self.prompts.values()), None)

    # --- derived values --------------------------------------------------------------------

    @property
    def completed_steps(self) -> int:
        return sum(1 for row in self.steps.values() if row.status in ("SUCCEEDED", "SKIPPED"))

    @property
    def total_steps(self) -> int:
        return max(len(self.steps), self.run.progress.total_steps)

    def agent_label(self, agent_id: str) -> str:
        return self.agent_names.get(agent_id, agent_id) or "manager"

    def step_name(self, step_id: str) -> str:
        row = self.steps.get(step_id)
        return row.name if row is not None else step_id

    # --- events ----------------------------------------------------------------------------

    def apply(self, event: Event) -> Note | None:
        """Folds one event into the view; returns what it means, or None for noise."""
        self.last_seq = max(self.last_seq, event.seq)
        fresh = event.seq > self.snapshot_seq
        note = self._describe(event, fresh)
        if note is not None:
            # Every name and text the sentence quotes, escaped at once: the feed and the
            # plain output print it as one line.
            note = replace(note, text=printable(note.text))
        if note is not None and note.feed:
            self.feed.append(FeedLine(event.event_time, note))
        return note

    def _row(self, step_id: str) -> StepRow:
        row = self.steps.get(step_id)
        if row is None:
            row = StepRow(step_id=step_id, name=step_id, agent="")
            self.steps[step_id] = row
        return row

    def _describe(self, event: Event, fresh: bool) -> Note | None:
        payload = event.payload
        when = event.event_time
        match payload:
            case runstream.RunCreated():
                if fresh and not self.steps:
                    for spec in payload.steps:
                        self.steps[spec.step_id] = StepRow(
                            step_id=spec.step_id,
                            name=spec.name or spec.step_id,
                            agent=spec.agent,
                            description=spec.description,
                        )
                return Note(
                    "✚",
                    "run",
                    f"Run created: {payload.display_name or payload.workflow} "
                    f"({counted(len(payload.steps), 'step')} planned)",
                    "bold",
                )
            case runstream.RunStarted():
                suffix = f": {payload.message}" if payload.message else ""
                return Note("▶", "run", f"Run started{suffix}", "bold cyan")
            case runstream.RunStatusChanged():
                return Note(
                    "↻",
                    "run",
                    f"Status {enum_name(payload.previous_status)} → {enum_name(payload.status)}"
                    + (f" ({payload.reason})" if payload.reason else ""),
                    "yellow",
                )
            case runstream.RunCompleted():
                return Note("★", "run", "Run succeeded" + _suffix(payload.summary), "bold green")
            case runstream.RunFailed():
                message = payload.error.message if payload.error else "unknown error"
                return Note("✖", "run", f"Run failed: {message}", "bold red")
            case runstream.RunCancelled():
                by = f" by {payload.cancelled_by}" if payload.cancelled_by else ""
                return Note("⊘", "run", f"Run cancelled{by}" + _suffix(payload.reason), "magenta")
            case runstream.StepStarted():
                row = self._row(payload.step_id)
                if fresh:
                    if payload.name and row.name == row.step_id:
                        row.name = payload.name
                    if payload.agent:
                        row.agent = payload.agent
                    row.status = "RUNNING"
                    row.percent = 0.0
                    row.start_time = when
                    row.end_time = None
                    row.duration = None
                    row.attempts += 1
                retry = " (retry)" if row.attempts > 1 else ""
                agent = f" · {row.agent}" if row.agent and row.agent != row.name else ""
                return Note("▸", "step", f"{row.name} started{retry}{agent}", "cyan")
            case runstream.StepProgress():
                row = self._row(payload.step_id)
                if fresh:
                    if row.status == "PENDING":
                        row.status = "RUNNING"
                        row.start_time = when
                    row.percent = payload.percent
                    row.sub_step = payload.sub_step
                    row.detail = payload.detail
                    if payload.tokens_processed:
                        row.tokens = payload.tokens_processed
                what = " — ".join(part for part in (payload.sub_step, payload.detail) if part)
                return Note(
                    "·",
                    "progress",
                    f"{row.name} {percent_text(payload.percent)}" + (f" {what}" if what else ""),
                    "grey62",
                    feed=False,
                )
            case runstream.StepCompleted():
                row = self._row(payload.step_id)
                if fresh:
                    row.status = "SUCCEEDED"
                    row.percent = 100.0
                    row.end_time = when
                    row.duration = payload.duration or (
                        when - row.start_time if row.start_time else None
                    )
                took = f" in {format_duration(row.duration)}" if row.duration else ""
                # How many steps were done then: known only for an event the view has folded
                # in order (one older than the snapshot is replayed after it: no count).
                count = f" ({self.completed_steps}/{self.total_steps})" if fresh else ""
                return Note(
                    "✔", "step", f"{row.name} done{took}{count}" + _suffix(payload.summary), "green"
                )
            case runstream.StepFailed():
                row = self._row(payload.step_id)
                if fresh:
                    row.status = "FAILED"
                    row.end_time = when
                message = payload.error.message if payload.error else ""
                return Note("✖", "step", f"{row.name} failed" + _suffix(message), "bold red")
            case runstream.StepSkipped():
                row = self._row(payload.step_id)
                if fresh:
                    row.status = "SKIPPED"
                    row.end_time = when
                return Note("↷", "step", f"{row.name} skipped" + _suffix(payload.reason), "grey62")
            case runstream.AgentActivity():
                agent_id = payload.agent_id or payload.agent_name
                if payload.agent_name:
                    self.agent_names[agent_id] = payload.agent_name
                name = self.agent_label(agent_id)
                kind = enum_name(payload.activity)
                icon, style = {
                    "STARTED": ("⚙", "bright_blue"),
                    "PROGRESS": ("…", "blue"),
                    "COMPLETED": ("✓", "bright_green"),
                    "FAILED": ("✗", "red"),
                }.get(kind, ("•", ""))
                verb = {"STARTED": "started", "COMPLETED": "finished", "FAILED": "failed"}.get(
                    kind, ""
                )
                message = payload.message or verb
                return Note(icon, "agent", f"{name}: {message}", style)
            case runstream.Thinking():
                confidence = f" ({payload.confidence:.0%} confident)" if payload.confidence else ""
                who = self.agent_label(payload.agent_id) if payload.agent_id else "Manager"
                return Note("💭", "thinking", f"{who}: {payload.analysis}{confidence}", "italic")
            case runstream.ModelAllocation():
                tier = f" [{payload.tier}]" if payload.tier else ""
                why = f" — {payload.reasoning}" if payload.reasoning else ""
                return Note(
                    "🧠",
                    "model",
                    f"{self.agent_label(payload.agent_id)} ← {payload.model}{tier}{why}",
                    "magenta",
                )
            case runstream.TextDelta():
                stream = self.texts.get(payload.message_id)
                if stream is None:
                    stream = TextStream(
                        payload.message_id,
                        self.agent_label(payload.agent_id),
                        payload.step_id,
                        first_seq=event.seq,
                        partial=self.seen_after != 0,
                    )
                    self.texts[payload.message_id] = stream
                stream.text += payload.delta
                stream.final = stream.final or payload.final
                stream.last_seq, stream.last_time = event.seq, event.event_time
                self.current_text = payload.message_id
                if not payload.final:
                    return None
                return Note("✍", "text", f"{stream.agent} wrote {stream.words()}", "bright_white")
            case runstream.MetricsUpdate():
                if not payload.step_id:
                    self.metrics.update(payload.values)
                    self.units.update(payload.units)
                    for name in payload.values:
                        if name in payload.changes:
                            self.changes[name] = payload.changes[name]
                        else:
                            self.changes.pop(name, None)
                shown = ", ".join(
                    metric_text(name, value, self.units.get(name, ""), payload.changes.get(name))
                    for name, value in ordered_metrics(payload.values)[:6]
                )
                where = f"{self.step_name(payload.step_id)} " if payload.step_id else ""
                return Note("▤", "metrics", f"{where}metrics: {shown}", "grey70", feed=False)
            case runstream.Milestone():
                return Note(
                    "🏁", "milestone", payload.title + _suffix(payload.description), "bold gold1"
                )
            case runstream.ItemProgress():
                stages = ", ".join(f"{stage} {count}" for stage, count in payload.by_stage.items())
                return Note(
                    "#",
                    "items",
                    items_text(payload) + (f" ({stages})" if stages else ""),
                    "grey70",
                    feed=False,
                )
            case runstream.Alert():
                severity = enum_name(payload.severity)
                suggestion = payload.suggested_action or (
                    enum_name(payload.action.type).lower().replace("_", " ")
                    if payload.action is not None
                    else ""
                )
                action = f" → {suggestion}" if suggestion else ""
                if payload.step_id:
                    action += f" [{self.step_name(payload.step_id)}]"
                return Note(
                    "⚠",
                    "alert",
                    f"{severity}: {payload.message}{action}",
                    _severity_style(severity),
                )
            case runstream.ErrorRecovery():
                strategy = f"; {payload.recovery_strategy}" if payload.recovery_strategy else ""
                if payload.step_id:
                    strategy += f" [{self.step_name(payload.step_id)}]"
                attempt = f" (attempt {payload.attempt})" if payload.attempt else ""
                outcome = "" if payload.can_continue else "; cannot continue"
                return Note(
                    "⟲",
                    "recovery",
                    f"{payload.error_message}{strategy}{attempt}{outcome}",
                    _severity_style(enum_name(payload.severity)),
                )
            case runstream.ArtifactProduced():
                artifact = payload.artifact
                kind = f" ({artifact.kind})" if artifact.kind else ""
                return Note("📄", "artifact", f"Artifact {artifact.name}{kind}", "cyan")
            case runstream.WorkflowStateChange():
                stage = payload.current_stage or payload.change_type
                # The pipeline's flags by name (a map has no order of its own): ✓ done.
                flags = "".join(
                    f" · {'✓' if done else '○'} {name.replace('_', ' ')}"
                    for name, done in sorted(payload.pipeline_status.items())
                )
                return Note(
                    "⇢",
                    "workflow",
                    f"Phase: {stage} ({percent_text(payload.completion_percentage)}){flags}",
                    "bold blue",
                )
            case runstream.DecisionRequested():
                prompt = OpenPrompt.of(payload)
                if fresh:
                    self.prompts[payload.decision_id] = prompt
                return Note(
                    "?",
                    "decision",
                    f"Decision needed [{payload.decision_id}]: {payload.prompt} "
                    f"— {options_text(prompt)}",
                    "bold yellow",
                )
            case runstream.DecisionResolved():
                asked = self.prompts.get(payload.decision_id)
                if fresh:
                    self.prompts.pop(payload.decision_id, None)
                outcome = enum_name(payload.outcome).lower().replace("_", " ")
                choice = ""
                if payload.choice:
                    label = asked.option_label(payload.choice) if asked else payload.choice
                    choice = (
                        f": {label}" if label == payload.choice else f": {label} ({payload.choice})"
                    )
                by = f" by {payload.answered_by}" if payload.answered_by else ""
                return Note(
                    "✓",
                    "decision",
                    f"Decision {payload.decision_id} {outcome}{by}{choice}",
                    "yellow",
                )
            case runstream.HealthChanged():
                style = {"HEALTHY": "green", "DEGRADED": "yellow", "STALLED": "dark_orange"}.get(
                    enum_name(payload.health), "bold red"
                )
                return Note(
                    "♥",
                    "health",
                    f"Health {enum_name(payload.previous_health)} → {enum_name(payload.health)}"
                    + _suffix(payload.reason),
                    style,
                )
            case runstream.EstimateUpdated():
                estimate = payload.estimate
                if estimate is None or estimate.remaining is None:
                    return Note("⏱", "estimate", "Estimate unknown", "grey50", feed=False)
                said = "ETA on hold at" if estimate.held else "ETA"
                whose = (
                    " (producer's)" if estimate.source == runstream.EstimateSource.PRODUCER else ""
                )
                return Note(
                    "⏱",
                    "estimate",
                    f"{said} ~{format_duration(estimate.remaining)} left{whose}",
                    "grey70",
                    feed=False,
                )
            case runstream.Custom():
                return Note("◆", "custom", payload.type, "grey70")
            case _:
                # A kind newer than this client: the proto asks us to skip it quietly.
                return None


def _suffix(text: str) -> str:
    return f" — {text}" if text else ""


def _severity_style(severity: str) -> str:
    return SEVERITY_STYLES.get(severity, "yellow")
