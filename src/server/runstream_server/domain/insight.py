"""Run insight: completion estimates learned from history, health, computed milestones.

Everything here turns a run's state into server-written events (EstimateUpdated,
HealthChanged, Milestone) that go into the run's log like any other event, so every watcher
and every replay sees the same estimates, health changes and milestones.

The estimate
------------
Each workflow's completed runs teach the median duration of every step (a median, not a
mean, so one slow outlier run does not skew it). What is left of each step is

* for pending steps, their median duration scaled by this run's *pace* (the median ratio of
  actual to expected duration over the steps it has finished, clamped to 0.25-4x);
* for running steps, the average of "expected minus elapsed" and "elapsed extrapolated by
  the reported percent", so a step that reports progress is judged by it.

A running run's remaining time is the longest chain of what is left: the steps of one track
run one after another, tracks side by side, and a step waits for those it depends on. A plan
without tracks is one chain: the sum of what is left of every step.

Steps without history borrow the median of the workflow's other steps. A run without steps
that reports item counts is judged the same way by its item fraction against the workflow's
usual total duration. With no completed run at all the server has no estimate of its own: it
shows the producer's (``estimated_time_remaining``, marked ESTIMATE_SOURCE_PRODUCER) when the
producer sends one, and says nothing otherwise; as soon as history exists, it wins. The range
comes from the spread (interquartile range) of the history, widened by how far this run's
pace is from it (a run three times slower than its history is not known to the history's
precision), and so does the confidence.

The estimate is made again after each producer batch that may move it (a step's start,
progress or end, item counts, the run's status), and after other batches (custom events,
thoughts, tokens) only every ESTIMATE_EVERY seconds, or once the workflow's history learned a
run: between those only the clock moves it.

While a run waits for input or is paused its estimate is *held*: the remaining time stands
still and the end time moves with the clock, until the run goes on.

A run past its estimate is *overdue*: it says MIN_RUNNING_REMAINING ("about a second"),
never less, and is not stored again while it stays so; otherwise every event of a late run
would move the end time by its own elapsed time and store another EstimateUpdated.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.events import SERVER_KEY_PREFIX
from runstream_server.domain.health import Troubles
from runstream_server.domain.state import (
    PROGRESS_MARKS,
    TERMINAL_STATUSES,
    RunState,
    duration_of,
    target_milestone_id,
    to_timestamp,
)

_DONE = frozenset({run_pb2.STEP_STATUS_SUCCEEDED, run_pb2.STEP_STATUS_SKIPPED})
_HOLDING = frozenset({run_pb2.RUN_STATUS_WAITING_FOR_INPUT, run_pb2.RUN_STATUS_PAUSED})
# An estimate of a run that still runs says at least this, not "0 s": it is not done.
MIN_RUNNING_REMAINING = 1.0
# An estimate that moves only because the clock does (the run is late, the remaining time
# stands still) is stored again at most once per this many seconds.
DRIFT_INTERVAL = 5.0
# A producer batch that moves none of the estimate's inputs (a custom event, a thought, a
# token) makes it again only if this many seconds passed, by the batches' times, since it
# was last made: meanwhile only the clock moved it, which a reader's count-down covers, and
# a run reporting hundreds of events a second paid for a new estimate with every one.
ESTIMATE_EVERY = 0.5
# The longest remaining time an estimate says (100 years), whatever history or the producer
# claims: its range stays a valid duration (its end time, see _end_time, a valid time).
MAX_REMAINING = 3_155_760_000.0
_LAST_TIME = datetime.max.replace(tzinfo=UTC)
_LAST_SECOND = _LAST_TIME.timestamp()


@dataclass(frozen=True)
class InsightPolicy:
    """How the server judges runs. Every field has a production default."""

    stall_after: float = 300.0
    """Seconds of silence that make a running run STALLED when its step has no history."""
    stall_factor: float = 3.0
    """With history, STALLED after this many times the running step's expected duration..."""
    stall_min: float = 30.0
    """...but never after less than this many seconds of silence."""
    start_within: float = 300.0
    """A run still PENDING this many seconds after it was created is STALLED: its producer
    may have stopped between CreateRun and its first event. Its status stays PENDING."""
    abandon_after: float | None = None
    """Seconds a run may stay STALLED (running, or never started) with no event before the
    server ends it FAILED, with the error code :data:`ABANDONED`: its producer is taken for
    gone, and retention may then purge its log. None: a silent run waits for its producer
    for ever."""
    check_every: float | None = None
    """Seconds between the passes of the stall check. None: a quarter of the shortest
    threshold, between 0.05 s and a second (a pass a second with the defaults)."""
    history_runs: int = 20
    """Completed runs per workflow the estimate learns from (the newest)."""
    speed_ratio: float = 0.8
    """A run finishing in under this fraction of the usual duration fires a speed milestone."""
    history_refresh: float = 30.0
    """On a shared store, seconds after which a replica reads a workflow's history again: the
    runs other replicas completed reach it only so (it follows only the runs it holds)."""
    history_workflows: int = 1000
    """Workflows whose histories a process keeps (about 6 KB each), the least recently used
    dropped beyond: one read again at its workflow's next commit."""


_VERSIONS = itertools.count(1)


@dataclass
class WorkflowHistory:
    """Durations learned from a workflow's newest successful runs."""

    limit: int
    version: int = field(default_factory=lambda: next(_VERSIONS), init=False)
    """Another number for every history made and every run it learns, process-wide: an
    estimate made from one version is made again from the next (:func:`estimate_due`)."""
    steps: dict[str, deque[float]] = field(default_factory=dict)
    totals: deque[float] = field(default_factory=deque)
    # Each learnt run's step durations, newest last: a step's samples are those of the runs
    # still in the window, as after a fresh read (a step absent from the newest `limit` runs
    # has none, whatever older runs said of it).
    _runs: deque[dict[str, float]] = field(default_factory=deque, repr=False)
    # What the estimate reads at each producer batch changes only when a run completes:
    # made once per run learnt, on first use.
    _medians: dict[str, float] | None = field(default=None, repr=False)
    _fallback: float | None = field(default=None, repr=False)
    _usual: float | None = field(default=None, repr=False)
    _spread: float | None = field(default=None, repr=False)
    # Each learnt run's whole duration over the longest chain of its steps' durations: the
    # time a run spends outside its steps (between them, before the first, after the last).
    _outside: deque[float] = field(default_factory=deque, repr=False)
    _overhead: float | None = field(default=None, repr=False)

    def learn(self, run: run_pb2.Run) -> None:
        if not run.HasField("start_time") or not run.HasField("end_time"):
            return
        self._medians = self._usual = self._spread = self._overhead = None
        self.version = next(_VERSIONS)
        total = _seconds_between(run.start_time, run.end_time)
        self.totals.append(total)
        durations = {
            step.step_id: step.duration.ToNanoseconds() / 1e9
            for step in run.steps
            if step.status == run_pb2.STEP_STATUS_SUCCEEDED and step.HasField("duration")
        }
        self._runs.append(durations)
        timed = [s for s in run.steps if s.step_id in durations]
        chain = _longest_chain(timed, durations) if timed else 0.0
        self._outside.append(total / chain if chain > 0 else 1.0)
        while len(self.totals) > self.limit:
            self.totals.popleft()
            self._runs.popleft()
            self._outside.popleft()
        steps: dict[str, deque[float]] = {}
        for durations in self._runs:
            for step_id, seconds in durations.items():
                steps.setdefault(step_id, deque(maxlen=self.limit)).append(seconds)
        self.steps = steps

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

    def usual(self) -> float:
        """The median duration of a whole run (there is at least one)."""
        if self._usual is None:
            self._usual = statistics.median(self.totals)
        return self._usual

    def overhead(self) -> float:
        """How much longer runs took than their steps' longest chain (1.0: no time outside
        steps), the median over the window, at most 4x."""
        if self._overhead is None:
            self._overhead = (
                min(4.0, max(1.0, statistics.median(self._outside))) if self._outside else 1.0
            )
        return self._overhead

    def spread(self) -> float:
        """Relative interquartile range across steps: how much durations vary."""
        if self._spread is None:
            spreads = []
            for samples in self.steps.values():
                if len(samples) >= 3:
                    q1, _, q3 = statistics.quantiles(samples, n=4)
                    median = statistics.median(samples)
                    if median > 0:
                        spreads.append((q3 - q1) / median)
            self._spread = statistics.median(spreads) if spreads else 0.5
        return self._spread


def _end_time(now: datetime, remaining: float) -> timestamp_pb2.Timestamp:
    """`remaining` seconds after `now`, or the last time there is: `now` may lie in the year
    9999 (a server clock set so), where adding to it would overflow. Compared
    as timedeltas: the room left as float seconds (some 10^11 of them) loses its last
    microseconds, and rounded up it overflowed about every other time."""
    step = timedelta(seconds=min(remaining, MAX_REMAINING))
    return to_timestamp(now + min(step, _LAST_TIME - now))


def _seconds_between(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp) -> float:
    return max(0.0, (end.ToNanoseconds() - start.ToNanoseconds()) / 1e9)


def _copy_estimate(source: run_pb2.Estimate) -> run_pb2.Estimate:
    clone = run_pb2.Estimate()
    clone.CopyFrom(source)
    return clone


def producer_estimate(
    spoken: Iterable[event_pb2.RunEvent], now: datetime, at: datetime | None = None
) -> run_pb2.Estimate | None:
    """The producer's own estimate from its latest event that carries one, as of `now` (by
    the producer's clock, as its events' times), ending `at` (the server's now) plus the
    time left."""
    latest: tuple[float, datetime] | None = None
    for event in spoken:
        payload = event.step_progress if event.HasField("step_progress") else event.item_progress
        if payload.HasField("estimated_time_remaining"):
            said = min(payload.estimated_time_remaining.ToNanoseconds() / 1e9, MAX_REMAINING)
            when = event.event_time.ToDatetime(UTC) if event.HasField("event_time") else now
            latest = (said, when)
    if latest is None:
        return None
    said, when = latest
    remaining = max(0.0, said - max(0.0, (now - when).total_seconds()))
    left = duration_of(remaining)
    return run_pb2.Estimate(
        remaining=left,
        end_time=_end_time(now if at is None else at, remaining),
        remaining_low=left,
        remaining_high=left,
        source=run_pb2.ESTIMATE_SOURCE_PRODUCER,
    )


def estimate(
    state: RunState,
    history: WorkflowHistory,
    now: datetime,
    spoken: Iterable[event_pb2.RunEvent] = (),
    at: datetime | None = None,
) -> run_pb2.Estimate | None:
    """The run's remaining time as of `now`: learned from history when there is some, else
    the producer's latest figure (from `spoken`, or the one already shown), else None.

    `now` is in the frame of the run's event times (how long its steps have run); the end
    time is counted from `at`, the server's now (`now` when not given): a producer's clock
    minutes off moved every end time by as much, counted down by the server's clock.
    A held estimate (the run waits or is paused) is returned unchanged.
    """
    at = now if at is None else at
    current = state.run.estimate if state.run.HasField("estimate") else None
    if current is not None and state.run.status in _HOLDING:
        return _copy_estimate(current)
    if history.runs == 0:
        said = producer_estimate(spoken, now, at)
        if said is not None:
            return said
        if current is not None and current.source == run_pb2.ESTIMATE_SOURCE_PRODUCER:
            return _copy_estimate(current)
        return None
    return _from_history(*_learned(state, history, now), history, at)


def _learned(state: RunState, history: WorkflowHistory, now: datetime) -> tuple[float, float]:
    """The remaining seconds history says, and the spread of its range."""
    learned, pace = _learned_remaining(state, history, now)
    # An overdue run says "about a second", like a reader's count-down, not "0.1 s".
    remaining = min(max(learned, MIN_RUNNING_REMAINING), MAX_REMAINING)
    return remaining, max(history.spread(), min(abs(pace - 1), 0.95))


def _from_history(
    remaining: float, spread: float, history: WorkflowHistory, now: datetime
) -> run_pb2.Estimate:
    confidence = min(1.0, history.runs / 5) * max(0.05, 1 - min(spread, 0.95))
    return run_pb2.Estimate(
        remaining=duration_of(remaining),
        end_time=_end_time(now, remaining),
        confidence=round(confidence, 3),
        remaining_low=duration_of(remaining * max(0.0, 1 - spread / 2)),
        remaining_high=duration_of(remaining * (1 + spread / 2)),
        history_runs=history.runs,
        source=run_pb2.ESTIMATE_SOURCE_HISTORY,
    )


def estimate_again(
    state: RunState,
    history: WorkflowHistory,
    now: datetime,
    spoken: Iterable[event_pb2.RunEvent] = (),
    at: datetime | None = None,
) -> list[event_pb2.RunEvent]:
    """The run's estimate made again as of `now`, ending from `at` (:func:`estimate`), as an
    EstimateUpdated if it moved (one without an estimate when it vanished)."""
    at = now if at is None else at
    run = state.run
    previous = run.estimate if run.HasField("estimate") else None
    if (
        previous is not None
        and previous.source == run_pb2.ESTIMATE_SOURCE_HISTORY
        and not previous.held
        and run.status not in _HOLDING
        and history.runs
    ):
        # Each producer batch of a workflow with history comes here (estimate_due): the time
        # remaining alone tells whether the estimate moved, and only then is it a message.
        remaining, spread = _learned(state, history, now)
        made_at = at.timestamp()
        if not _moved(previous, remaining, min(made_at + remaining, _LAST_SECOND) - remaining):
            return []
        return [_updated(_from_history(remaining, spread, history, at))]
    made = estimate(state, history, now, spoken, at)
    if not estimate_moved(previous, made):
        return []
    return [_updated(made)]


def estimate_due(
    state: RunState, history: WorkflowHistory, as_of: float, inputs_moved: bool
) -> bool:
    """Whether a producer batch at `as_of` (seconds since the epoch) makes the run's
    estimate again: it moved the estimate's inputs (``KindRules.moves_estimate``), the
    workflow's history learned a run since (a first estimate, new medians), or
    ESTIMATE_EVERY seconds passed since it was last made (a clock that went back: now)."""
    return (
        inputs_moved
        or history.version != state.estimated_from
        or not 0.0 <= as_of - state.estimated_at < ESTIMATE_EVERY
    )


def _updated(estimate: run_pb2.Estimate | None) -> event_pb2.RunEvent:
    return event_pb2.RunEvent(estimate_updated=event_pb2.EstimateUpdated(estimate=estimate))


def _by_plan_and_progress(expected: float, elapsed: float, fraction: float) -> float:
    """Remaining time of work under way: the plan and the reported fraction, averaged."""
    by_plan = max(expected - elapsed, 0.0)
    if fraction >= 0.05:
        remaining = (by_plan + elapsed * (1 - fraction) / fraction) / 2
    else:
        remaining = by_plan if by_plan > 0 else expected * 0.1
    # Work that still runs is never "done in 0 s", however late it is.
    return max(remaining, 0.05 * expected)


def _learned_remaining(
    state: RunState, history: WorkflowHistory, now: datetime
) -> tuple[float, float]:
    """The run's remaining seconds, and its pace against its history (1.0: as usual)."""
    now_ns = int(now.timestamp() * 1e9)
    run = state.run
    if not run.steps:
        usual = history.usual()
        started = run.start_time.ToNanoseconds() if run.HasField("start_time") else now_ns
        elapsed = max(0.0, (now_ns - started) / 1e9)
        items = run.progress.items
        fraction = items.completed / items.total if items.total > 0 else 0.0
        return _by_plan_and_progress(usual, elapsed, min(fraction, 1.0)), 1.0
    # One pass over the steps (each producer batch makes the estimate again): what is left
    # of a step scales with the pace, known only once every finished step was seen, so a
    # pending step keeps its expected time and a running one (index, expected, elapsed,
    # fraction) until then.
    ratios = []
    left: list[float] = []  # what is left of each step, in plan order
    running: list[tuple[int, float, float, float]] = []
    for step in run.steps:
        status = step.status
        expected = history.expected(step.step_id)
        if status in _DONE:
            if status == run_pb2.STEP_STATUS_SUCCEEDED and expected and step.HasField("duration"):
                ratios.append(step.duration.ToNanoseconds() / 1e9 / expected)
            left.append(0.0)
        elif status == run_pb2.STEP_STATUS_RUNNING and step.HasField("start_time"):
            elapsed = max(0.0, (now_ns - step.start_time.ToNanoseconds()) / 1e9)
            running.append((len(left), expected or 0.0, elapsed, step.percent / 100))
            left.append(0.0)
        else:
            left.append(expected or 0.0)
    pace = min(4.0, max(0.25, statistics.median(ratios))) if ratios else 1.0
    if pace != 1.0:
        left = [seconds * pace for seconds in left]
    for i, expected, elapsed, fraction in running:
        left[i] = _by_plan_and_progress(expected * pace, elapsed, fraction)
    overhead = history.overhead()
    if overhead != 1.0:
        left = [seconds * overhead for seconds in left]
    dependent, tracks = state.steps.shape  # each estimate runs this: the least that will do
    if dependent:
        steps = state.run.steps
        return _longest_chain(steps, dict(zip((s.step_id for s in steps), left, strict=True))), pace
    if not tracks:
        return sum(left), pace
    # Tracks side by side, the steps of each one after another (steps beyond the plan: "").
    by_track: dict[str, float] = {}
    for i, seconds in enumerate(left):
        track = tracks[i] if i < len(tracks) else ""
        by_track[track] = by_track.get(track, 0.0) + seconds
    return max(by_track.values(), default=0.0), pace


def _longest_chain(steps: Sequence[run_pb2.Step], left: dict[str, float]) -> float:
    """The time until the last step is done, each taking what is `left` of it: a step starts
    once those it depends on and the step before it on its track (tracks run side by side,
    the steps of one track one after another) are done. Steps in a cycle of the two (a step
    depending on one after it on its own track) wait only for those already timed."""
    before: dict[str, set[str]] = {}
    last_on_track: dict[str, str] = {}
    for step in steps:
        prior = {d for d in step.depends_on if d in left and d != step.step_id}
        if step.track in last_on_track:
            prior.add(last_on_track[step.track])
        last_on_track[step.track] = step.step_id
        before[step.step_id] = prior
    waiting = {step_id: len(prior) for step_id, prior in before.items()}
    after: dict[str, list[str]] = {step_id: [] for step_id in before}
    for step_id, prior in before.items():
        for other in prior:
            after[other].append(step_id)
    done_at: dict[str, float] = {}
    ready = deque(step_id for step_id, count in waiting.items() if count == 0)
    while len(done_at) < len(before):
        # Nothing ready with steps left: a cycle; take the first of them in plan order.
        step_id = ready.popleft() if ready else next(s for s in before if s not in done_at)
        if step_id in done_at:
            continue
        start = max((done_at[p] for p in before[step_id] if p in done_at), default=0.0)
        done_at[step_id] = start + left[step_id]
        for other in after[step_id]:
            waiting[other] -= 1
            if waiting[other] == 0:
                ready.append(other)
    return max(done_at.values(), default=0.0)


def estimate_moved(old: run_pb2.Estimate | None, new: run_pb2.Estimate | None) -> bool:
    """Whether watchers should hear of the new estimate: it appeared, vanished or moved.

    Both are compared as a reader sees them at the new one's time: the old one counted down,
    each at least MIN_RUNNING_REMAINING. An overdue run therefore stays quiet (both say
    "about a second"), and one that is merely late (its remaining time stands still while its
    end time moves with the clock) is told at most once per DRIFT_INTERVAL.
    """
    if old is None or new is None:
        return (old is None) != (new is None)
    if old.held != new.held or old.source != new.source:
        return True
    new_said = _seconds(new.remaining)
    return _moved(old, new_said, _seconds(new.end_time) - new_said)


def _moved(old: run_pb2.Estimate, new_said: float, new_made: float) -> bool:
    """Whether a new estimate of the same kind as `old`, saying `new_said` seconds as of
    `new_made` (seconds since the epoch), moved from it (:func:`estimate_moved`)."""
    old_said = _seconds(old.remaining)
    old_made = _seconds(old.end_time) - old_said  # the moment each estimate was made
    old_now = max(MIN_RUNNING_REMAINING, _seconds(old.end_time) - new_made)
    new_now = max(MIN_RUNNING_REMAINING, new_said)
    # Relative, so short runs are corrected as often as long ones; the floor skips jitter.
    noticeable = max(0.05, 0.1 * new_now)
    if abs(new_now - old_now) <= noticeable:
        return False
    drift = abs(max(MIN_RUNNING_REMAINING, old_said) - new_now) <= noticeable
    return not drift or new_made - old_made >= DRIFT_INTERVAL


def _seconds(value: duration_pb2.Duration | timestamp_pb2.Timestamp) -> float:
    return value.ToNanoseconds() / 1e9


def count_down(run: run_pb2.Run, now: datetime) -> None:
    """Moves a running run's estimate to `now` for a reader.

    A held estimate keeps its remaining time and ends `remaining` from now. A counted-down
    estimate keeps its end time (past it, the estimate is overdue) and says at least
    MIN_RUNNING_REMAINING, never zero; the remaining time always stays inside its range. An
    ended run has none (snapshots stored before it ended kept their last).
    """
    if run.status in TERMINAL_STATUSES:
        run.ClearField("estimate")
    if not run.HasField("estimate"):
        return
    estimate = run.estimate
    if estimate.held:
        _not_zero(estimate)  # held when it was counted down to nothing
        left = estimate.remaining.ToNanoseconds() / 1e9
        estimate.end_time.CopyFrom(_end_time(now, left))
    else:
        counted_down(estimate, now)  # end_time stays: past it, the estimate is overdue
        _not_zero(estimate)


def _not_zero(estimate: run_pb2.Estimate) -> None:
    """An estimate of a run that still runs: at least MIN_RUNNING_REMAINING, never "nothing
    left", and the remaining time inside its range."""
    if estimate.remaining.ToNanoseconds() < MIN_RUNNING_REMAINING * 1e9:
        estimate.remaining.CopyFrom(duration_of(MIN_RUNNING_REMAINING))
    if estimate.remaining_low.ToNanoseconds() > estimate.remaining.ToNanoseconds():
        estimate.remaining_low.CopyFrom(estimate.remaining)
    if estimate.remaining_high.ToNanoseconds() < estimate.remaining.ToNanoseconds():
        estimate.remaining_high.CopyFrom(estimate.remaining)


def hold_events(state: RunState) -> list[event_pb2.RunEvent]:
    """An EstimateUpdated when the run starts or stops waiting (input, pause): held while it
    waits, as of the moment it began, and released with an end time from the moment it goes
    on. `state` is after the batch; its update_time is when the server received it.
    """
    run = state.run
    if not run.HasField("estimate") or state.is_terminal:
        return []
    holding = run.status in _HOLDING
    if holding == run.estimate.held:
        return []
    now = run.update_time.ToDatetime(UTC)
    updated = _copy_estimate(run.estimate)
    if holding:
        counted_down(updated, now)
        _not_zero(updated)
    left = updated.remaining.ToNanoseconds() / 1e9
    updated.end_time.CopyFrom(_end_time(now, left))
    updated.held = holding
    return [_updated(updated)]


def counted_down(estimate: run_pb2.Estimate, now: datetime) -> None:
    """Moves `remaining` (and its range) to `now`: the end time is what the estimate says.
    Counting down never adds time: an end time further away than the remaining time (a
    producer whose clock runs ahead, up to the year 9999) leaves it as it is."""
    left = (estimate.end_time.ToDatetime(UTC) - now).total_seconds()
    elapsed = max(0.0, estimate.remaining.ToNanoseconds() / 1e9 - max(0.0, left))
    for name in ("remaining", "remaining_low", "remaining_high"):
        value = getattr(estimate, name).ToNanoseconds() / 1e9
        getattr(estimate, name).CopyFrom(duration_of(max(0.0, value - elapsed)))


def completion_health(state: RunState) -> list[event_pb2.RunEvent]:
    """A run that succeeds is HEALTHY, whatever it recovered from on the way."""
    health = state.run.health
    if health in (run_pb2.RUN_HEALTH_HEALTHY, run_pb2.RUN_HEALTH_UNSPECIFIED):
        return []
    return [health_event(health, run_pb2.RUN_HEALTH_HEALTHY, "the run succeeded")]


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
    """One milestone for the progress marks crossed and not yet fired.

    Marks crossed together (a batch that jumps from 20 % to 55 %) make one milestone naming
    them all ("25% and 50% complete"), keyed by the highest; 100 % fires only when the run
    has succeeded, never while its last step still runs.
    """
    progress = state.run.progress
    measured = state.run.steps and not progress.unplanned
    if not measured and progress.items.total <= 0:
        return []  # nothing planned to measure progress against
    percent = 100.0 if finished else progress.percent
    crossed = [
        mark
        for mark in PROGRESS_MARKS
        if percent >= mark
        and f"progress-{mark}" not in state.milestones
        and (mark < 100 or finished)
    ]
    if not crossed:
        return []
    top = crossed[-1]
    if top == 100 or len(crossed) == 1:
        title = f"{top}% complete"
    else:
        title = " and ".join(f"{mark}%" for mark in crossed) + " complete"
    payload = struct_pb2.Struct()
    payload.update({"percent": top})
    payload.get_or_create_list("marks").extend(crossed)
    return [
        event_pb2.RunEvent(
            milestone=event_pb2.Milestone(
                milestone_id=f"progress-{top}",
                type=event_pb2.MILESTONE_TYPE_PROGRESS,
                title=title,
                description=_progress_note(state, finished=finished),
                data=payload,
            )
        )
    ]


def _progress_note(state: RunState, *, finished: bool) -> str:
    progress = state.run.progress
    items = progress.items
    if finished and state.run.steps:
        if progress.completed_steps >= progress.total_steps:
            if progress.total_steps == 1:
                return "its one step done"
            return f"all {progress.total_steps} steps done"
        # It ended with planned steps never run: say so, as its progress does.
        return f"{progress.completed_steps} of {progress.total_steps} steps done"
    if not state.run.steps or progress.unplanned:
        unit = items.unit or "items"
        return f"{items.completed} of {items.total} {unit}"
    current = state.step(state.run.current_step_id) if state.run.current_step_id else None
    done = f"{progress.completed_steps} of {progress.total_steps} steps done"
    if current is None:
        return done
    if progress.completed_steps == 0:
        return f"{current.name} under way"  # never "25 % complete, 0 of 4 steps done"
    return f"{done}, {current.name} under way"


def target_milestones(state: RunState) -> list[event_pb2.RunEvent]:
    """Milestones for declared targets whose metric has reached its value, once each."""
    events = []
    staged: set[str] = set()  # a run stored before CreateRun refused two targets of one id
    for target in state.run.targets[:]:  # a list: see RunSteps.recompute_progress
        quality = target.kind == run_pb2.TARGET_KIND_QUALITY
        key = target_milestone_id(target)
        value = state.run.metrics.get(target.metric)
        if value is None or value < target.value or key in state.milestones or key in staged:
            continue
        staged.add(key)
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
    usual = history.usual()
    took = max(0.0, end.timestamp() - state.run.start_time.ToNanoseconds() / 1e9)
    if usual <= 0 or took >= ratio * usual:
        return []
    faster = round((1 - took / usual) * 100)
    return [
        _milestone(
            "speed",
            event_pb2.MILESTONE_TYPE_SPEED,
            "Faster than expected",
            f"Finished in {_took(took)}, {faster}% faster than the usual {_took(usual)}",
            seconds=round(took, 3),
            usual_seconds=round(usual, 3),
        )
    ]


def stall_threshold(state: RunState, history: WorkflowHistory, policy: InsightPolicy) -> float:
    """Seconds of silence after which the run counts as STALLED; for a run not started,
    seconds since it was created."""
    if state.run.status == run_pb2.RUN_STATUS_PENDING:
        return policy.start_within  # no step runs yet: history has nothing to say
    running = [s for s in state.run.steps if s.status == run_pb2.STEP_STATUS_RUNNING]
    expected = [history.expected(s.step_id) for s in running]
    known = [e for e in expected if e]
    if known:
        return max(policy.stall_min, policy.stall_factor * max(known))
    return policy.stall_after


ABANDONED = "ABANDONED"
"""The error code of a run the server ended because its producer went silent for good."""
ABANDONED_KEY = f"{SERVER_KEY_PREFIX}abandoned"
"""The idempotency key of that RunFailed: a producer's keys cannot start so, which tells the
server's ending from a producer's own (its producers are told: a CANCEL control)."""


def abandoned_event(silent: float, abandon_after: float, started: bool) -> event_pb2.RunEvent:
    """The RunFailed that ends a run STALLED and silent for `silent` seconds, more than
    `abandon_after`."""
    producer = "no report from its producer" if started else "never started by its producer"
    message = (
        f"abandoned: STALLED and silent for {_span(silent)}, {producer}; the server ends a "
        f"run that stays so for longer than {_span(abandon_after)}"
    )
    error = run_pb2.ErrorInfo(code=ABANDONED, message=message)
    return event_pb2.RunEvent(
        idempotency_key=ABANDONED_KEY, run_failed=event_pb2.RunFailed(error=error)
    )


def never_started_reason(waited: float) -> str:
    """Why a run created `waited` seconds ago and still PENDING is STALLED."""
    return (
        f"created {_span(waited)} ago and never started: "
        "its producer may have stopped before its first event"
    )


def _took(seconds: float) -> str:
    """A run's duration as a person reads it: "0.13s", "2.5s", "45s", "12m", "3h 5m". A
    quick workflow's milestone read "Finished in 0s, 35% faster than the usual 0s"."""
    if seconds >= 10:
        return _span(seconds)
    return f"{seconds:.2g}s" if seconds >= 0.01 else "under 0.01s"


def _span(seconds: float) -> str:
    """A wait as a person says it: "45s", "12m", "3h 5m", "7d", "2d 4h"."""
    whole = round(seconds)
    if whole < 120:
        return f"{whole}s"
    hours, minutes = divmod(whole // 60, 60)
    if not hours:
        return f"{minutes}m"
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def health_after(
    health: int,
    events: Iterable[event_pb2.RunEvent],
    state: RunState | None = None,
    before: Troubles | None = None,
) -> tuple[int, str]:
    """Health after a batch of producer events, and why.

    `before` holds the run's troubles before the batch (see
    :mod:`~runstream_server.domain.health`): the health is the worst of them after it, so a
    run STALLED goes back to what it was before its producer fell silent, and only the
    completion of the step a trouble is on ends it. `state` (after the batch) tells a retry
    (the failed step started again) from the run going on with another step.
    """
    troubles = Troubles() if before is None else before.copy()
    steps = state.steps if state is not None else None
    reason = ""
    for event in events:
        stalled = health in (run_pb2.RUN_HEALTH_UNSPECIFIED, run_pb2.RUN_HEALTH_STALLED)
        troubles.note(event, steps)
        updated = troubles.health
        if updated != health:
            # Not healthy: why it is so, not the event that made it so.
            reason = troubles.reason or _recovery(event, stalled=stalled)
        health = updated
    # Not healthy: the trouble that makes it so now, also when another of the same level
    # ended or began (the level did not move, the reason did).
    return health, troubles.reason or reason


def _recovery(event: event_pb2.RunEvent, *, stalled: bool) -> str:
    """Why `event` made the run HEALTHY; `stalled`: it was STALLED (or not assessed) before."""
    name = event.WhichOneof("payload") or ""
    if name == "run_started":
        return "the run started"
    if name == "step_completed":
        return f"step {event.step_completed.step_id} completed"
    if name == "step_started" and stalled:  # a run STALLED before it started, or silent
        return f"step {event.step_started.step_id} started"
    return "the producer reported again"
