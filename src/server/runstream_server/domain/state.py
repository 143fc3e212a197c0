"""A run's state, derived from its events: the single definition of what each event means.

Producers report facts ("step strategy progressed to 50%"); :meth:`RunState.apply` folds them
into the :class:`Run` snapshot that every watcher sees: status, progress, current step, active
agents, health. Replaying a run's log through ``apply`` rebuilds the same snapshot. What
step, item, agent and artifact events do lives in :class:`~.steps.RunSteps`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.domain.events import (
    ESTIMATE_INPUTS,
    KINDS,
    KindRules,
    KindWithoutFold,
    kind_name,
    kind_rules,
)
from runstream_server.domain.health import TROUBLE_KINDS, LoggedSteps, Steps, Troubles
from runstream_server.domain.steps import RunSteps
from runstream_server.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

TERMINAL_STATUSES = frozenset(
    {run_pb2.RUN_STATUS_SUCCEEDED, run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_CANCELLED}
)

# A PENDING run starts with its first event, except these (KindRules.starts_run).
_NOT_STARTING = frozenset(name for name, rules in KINDS.items() if not rules.starts_run)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP_SECONDS = range(-62_135_596_800, 253_402_300_800)  # 0001-01-01 to 9999-12-31


def to_timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """`moment` (naive: UTC) as a Timestamp: what protobuf's ``FromDatetime`` gives, by
    datetime arithmetic, for a third of its cost (each event is stamped with one)."""
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH
    seconds = since.days * 86_400 + since.seconds
    if seconds not in _TIMESTAMP_SECONDS:
        raise ValueError(f"{moment} is outside the years a Timestamp holds (1 to 9999)")
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=since.microseconds * 1000)


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    """`stamp` as an aware UTC datetime: what protobuf's ``ToDatetime(UTC)`` gives, for a
    fraction of its cost (each producer batch's estimate reads one)."""
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def status_name(status: int) -> str:
    return run_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_")


MAX_OPEN_DECISIONS = 100
"""The most decisions a run may have open at once. The workflows Runstream serves ask a
handful at a time (a LangGraph interrupt or an Agents SDK approval waits for its answer; a
fan-out of parallel tool calls asks a few more), and a run's end closes each open decision
with an event of its own: a run of 30,000 open decisions held the event loop for 51 s of CPU
as it was cancelled."""
MAX_RUN_DECISIONS = 10_000
"""The most decisions a run may ask in all: each stays in memory while the run does, and
loading the run reads the events of every one."""
MAX_DECISION_BYTES = 8 * 1024 * 1024
"""The most a run's decisions may hold, as asked (prompts, options, contexts: their
DecisionRequested payloads), and answered. They stay in memory with the run, beside its
snapshot and outside its cap: each question is held to the event's 256 KiB, but 10,000 of
those would be 2.5 GiB. 8 MiB is 2,000 questions of 4 KiB, or 32 of the largest."""

MAX_RUN_MILESTONES = 1_000
"""The most milestone ids a run keeps of its producer's: each stays in memory with the run
(to refuse it fired again), and loading the run reads the event of every one. Workflows name
a handful (a phase done, a threshold crossed). The server's own (:func:`server_milestone`)
never count and are never refused; a milestone without an id is not kept, so not limited."""
PROGRESS_MARKS = (25, 50, 75, 100)
"""The progress percentages the server fires a milestone at, ``progress-<mark>``."""
_SERVER_MILESTONES = frozenset({*(f"progress-{mark}" for mark in PROGRESS_MARKS), "speed"})

RECENT_ACTIVITY = 50
# Event kinds whose bookkeeping lives beside the snapshot; replayed when a run is loaded
# (artifacts: the ids of those of no step, which an artifact reported again replaces).
REMEMBERED_KINDS = (
    event_pb2.EVENT_KIND_MILESTONE,
    event_pb2.EVENT_KIND_DECISION_REQUESTED,
    event_pb2.EVENT_KIND_DECISION_RESOLVED,
    event_pb2.EVENT_KIND_ARTIFACT_PRODUCED,
)
TROUBLE_FIELDS = frozenset(kind_name(kind) for kind in TROUBLE_KINDS)


class RunState:
    """The live, derived state of one run: its ``Run`` snapshot, plus what the snapshot does
    not hold (decisions, fired milestones, the activity feed, the troubles behind its health),
    rebuilt from the log on load.
    """

    __slots__ = (
        "_milestones_shared",
        "_open",
        "_shared",
        "decision_bytes",
        "decisions",
        "estimated_at",
        "estimated_from",
        "milestones",
        "producer_milestones",
        "recent_activity",
        "run",
        "steps",
        "troubles",
    )

    def __init__(self, run: run_pb2.Run, steps: RunSteps | None = None) -> None:
        """`steps`: the run's steps already indexed (by :meth:`copy`)."""
        assert steps is None or steps.run is run, "the steps of another run"
        self.run = run
        self.steps = RunSteps(run) if steps is None else steps
        self.decisions: dict[str, decision_pb2.Decision] = {}
        """By decision id, in the order asked; read it, never change it: it is shared with the
        copies of this state (:meth:`copy`) until one of them folds a decision event, and so
        is each message in it (an answer replaces it)."""
        self._open: dict[str, None] = {}
        """The ids of the open decisions, in the order asked: what every event asks about
        (is the run still waiting?) without a pass over the decisions."""
        self._shared = False
        """Whether :attr:`decisions` and :attr:`_open` are shared with another state."""
        self.decision_bytes = 0
        """What the decisions hold, as :data:`MAX_DECISION_BYTES` counts it."""
        self.milestones: set[str] = set()
        """The ids of the milestones fired; read it, never change it: shared with the copies
        of this state until one of them fires one (:meth:`_own_milestones`)."""
        self._milestones_shared = False
        self.producer_milestones = 0
        """How many of them are not the server's own: what :data:`MAX_RUN_MILESTONES`
        counts."""
        self.recent_activity: deque[event_pb2.RunEvent] = deque(maxlen=RECENT_ACTIVITY)
        self.troubles = Troubles()
        self.estimated_at = 0.0
        """When a producer batch last made the estimate again, by its time (seconds since
        the epoch); 0.0: not since the run was loaded."""
        self.estimated_from = 0
        """The version of the workflow's history that estimate was made from."""

    @classmethod
    def new(cls, run_id: str) -> RunState:
        return cls(run_pb2.Run(run_id=run_id))

    @classmethod
    def restore(cls, run: run_pb2.Run, remembered: Iterable[event_pb2.RunEvent]) -> RunState:
        """The state of a stored run from its snapshot and its remembered-kind events."""
        state = cls(run)
        logged = LoggedSteps(state.steps)
        for event in remembered:
            if event.HasField("artifact_produced"):
                state.steps.artifacts.restore(event.artifact_produced.artifact)
                continue
            logged.log(event)
            state.remember(event, logged)
        return state

    def copy(self) -> RunState:
        """A state to fold a batch into, leaving this one as it is (made for every commit:
        what does not change in place is shared rather than copied)."""
        clone = run_pb2.Run()
        clone.CopyFrom(self.run)
        state = RunState.__new__(RunState)  # not __init__: its empty parts are all replaced
        state.run = clone
        state.steps = self.steps.over(clone)
        # The decisions shared, not copied (a run may hold thousands): the first decision
        # event either state folds copies them (_own_decisions).
        self._shared = state._shared = True
        state.decisions = self.decisions
        state._open = self._open
        state.decision_bytes = self.decision_bytes
        # Shared as the decisions are: a producer names its milestones, as many as it likes,
        # and a copy for each commit cost a pass over them all.
        self._milestones_shared = state._milestones_shared = True
        state.milestones = self.milestones
        state.producer_milestones = self.producer_milestones
        state.recent_activity = self.recent_activity.copy()
        state.troubles = self.troubles.copy()
        state.estimated_at = self.estimated_at
        state.estimated_from = self.estimated_from
        return state

    def open_decisions(self) -> list[decision_pb2.Decision]:
        """The open decisions, in the order asked."""
        decisions = self.decisions
        return [decisions[decision_id] for decision_id in self._open]

    @property
    def has_open_decisions(self) -> bool:
        return bool(self._open)

    def _own_milestones(self) -> None:
        """Makes the milestones this state's own, to change: copied if they are shared."""
        if self._milestones_shared:
            self.milestones = self.milestones.copy()
            self._milestones_shared = False

    def _own_decisions(self) -> None:
        """Makes the decisions this state's own, to change: copied if they are shared."""
        if self._shared:
            self.decisions = self.decisions.copy()
            self._open = self._open.copy()
            self._shared = False

    @property
    def is_terminal(self) -> bool:
        return self.run.status in TERMINAL_STATUSES

    @property
    def last_seq(self) -> int:
        return self.run.last_seq

    def step(self, step_id: str) -> run_pb2.Step | None:
        return self.steps.get(step_id)

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
                f"it accepts no further events ({path}.{name})",
                reason="RUN_ENDED",
            )
        when = event.event_time
        if name not in _NOT_STARTING and self.run.status == run_pb2.RUN_STATUS_PENDING:
            self._start(when)
        refs = _STEP_REFS.get(name)
        if refs is not None:
            self.steps.check_refs(getattr(event, name), refs, f"{path}.{name}")
        fold = _FOLDS.get(name)
        if fold is not None:
            fold(self, getattr(event, name), when, f"{path}.{name}")
        elif name not in KINDS:
            kind_rules(f"{path}.{name}", name)  # INVALID_ARGUMENT naming the unknown kind
        self.remember(event)
        if self.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT and not self._open:
            self.run.status = run_pb2.RUN_STATUS_RUNNING
        self.run.last_seq = event.seq
        # The server's clock; an event stored before receive_time existed has only its own.
        received = event.receive_time if event.HasField("receive_time") else when
        self.run.update_time.CopyFrom(received)
        # The progress is made of the estimate's inputs (steps, items, status): a kind that
        # moves none of them (KindRules.moves_estimate) leaves it as it was.
        if name in ESTIMATE_INPUTS:
            self.steps.update_progress()

    def remember(self, event: event_pb2.RunEvent, steps: Steps | None = None) -> None:
        """Keeps what the snapshot does not hold: decisions, milestones, recent activity, the
        troubles behind its health (folded with `steps`, as the event left them: the run's
        own unless it is being restored)."""
        name = event.WhichOneof("payload")
        if name in TROUBLE_FIELDS:
            self.troubles.note(event, self.steps if steps is None else steps)
        if name == "agent_activity":
            self.recent_activity.append(event)
        elif name == "milestone" and event.milestone.milestone_id:
            milestone_id = event.milestone.milestone_id
            self._own_milestones()
            if milestone_id not in self.milestones and not self.server_milestone(milestone_id):
                self.producer_milestones += 1
            self.milestones.add(milestone_id)
            marks = event.milestone.data.fields.get("marks")
            if milestone_id.startswith("progress-") and marks is not None:
                # A combined progress milestone ("25% and 50% complete") fires every mark:
                # the server's marks alone (a producer's list of 10,000 made 10,000 ids).
                for value in marks.list_value.values:
                    if value.number_value in PROGRESS_MARKS:
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
            self._own_decisions()
            self.decisions[p.decision_id] = decision
            self.decision_bytes += p.ByteSize()
            self._open[p.decision_id] = None
        elif name == "decision_resolved":
            resolved = event.decision_resolved
            self._own_decisions()
            self._open.pop(resolved.decision_id, None)
            self.decision_bytes += resolved.ByteSize()
            # A changed copy: the asked one is shared with the states this one was copied
            # from, and with whoever was handed it.
            decision = self.decisions[resolved.decision_id] = copied(
                self.decisions[resolved.decision_id]
            )
            decision.state = decision_pb2.DECISION_STATE_RESOLVED
            decision.outcome = resolved.outcome
            decision.choice = resolved.choice
            decision.answered_by = resolved.answered_by
            decision.resolve_time.CopyFrom(event.event_time)
            decision.resolved_seq = event.seq

    # --- the run's lifecycle --------------------------------------------------------------

    def _start(self, when: timestamp_pb2.Timestamp) -> None:
        self.run.status = run_pb2.RUN_STATUS_RUNNING
        self.run.start_time.CopyFrom(when)
        if self.run.health == run_pb2.RUN_HEALTH_UNSPECIFIED:
            self.run.health = run_pb2.RUN_HEALTH_HEALTHY
        # else STALLED, because it started late: the batch's HealthChanged says it recovered

    def _finish(self, status: int, when: timestamp_pb2.Timestamp) -> None:
        self.run.status = status  # type: ignore[assignment]
        self.run.end_time.CopyFrom(when)
        self.run.current_step_id = ""
        del self.run.active_agents[:]
        self.run.ClearField("estimate")  # nothing remains

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
        run.progress.unplanned = not p.steps
        for spec in p.steps:
            step = self.steps.add(spec.step_id, spec.name, spec.description, spec.agent)
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

    # --- the run's metrics, milestones, alerts, decisions and health: steps are RunSteps'

    def _on_metrics_update(
        self, p: event_pb2.MetricsUpdate, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.step_id:
            self.steps.known(p.step_id, path).metrics.update(p.values)  # checked: step_refs
            return
        metrics = self.run.metrics
        # The change is written onto the event itself before it is stored, so the log, a
        # replay and every watcher see the same "+500".
        p.ClearField("changes")
        for name, value in p.values.items():
            if name in metrics:
                change = value - metrics[name]
                if math.isfinite(change):  # two finite values may differ by more than that
                    p.changes[name] = change
        self.run.metric_changes.update(p.changes)
        for name in p.values:
            if name not in p.changes:
                self.run.metric_changes.pop(name, None)
        metrics.update(p.values)
        self.run.metric_units.update(p.units)

    def server_milestone(self, milestone_id: str) -> bool:
        """Whether `milestone_id` is one of those the server fires itself: a progress mark,
        ``speed``, or a target of this run reached (whoever fires it: a producer firing one
        first gains at most these few)."""
        if milestone_id in _SERVER_MILESTONES:
            return True
        return any(milestone_id == target_milestone_id(t) for t in self.run.targets)

    def _on_milestone(
        self, p: event_pb2.Milestone, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if not p.milestone_id:
            return
        if p.milestone_id in self.milestones:
            raise FailedPrecondition(
                f"{path}.milestone_id: {p.milestone_id!r} already fired", reason="MILESTONE_FIRED"
            )
        kept = self.producer_milestones
        if kept >= MAX_RUN_MILESTONES and not self.server_milestone(p.milestone_id):
            raise ResourceExhausted(
                f"{path}.milestone_id: run {self.run.run_id!r} keeps {kept} milestones, the "
                "most a run may keep; fire more without a milestone_id (the run keeps none of "
                "those)",
                reason="MILESTONE_LIMIT",
            )

    def _on_decision_requested(
        self, p: event_pb2.DecisionRequested, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.decision_id in self.decisions:
            raise InvalidArgument(
                f"{path}.decision_id",
                f"run {self.run.run_id!r} already has a decision {p.decision_id!r}",
            )
        asked = len(self.decisions)
        if asked >= MAX_RUN_DECISIONS:
            raise ResourceExhausted(
                f"{path}.decision_id: run {self.run.run_id!r} has asked {asked} decisions, "
                "the most a run may ask",
                reason="DECISION_LIMIT",
            )
        waiting = len(self._open)
        if waiting >= MAX_OPEN_DECISIONS:
            raise ResourceExhausted(
                f"{path}.decision_id: run {self.run.run_id!r} has {waiting} open decisions, "
                "the most a run may have open; ask again once some are answered",
                reason="DECISION_LIMIT",
            )
        held = self.decision_bytes + p.ByteSize()
        if held > MAX_DECISION_BYTES:
            raise ResourceExhausted(
                f"{path}: run {self.run.run_id!r} has decisions of {self.decision_bytes} "
                f"bytes, and this one would take them to {held}, past the limit of "
                f"{MAX_DECISION_BYTES} bytes; ask with a shorter prompt or context",
                reason="DECISION_LIMIT",
            )
        if self.run.status == run_pb2.RUN_STATUS_RUNNING:
            self.run.status = run_pb2.RUN_STATUS_WAITING_FOR_INPUT

    def _on_decision_resolved(
        self, p: event_pb2.DecisionResolved, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        decision = self.decisions.get(p.decision_id)
        if decision is None or decision.state != decision_pb2.DECISION_STATE_OPEN:
            raise FailedPrecondition(
                f"{path}: decision {p.decision_id!r} is not open", reason="DECISION_NOT_OPEN"
            )

    def _on_health_changed(
        self, p: event_pb2.HealthChanged, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self.run.health = p.health
        # Why it is so, beside it; a return to HEALTHY clears it: a reason on a healthy run
        # ("the run succeeded", "step X completed") is history, which the log keeps.
        self.run.health_reason = "" if p.health == run_pb2.RUN_HEALTH_HEALTHY else p.reason

    def _on_estimate_updated(
        self, p: event_pb2.EstimateUpdated, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        if p.HasField("estimate"):
            self.run.estimate.CopyFrom(p.estimate)
        else:
            self.run.ClearField("estimate")


Fold = Callable[[RunState, Any, timestamp_pb2.Timestamp, str], None]
"""How one event kind changes the state: (state, payload, event time, payload path)."""


def _folds(kinds: Mapping[str, KindRules]) -> dict[str, Fold]:
    """Each state-changing kind's fold, found by name: ``RunState._on_<kind>``, else
    ``RunSteps.on_<kind>`` on the state's steps. A kind without one fails at import, with a
    message saying where its fold goes (the server cannot start without it)."""
    folds: dict[str, Fold] = {}
    for name, rules in kinds.items():
        if not rules.changes_state:
            continue
        own = getattr(RunState, f"_on_{name}", None)
        steps = getattr(RunSteps, f"on_{name}", None)
        if own is not None:
            folds[name] = own
        elif steps is not None:
            folds[name] = _on_steps(steps)
        else:
            raise KindWithoutFold(
                f"event kind {name!r} changes the run's state (its (runstream.v1.kind) "
                "annotation in event.proto leaves changes_state true) but has no fold: write "
                f"RunState._on_{name} in domain/state.py, or RunSteps.on_{name} in "
                "domain/steps.py for a step, item, agent or artifact kind; or, if it changes "
                "nothing in the run's snapshot, put changes_state: false in that annotation"
            )
    return folds


def _on_steps(fold: Callable[[RunSteps, Any, timestamp_pb2.Timestamp, str], None]) -> Fold:
    def on_steps(state: RunState, p: Any, when: timestamp_pb2.Timestamp, path: str) -> None:
        fold(state.steps, p, when, path)

    return on_steps


_FOLDS = _folds(KINDS)
_STEP_REFS = {name: rules.step_refs for name, rules in KINDS.items() if rules.step_refs}


def target_milestone_id(target: run_pb2.Target) -> str:
    """The id of the milestone the server fires once the target's metric reaches it."""
    kind = "quality" if target.kind == run_pb2.TARGET_KIND_QUALITY else "target"
    return f"{kind}-{target.metric}"


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
