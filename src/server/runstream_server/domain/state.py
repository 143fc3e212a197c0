"""A run's state, derived from its events: the single definition of what each event means.

Producers report facts ("step strategy progressed to 50%"); :meth:`RunState.apply` folds them
into the :class:`Run` snapshot that every watcher sees: status, progress, current step, active
agents, health. Replaying a run's log through ``apply`` rebuilds the same snapshot.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.domain.events import kind_rules
from runstream_server.errors import FailedPrecondition, InvalidArgument

TERMINAL_STATUSES = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)
_DONE_STEP = frozenset({run_pb2.STEP_STATUS_SUCCEEDED, run_pb2.STEP_STATUS_SKIPPED})
_ENDING_ACTIVITY = frozenset(
    {event_pb2.AGENT_ACTIVITY_TYPE_COMPLETED, event_pb2.AGENT_ACTIVITY_TYPE_FAILED}
)


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def status_name(status: int) -> str:
    return run_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_")


RECENT_ACTIVITY = 50
# Event kinds whose bookkeeping lives beside the snapshot; replayed when a run is loaded.
REMEMBERED_KINDS = (
    event_pb2.EVENT_KIND_MILESTONE,
    event_pb2.EVENT_KIND_DECISION_REQUESTED,
    event_pb2.EVENT_KIND_DECISION_RESOLVED,
)


class RunState:
    """The live, derived state of one run: its ``Run`` snapshot, plus what the snapshot does
    not hold (decisions, fired milestones, the activity feed), rebuilt from the log on load.
    """

    __slots__ = ("_step_index", "decisions", "milestones", "recent_activity", "run")

    def __init__(self, run: run_pb2.Run) -> None:
        self.run = run
        self._step_index = {step.step_id: i for i, step in enumerate(run.steps)}
        self.decisions: dict[str, decision_pb2.Decision] = {}
        self.milestones: set[str] = set()
        self.recent_activity: deque[event_pb2.RunEvent] = deque(maxlen=RECENT_ACTIVITY)

    @classmethod
    def new(cls, run_id: str) -> RunState:
        return cls(run_pb2.Run(run_id=run_id))

    @classmethod
    def restore(cls, run: run_pb2.Run, remembered: Iterable[event_pb2.RunEvent]) -> RunState:
        """The state of a stored run from its snapshot and its remembered-kind events."""
        state = cls(run)
        for event in remembered:
            state.remember(event)
        return state

    def copy(self) -> RunState:
        clone = run_pb2.Run()
        clone.CopyFrom(self.run)
        state = RunState(clone)
        for decision_id, decision in self.decisions.items():
            state.decisions[decision_id] = copied(decision)
        state.milestones = set(self.milestones)
        state.recent_activity = self.recent_activity.copy()
        return state

    def open_decisions(self) -> list[decision_pb2.Decision]:
        return [d for d in self.decisions.values() if d.state == decision_pb2.DECISION_STATE_OPEN]

    @property
    def is_terminal(self) -> bool:
        return self.run.status in TERMINAL_STATUSES

    @property
    def last_seq(self) -> int:
        return self.run.last_seq

    def step(self, step_id: str) -> run_pb2.Step | None:
        index = self._step_index.get(step_id)
        return None if index is None else self.run.steps[index]

    # --- applying events --------------------------------------------------------------------

    def apply(self, event: event_pb2.RunEvent, path: str = "event") -> None:
        """Folds one event (already numbered) into the snapshot.

        Raises FailedPrecondition or InvalidArgument, leaving the state partly updated, when
        the event is not allowed in the current state: callers apply batches to a copy.
        """
        name = event.WhichOneof("payload")
        if name is None:
            raise InvalidArgument(f"{path}.payload", "exactly one event kind must be set")
        if self.is_terminal and name != "run_created":
            raise FailedPrecondition(
                f"run {self.run.run_id!r} is {status_name(self.run.status)}; "
                f"it accepts no further events ({path}.{name})"
            )
        when = event.event_time
        if name not in ("run_created", "run_status_changed") and (
            self.run.status == run_pb2.RUN_STATUS_PENDING
        ):
            self._start(when)
        if kind_rules(f"{path}.{name}", name).changes_state:
            getattr(self, f"_on_{name}")(getattr(event, name), when, f"{path}.{name}")
        self.remember(event)
        if self.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT and not self.open_decisions():
            self.run.status = run_pb2.RUN_STATUS_RUNNING
        self.run.last_seq = event.seq
        self.run.update_time.CopyFrom(when)
        self._recompute_progress()

    def remember(self, event: event_pb2.RunEvent) -> None:
        """Keeps what the snapshot does not hold: decisions, milestones, recent activity."""
        name = event.WhichOneof("payload")
        if name == "agent_activity":
            self.recent_activity.append(event)
        elif name == "milestone" and event.milestone.milestone_id:
            self.milestones.add(event.milestone.milestone_id)
            marks = event.milestone.data.fields.get("marks")
            if event.milestone.milestone_id.startswith("progress-") and marks is not None:
                # A combined progress milestone ("25% and 50% complete") fires every mark.
                for value in marks.list_value.values:
                    self.milestones.add(f"progress-{value.number_value:g}")
        elif name == "decision_requested":
            p = event.decision_requested
            decision = decision_pb2.Decision(
                run_id=self.run.run_id,
                decision_id=p.decision_id,
                decision_type=p.decision_type,
                prompt=p.prompt,
                options=p.options,
                default_option=p.default_option,
                can_skip=p.can_skip,
                affects_workflow=p.affects_workflow,
                state=decision_pb2.DECISION_STATE_OPEN,
                requested_seq=event.seq,
            )
            for field in ("timeout", "context", "deadline"):
                if p.HasField(field):
                    getattr(decision, field).CopyFrom(getattr(p, field))
            decision.create_time.CopyFrom(event.event_time)
            self.decisions[p.decision_id] = decision
        elif name == "decision_resolved":
            resolved = event.decision_resolved
            decision = self.decisions[resolved.decision_id]
            decision.state = decision_pb2.DECISION_STATE_RESOLVED
            decision.outcome = resolved.outcome
            decision.choice = resolved.choice
            decision.answered_by = resolved.answered_by
            decision.resolve_time.CopyFrom(event.event_time)
            decision.resolved_seq = event.seq

    def _start(self, when: timestamp_pb2.Timestamp) -> None:
        self.run.status = run_pb2.RUN_STATUS_RUNNING
        self.run.start_time.CopyFrom(when)
        self.run.health = run_pb2.RUN_HEALTH_HEALTHY

    def _finish(self, status: int, when: timestamp_pb2.Timestamp) -> None:
        self.run.status = status  # type: ignore[assignment]
        self.run.end_time.CopyFrom(when)
        self.run.current_step_id = ""
        del self.run.active_agents[:]

    def _on_run_created(
        self, p: event_pb2.RunCreated, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        run = self.run
        run.workflow = p.workflow
        run.display_name = p.display_name or p.workflow
        run.labels.update(p.labels)
        run.tenant = p.tenant
        run.created_by = p.created_by
        run.status = run_pb2.RUN_STATUS_PENDING
        run.create_time.CopyFrom(when)
        run.targets.extend(p.targets)
        for spec in p.steps:
            step = self._add_step(spec.step_id, spec.name, spec.description, spec.agent)
            step.depends_on.extend(spec.depends_on)
            step.track = spec.track
            step.phase = spec.phase

    def _on_run_status_changed(
        self, p: event_pb2.RunStatusChanged, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self.run.status = p.status

    def _on_run_completed(
        self, p: event_pb2.RunCompleted, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self._finish(run_pb2.RUN_STATUS_SUCCEEDED, when)
        self.run.result_summary = p.summary
        if p.HasField("result"):
            self.run.result.CopyFrom(p.result)

    def _on_run_failed(
        self, p: event_pb2.RunFailed, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self._finish(run_pb2.RUN_STATUS_FAILED, when)
        self.run.error.CopyFrom(p.error)
        self.run.health = run_pb2.RUN_HEALTH_FAILING

    def _on_run_cancelled(
        self, p: event_pb2.RunCancelled, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self._finish(run_pb2.RUN_STATUS_CANCELLED, when)
        self.run.cancel_reason = p.reason

    # --- steps ----------------------------------------------------------------------------

    def _add_step(self, step_id: str, name: str, description: str, agent: str) -> run_pb2.Step:
        self._step_index[step_id] = len(self.run.steps)
        return self.run.steps.add(
            step_id=step_id,
            name=name or step_id,
            description=description,
            agent=agent,
            status=run_pb2.STEP_STATUS_PENDING,
        )

    def _known_step(self, step_id: str, path: str) -> run_pb2.Step:
        step = self.step(step_id)
        if step is None:
            raise InvalidArgument(
                f"{path}.step_id",
                f"run {self.run.run_id!r} has no step {step_id!r}; "
                "plan it in CreateRun or start it with step_started",
            )
        return step

    def _not_done(self, step: run_pb2.Step, path: str) -> None:
        if step.status in _DONE_STEP:
            state = run_pb2.StepStatus.Name(step.status).removeprefix("STEP_STATUS_")
            raise FailedPrecondition(f"{path}: step {step.step_id!r} already {state}")

    def _begin_step(self, step: run_pb2.Step, when: timestamp_pb2.Timestamp) -> None:
        step.status = run_pb2.STEP_STATUS_RUNNING
        step.start_time.CopyFrom(when)
        step.ClearField("end_time")
        step.ClearField("duration")
        step.ClearField("error")
        step.percent = 0
        step.attempts += 1
        self.run.current_step_id = step.step_id
        if step.agent:
            self._agent_active(step.agent, step.agent, "", step.step_id, "", when)

    def _end_step(self, step: run_pb2.Step, status: int, when: timestamp_pb2.Timestamp) -> None:
        step.status = status  # type: ignore[assignment]
        step.end_time.CopyFrom(when)
        if not step.HasField("duration") and step.HasField("start_time"):
            elapsed = when.ToNanoseconds() - step.start_time.ToNanoseconds()
            step.duration.FromNanoseconds(max(0, elapsed))
        # The step's agents are done with it, whoever reported them.
        remaining = [a for a in self.run.active_agents if a.step_id != step.step_id]
        if len(remaining) != len(self.run.active_agents):
            del self.run.active_agents[:]
            self.run.active_agents.extend(remaining)

    def _on_step_started(
        self, p: event_pb2.StepStarted, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self.step(p.step_id) or self._add_step(p.step_id, p.name, p.description, p.agent)
        self._not_done(step, path)
        if p.agent:
            step.agent = p.agent
        self._begin_step(step, when)

    def _on_step_progress(
        self, p: event_pb2.StepProgress, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._known_step(p.step_id, path)
        self._not_done(step, path)
        if step.status != run_pb2.STEP_STATUS_RUNNING:
            self._begin_step(step, when)
        step.percent = p.percent
        if p.sub_step:
            step.sub_step = p.sub_step
        if p.detail:
            step.detail = p.detail
        if p.tokens_processed:
            step.tokens_processed = p.tokens_processed
        if p.HasField("sub_step_details"):
            step.sub_step_details.CopyFrom(p.sub_step_details)

    def _on_item_progress(
        self, p: event_pb2.ItemProgress, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        items = self.run.progress.items
        items.completed = p.completed
        items.total = p.total
        if p.unit:
            items.unit = p.unit
        items.by_stage.clear()
        items.by_stage.update(p.by_stage)

    def _on_step_completed(
        self, p: event_pb2.StepCompleted, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._known_step(p.step_id, path)
        self._not_done(step, path)
        if p.HasField("duration"):
            step.duration.CopyFrom(p.duration)
        step.percent = 100
        if p.summary:
            step.summary = p.summary
        step.metrics.update(p.metrics)
        for artifact in p.artifacts:
            self._add_artifact(artifact, step.step_id)
        self._end_step(step, run_pb2.STEP_STATUS_SUCCEEDED, when)

    def _on_step_failed(
        self, p: event_pb2.StepFailed, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._known_step(p.step_id, path)
        self._not_done(step, path)
        step.error.CopyFrom(p.error)
        self._end_step(step, run_pb2.STEP_STATUS_FAILED, when)

    def _on_step_skipped(
        self, p: event_pb2.StepSkipped, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._known_step(p.step_id, path)
        self._not_done(step, path)
        step.skip_reason = p.reason
        self._end_step(step, run_pb2.STEP_STATUS_SKIPPED, when)

    def _recompute_progress(self) -> None:
        steps = self.run.steps
        done = sum(1 for s in steps if s.status in _DONE_STEP)
        running = sum(s.percent for s in steps if s.status == run_pb2.STEP_STATUS_RUNNING)
        progress = self.run.progress
        progress.completed_steps = done
        progress.total_steps = len(steps)
        items = progress.items if progress.HasField("items") else None
        if self.run.status == run_pb2.RUN_STATUS_SUCCEEDED:
            progress.percent = 100.0
        elif steps:
            progress.percent = min(100.0, round((done + running / 100) / len(steps) * 100, 2))
        elif items is not None and items.total > 0:
            progress.percent = min(100.0, round(items.completed / items.total * 100, 2))
        if self.run.current_step_id:
            current = self.step(self.run.current_step_id)
            if current is None or current.status != run_pb2.STEP_STATUS_RUNNING:
                # Fall back to the latest-started step that is still running, if any.
                running_steps = [s for s in steps if s.status == run_pb2.STEP_STATUS_RUNNING]
                latest = max(
                    running_steps, key=lambda s: s.start_time.ToNanoseconds(), default=None
                )
                self.run.current_step_id = latest.step_id if latest else ""

    # --- agents and the rest --------------------------------------------------------------

    def _agent_active(
        self,
        agent_id: str,
        name: str,
        agent_type: str,
        step_id: str,
        message: str,
        when: timestamp_pb2.Timestamp,
    ) -> None:
        for agent in self.run.active_agents:
            if agent.agent_id == agent_id:
                break
        else:
            agent = self.run.active_agents.add(agent_id=agent_id, name=name or agent_id)
            agent.start_time.CopyFrom(when)
        if agent_type:
            agent.type = agent_type
        if step_id:
            agent.step_id = step_id
        if message:
            agent.message = message

    def _on_agent_activity(
        self, p: event_pb2.AgentActivity, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        agent_id = p.agent_id or p.agent_name
        if p.activity in _ENDING_ACTIVITY:
            remaining = [a for a in self.run.active_agents if a.agent_id != agent_id]
            del self.run.active_agents[:]
            self.run.active_agents.extend(remaining)
        else:
            self._agent_active(agent_id, p.agent_name, p.agent_type, p.step_id, p.message, when)

    def _on_metrics_update(
        self, p: event_pb2.MetricsUpdate, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.step_id:
            self._known_step(p.step_id, path).metrics.update(p.values)
            return
        metrics = self.run.metrics
        # The change is written onto the event itself before it is stored, so the log, a
        # replay and every watcher see the same "+500".
        p.ClearField("changes")
        for name, value in p.values.items():
            if name in metrics:
                p.changes[name] = value - metrics[name]
        self.run.metric_changes.update(p.changes)
        for name in p.values:
            if name not in p.changes:
                self.run.metric_changes.pop(name, None)
        metrics.update(p.values)
        self.run.metric_units.update(p.units)

    def _on_milestone(
        self, p: event_pb2.Milestone, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.milestone_id and p.milestone_id in self.milestones:
            raise FailedPrecondition(f"{path}.milestone_id: {p.milestone_id!r} already fired")

    def _on_alert(self, p: event_pb2.Alert, when: timestamp_pb2.Timestamp, path: str) -> None:
        """Alerts are shown to watchers; their effect on health comes as HealthChanged."""
        if p.step_id:
            self._known_step(p.step_id, path)

    def _on_error_recovery(
        self, p: event_pb2.ErrorRecovery, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        """Recoveries are shown to watchers; their effect on health comes as HealthChanged."""
        if p.step_id:
            self._known_step(p.step_id, path)

    def _add_artifact(self, artifact: run_pb2.Artifact, step_id: str) -> None:
        # The id and step are filled in on the event itself, before it is stored, so the log
        # and the snapshot name the artifact the same way, and a replay gives the same ids.
        artifact.step_id = artifact.step_id or step_id
        if not artifact.artifact_id:
            artifact.artifact_id = uuid.uuid4().hex[:12]
        stored = run_pb2.Artifact()
        stored.CopyFrom(artifact)
        step = self.step(stored.step_id) if stored.step_id else None
        if step is not None:
            step.artifacts.append(stored)
        summary = self.run.artifacts_summary
        summary.total += 1
        kind = stored.kind or "other"
        summary.by_kind[kind] = summary.by_kind[kind] + 1

    def _on_artifact_produced(
        self, p: event_pb2.ArtifactProduced, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.artifact.step_id:
            self._known_step(p.artifact.step_id, f"{path}.artifact")
        self._add_artifact(p.artifact, p.artifact.step_id)

    def _on_decision_requested(
        self, p: event_pb2.DecisionRequested, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.decision_id in self.decisions:
            raise InvalidArgument(
                f"{path}.decision_id",
                f"run {self.run.run_id!r} already has a decision {p.decision_id!r}",
            )
        if self.run.status == run_pb2.RUN_STATUS_RUNNING:
            self.run.status = run_pb2.RUN_STATUS_WAITING_FOR_INPUT

    def _on_decision_resolved(
        self, p: event_pb2.DecisionResolved, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        decision = self.decisions.get(p.decision_id)
        if decision is None or decision.state != decision_pb2.DECISION_STATE_OPEN:
            raise FailedPrecondition(f"{path}: decision {p.decision_id!r} is not open")

    def _on_health_changed(
        self, p: event_pb2.HealthChanged, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self.run.health = p.health

    def _on_estimate_updated(
        self, p: event_pb2.EstimateUpdated, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.HasField("estimate"):
            self.run.estimate.CopyFrom(p.estimate)
        else:
            self.run.ClearField("estimate")


def now_utc() -> datetime:
    return datetime.now(UTC)


def duration_of(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


_M = TypeVar("_M", run_pb2.Run, run_pb2.Step, decision_pb2.Decision, event_pb2.RunEvent)


def copied(message: _M) -> _M:
    """A copy of a message the caller may keep or change."""
    clone = type(message)()
    clone.CopyFrom(message)
    return clone
