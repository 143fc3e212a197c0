"""What each event does to a live view, and what it means to a person.

:func:`fold` folds one event into a :class:`~runstream.cli.view.RunView` (its step rows, the
messages being written, metrics, open decisions, agents' names); :func:`describe` then reads
the view, changing nothing, for the :class:`~runstream.cli.view_items.Note` that says the
event in words, or None for noise. The web dashboard's model splits the same way
(``RunModel.apply`` and ``describe()`` in ``model.ts``). A kind :func:`describe` has no case
for is said generically, by its name and fields (:mod:`runstream.cli.view_fields`); one this
client's protos do not know either is skipped quietly, as the proto asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import runstream
from runstream import Event

from .fmt import (
    SEVERITY_STYLES,
    counted,
    enum_name,
    format_duration,
    items_text,
    metric_text,
    ordered_metrics,
    percent_text,
)
from .view_fields import fields_note
from .view_items import Note, OpenPrompt, StepRow, TextStream, options_text

if TYPE_CHECKING:
    from .view import RunView

__all__ = ["describe", "fold"]

FACTORS_SHOWN = 3
"""A thought's factors printed on its line; the rest are counted ("+2 more")."""


def fold(view: RunView, event: Event, fresh: bool) -> None:
    """Folds the event into the view. An event that is not ``fresh`` (at or below the
    snapshot's seq) leaves the step rows and open decisions as the snapshot has them; it still
    adds a row for a step the view does not know, and agents' names, messages and metrics."""
    payload = event.payload
    when = event.event_time
    match payload:
        case runstream.RunCreated():
            if fresh and not view.steps:
                for spec in payload.steps:
                    view.steps[spec.step_id] = StepRow(
                        step_id=spec.step_id,
                        name=spec.name or spec.step_id,
                        agent=spec.agent,
                        description=spec.description,
                    )
        case runstream.StepStarted():
            row = view.row(payload.step_id)
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
        case runstream.StepProgress():
            row = view.row(payload.step_id)
            if fresh:
                if row.status == "PENDING":
                    row.status = "RUNNING"
                    row.start_time = when
                row.percent = payload.percent
                row.sub_step = payload.sub_step
                row.detail = payload.detail
                if payload.tokens_processed:
                    row.tokens = payload.tokens_processed
        case runstream.StepCompleted():
            row = view.row(payload.step_id)
            if fresh:
                row.status = "SUCCEEDED"
                row.percent = 100.0
                row.end_time = when
                row.duration = payload.duration or (
                    when - row.start_time if row.start_time else None
                )
        case runstream.StepFailed():
            row = view.row(payload.step_id)
            if fresh:
                row.status = "FAILED"
                row.end_time = when
        case runstream.StepSkipped():
            row = view.row(payload.step_id)
            if fresh:
                row.status = "SKIPPED"
                row.end_time = when
        case runstream.AgentActivity():
            if payload.agent_name:
                view.agent_names[payload.agent_id or payload.agent_name] = payload.agent_name
        case runstream.TextDelta():
            stream = view.texts.get(payload.message_id)
            if stream is None:
                stream = TextStream(
                    payload.message_id,
                    view.agent_label(payload.agent_id),
                    payload.step_id,
                    first_seq=event.seq,
                    partial=view.seen_after != 0,
                )
                view.texts[payload.message_id] = stream
            stream.text += payload.delta
            stream.final = stream.final or payload.final
            stream.last_seq, stream.last_time = event.seq, event.event_time
            view.current_text = payload.message_id
        case runstream.MetricsUpdate():
            if not payload.step_id:
                view.metrics.update(payload.values)
                view.units.update(payload.units)
                for name in payload.values:
                    if name in payload.changes:
                        view.changes[name] = payload.changes[name]
                    else:
                        view.changes.pop(name, None)
        case runstream.DecisionRequested():
            if fresh:
                view.prompts[payload.decision_id] = OpenPrompt.of(payload)
        case runstream.DecisionResolved():
            if fresh and (asked := view.prompts.pop(payload.decision_id, None)) is not None:
                view.closed_prompts[payload.decision_id] = asked


def describe(view: RunView, event: Event, fresh: bool) -> Note | None:
    """What the event, already folded into the view, means to a person; None for noise (a
    message not finished yet, a kind this client's protos do not know). Changes nothing."""
    payload = event.payload
    match payload:
        case runstream.RunCreated():
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
            row = _row(view, payload.step_id)
            retry = " (retry)" if row.attempts > 1 else ""
            agent = f" · {row.agent}" if row.agent and row.agent != row.name else ""
            return Note("▸", "step", f"{row.name} started{retry}{agent}", "cyan")
        case runstream.StepProgress():
            what = " — ".join(part for part in (payload.sub_step, payload.detail) if part)
            return Note(
                "·",
                "progress",
                f"{_row(view, payload.step_id).name} {percent_text(payload.percent)}"
                + (f" {what}" if what else ""),
                "grey62",
                feed=False,
            )
        case runstream.StepCompleted():
            row = _row(view, payload.step_id)
            took = f" in {format_duration(row.duration)}" if row.duration else ""
            # How many steps were done then, of the steps there were then: known only for an
            # event the view has folded in order (one older than the snapshot is replayed
            # after it: no count).
            count = f" ({view.completed_steps}/{view.steps_at(event.seq)})" if fresh else ""
            return Note(
                "✔", "step", f"{row.name} done{took}{count}" + _suffix(payload.summary), "green"
            )
        case runstream.StepFailed():
            message = payload.error.message if payload.error else ""
            name = _row(view, payload.step_id).name
            return Note("✖", "step", f"{name} failed" + _suffix(message), "bold red")
        case runstream.StepSkipped():
            name = _row(view, payload.step_id).name
            return Note("↷", "step", f"{name} skipped" + _suffix(payload.reason), "grey62")
        case runstream.AgentActivity():
            name = view.agent_label(payload.agent_id or payload.agent_name)
            kind = enum_name(payload.activity)
            icon, style = {
                "STARTED": ("⚙", "bright_blue"),
                "PROGRESS": ("…", "blue"),
                "COMPLETED": ("✓", "bright_green"),
                "FAILED": ("✗", "red"),
            }.get(kind, ("•", ""))
            verb = {"STARTED": "started", "COMPLETED": "finished", "FAILED": "failed"}.get(kind, "")
            message = payload.message or verb
            return Note(icon, "agent", f"{name}: {message}", style)
        case runstream.Thinking():
            confidence = f" ({payload.confidence:.0%} confident)" if payload.confidence else ""
            who = view.agent_label(payload.agent_id) if payload.agent_id else "Manager"
            # What kind of thinking, where, and on what (the reference's "route_planning -").
            where = " in ".join(part for part in (payload.thinking_type, payload.stage) if part)
            if where and not payload.thinking_type:
                where = f"in {where}"
            factors = ""
            if payload.factors:
                factors = f" · factors: {', '.join(payload.factors[:FACTORS_SHOWN])}"
                if len(payload.factors) > FACTORS_SHOWN:
                    factors += f" +{len(payload.factors) - FACTORS_SHOWN} more"
            return Note(
                "💭",
                "thinking",
                f"{who}: "
                + (f"{where} — " if where else "")
                + payload.analysis
                + confidence
                + factors,
                "italic",
            )
        case runstream.ModelAllocation():
            tier = f" [{payload.tier}]" if payload.tier else ""
            why = f" — {payload.reasoning}" if payload.reasoning else ""
            return Note(
                "🧠",
                "model",
                f"{view.agent_label(payload.agent_id)} ← {payload.model}{tier}{why}",
                "magenta",
            )
        case runstream.TextDelta():
            stream = view.texts.get(payload.message_id)
            if not payload.final or stream is None:
                return None
            return Note("✍", "text", f"{stream.agent} wrote {stream.words()}", "bright_white")
        case runstream.MetricsUpdate():
            shown = ", ".join(
                metric_text(name, value, view.units.get(name, ""), payload.changes.get(name))
                for name, value in ordered_metrics(payload.values)[:6]
            )
            where = f"{view.step_name(payload.step_id)} " if payload.step_id else ""
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
                action += f" [{view.step_name(payload.step_id)}]"
            return Note(
                "⚠",
                "alert",
                f"{severity}: {payload.message}{action}",
                _severity_style(severity),
            )
        case runstream.ErrorRecovery():
            strategy = f"; {payload.recovery_strategy}" if payload.recovery_strategy else ""
            if payload.step_id:
                strategy += f" [{view.step_name(payload.step_id)}]"
            attempt = f" (attempt {payload.attempt})" if payload.attempt else ""
            outcome = "" if payload.can_continue else "; cannot continue"
            if payload.user_action_required:
                outcome += "; user action required"
            severity = enum_name(payload.severity)
            said = "" if severity in ("UNSPECIFIED", "0") else f"{severity}: "
            return Note(
                "⟲",
                "recovery",
                f"{said}{payload.error_message}{strategy}{attempt}{outcome}",
                _severity_style(severity),
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
            # Which change it was: "agent_completed" and "phase_transition" read the same else.
            change = (
                f"{payload.change_type} · " if payload.change_type and payload.current_stage else ""
            )
            return Note(
                "⇢",
                "workflow",
                f"{change}Phase: {stage} ({percent_text(payload.completion_percentage)}){flags}",
                "bold blue",
            )
        case runstream.DecisionRequested():
            return Note(
                "?",
                "decision",
                f"Decision needed [{payload.decision_id}]: {payload.prompt} "
                f"— {options_text(OpenPrompt.of(payload))}",
                "bold yellow",
            )
        case runstream.DecisionResolved():
            asked = view.prompts.get(payload.decision_id) or view.closed_prompts.get(
                payload.decision_id
            )
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
            health = enum_name(payload.health)
            style = {"HEALTHY": "green", "DEGRADED": "yellow", "STALLED": "dark_orange"}.get(
                health, "bold red"
            )
            # The same level with another reason (one trouble ended, another of that level
            # remains) read "FAILING → FAILING"; it says what is wrong now.
            if payload.previous_health == payload.health:
                moved = f"Health still {health}"
            else:
                moved = f"Health {enum_name(payload.previous_health)} → {health}"
            return Note("♥", "health", moved + _suffix(payload.reason), style)
        case runstream.EstimateUpdated():
            estimate = payload.estimate
            if estimate is None or estimate.remaining is None:
                return Note("⏱", "estimate", "Estimate unknown", "grey50", feed=False)
            said = "ETA on hold at" if estimate.held else "ETA"
            whose = " (producer's)" if estimate.source == runstream.EstimateSource.PRODUCER else ""
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
            # A kind this view has no case for: its name and the fields its producer set.
            return fields_note(event)


def _row(view: RunView, step_id: str) -> StepRow:
    """The step's row; for a step the view has no row for, one named by its id (not kept)."""
    return view.steps.get(step_id) or StepRow(step_id=step_id, name=step_id, agent="")


def _suffix(text: str) -> str:
    return f" — {text}" if text else ""


def _severity_style(severity: str) -> str:
    return SEVERITY_STYLES.get(severity, "yellow")
