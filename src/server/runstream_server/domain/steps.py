"""A run's steps, the agents working on them, the artifacts they produce and the run's
progress: the part of :class:`~runstream_server.domain.state.RunState` that step, item,
agent and artifact events fold into (artifacts through :mod:`.artifacts`).

The steps live inside the ``Run`` snapshot; :class:`RunSteps` only adds an index by step id.
Its ``on_<kind>`` methods are the folds of those event kinds (RunState finds them by name).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import timestamp_pb2
from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.artifacts import RunArtifacts
from runstream_server.domain.events import field_at
from runstream_server.errors import FailedPrecondition, InvalidArgument, ResourceExhausted

MAX_RUN_STEPS = 2000
"""The most steps a run may have, planned and started beyond the plan. A run's end closes each
running step with an event of its own: tens of thousands of steps made one end take minutes of
the event loop."""

DONE_STEP = frozenset({run_pb2.STEP_STATUS_SUCCEEDED, run_pb2.STEP_STATUS_SKIPPED})
_ENDED_STEP = DONE_STEP | {run_pb2.STEP_STATUS_FAILED}
_ENDING_ACTIVITY = frozenset(
    {event_pb2.AGENT_ACTIVITY_TYPE_COMPLETED, event_pb2.AGENT_ACTIVITY_TYPE_FAILED}
)


_PERCENT_UNIT = 1074
"""Every double from 0 to 100 is a whole number of 2**-1074: the running steps' percents are
summed as such whole numbers, exactly, so that a sum kept up to date step by step is the sum
made over all the steps (float additions would depend on their order)."""
_PERCENT_ONE = 1 << _PERCENT_UNIT


def _exact(percent: float) -> int:
    """`percent` (0 to 100) as a whole number of 2**-_PERCENT_UNIT."""
    numerator, denominator = percent.as_integer_ratio()  # the denominator a power of two
    return numerator << (_PERCENT_UNIT + 1 - denominator.bit_length())


class RunSteps:
    """The steps of one run's snapshot, by id, and what step and agent events do to them."""

    __slots__ = ("_done", "_index", "_running", "_shape", "artifacts", "run")

    def __init__(
        self,
        run: run_pb2.Run,
        index: dict[str, int] | None = None,
        shape: tuple[bool, tuple[str, ...]] | None = None,
        counts: tuple[int, int] | None = None,
        artifacts: RunArtifacts | None = None,
    ) -> None:
        """`index`: the steps' positions when they are known already (a copy of a run);
        `shape`: its :attr:`shape`, when known; `counts`: the steps done and the running
        steps' percents, when known (:meth:`_count`); `artifacts`: the artifacts of the run
        copied, when this is a copy."""
        self.run = run
        self._index = (
            {step.step_id: i for i, step in enumerate(run.steps)} if index is None else index
        )
        self._shape = shape
        self._done, self._running = self._count() if counts is None else counts
        self.artifacts = RunArtifacts(run) if artifacts is None else artifacts.over(run)

    def over(self, run: run_pb2.Run) -> RunSteps:
        """The same steps in `run`, a copy of this one's run: its index copied, not rebuilt
        (steps are only ever appended, so their positions are the same)."""
        counts = (self._done, self._running)
        return RunSteps(run, dict(self._index), self._shape, counts, self.artifacts)

    def _count(self) -> tuple[int, int]:
        """The steps done, and the sum of the running steps' percents (as :func:`_exact`):
        what the progress is made of, kept up to date by each step's fold (:meth:`_leave`,
        :meth:`_enter`) so that an event costs the same whatever the run's steps."""
        done, running = 0, 0  # one pass: each step read makes a message object
        # steps[:] is a list made at once; a loop over the field itself asks for one item
        # past its end, and protobuf answers that with an IndexError: 1.5 us per loop.
        for step in self.run.steps[:]:
            status = step.status
            if status in DONE_STEP:
                done += 1
            elif status == run_pb2.STEP_STATUS_RUNNING:
                running += _exact(step.percent)
        return done, running

    def _leave(self, step: run_pb2.Step) -> None:
        """Takes `step` out of the counts, before its fold changes its status or percent."""
        status = step.status
        if status in DONE_STEP:
            self._done -= 1
        elif status == run_pb2.STEP_STATUS_RUNNING:
            self._running -= _exact(step.percent)

    def _enter(self, step: run_pb2.Step) -> None:
        """Puts `step` back into the counts, as its fold left it."""
        status = step.status
        if status in DONE_STEP:
            self._done += 1
        elif status == run_pb2.STEP_STATUS_RUNNING:
            self._running += _exact(step.percent)

    @property
    def shape(self) -> tuple[bool, tuple[str, ...]]:
        """Whether any step depends on others, and the planned steps' tracks in plan order
        (empty when none names one): the plan's, as steps started beyond it have neither.
        Read once per run (the estimate asks at each producer batch, and reading every
        step's fields costs more than the estimate itself)."""
        if self._shape is None:
            steps = self.run.steps
            tracks = tuple(step.track for step in steps)
            self._shape = (any(step.depends_on for step in steps), tracks if any(tracks) else ())
        return self._shape

    def get(self, step_id: str) -> run_pb2.Step | None:
        index = self._index.get(step_id)
        return None if index is None else self.run.steps[index]

    def add(self, step_id: str, name: str, description: str, agent: str) -> run_pb2.Step:
        self._index[step_id] = len(self.run.steps)
        return self.run.steps.add(
            step_id=step_id,
            name=name or step_id,
            description=description,
            agent=agent,
            status=run_pb2.STEP_STATUS_PENDING,
        )

    def known(self, step_id: str, path: str) -> run_pb2.Step:
        """The step an event names; INVALID_ARGUMENT at ``<path>.step_id`` if there is none."""
        step = self.get(step_id)
        if step is None:
            raise InvalidArgument(
                f"{path}.step_id",
                f"run {self.run.run_id!r} has no step {step_id!r}; "
                "plan it in CreateRun or start it with step_started",
            )
        return step

    def check_refs(self, payload: Any, refs: tuple[str, ...], path: str) -> None:
        """INVALID_ARGUMENT naming the field when one of the `refs` (dotted fields of
        `payload`, set or empty) names a step the run does not have."""
        for ref in refs:
            step_id = field_at(payload, ref)
            if step_id:
                owner = ref.rpartition(".")[0]  # known() names the owner's step_id
                self.known(step_id, f"{path}.{owner}" if owner else path)

    def _unfinished_step(self, step_id: str, path: str) -> run_pb2.Step:
        """The step an event names, not yet done; FAILED_PRECONDITION if it is."""
        step = self.known(step_id, path)
        _not_done(step, path)
        return step

    # --- step events ------------------------------------------------------------------------

    def on_step_started(
        self, p: event_pb2.StepStarted, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self.get(p.step_id)
        if step is None:
            if len(self.run.steps) >= MAX_RUN_STEPS:
                raise ResourceExhausted(
                    f"{path}.step_id: run {self.run.run_id!r} has {len(self.run.steps)} steps, "
                    "the most a run may have",
                    reason="STEP_LIMIT",
                )
            step = self.add(p.step_id, p.name, p.description, p.agent)
        _not_done(step, path)
        self._leave(step)
        if p.agent:
            step.agent = p.agent
        self._begin(step, when)
        self._enter(step)

    def on_step_progress(
        self, p: event_pb2.StepProgress, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._unfinished_step(p.step_id, path)
        self._leave(step)
        if step.status != run_pb2.STEP_STATUS_RUNNING:
            self._begin(step, when)
        step.percent = p.percent
        self._enter(step)
        if p.sub_step:
            step.sub_step = p.sub_step
        if p.detail:
            step.detail = p.detail
        if p.tokens_processed:
            step.tokens_processed = p.tokens_processed
        if p.HasField("sub_step_details"):
            step.sub_step_details.CopyFrom(p.sub_step_details)

    def on_step_completed(
        self, p: event_pb2.StepCompleted, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._unfinished_step(p.step_id, path)
        for i, artifact in enumerate(p.artifacts):  # checked before anything changes
            if artifact.step_id:
                self.known(artifact.step_id, f"{path}.artifacts[{i}]")
        self._leave(step)
        if p.HasField("duration"):
            step.duration.CopyFrom(p.duration)
        step.percent = 100
        if p.summary:
            step.summary = p.summary
        step.metrics.update(p.metrics)
        for artifact in p.artifacts:
            self.artifacts.add(artifact, step.step_id, self.get)
        self._end(step, run_pb2.STEP_STATUS_SUCCEEDED, when)
        self._enter(step)

    def on_step_failed(
        self, p: event_pb2.StepFailed, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._unfinished_step(p.step_id, path)
        self._leave(step)
        step.error.CopyFrom(p.error)
        self._end(step, run_pb2.STEP_STATUS_FAILED, when)
        self._enter(step)

    def on_step_skipped(
        self, p: event_pb2.StepSkipped, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        step = self._unfinished_step(p.step_id, path)
        self._leave(step)
        step.skip_reason = p.reason
        step.ClearField("error")  # Step.error: set only when status is FAILED
        step.ClearField("duration")  # end_time moves to the skip: duration follows it
        self._end(step, run_pb2.STEP_STATUS_SKIPPED, when)
        self._enter(step)

    def _begin(self, step: run_pb2.Step, when: timestamp_pb2.Timestamp) -> None:
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

    def _end(self, step: run_pb2.Step, status: int, when: timestamp_pb2.Timestamp) -> None:
        step.status = status  # type: ignore[assignment]
        step.end_time.CopyFrom(when)
        if not step.HasField("duration") and step.HasField("start_time"):
            elapsed = when.ToNanoseconds() - step.start_time.ToNanoseconds()
            step.duration.FromNanoseconds(max(0, elapsed))
        # The step's agents are done with it, whoever reported them, unless one is also the
        # agent of another step still running (a team working on parallel tracks): it stays,
        # on the latest-started of those.
        remaining = []
        for agent in self.run.active_agents:
            if agent.step_id == step.step_id:
                other = self._running_step_of(agent.agent_id)
                if other is None:
                    continue
                agent.step_id = other.step_id
            remaining.append(agent)
        if len(remaining) != len(self.run.active_agents):
            del self.run.active_agents[:]
            self.run.active_agents.extend(remaining)

    def _running_step_of(self, agent_id: str) -> run_pb2.Step | None:
        """The latest-started running step whose agent is `agent_id`, if any."""
        running = [
            s
            for s in self.run.steps
            if s.status == run_pb2.STEP_STATUS_RUNNING and s.agent == agent_id
        ]
        return max(running, key=lambda s: s.start_time.ToNanoseconds(), default=None)

    def on_item_progress(
        self, p: event_pb2.ItemProgress, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        """Progress counted in items (companies found) rather than steps."""
        items = self.run.progress.items
        items.completed = p.completed
        items.total = p.total
        if p.unit:
            items.unit = p.unit
        items.by_stage.clear()
        items.by_stage.update(p.by_stage)

    def recompute_progress(self) -> None:
        """The run's progress and current step, counted again over all its steps: what
        :meth:`update_progress` keeps up to date at the cost of the steps an event changed."""
        self._done, self._running = self._count()
        self.update_progress()

    def update_progress(self) -> None:
        """The run's progress and current step, after any event, from the counts its steps'
        folds keep: an event costs the same whatever the run's steps (a pass over 2,000 of
        them for each made 1,000 step_progress events cost 3.1 s of CPU, found in review)."""
        run = self.run
        steps = run.steps
        done = self._done
        running = self._running / _PERCENT_ONE  # the exact sum, rounded once
        progress = run.progress
        progress.completed_steps = done
        progress.total_steps = len(steps)
        items = progress.items if progress.HasField("items") else None
        if run.status == run_pb2.RUN_STATUS_SUCCEEDED:
            progress.percent = 100.0
        elif steps and not progress.unplanned:
            progress.percent = min(100.0, round((done + running / 100) / len(steps) * 100, 2))
        elif items is not None and items.total > 0:
            progress.percent = min(100.0, round(items.completed / items.total * 100, 2))
        if run.current_step_id:
            current = self.get(run.current_step_id)
            if current is None or current.status != run_pb2.STEP_STATUS_RUNNING:
                # Fall back to the latest-started step that is still running, if any.
                running_steps = [s for s in steps if s.status == run_pb2.STEP_STATUS_RUNNING]
                latest = max(
                    running_steps, key=lambda s: s.start_time.ToNanoseconds(), default=None
                )
                run.current_step_id = latest.step_id if latest else ""

    # --- agents and artifacts ---------------------------------------------------------------

    def on_agent_activity(
        self, p: event_pb2.AgentActivity, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        agent_id = p.agent_id or p.agent_name
        if p.agent_id and p.agent_name and p.agent_name != p.agent_id:
            self._claim_planned(p.agent_id, p.agent_name)
        if p.activity in _ENDING_ACTIVITY:
            remaining = [a for a in self.run.active_agents if a.agent_id != agent_id]
            del self.run.active_agents[:]
            self.run.active_agents.extend(remaining)
        elif not self._ended(p.step_id):
            self._agent_active(agent_id, p.agent_name, p.agent_type, p.step_id, p.message, when)
        # else a late report (a framework's callback firing after the step closed): kept in
        # the log and the activity feed, but the agent is not at work on a step that is over.

    def _claim_planned(self, agent_id: str, name: str) -> None:
        """A step's planned agent is listed under its name while the step runs; the agent's
        own report, under its id and that name, is the same agent: it takes the entry over
        (listed twice, the planned one stayed after the agent said it was done)."""
        agents = self.run.active_agents
        planned = next((a for a in agents if a.agent_id == name and a.name == name), None)
        if planned is None:
            return
        if any(a.agent_id == agent_id for a in agents):
            agents.remove(planned)
        else:
            planned.agent_id = agent_id

    def _ended(self, step_id: str) -> bool:
        step = self.get(step_id) if step_id else None
        return step is not None and step.status in _ENDED_STEP

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
        if name and name != agent_id:
            # The agent's own name, over the id a step's plan listed it under ("Media Planner"
            # for media_planner_agent); a step starting later names it by its id: kept as is.
            agent.name = name
        if agent_type:
            agent.type = agent_type
        if step_id:
            agent.step_id = step_id
        if message:
            agent.message = message

    def on_artifact_produced(
        self, p: event_pb2.ArtifactProduced, when: timestamp_pb2.Timestamp, path: str
    ) -> None:
        self.artifacts.produced(p.artifact, path, self.get)


def _not_done(step: run_pb2.Step, path: str) -> None:
    if step.status in DONE_STEP:
        state = run_pb2.StepStatus.Name(step.status).removeprefix("STEP_STATUS_")
        raise FailedPrecondition(
            f"{path}: step {step.step_id!r} already {state}", reason="STEP_ENDED"
        )
