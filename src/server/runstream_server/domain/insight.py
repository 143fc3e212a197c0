"""Run insight: completion estimates learned from history, health, computed milestones.

Everything here turns a run's state into server-written events (EstimateUpdated,
HealthChanged, Milestone) that go into the run's log like any other event, so every watcher
and every replay sees the same estimates, health changes and milestones.

The estimate
------------
Each workflow's completed runs teach the median duration of every step (a median, not a
mean, so one slow outlier run does not skew it). A running run's remaining time is the sum of

* for pending steps, their median duration scaled by this run's *pace* (the median ratio of
  actual to expected duration over the steps it has finished, clamped to 0.5-2x);
* for running steps, the average of "expected minus elapsed" and "elapsed extrapolated by
  the reported percent", so a step that reports progress is judged by it.

Steps without history borrow the median of the workflow's other steps. With no completed
run at all there is no estimate: unknown is said, not guessed. The range comes from the
spread (interquartile range) of the history.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf import struct_pb2, timestamp_pb2
from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.state import RunState, duration_of, to_timestamp

_DONE = frozenset({run_pb2.STEP_STATUS_SUCCEEDED, run_pb2.STEP_STATUS_SKIPPED})
_HIGH = frozenset({run_pb2.SEVERITY_HIGH, run_pb2.SEVERITY_CRITICAL})
PROGRESS_MARKS = (25, 50, 75, 100)


@dataclass(frozen=True)
class InsightPolicy:
    """How the server judges runs. Every field has a production default."""

    stall_after: float = 300.0
    """Seconds of silence that make a running run STALLED when its step has no history."""
    stall_factor: float = 3.0
    """With history, STALLED after this many times the running step's expected duration..."""
    stall_min: float = 30.0
    """...but never after less than this many seconds of silence."""
    history_runs: int = 20
    """Completed runs per workflow the estimate learns from (the newest)."""
    speed_ratio: float = 0.8
    """A run finishing in under this fraction of the usual duration fires a speed milestone."""


@dataclass
class WorkflowHistory:
    """Durations learned from a workflow's newest successful runs."""

    limit: int
    steps: dict[str, deque[float]] = field(default_factory=dict)
    totals: deque[float] = field(default_factory=deque)
    # Medians are read on every producer batch and change only when a run completes.
    _medians: dict[str, float] | None = field(default=None, repr=False)
    _fallback: float | None = field(default=None, repr=False)

    def learn(self, run: run_pb2.Run) -> None:
        if not run.HasField("start_time") or not run.HasField("end_time"):
            return
        self._medians = None
        self.totals.append(_seconds_between(run.start_time, run.end_time))
        while len(self.totals) > self.limit:
            self.totals.popleft()
        for step in run.steps:
            if step.status == run_pb2.STEP_STATUS_SUCCEEDED and step.HasField("duration"):
                samples = self.steps.setdefault(step.step_id, deque(maxlen=self.limit))
                samples.append(step.duration.ToNanoseconds() / 1e9)

    @property
    def runs(self) -> int:
        return len(self.totals)

    def expected(self, step_id: str) -> float | None:
        """The step's median duration; for a step never seen, the median of the others."""
        if self._medians is None:
            self._medians = {k: statistics.median(s) for k, s in self.steps.items() if s}
            known = list(self._medians.values())
            self._fallback = statistics.median(known) if known else None
        return self._medians.get(step_id, self._fallback)

    def spread(self) -> float:
        """Relative interquartile range across steps: how much durations vary."""
        spreads = []
        for samples in self.steps.values():
            if len(samples) >= 3:
                q1, _, q3 = statistics.quantiles(samples, n=4)
                median = statistics.median(samples)
                if median > 0:
                    spreads.append((q3 - q1) / median)
        return statistics.median(spreads) if spreads else 0.5


def _seconds_between(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp) -> float:
    return max(0.0, (end.ToNanoseconds() - start.ToNanoseconds()) / 1e9)


def estimate(state: RunState, history: WorkflowHistory, now: datetime) -> run_pb2.Estimate | None:
    """The run's remaining time as of `now`, or None without history."""
    if history.runs == 0:
        return None
    now_ns = int(now.timestamp() * 1e9)
    ratios = []
    for step in state.run.steps:
        expected = history.expected(step.step_id)
        if step.status == run_pb2.STEP_STATUS_SUCCEEDED and expected and step.HasField("duration"):
            ratios.append(step.duration.ToNanoseconds() / 1e9 / expected)
    pace = min(2.0, max(0.5, statistics.median(ratios))) if ratios else 1.0
    remaining = 0.0
    for step in state.run.steps:
        if step.status in _DONE:
            continue
        expected = (history.expected(step.step_id) or 0.0) * pace
        if step.status == run_pb2.STEP_STATUS_RUNNING and step.HasField("start_time"):
            elapsed = max(0.0, (now_ns - step.start_time.ToNanoseconds()) / 1e9)
            by_plan = max(expected - elapsed, 0.0)
            fraction = step.percent / 100
            if fraction >= 0.05:
                by_progress = elapsed * (1 - fraction) / fraction
                remaining += (by_plan + by_progress) / 2
            else:
                remaining += by_plan if by_plan > 0 else expected * 0.1
        else:
            remaining += expected
    spread = history.spread()
    confidence = min(1.0, history.runs / 5) * max(0.05, 1 - min(spread, 0.95))
    result = run_pb2.Estimate(
        remaining=duration_of(remaining),
        end_time=to_timestamp(now + timedelta(seconds=remaining)),
        confidence=round(confidence, 3),
        remaining_low=duration_of(remaining * max(0.0, 1 - spread / 2)),
        remaining_high=duration_of(remaining * (1 + spread / 2)),
        history_runs=history.runs,
    )
    return result


def estimate_moved(old: run_pb2.Estimate | None, new: run_pb2.Estimate | None) -> bool:
    """Whether watchers should hear of the new estimate: it appeared, vanished or moved."""
    if old is None or new is None:
        return (old is None) != (new is None)
    shift = abs(new.end_time.ToNanoseconds() - old.end_time.ToNanoseconds()) / 1e9
    remaining = new.remaining.ToNanoseconds() / 1e9
    # Relative, so short runs are corrected as often as long ones; the floor skips jitter.
    return shift > max(0.05, 0.1 * remaining)


def counted_down(estimate: run_pb2.Estimate, now: datetime) -> None:
    """Moves `remaining` (and its range) to `now`: the end time is what the estimate says."""
    left = (estimate.end_time.ToDatetime(UTC) - now).total_seconds()
    elapsed = estimate.remaining.ToNanoseconds() / 1e9 - max(0.0, left)
    for name in ("remaining", "remaining_low", "remaining_high"):
        value = getattr(estimate, name).ToNanoseconds() / 1e9
        getattr(estimate, name).CopyFrom(duration_of(max(0.0, value - elapsed)))


def next_health(health: int, event: event_pb2.RunEvent) -> int:
    """Health after one producer event: problems lower it, finished steps restore it."""
    name = event.WhichOneof("payload")
    if health in (run_pb2.RUN_HEALTH_UNSPECIFIED, run_pb2.RUN_HEALTH_STALLED):
        health = run_pb2.RUN_HEALTH_HEALTHY  # first assessment, or the producer spoke again
    if name == "step_failed" or (
        name == "error_recovery" and not event.error_recovery.can_continue
    ):
        return run_pb2.RUN_HEALTH_FAILING
    if name == "step_started" and health == run_pb2.RUN_HEALTH_FAILING:
        return run_pb2.RUN_HEALTH_DEGRADED  # a retry: no longer failing, not yet healthy
    if name == "error_recovery" or (name == "alert" and event.alert.severity in _HIGH):
        return health if health == run_pb2.RUN_HEALTH_FAILING else run_pb2.RUN_HEALTH_DEGRADED
    if name == "step_completed" and health == run_pb2.RUN_HEALTH_FAILING:
        return run_pb2.RUN_HEALTH_DEGRADED
    if name == "step_completed" and health == run_pb2.RUN_HEALTH_DEGRADED:
        return run_pb2.RUN_HEALTH_HEALTHY
    return health


def health_event(previous: int, health: int, reason: str) -> event_pb2.RunEvent:
    return event_pb2.RunEvent(
        health_changed=event_pb2.HealthChanged(
            previous_health=previous,  # type: ignore[arg-type]
            health=health,  # type: ignore[arg-type]
            reason=reason,
        )
    )


def _milestone(
    milestone_id: str, kind: int, title: str, description: str, **data: float | str
) -> event_pb2.RunEvent:
    payload = struct_pb2.Struct()
    payload.update(data)
    return event_pb2.RunEvent(
        milestone=event_pb2.Milestone(
            milestone_id=milestone_id,
            type=kind,  # type: ignore[arg-type]
            title=title,
            description=description,
            data=payload,
        )
    )


def progress_milestones(state: RunState, *, finished: bool = False) -> list[event_pb2.RunEvent]:
    """Milestones for every progress mark crossed and not yet fired, in order."""
    if not state.run.steps:
        return []  # a run without planned steps has no progress to mark
    percent = 100.0 if finished else state.run.progress.percent
    events = []
    for mark in PROGRESS_MARKS:
        key = f"progress-{mark}"
        if percent >= mark and key not in state.milestones:
            events.append(
                _milestone(
                    key,
                    event_pb2.MILESTONE_TYPE_PROGRESS,
                    f"{mark}% complete",
                    _progress_note(state),
                    percent=mark,
                )
            )
    return events


def _progress_note(state: RunState) -> str:
    progress = state.run.progress
    note = f"{progress.completed_steps} of {progress.total_steps} steps done"
    current = state.step(state.run.current_step_id) if state.run.current_step_id else None
    return f"{note}, {current.name} under way" if current is not None else note


def target_milestones(state: RunState) -> list[event_pb2.RunEvent]:
    """Milestones for declared targets whose metric has reached its value, once each."""
    events = []
    for target in state.run.targets:
        quality = target.kind == run_pb2.TARGET_KIND_QUALITY
        key = f"{'quality' if quality else 'target'}-{target.metric}"
        value = state.run.metrics.get(target.metric)
        if value is None or value < target.value or key in state.milestones:
            continue
        title = "Quality threshold met" if quality else "Target reached!"
        events.append(
            _milestone(
                key,
                event_pb2.MILESTONE_TYPE_QUALITY
                if quality
                else event_pb2.MILESTONE_TYPE_TARGET_REACHED,
                title,
                target.title or f"{target.metric} reached {value:g} (target {target.value:g})",
                metric=target.metric,
                value=value,
                target=target.value,
            )
        )
    return events


def speed_milestone(
    state: RunState, history: WorkflowHistory, end: datetime, ratio: float
) -> list[event_pb2.RunEvent]:
    """A milestone when the run finishes well under its workflow's usual duration."""
    if history.runs == 0 or "speed" in state.milestones or not state.run.HasField("start_time"):
        return []
    usual = statistics.median(history.totals)
    took = max(0.0, end.timestamp() - state.run.start_time.ToNanoseconds() / 1e9)
    if usual <= 0 or took >= ratio * usual:
        return []
    faster = round((1 - took / usual) * 100)
    return [
        _milestone(
            "speed",
            event_pb2.MILESTONE_TYPE_SPEED,
            "Faster than expected",
            f"Finished in {took:.0f}s, {faster}% faster than the usual {usual:.0f}s",
            seconds=round(took, 3),
            usual_seconds=round(usual, 3),
        )
    ]


def stall_threshold(state: RunState, history: WorkflowHistory, policy: InsightPolicy) -> float:
    """Seconds of silence after which the run counts as STALLED."""
    running = [s for s in state.run.steps if s.status == run_pb2.STEP_STATUS_RUNNING]
    expected = [history.expected(s.step_id) for s in running]
    known = [e for e in expected if e]
    if known:
        return max(policy.stall_min, policy.stall_factor * max(known))
    return policy.stall_after


def health_after(health: int, events: Iterable[event_pb2.RunEvent]) -> tuple[int, str]:
    """Health after a batch of producer events, and the event that last changed it."""
    reason = ""
    for event in events:
        updated = next_health(health, event)
        if updated != health:
            reason = _reason(event)
        health = updated
    return health, reason


def _reason(event: event_pb2.RunEvent) -> str:
    name = event.WhichOneof("payload") or ""
    if name == "step_failed":
        return f"step {event.step_failed.step_id} failed: {event.step_failed.error.message}"
    if name == "error_recovery":
        return f"recovering: {event.error_recovery.error_message}"
    if name == "alert":
        return f"alert: {event.alert.message}"
    if name == "step_completed":
        return f"step {event.step_completed.step_id} completed"
    if name == "step_started":
        return f"step {event.step_started.step_id} retried"
    return "the producer reported again"
