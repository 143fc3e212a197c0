"""The state behind the live view: a run's snapshot plus the events seen since.

The server derives a run's status, progress, health and active agents, so the header comes
from `GetRun` snapshots. Between snapshots, events keep the step list, the activity feed, the
streamed text and the metrics current. The rule that keeps the two consistent: the step rows
are "the snapshot at seq S, plus every event after S", so an event at or below the snapshot's
`last_seq` is already reflected in it and only feeds the activity log.

What each event does to the view is :mod:`runstream.cli.view_events`'s; what the view holds
besides the snapshot (step rows, open prompts, feed lines, messages) is
:mod:`runstream.cli.view_items`'s. Nothing here draws; :mod:`runstream.cli.render` turns a
:class:`RunView` into a dashboard or into plain lines.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import runstream
from runstream import Event, Run

from .fmt import printable
from .view_events import describe, fold
from .view_items import FeedLine, Note, OpenPrompt, StepRow, TextStream

FEED_SIZE = 12


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
    closed_prompts: dict[str, OpenPrompt] = field(default_factory=dict)
    """The prompts an event closed while the view watched: their options name the answer."""
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

    def steps_at(self, seq: int) -> int:
        """How many steps the run had at the event `seq`, folded into the view in order: its
        rows, or the snapshot's total when that was taken by then (with ``--kinds`` the view
        may not have seen every step start). Not the snapshot's total otherwise: an agent
        run's steps appear as they start, so `runstream events` read its first step's
        completion as "(1/1)" while the run ran and "(1/2)" once it had another."""
        return self.total_steps if self.run.last_seq <= seq else len(self.steps)

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
        fold(self, event, fresh)
        note = describe(self, event, fresh)
        if note is not None:
            # Every name and text the sentence quotes, escaped at once: the feed and the
            # plain output print it as one line.
            note = replace(note, text=printable(note.text))
        if note is not None and note.feed:
            self.feed.append(FeedLine(event.event_time, note))
        return note

    def row(self, step_id: str) -> StepRow:
        """The step's row, added (named by its id) when the view has none yet."""
        row = self.steps.get(step_id)
        if row is None:
            row = StepRow(step_id=step_id, name=step_id, agent="")
            self.steps[step_id] = row
        return row
