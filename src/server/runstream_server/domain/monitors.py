"""Background work on runs: decision deadlines, stall detection and retention, correct
across replicas.

Both only *propose* a server write; the write itself goes through the ledger's commit,
which re-checks its condition under the run's lock against the committed state and appends
only if the head has not moved. So when every replica arms the same deadline, or sees the
same silent run, one of them writes and the others find nothing left to do: a deadline fires
once, a stall is recorded once.

Deadlines are armed from every DecisionRequested this process commits or learns of from
another replica, and from the store at start and after each gap in the notices. Stall
detection reads the store, not memory: every running run is checked, including runs this
process never loaded (after a restart, or runs whose producer reports to another replica),
and so is every run still PENDING, whose producer may have stopped before its first event.

Retention passes purge ended runs' logs in the store, which tells the other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain import insight
from runstream_server.domain.commits import CommitRecord
from runstream_server.domain.events import KIND_BY_FIELD
from runstream_server.domain.ledger import RunLedger
from runstream_server.domain.limits import Retention
from runstream_server.domain.state import RunState
from runstream_server.errors import NotFound, RunstreamError, Unavailable
from runstream_server.store.base import EventStore, RunFilter, StoredEvent, stop_if_cancelled

log = logging.getLogger("runstream.monitors")
Clock = Callable[[], datetime]
DEADLINE_KINDS = frozenset(KIND_BY_FIELD[f] for f in ("decision_requested", "decision_resolved"))
"""The kinds of events :meth:`Deadlines.arm_from` acts on."""


class Deadlines:
    """One timer per open decision with a deadline; firing calls `fire(run_id, decision_id)`.

    A timer is armed by the wall clock (the stored deadline less the clock's now) and then
    runs on the event loop's monotonic clock, which a step of the wall clock (an NTP
    correction) does not move: :meth:`due` asks the same timer, so an answer and the
    deadline agree on which came first."""

    def __init__(self, clock: Clock, fire: Callable[[str, str, int], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._retrying: set[tuple[str, str]] = set()  # fired, and their writes failed

    def arm(self, run_id: str, decision_id: str, deadline: datetime, attempt: int = 0) -> None:
        key = (run_id, decision_id)
        if key in self._timers:
            return
        if attempt:
            self._retrying.add(key)
        delay = max(0.0, (deadline - self._clock()).total_seconds())
        self._timers[key] = asyncio.get_running_loop().call_later(
            delay, self._fired, run_id, decision_id, attempt
        )

    def due(self, run_id: str, decision_id: str, deadline: datetime) -> bool:
        """Whether the decision's deadline has passed: by its timer here, when one is armed
        (its time has come, or it fired and its write is being retried), else by the wall
        clock (a decision asked on another replica whose commit this one has not heard of).
        The wall clock alone refused a human's answer "already closed: DEFAULTED" after it
        stepped an hour forward, while the timer, and every watcher, still had the question
        open for another 110 s."""
        key = (run_id, decision_id)
        handle = self._timers.get(key)
        if handle is None:
            return deadline <= self._clock()
        return key in self._retrying or handle.when() <= asyncio.get_running_loop().time()

    def retry(self, run_id: str, decision_id: str, attempt: int) -> float:
        """Arms the timer again after a failed write, with backoff; returns the delay."""
        delay: float = min(30.0, 0.5 * 2.0**attempt)
        when = self._clock().timestamp() + delay
        self.arm(run_id, decision_id, datetime.fromtimestamp(when, UTC), attempt + 1)
        return delay

    def _fired(self, run_id: str, decision_id: str, attempt: int) -> None:
        self._timers.pop((run_id, decision_id), None)
        self._fire(run_id, decision_id, attempt)

    def disarm(self, run_id: str, decision_id: str) -> None:
        self._retrying.discard((run_id, decision_id))
        handle = self._timers.pop((run_id, decision_id), None)
        if handle is not None:
            handle.cancel()

    def arm_from(self, run_id: str, events: Iterable[event_pb2.RunEvent]) -> None:
        """Arms the deadlines of requested decisions, disarms those resolved."""
        for event in events:
            if event.HasField("decision_requested"):
                asked = event.decision_requested
                if asked.HasField("deadline"):
                    self.arm(run_id, asked.decision_id, asked.deadline.ToDatetime(UTC))
            elif event.HasField("decision_resolved"):
                self.disarm(run_id, event.decision_resolved.decision_id)

    def arm_from_stored(self, run_id: str, events: Iterable[StoredEvent]) -> None:
        """:meth:`arm_from` for stored events (another replica's commit to a run not held
        here): only the events of the kinds it acts on are decoded."""
        self.arm_from(run_id, (e.decode() for e in events if e.kind in DEADLINE_KINDS))

    def on_commit(self, record: CommitRecord) -> None:
        self.arm_from(record.run_id, record.decoded)

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._retrying.clear()


CHECK_SHARE = 20
"""A stall check waits at least this many times as long as its last pass took."""

STEP_TOLERANCE = 5.0
"""Seconds the wall clock may move more or less than the monotonic clock between two passes
before the move is taken for a step of the clock (an NTP correction, a clock set by hand)."""


class ClockSteps:
    """Tells a background pass whether the wall clock stepped since the previous pass: then
    every age it would compute is off by the step, and acting on them stalled every run and
    purged every log at once (a step of an hour forward), or let silent runs be (back)."""

    def __init__(self, clock: Clock, paused: str) -> None:
        """`paused`: what the warning says is paused, e.g. "stall checks"."""
        self._clock = clock
        self._paused = paused
        self._last: tuple[float, float] | None = None  # (wall, monotonic) at the last pass

    def stepped(self) -> bool:
        """Whether the wall clock stepped since the last call (logged once per step)."""
        wall, monotonic = self._clock().timestamp(), time.monotonic()
        last, self._last = self._last, (wall, monotonic)
        if last is None:
            return False
        step = (wall - last[0]) - (monotonic - last[1])
        if abs(step) <= STEP_TOLERANCE:
            return False
        log.warning("the wall clock stepped by %+.0fs; %s paused for one pass", step, self._paused)
        return True


STALLABLE = frozenset({run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_PENDING})
"""The statuses a stall check looks at: running runs gone silent, runs never started."""


class StallTracker:
    """Finds running runs whose producer went silent for too long, and runs not started long
    after they were created, from the store."""

    def __init__(
        self,
        store: EventStore,
        policy: insight.InsightPolicy,
        clock: Clock,
        ledger: RunLedger,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._ledger = ledger
        self._heard: dict[str, datetime] = {}  # running runs only: pruned on every pass
        self._watching_since: datetime | None = None  # set by the first pass that reads
        self._steps = ClockSteps(clock, "stall checks")

    @property
    def interval(self) -> float:
        if self._policy.check_every is not None:
            return self._policy.check_every
        return max(0.05, min(1.0, self._shortest / 4))

    @property
    def _shortest(self) -> float:
        """The shortest threshold the policy allows, running or not started."""
        policy = self._policy
        return min(policy.stall_after, policy.stall_min, policy.start_within)

    def on_commit(self, record: CommitRecord) -> None:
        if record.state.is_terminal:
            self._heard.pop(record.run_id, None)
        elif record.producer_spoke:
            self._heard[record.run_id] = self._clock()

    def silence(self, run: run_pb2.Run) -> float:
        """Seconds since the producer was last heard: by this process, or as stored (the
        run's update_time: when the server received its last event, by the server's clock,
        whatever the producer's clock says); for a run not started, since it was created."""
        if run.status == run_pb2.RUN_STATUS_PENDING:
            return (self._clock() - run.create_time.ToDatetime(UTC)).total_seconds()
        heard = run.update_time.ToDatetime(UTC) if run.HasField("update_time") else None
        local = self._heard.get(run.run_id)
        if local is not None and (heard is None or local > heard):
            heard = local
        if heard is None:
            return 0.0
        return (self._clock() - heard).total_seconds()

    def stalled_for(self, run: run_pb2.Run) -> float:
        """Seconds a STALLED run has been silent while this process could watch it: since
        its last event (it was marked STALLED then, or the server wrote to it since; its
        producer speaking makes it HEALTHY), or since the checks began or the store came
        back, if later: time the server or the store was down is not counted against a
        producer that could not report meanwhile."""
        last = run.update_time if run.HasField("update_time") else run.create_time
        since = max(last.ToDatetime(UTC), self._watching_since or self._clock())
        return (self._clock() - since).total_seconds()

    async def threshold(self, state: RunState) -> float:
        if state.run.status == run_pb2.RUN_STATUS_PENDING:  # needs no history: not read
            return insight.stall_threshold(state, insight.WorkflowHistory(0), self._policy)
        history = await self._ledger.histories.get(state.run.tenant, state.run.workflow)
        return insight.stall_threshold(state, history, self._policy)

    def pause_after(self, took: float) -> float:
        """How long to wait after a pass that took `took` seconds: a pass over many running
        runs takes a while, so checks then keep to at most 1/CHECK_SHARE of the process's
        time, but never wait past half the shortest stall threshold."""
        longest = max(self.interval, self._shortest / 2)
        return min(longest, max(self.interval, took * CHECK_SHARE))

    async def run_forever(self) -> None:
        unavailable = False  # the store was down at the last check: said once, not each time
        pause = self.interval
        while True:
            stop_if_cancelled()  # a Redis call under a check may swallow the stop's cancel
            await asyncio.sleep(pause)
            pause = self.interval  # after a failed pass: try again soon
            if self._steps.stepped():
                continue
            started = time.monotonic()
            try:
                await self.check()
            except Unavailable as exc:
                if not unavailable:
                    log.warning("stall checks wait for the store: %s", exc.message)
                unavailable = True
                self._watching_since = None  # counted again from its return
                continue
            except Exception:
                log.exception("stall check failed; trying again in %.1fs", self.interval)
                continue
            pause = self.pause_after(time.monotonic() - started)
            if unavailable:
                log.info("stall checks resumed: the store is back")
                unavailable = False

    async def check(self) -> None:
        """One pass over every running or pending run in the store (one listing: on Redis
        both come from the same index of runs not ended): those gone silent are marked
        STALLED, and with ``abandon_after`` set, those STALLED longer than that are ended."""
        stallable = RunFilter(STALLABLE)
        abandon_after = self._policy.abandon_after
        seen: set[str] = set()
        cursor: tuple[int, str] | None = None
        while True:
            page = await self._store.list_runs(stallable, 500, cursor)
            if self._watching_since is None:
                self._watching_since = self._clock()
            for run in page.runs:
                seen.add(run.run_id)
                if run.health == run_pb2.RUN_HEALTH_STALLED:
                    if abandon_after is not None and self.stalled_for(run) > abandon_after:
                        await self.abandon(run.run_id, run.status, abandon_after)
                    continue
                threshold = await self.threshold(RunState(run))
                if self.silence(run) > threshold:
                    await self.mark_stalled(run.run_id, run.status, threshold)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        for run_id in [r for r in self._heard if r not in seen]:
            del self._heard[run_id]

    async def mark_stalled(self, run_id: str, status: int, threshold: float) -> None:
        """Records that the run, found with `status` (RUNNING or PENDING), is STALLED, with
        its estimate made again: the one made at its last event has counted down to "about a
        second" meanwhile, whatever steps are left. Only for a run found as it went silent:
        events dated far back (a producer's clock, a server that was down) say nothing of
        how long the steps left will take from now."""
        try:
            run = (await self._ledger.state(run_id)).run
        except NotFound:
            return
        history = await self._ledger.histories.get(run.tenant, run.workflow)

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            # Re-checked under the lock, on the committed state: the producer may have
            # reported meanwhile (a pending run may have started, with another threshold),
            # or another replica recorded the stall first.
            silence = self.silence(state.run)
            if (
                state.run.status != status
                or state.run.health == run_pb2.RUN_HEALTH_STALLED
                or silence <= threshold
            ):
                return []
            if status == run_pb2.RUN_STATUS_PENDING:
                reason = insight.never_started_reason(silence)
            else:
                step = state.run.current_step_id or "the run"
                reason = f"{step}: no report for {silence:.0f}s (expected within {threshold:.0f}s)"
            stalled = [insight.health_event(state.run.health, run_pb2.RUN_HEALTH_STALLED, reason)]
            # Not just gone silent (a restart, a store that was away), or never started:
            # nothing of the estimate to count down.
            if silence > threshold + 60 or status == run_pb2.RUN_STATUS_PENDING:
                return stalled
            return stalled + insight.estimate_again(state, history, self._clock())

        with contextlib.suppress(RunstreamError):
            await self._ledger.whole(self._ledger.commit(run_id, prepare, producer=False))

    async def abandon(self, run_id: str, status: int, after: float) -> None:
        """Ends the run, found STALLED with `status` (RUNNING or PENDING) and silent for more
        than `after` seconds since, FAILED with the code ABANDONED: its producer is taken for
        gone (and the run's log is then retention's to purge). A run its producer spoke to
        meanwhile, or another replica ended first, is left alone. The end is logged (INFO,
        the run id and the server's own words, nothing its producer sent): the server acting
        on its own is the first thing a team whose runs "failed at random" looks for."""
        ending: list[event_pb2.RunEvent] = []

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            stalled_for = self.stalled_for(state.run)  # re-checked under the lock
            ending.clear()
            if (
                state.run.status != status
                or state.run.health != run_pb2.RUN_HEALTH_STALLED
                or stalled_for <= after
            ):
                return []
            started = status != run_pb2.RUN_STATUS_PENDING
            ending.append(insight.abandoned_event(stalled_for, after, started))
            return list(ending)

        try:
            await self._ledger.whole(self._ledger.commit(run_id, prepare, producer=False))
        except RunstreamError:
            return
        for event in ending:
            error = event.run_failed.error
            log.info("run %s ended FAILED, %s: %s", run_id, error.code, error.message)


class RetentionPasses:
    """Purges the event logs of ended runs past the retention policy, every interval."""

    def __init__(
        self,
        store: EventStore,
        retention: Retention,
        clock: Clock,
        purged: Callable[[str], Awaitable[None]],
    ) -> None:
        """`purged` corrects this process's state of each run purged."""
        self._store = store
        self._retention = retention
        self._clock = clock
        self._purged = purged
        self._steps = ClockSteps(clock, "retention")

    @property
    def enabled(self) -> bool:
        return self._retention.days is not None or self._retention.runs is not None

    async def apply(self) -> list[str]:
        """One pass; returns the ids of the runs purged."""
        days = self._retention.days
        before = (
            int((self._clock() - timedelta(days=days)).timestamp() * 1e6)
            if days is not None
            else None
        )
        purged = await self._store.purge_events(
            ended_before_us=before, keep_newest=self._retention.runs, marked=self._marked
        )
        for run_id in purged:
            await self._purged(run_id)
        return purged

    async def _marked(self, run_ids: list[str]) -> None:
        """Runs whose long logs the store deletes a chunk at a time: read from here on as
        purged (their states corrected before the first chunk goes)."""
        for run_id in run_ids:
            await self._purged(run_id)

    async def run_forever(self) -> None:
        while True:
            stop_if_cancelled()
            try:
                # After a step, a pass later: a clock set right meanwhile purged nothing early.
                purged = [] if self._steps.stepped() else await self.apply()
                if purged:
                    log.info("retention purged the event logs of %d ended runs", len(purged))
            except Exception:
                log.exception("retention pass failed; trying again at the next interval")
            await asyncio.sleep(self._retention.interval)
