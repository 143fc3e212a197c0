"""The run manager: what happens when a run is created, an event arrives or a watcher follows.

Every write, a producer's batch or the server's own (a cancellation, an answer, a deadline,
a stall), goes through :meth:`RunManager._commit`, in this order:

1. under the run's lock, idempotency keys the log already holds are answered with their
   original seqs and not stored again;
2. the new events are numbered and folded into a *copy* of the run's derived state, which
   rejects what the state does not allow (anything after a terminal event, for instance).
   Before a terminal event the server closes the run's open decisions and fires its last
   milestones; right after a producer event it adds the milestones that event crossed, and
   after the batch what the batch implies: a health change, a moved estimate;
3. all of it is written in one durable transaction with the new snapshot;
4. only then does the in-memory state move on, watchers get the events from the hub,
   producers and decision viewers are told, deadlines are scheduled, and the producer gets
   its acknowledgement.

Steps 1-4 run in a task the caller awaits through ``asyncio.shield``: a caller that goes away
mid-write can't leave the durable log and the in-memory state disagreeing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.auth import principal as access
from runstream_server.domain import insight
from runstream_server.domain.events import (
    KIND_BY_FIELD,
    TERMINAL_FIELDS,
    VALID_KINDS,
    EncodedEvent,
    check_id,
    check_snapshot_size,
    validate_produced_event,
)
from runstream_server.domain.hub import Hub, RunsHub
from runstream_server.domain.observer import NO_OBSERVER, DeliveryObserver
from runstream_server.domain.queries import (
    LABEL_KEY,
    chunks,
    decode_token,
    encode_token,
    fitting,
    matches,
    parse_filter,
    parse_kinds,
)
from runstream_server.domain.queries import (
    page_size as clamp_page_size,
)
from runstream_server.domain.state import (
    REMEMBERED_KINDS,
    RunState,
    now_utc,
    status_name,
    to_timestamp,
)
from runstream_server.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    RunstreamError,
    Unavailable,
)
from runstream_server.store.base import EventStore, RunFilter, StoredEvent

log = logging.getLogger("runstream.runs")
_T = TypeVar("_T")
_M = TypeVar("_M", run_pb2.Run, run_pb2.Step, decision_pb2.Decision, event_pb2.RunEvent)
Prepare = Callable[[RunState], Sequence[event_pb2.RunEvent]]


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits that protect the server from oversized or abusive input."""

    max_event_bytes: int = 256 * 1024
    max_batch_events: int = 1000
    max_steps: int = 1000
    max_labels: int = 64
    watch_page_events: int = 500
    watch_page_bytes: int = 1024 * 1024
    """A WatchRun message carries at most this much (and at least one event), far below
    the 4 MiB message limit whatever the events' sizes."""
    cached_ended_runs: int = 1000
    """Ended runs kept in memory with no one watching them; older ones are reloaded on use."""
    response_bytes: int = 512 * 1024
    """The most a list page, a WatchRuns message or each gathered part of GetRun carries
    (recent activity; open decisions); at least one item, whatever its size."""
    max_snapshot_bytes: int = 2 * 1024 * 1024
    """A producer batch that would grow a run's snapshot past this gets RESOURCE_EXHAUSTED
    (a batch that ends the run may go 512 KiB further), so that GetRun, WatchRun's snapshot
    and the store's copy always fit the 4 MiB message limit."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished runs keep their event logs; None keeps them forever."""

    days: float | None = None
    """Purge the logs of runs that ended more than this many days ago."""
    runs: int | None = None
    """Keep the logs of only this many most recently ended runs."""
    interval: float = 3600.0
    """Seconds between retention passes."""


@dataclass(frozen=True, slots=True)
class EventAck:
    """The outcome of appending one event."""

    seq: int
    idempotency_key: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The acknowledgements of one batch and the run's last seq after it."""

    acks: list[EventAck]
    last_seq: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An idle stream's proof of life: every matching event up to head_seq was sent."""

    head_seq: int
    server_time: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run as of `run.last_seq`, sent first to watchers that ask for it."""

    run: run_pb2.Run


@dataclass(frozen=True, slots=True)
class InitialStateComplete:
    """Marks the end of a WatchRuns stream's initial state."""


WatchItem = bytes | Heartbeat | Snapshot
RunsItem = list[run_pb2.Run] | Heartbeat | InitialStateComplete


@dataclass(frozen=True, slots=True)
class ControlSignal:
    """An instruction for a run's producers: "cancel", "pause" or "resume"."""

    action: str
    reason: str
    status: int
    seq: int


@dataclass(eq=False)
class ProducerLink:
    """A producer attached to a run: receives controls and the decisions that close."""

    run_id: str
    signals: asyncio.Queue[ControlSignal | decision_pb2.Decision | None] = field(
        default_factory=asyncio.Queue
    )


RESYNC = ("resync", decision_pb2.Decision())
"""Queued in place of a DecisionFeed's dropped updates: read the current decisions again."""


@dataclass(eq=False)
class DecisionFeed:
    """A viewer's feed of open ("prompt") and closed ("closed") decisions of its runs.

    Bounded: past `limit` unread updates they are dropped and replaced by one RESYNC, after
    which nothing is queued until the reader calls ``resynced()`` and reads the current state
    (api/decision_service.py).
    """

    updates: asyncio.Queue[tuple[str, decision_pb2.Decision] | None] = field(
        default_factory=asyncio.Queue
    )
    run_ids: set[str] = field(default_factory=set)
    limit: int = 1024
    _resync_pending: bool = False
    _closed: bool = False

    def close(self) -> None:
        """Ends the feed (server shutdown): the reader gets None after what is queued."""
        self._closed = True
        self.updates.put_nowait(None)

    def put(self, what: str, decision: decision_pb2.Decision) -> None:
        if self._closed or self._resync_pending:
            return  # the resync reads the current state, this change included
        if self.updates.qsize() >= self.limit:
            while not self.updates.empty():
                self.updates.get_nowait()
            self._resync_pending = True
            self.updates.put_nowait(RESYNC)
            return
        self.updates.put_nowait((what, _copy(decision)))

    def resynced(self) -> None:
        """The reader took RESYNC and reads the current state from here: queue again."""
        self._resync_pending = False


async def _uncancellable(work: Coroutine[Any, Any, _T]) -> _T:
    """Runs `work` to completion even if the caller is cancelled meanwhile.

    The outcome is always retrieved, so a failure nobody waits for any more is not reported
    as a lost task exception.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)


def _by_seq(event: StoredEvent) -> int:
    return event.seq


def _decode(event: StoredEvent) -> event_pb2.RunEvent:
    return event_pb2.RunEvent.FromString(event.data)


def _framed(events: Sequence[StoredEvent]) -> list[EncodedEvent]:
    return [EncodedEvent.wrap(e) for e in events]


def _copy(message: _M) -> _M:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _summary(run: run_pb2.Run, viewers: int) -> run_pb2.Run:
    """A run without its steps, for lists and WatchRuns."""
    summary = run_pb2.Run()
    summary.CopyFrom(run)
    summary.ClearField("steps")
    summary.viewer_count = viewers
    _count_down(summary)
    return summary


def _count_down(run: run_pb2.Run) -> None:
    """Readers get the remaining time as of now; the stored estimate is as of its event."""
    insight.count_down(run, now_utc())


def _reason(what: str, by: str, why: str) -> str:
    """E.g. "paused by ops: review", "paused by ops", "review" or "paused"."""
    if by:
        return f"{what} by {by}: {why}" if why else f"{what} by {by}"
    return why or what


def _describe(decision: decision_pb2.Decision) -> str:
    outcome = event_pb2.DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_")
    by = f" by {decision.answered_by}" if decision.answered_by else ""
    choice = f" with {decision.choice!r}" if decision.choice else ""
    return f"{outcome}{choice}{by}"


class RunManager:
    """Creates runs, appends events, answers queries and feeds watchers. Knows no gRPC."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub | None = None,
        limits: Limits | None = None,
        policy: insight.InsightPolicy | None = None,
        retention: Retention | None = None,
        clock: Callable[[], datetime] = now_utc,
        observer: DeliveryObserver = NO_OBSERVER,
    ) -> None:
        self._store = store
        self._observer = observer
        self._limits = limits or Limits()
        self._hub = hub or Hub(
            page_events=self._limits.watch_page_events, page_bytes=self._limits.watch_page_bytes
        )
        self._runs_hub = RunsHub(self._hub.clock)
        self._policy = policy or insight.InsightPolicy()
        self._retention = retention or Retention()
        self._clock = clock
        self._states: dict[str, RunState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._producers: dict[str, set[ProducerLink]] = {}
        self._feeds: dict[str, set[DecisionFeed]] = {}
        # Step durations learnt per (tenant, workflow): a tenant's estimates never come from,
        # or tell anything about, another tenant's runs.
        self._history: dict[tuple[str, str], insight.WorkflowHistory] = {}
        self._deadlines: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._last_heard: dict[str, float] = {}
        self._ended: dict[str, None] = {}  # ended runs in memory, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_reason: str | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Re-arms stored decision deadlines and starts the stall and retention monitors."""
        for status in (run_pb2.RUN_STATUS_WAITING_FOR_INPUT, run_pb2.RUN_STATUS_PAUSED):
            cursor: tuple[int, str] | None = None
            while True:
                page = await self._store.list_runs(RunFilter(frozenset({status})), 500, cursor)
                for run in page.runs:
                    state = await self._state(run.run_id)
                    for decision in state.open_decisions():
                        self._arm_deadline(run.run_id, decision)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        self._spawn(self._watch_for_stalls())
        if self._retention.days is not None or self._retention.runs is not None:
            self._spawn(self._apply_retention_periodically())

    def shutdown(self, reason: str = "server is shutting down; resume elsewhere") -> None:
        """Ends every stream with UNAVAILABLE so clients resume elsewhere; stops timers."""
        self._closed_reason = reason
        self._hub.close(reason)
        self._runs_hub.close(reason)
        for links in self._producers.values():
            for link in links:
                link.signals.put_nowait(None)
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.close()
        for handle in self._deadlines.values():
            handle.cancel()
        self._deadlines.clear()
        for task in self._tasks:
            task.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise Unavailable(self._closed_reason)

    # --- state access -------------------------------------------------------------------------

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _state(self, run_id: str) -> RunState:
        """The run's state; NOT_FOUND when it does not exist or the caller may not see it."""
        state = self._states.get(run_id)
        if state is None:
            check_id("run_id", run_id)
            if run_id not in self._locks and await self._store.load_run(run_id) is None:
                raise NotFound(f"run {run_id!r} not found")  # no lock is made for unknown ids
            async with self._lock(run_id):
                state = await self._load_locked(run_id)
        if not access.can_see(state.run.tenant):  # another tenant's run: as if it did not exist
            raise NotFound(f"run {run_id!r} not found")
        return state

    async def _load_locked(self, run_id: str) -> RunState:
        """The run's state, loaded from the store if it is not in memory; holds its lock."""
        state = self._states.get(run_id)
        if state is None:
            snapshot = await self._store.load_run(run_id)
            if snapshot is None:
                raise NotFound(f"run {run_id!r} not found")
            remembered = await self._store.read_events(run_id, 0, 1_000_000, kinds=REMEMBERED_KINDS)
            activity = await self._store.read_last_events(
                run_id, [event_pb2.EVENT_KIND_AGENT_ACTIVITY], 50
            )
            # A store read after the snapshot may already hold newer events: fold only up to
            # the snapshot's seq; the newer ones arrive through catching up.
            head = snapshot.last_seq
            events = sorted((e for e in remembered + activity if e.seq <= head), key=_by_seq)
            state = RunState.restore(snapshot, (_decode(e) for e in events))
            self._states[run_id] = state
            if state.is_terminal:
                self._ended[run_id] = None
                self._evict_ended()
        return state

    async def _workflow_history(self, tenant: str, workflow: str) -> insight.WorkflowHistory:
        history = self._history.get((tenant, workflow))
        if history is None:
            limit = self._policy.history_runs
            history = insight.WorkflowHistory(limit)
            succeeded = RunFilter(
                frozenset({run_pb2.RUN_STATUS_SUCCEEDED}), workflow, tenant=tenant
            )
            page = await self._store.list_runs(succeeded, limit, None)
            for run in reversed(page.runs):  # oldest first, so the newest stay in the window
                history.learn(run)
            history = self._history.setdefault((tenant, workflow), history)
        return history

    # --- the one write path -------------------------------------------------------------------

    async def _commit(
        self,
        run_id: str,
        events: Sequence[event_pb2.RunEvent] | Prepare,
        *,
        producer: bool,
    ) -> AppendResult:
        """Numbers, applies, durably stores and publishes events: see the module docstring.

        `events` may be a function of the locked state, for server writes whose content
        depends on it (an answer to a decision that must still be open).
        """
        async with self._lock(run_id):
            state = await self._load_locked(run_id)  # evicted meanwhile: reloaded
            if callable(events):
                events = events(state)
                if not events:
                    return AppendResult([], state.last_seq)
            history = await self._workflow_history(state.run.tenant, state.run.workflow)
            known = (
                await self._store.find_keys(run_id, [e.idempotency_key for e in events])
                if producer
                else {}
            )
            draft = state.copy()
            now = self._clock()
            staged: list[event_pb2.RunEvent] = []
            fresh: list[EncodedEvent] = []

            def stage(event: event_pb2.RunEvent, path: str) -> int:
                event.run_id = run_id
                event.seq = draft.last_seq + 1
                if not event.HasField("event_time"):
                    event.event_time.CopyFrom(to_timestamp(now))
                if event.HasField("decision_requested"):
                    asked = event.decision_requested
                    if asked.HasField("timeout"):
                        asked.deadline.CopyFrom(to_timestamp(now + asked.timeout.ToTimedelta()))
                    else:
                        asked.ClearField("deadline")
                draft.apply(event, path)
                name = event.WhichOneof("payload")
                assert name is not None
                key = event.idempotency_key
                fresh.append(
                    EncodedEvent.of(event.seq, KIND_BY_FIELD[name], key, event.SerializeToString())
                )
                staged.append(event)
                return event.seq

            acks: list[EventAck] = []
            spoken: list[event_pb2.RunEvent] = []
            for i, event in enumerate(events):
                key = event.idempotency_key
                if key and key in known:
                    acks.append(EventAck(known[key], key, duplicate=True))
                    continue
                if event.WhichOneof("payload") in TERMINAL_FIELDS and not draft.is_terminal:
                    for extra in self._before_terminal(draft, history, event, now):
                        stage(extra, "server")
                seq = stage(event, f"events[{i}]")
                acks.append(EventAck(seq, key, duplicate=False))
                if key:
                    known[key] = seq
                if producer:
                    spoken.append(event)
                    if not draft.is_terminal:  # milestones land right after what crossed them
                        for extra in insight.progress_milestones(draft) + insight.target_milestones(
                            draft
                        ):
                            stage(extra, "server")
            if spoken and not draft.is_terminal:
                for extra in self._after_producer_events(draft, history, spoken):
                    stage(extra, "server")
            if fresh:
                for extra in insight.hold_events(draft):  # waiting or paused: ETA stands still
                    stage(extra, "server")
            if fresh:
                if producer:
                    check_snapshot_size(draft, self._limits.max_snapshot_bytes)
                await self._store.append(run_id, fresh, draft.run, expected_seq=state.last_seq)
                self._states[run_id] = draft
                self._hub.publish(run_id, fresh)
                self._after_commit(draft, staged, history, spoke=bool(spoken))
            return AppendResult(acks, draft.last_seq)

    def _before_terminal(
        self,
        draft: RunState,
        history: insight.WorkflowHistory,
        event: event_pb2.RunEvent,
        now: datetime,
    ) -> list[event_pb2.RunEvent]:
        """What the server records before a run ends: closed decisions, last milestones."""
        extra = [
            event_pb2.RunEvent(
                decision_resolved=event_pb2.DecisionResolved(
                    decision_id=d.decision_id, outcome=event_pb2.DECISION_OUTCOME_CANCELLED
                )
            )
            for d in draft.open_decisions()
        ]
        if event.HasField("run_completed"):
            end = event.event_time.ToDatetime(UTC) if event.HasField("event_time") else now
            extra += insight.completion_health(draft)
            extra += insight.progress_milestones(draft, finished=True)
            extra += insight.speed_milestone(draft, history, end, self._policy.speed_ratio)
        if event.HasField("run_failed") and draft.run.health != run_pb2.RUN_HEALTH_FAILING:
            extra.append(
                insight.health_event(
                    draft.run.health, run_pb2.RUN_HEALTH_FAILING, event.run_failed.error.message
                )
            )
        return extra

    def _after_producer_events(
        self,
        draft: RunState,
        history: insight.WorkflowHistory,
        spoken: Sequence[event_pb2.RunEvent],
    ) -> list[event_pb2.RunEvent]:
        """What a producer's batch implies as a whole: health and a moved estimate."""
        extra: list[event_pb2.RunEvent] = []
        health, reason = insight.health_after(draft.run.health, spoken, draft)
        if health != draft.run.health:
            extra.append(insight.health_event(draft.run.health, health, reason))
        as_of = spoken[-1].event_time.ToDatetime(UTC)
        estimate = insight.estimate(draft, history, as_of, spoken)
        previous = draft.run.estimate if draft.run.HasField("estimate") else None
        if insight.estimate_moved(previous, estimate):
            extra.append(
                event_pb2.RunEvent(estimate_updated=event_pb2.EstimateUpdated(estimate=estimate))
            )
        return extra

    def _after_commit(
        self,
        state: RunState,
        staged: Sequence[event_pb2.RunEvent],
        history: insight.WorkflowHistory,
        *,
        spoke: bool,
    ) -> None:
        """Tells everyone who waits on what was just committed."""
        run_id = state.run.run_id
        if spoke:
            self._last_heard[run_id] = time.monotonic()
        for event in staged:
            if event.HasField("decision_requested"):
                decision = state.decisions[event.decision_requested.decision_id]
                self._arm_deadline(run_id, decision)
                for feed in self._feeds.get(run_id, ()):
                    feed.put("prompt", decision)
            elif event.HasField("decision_resolved"):
                decision = state.decisions[event.decision_resolved.decision_id]
                handle = self._deadlines.pop((run_id, decision.decision_id), None)
                if handle is not None:
                    handle.cancel()
                for feed in self._feeds.get(run_id, ()):
                    feed.put("closed", decision)
                for link in self._producers.get(run_id, ()):
                    link.signals.put_nowait(_copy(decision))
        if state.run.status == run_pb2.RUN_STATUS_SUCCEEDED:
            history.learn(state.run)
        if state.is_terminal:
            self._last_heard.pop(run_id, None)
            self._ended[run_id] = None
            self._evict_ended()
        self._publish_run(state)

    def _evict_ended(self) -> None:
        """Forgets the oldest ended runs nobody follows; they reload from the store on use."""
        for run_id in list(self._ended):
            if len(self._ended) <= self._limits.cached_ended_runs:
                return
            lock = self._locks.get(run_id)
            if (
                self._hub.watcher_count(run_id)
                or run_id in self._producers
                or run_id in self._feeds
                or (lock is not None and lock.locked())
            ):
                continue
            del self._ended[run_id]
            self._states.pop(run_id, None)
            self._locks.pop(run_id, None)

    def _publish_run(self, state: RunState) -> None:
        if self._runs_hub.active:
            self._runs_hub.publish(_summary(state.run, self._hub.watcher_count(state.run.run_id)))

    # --- creating and querying ----------------------------------------------------------------

    async def create_run(
        self,
        *,
        run_id: str,
        workflow: str,
        display_name: str,
        labels: Mapping[str, str],
        steps: Sequence[run_pb2.StepSpec],
        targets: Sequence[run_pb2.Target] = (),
    ) -> run_pb2.Run:
        self._check_open()
        if run_id:
            check_id("run_id", run_id)
        else:
            run_id = uuid.uuid4().hex
        if not workflow.strip():
            raise InvalidArgument("workflow", "is required")
        if len(workflow) > 128 or '"' in workflow:
            raise InvalidArgument("workflow", "must be at most 128 characters, without '\"'")
        if len(labels) > self._limits.max_labels:
            raise InvalidArgument("labels", f"at most {self._limits.max_labels} labels")
        for key in labels:
            if not LABEL_KEY.match(key):
                raise InvalidArgument(f"labels[{key!r}]", "invalid label key")
        if len(steps) > self._limits.max_steps:
            raise InvalidArgument("steps", f"at most {self._limits.max_steps} steps")
        seen: set[str] = set()
        for i, spec in enumerate(steps):
            check_id(f"steps[{i}].step_id", spec.step_id)
            if spec.step_id in seen:
                raise InvalidArgument(f"steps[{i}].step_id", f"duplicate step id {spec.step_id!r}")
            seen.add(spec.step_id)
        for i, target in enumerate(targets):
            if not target.metric.strip():
                raise InvalidArgument(f"targets[{i}].metric", "is required")
            if not target.value == target.value or target.value in (float("inf"), float("-inf")):
                raise InvalidArgument(f"targets[{i}].value", "must be a finite number")
        created = event_pb2.RunEvent(
            run_id=run_id,
            seq=1,
            run_created=event_pb2.RunCreated(
                workflow=workflow,
                display_name=display_name,
                labels=labels,
                steps=steps,
                targets=targets,
                tenant=access.new_run_tenant(),
                created_by=access.acting_as(""),
            ),
        )
        created.event_time.CopyFrom(to_timestamp(self._clock()))
        return await _uncancellable(self._create_locked(run_id, created))

    async def _create_locked(self, run_id: str, created: event_pb2.RunEvent) -> run_pb2.Run:
        async with self._lock(run_id):
            if run_id in self._states:
                raise AlreadyExists(f"run {run_id!r} already exists")
            state = RunState.new(run_id)
            state.apply(created)
            check_snapshot_size(state, self._limits.max_snapshot_bytes)
            encoded = EncodedEvent.of(
                1, KIND_BY_FIELD["run_created"], "", created.SerializeToString()
            )
            await self._store.append(run_id, [encoded], state.run, expected_seq=0)
            self._states[run_id] = state
            self._hub.publish(run_id, [encoded])
            self._publish_run(state)
            return _copy(state.run)

    async def get_run(self, run_id: str) -> run_pb2.Run:
        run = _copy((await self._state(run_id)).run)
        run.viewer_count = self._hub.watcher_count(run_id)
        _count_down(run)
        return run

    async def get_run_details(
        self, run_id: str
    ) -> tuple[run_pb2.Run, list[event_pb2.RunEvent], list[decision_pb2.Decision]]:
        """The snapshot, the last 50 agent activities and the open decisions of a run.

        Activities (newest kept) and decisions (oldest kept) are trimmed to the response
        byte budget each, so large ones cannot make the response exceed the message limit.
        """
        state = await self._state(run_id)
        run = await self.get_run(run_id)
        budget = self._limits.response_bytes
        newest = list(reversed(state.recent_activity))
        kept = fitting((e.ByteSize() for e in newest), budget)
        activity = [_copy(e) for e in reversed(newest[:kept])]
        decisions = state.open_decisions()
        decisions = decisions[: fitting((d.ByteSize() for d in decisions), budget)]
        return run, activity, [_copy(d) for d in decisions]

    async def list_runs(
        self, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Run], str]:
        run_filter = replace(parse_filter(filter_text), tenant=access.visible_tenant())
        size = clamp_page_size(page_size, 50)
        scope = hashlib.sha256(
            f"runs|{run_filter.tenant}|{filter_text.strip()}".encode()
        ).hexdigest()[:16]
        cursor: tuple[int, str] | None = None
        if page_token:
            after = decode_token(page_token, scope).get("after")
            if not (isinstance(after, list) and len(after) == 2):
                raise InvalidArgument("page_token", "is not a token this server issued")
            try:
                cursor = (int(after[0]), str(after[1]))
            except (TypeError, ValueError):
                raise InvalidArgument("page_token", "is not a token this server issued") from None
        page = await self._store.list_runs(run_filter, size, cursor)
        runs = [_summary(r, self._hub.watcher_count(r.run_id)) for r in page.runs]
        next_cursor = page.next_cursor
        kept = fitting((r.ByteSize() for r in runs), self._limits.response_bytes)
        if kept < len(runs):
            runs = runs[:kept]
            next_cursor = (runs[-1].create_time.ToMicroseconds(), runs[-1].run_id)
        token = encode_token({"scope": scope, "after": list(next_cursor)}) if next_cursor else ""
        return runs, token

    async def list_steps(
        self, run_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Step], str]:
        state = await self._state(run_id)
        size = clamp_page_size(page_size, 100)
        start = 0
        if page_token:
            offset = decode_token(page_token, f"steps|{run_id}").get("offset")
            if not isinstance(offset, int) or offset < 0:
                raise InvalidArgument("page_token", "is not a token this server issued")
            start = offset
        steps = [_copy(s) for s in state.run.steps[start : start + size]]
        steps = steps[: fitting((s.ByteSize() for s in steps), self._limits.response_bytes)]
        end = start + len(steps)
        more = end < len(state.run.steps)
        token = encode_token({"scope": f"steps|{run_id}", "offset": end}) if more else ""
        return steps, token

    async def list_events(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[event_pb2.RunEvent], str]:
        """A page of the run's stored events in seq order, filtered by kind."""
        state = await self._state(run_id)
        kinds = parse_kinds(filter_text)
        size = clamp_page_size(page_size, 100)
        scope = hashlib.sha256(f"events|{run_id}|{filter_text.strip()}".encode()).hexdigest()[:16]
        after = 0
        if page_token:
            value = decode_token(page_token, scope).get("after")
            if not isinstance(value, int) or not 0 <= value < 2**62:
                raise InvalidArgument("page_token", "is not a token this server issued")
            after = value
        self._check_not_purged(state, after, "page_token" if page_token else "run_id")
        events = await self._store.read_events(run_id, after, size + 1, kinds)
        kept = min(size, fitting((len(e.data) for e in events), self._limits.response_bytes))
        more = len(events) > kept
        events = events[:kept]
        token = encode_token({"scope": scope, "after": events[-1].seq}) if more else ""
        return [_decode(e) for e in events], token

    @staticmethod
    def _check_not_purged(state: RunState, after_seq: int, field_name: str) -> None:
        purged = state.run.purged_seq
        if purged and after_seq < purged:
            raise FailedPrecondition(
                f"{field_name}: events {after_seq + 1}..{purged} of run {state.run.run_id!r} "
                "were removed by the retention policy; read the run's snapshot instead "
                "(GetRun, or WatchRun with include_snapshot)"
            )

    # --- appending ------------------------------------------------------------------------------

    async def append(self, run_id: str, events: Sequence[event_pb2.RunEvent]) -> AppendResult:
        """Appends a producer's batch: all of it, durably, or none of it."""
        self._check_open()
        check_id("run_id", run_id)
        if not events:
            raise InvalidArgument("events", "at least one event is required")
        if len(events) > self._limits.max_batch_events:
            raise ResourceExhausted(
                f"events: {len(events)} events in one batch; the limit is "
                f"{self._limits.max_batch_events}"
            )
        for i, event in enumerate(events):
            validate_produced_event(f"events[{i}]", event, run_id, self._limits.max_event_bytes)
        await self._state(run_id)  # NOT_FOUND before anything else
        return await _uncancellable(self._commit(run_id, events, producer=True))

    # --- run control ----------------------------------------------------------------------------

    async def _control(
        self, run_id: str, prepare: Prepare, action: str, reason: str
    ) -> run_pb2.Run:
        self._check_open()
        await self._state(run_id)
        result = await _uncancellable(self._commit(run_id, prepare, producer=False))
        run = await self.get_run(run_id)
        signal = ControlSignal(action, reason, run.status, result.last_seq)
        for link in self._producers.get(run_id, ()):
            link.signals.put_nowait(signal)
        return run

    async def cancel_run(self, run_id: str, *, reason: str, cancelled_by: str) -> run_pb2.Run:
        """Cancels a run, records it in the log and tells the run's producers."""

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            if state.is_terminal:
                raise FailedPrecondition(
                    f"run {run_id!r} already ended ({status_name(state.run.status)})"
                )
            cancelled = event_pb2.RunCancelled(
                reason=reason, cancelled_by=access.acting_as(cancelled_by)
            )
            return [event_pb2.RunEvent(run_cancelled=cancelled)]

        return await self._control(run_id, prepare, "cancel", reason)

    async def pause_run(self, run_id: str, *, reason: str, requested_by: str) -> run_pb2.Run:
        """Pauses a running run; its producers hold at their next step boundary."""

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            status = state.run.status
            if status not in (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_WAITING_FOR_INPUT):
                raise FailedPrecondition(
                    f"run {run_id!r} is {status_name(status)}; only a RUNNING or "
                    "WAITING_FOR_INPUT run can be paused"
                )
            by = access.acting_as(requested_by)
            change = event_pb2.RunStatusChanged(
                previous_status=status,
                status=run_pb2.RUN_STATUS_PAUSED,
                reason=_reason("paused", by, reason),
                changed_by=by,
            )
            return [event_pb2.RunEvent(run_status_changed=change)]

        return await self._control(run_id, prepare, "pause", reason)

    async def resume_run(self, run_id: str, *, reason: str, requested_by: str) -> run_pb2.Run:
        """Resumes a paused run, back to RUNNING (or WAITING_FOR_INPUT with open decisions)."""

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            status = state.run.status
            if status != run_pb2.RUN_STATUS_PAUSED:
                raise FailedPrecondition(
                    f"run {run_id!r} is {status_name(status)}; only a PAUSED run can be resumed"
                )
            waiting = bool(state.open_decisions())
            by = access.acting_as(requested_by)
            change = event_pb2.RunStatusChanged(
                previous_status=status,
                status=(
                    run_pb2.RUN_STATUS_WAITING_FOR_INPUT if waiting else run_pb2.RUN_STATUS_RUNNING
                ),
                reason=_reason("resumed", by, reason),
                changed_by=by,
            )
            return [event_pb2.RunEvent(run_status_changed=change)]

        return await self._control(run_id, prepare, "resume", reason)

    # --- decisions ------------------------------------------------------------------------------

    async def submit_decision(
        self, run_id: str, decision_id: str, *, choice: str, skip: bool, answered_by: str
    ) -> decision_pb2.Decision:
        """Answers (or skips) a decision; the first valid answer wins, repeats are idempotent."""
        self._check_open()
        check_id("run_id", run_id)
        check_id("decision_id", decision_id)
        if skip and choice:
            raise InvalidArgument("choice", "must be empty when skip is set")
        if not skip and not choice:
            raise InvalidArgument("choice", "is required unless skip is set")
        state = await self._state(run_id)
        asked = state.decisions.get(decision_id)
        if (
            asked is not None
            and asked.state == decision_pb2.DECISION_STATE_OPEN
            and asked.HasField("deadline")
            and asked.deadline.ToDatetime(UTC) <= self._clock()
        ):
            # Too late, even if the timer has not run yet: the deadline closes it first.
            await self._deadline_passed(run_id, decision_id)

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            decision = self._decision(state, decision_id)
            if state.is_terminal:
                raise FailedPrecondition(
                    f"run {run_id!r} already ended ({status_name(state.run.status)}); "
                    f"decision {decision_id!r} was {_describe(decision)}"
                )
            values = [o.value for o in decision.options]
            if not skip and choice not in values:
                raise InvalidArgument(
                    "choice", f"{choice!r} is not one of the options {', '.join(map(repr, values))}"
                )
            if skip and not decision.can_skip:
                raise InvalidArgument("skip", f"decision {decision_id!r} cannot be skipped")
            outcome = (
                event_pb2.DECISION_OUTCOME_SKIPPED if skip else event_pb2.DECISION_OUTCOME_ANSWERED
            )
            if decision.state == decision_pb2.DECISION_STATE_RESOLVED:
                if decision.outcome == outcome and decision.choice == choice:
                    return []  # the same answer again: the same result
                raise Aborted(f"decision {decision_id!r} was already closed: {_describe(decision)}")
            resolved = event_pb2.DecisionResolved(
                decision_id=decision_id,
                outcome=outcome,
                choice=choice,
                answered_by=access.acting_as(answered_by),
            )
            return [event_pb2.RunEvent(decision_resolved=resolved)]

        await _uncancellable(self._commit(run_id, prepare, producer=False))
        return _copy(self._states[run_id].decisions[decision_id])

    @staticmethod
    def _decision(state: RunState, decision_id: str) -> decision_pb2.Decision:
        decision = state.decisions.get(decision_id)
        if decision is None:
            raise NotFound(f"run {state.run.run_id!r} has no decision {decision_id!r}")
        return decision

    async def get_decision(self, run_id: str, decision_id: str) -> decision_pb2.Decision:
        check_id("decision_id", decision_id)
        return _copy(self._decision(await self._state(run_id), decision_id))

    async def list_decisions(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[decision_pb2.Decision], str]:
        state = await self._state(run_id)
        wanted = filter_text.replace(" ", "").upper()
        states = {
            "": None,
            "STATE=OPEN": decision_pb2.DECISION_STATE_OPEN,
            "STATE=RESOLVED": decision_pb2.DECISION_STATE_RESOLVED,
        }
        if wanted not in states:
            raise InvalidArgument("filter", "use 'state = OPEN', 'state = RESOLVED' or nothing")
        only = states[wanted]
        decisions = [d for d in state.decisions.values() if only is None or d.state == only]
        size = clamp_page_size(page_size, 100)
        start = 0
        scope = f"decisions|{run_id}|{wanted}"
        if page_token:
            offset = decode_token(page_token, scope).get("offset")
            if not isinstance(offset, int) or offset < 0:
                raise InvalidArgument("page_token", "is not a token this server issued")
            start = offset
        page = [_copy(d) for d in decisions[start : start + size]]
        page = page[: fitting((d.ByteSize() for d in page), self._limits.response_bytes)]
        end = start + len(page)
        token = encode_token({"scope": scope, "offset": end}) if end < len(decisions) else ""
        return page, token

    async def follow_decisions(self, feed: DecisionFeed, run_ids: Sequence[str]) -> None:
        """Subscribes `feed` to runs: their open decisions now, then every change."""
        self._check_open()
        for i, run_id in enumerate(run_ids):
            check_id(f"subscribe.run_ids[{i}]", run_id)
        states = [await self._state(run_id) for run_id in run_ids]
        for state in states:  # no await from here on: nothing can slip between
            run_id = state.run.run_id
            if run_id in feed.run_ids:
                continue
            feed.run_ids.add(run_id)
            self._feeds.setdefault(run_id, set()).add(feed)
            for decision in self._states[run_id].open_decisions():
                feed.put("prompt", decision)

    def unfollow_decisions(self, feed: DecisionFeed) -> None:
        for run_id in feed.run_ids:
            feeds = self._feeds.get(run_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[run_id]

    def _arm_deadline(self, run_id: str, decision: decision_pb2.Decision) -> None:
        key = (run_id, decision.decision_id)
        if not decision.HasField("deadline") or key in self._deadlines:
            return
        delay = (decision.deadline.ToDatetime(UTC) - self._clock()).total_seconds()
        loop = asyncio.get_running_loop()
        self._deadlines[key] = loop.call_later(
            max(0.0, delay), lambda: self._spawn(self._deadline_passed(*key))
        )

    async def _deadline_passed(self, run_id: str, decision_id: str, attempt: int = 0) -> None:
        """Closes a decision nobody answered: its default, or timed out. Once, under lock.

        A failed write (the disk, not the rules) is logged and retried with backoff, so a
        transient error cannot leave the decision open forever.
        """
        self._deadlines.pop((run_id, decision_id), None)

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            decision = state.decisions.get(decision_id)
            if state.is_terminal or decision is None:
                return []
            if decision.state != decision_pb2.DECISION_STATE_OPEN:
                return []
            if decision.default_option:
                outcome, choice = event_pb2.DECISION_OUTCOME_DEFAULTED, decision.default_option
            else:
                outcome, choice = event_pb2.DECISION_OUTCOME_TIMED_OUT, ""
            resolved = event_pb2.DecisionResolved(
                decision_id=decision_id, outcome=outcome, choice=choice
            )
            return [event_pb2.RunEvent(decision_resolved=resolved)]

        delay = min(30.0, 0.5 * 2**attempt)
        try:
            await _uncancellable(self._commit(run_id, prepare, producer=False))
            return
        except RunstreamError as exc:
            # The run or decision went away: nothing to close. But a store that cannot take
            # writes now (disk full) must not drop the deadline: that one is retried.
            if not isinstance(exc, Unavailable) or self._closed_reason is not None:
                return
            log.warning(
                "closing decision %s of run %s failed (%s); retrying in %.1fs",
                decision_id,
                run_id,
                exc,
                delay,
            )
        except Exception:
            log.exception(
                "closing decision %s of run %s failed; retrying in %.1fs",
                decision_id,
                run_id,
                delay,
            )
        loop = asyncio.get_running_loop()
        self._deadlines[(run_id, decision_id)] = loop.call_later(
            delay, lambda: self._spawn(self._deadline_passed(run_id, decision_id, attempt + 1))
        )

    # --- producers ------------------------------------------------------------------------------

    async def attach_producer(self, run_id: str) -> ProducerLink:
        """Registers a producer stream for controls and answers; NOT_FOUND for unknown runs."""
        self._check_open()
        state = await self._state(run_id)
        link = ProducerLink(run_id)
        self._producers.setdefault(run_id, set()).add(link)
        if state.run.status == run_pb2.RUN_STATUS_PAUSED:
            link.signals.put_nowait(
                ControlSignal("pause", "run is paused", state.run.status, state.last_seq)
            )
        elif state.run.status == run_pb2.RUN_STATUS_CANCELLED:  # cancelled while it was away
            link.signals.put_nowait(
                ControlSignal("cancel", state.run.cancel_reason, state.run.status, state.last_seq)
            )
        return link

    def detach_producer(self, link: ProducerLink) -> None:
        links = self._producers.get(link.run_id)
        if links is not None:
            links.discard(link)
            if not links:
                del self._producers[link.run_id]

    # --- watching -------------------------------------------------------------------------------

    async def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        include_snapshot: bool = False,
        kinds: Sequence[int] = (),
        heartbeat_interval: float = 15.0,
        keep_open: bool = False,
    ) -> AsyncIterator[WatchItem]:
        """Yields the run's events after `after_seq`, live, each exactly once and in order.

        Events come as ``bytes``: the encoded ``events`` of one WatchRunResponse. They come
        from the store until the watcher is level with the run's head, then from the hub,
        which hands each commit's encoded batch to the subscription (see hub.py); whenever
        the subscription falls behind (a full buffer, a gap) the store fills in again. Ends
        after the terminal event unless `keep_open`.
        """
        self._check_open()
        for i, kind in enumerate(kinds):
            if kind not in VALID_KINDS:
                raise InvalidArgument(f"kinds[{i}]", f"unknown event kind {kind}")
        if after_seq < 0:
            raise InvalidArgument("after_seq", "must not be negative")
        if include_snapshot and after_seq:
            raise InvalidArgument("after_seq", "must be 0 when include_snapshot is set")
        _check_interval(heartbeat_interval)
        state = await self._state(run_id)
        if after_seq > state.last_seq:
            raise OutOfRange(
                f"after_seq: {after_seq} is beyond the last seq {state.last_seq} of run {run_id!r}"
            )
        if not include_snapshot:
            self._check_not_purged(state, after_seq, "after_seq")
        wanted = frozenset(kinds) or None
        hub, observer = self._hub, self._observer
        max_events, max_bytes = self._limits.watch_page_events, self._limits.watch_page_bytes
        sub = hub.subscribe(run_id, kinds=wanted, heartbeat_interval=heartbeat_interval)
        self._publish_run(self._states[run_id])  # one more viewer
        try:
            sub.cursor = after_seq
            if include_snapshot:
                snapshot = await self.get_run(run_id)
                sub.cursor = snapshot.last_seq
                yield Snapshot(snapshot)
            while True:
                # The fast path, once per message: whatever the hub handed over meanwhile.
                chunk = sub.take(max_events, max_bytes)
                if chunk is not None:
                    observer.delivered(chunk.events, self._states[run_id].last_seq - sub.sent)
                    yield chunk.data
                    continue
                if sub.closed_reason is not None:
                    raise Unavailable(sub.closed_reason)
                if sub.behind:  # catch up from the store, then go live
                    if sub.overflowed:
                        observer.overflowed()
                    cursor = sub.cursor
                    while cursor < self._states[run_id].last_seq:
                        events = _framed(await self._store.read_events(run_id, cursor, max_events))
                        if not events:
                            self._check_not_purged(self._states[run_id], cursor, "after_seq")
                            break
                        for page in self._pages(events):
                            cursor = page[-1].seq
                            matched = [e.framed for e in page if wanted is None or e.kind in wanted]
                            if matched:
                                behind = self._states[run_id].last_seq - cursor
                                observer.delivered(len(matched), behind)
                                yield b"".join(matched)
                        sub.active_at = hub.clock.now()
                    # No await since the last look at the head: publish delivers from here.
                    sub.go_live(cursor)
                    continue
                head = self._states[run_id]
                if head.is_terminal and sub.cursor >= head.last_seq and not keep_open:
                    return
                if sub.take_heartbeat():
                    yield Heartbeat(sub.cursor, self._clock())
                    continue
                await sub.wait()
        finally:
            hub.unsubscribe(sub)
            if run_id in self._states:
                self._publish_run(self._states[run_id])  # one viewer fewer

    async def watch_runs(
        self, *, filter_text: str, heartbeat_interval: float
    ) -> AsyncIterator[RunsItem]:
        """Yields the current state of every matching run, then each run-level change."""
        self._check_open()
        run_filter = replace(parse_filter(filter_text), tenant=access.visible_tenant())
        _check_interval(heartbeat_interval)
        sub = self._runs_hub.subscribe(
            lambda run: matches(run_filter, run), heartbeat_interval=heartbeat_interval
        )
        try:
            cursor: tuple[int, str] | None = None
            while True:
                page = await self._store.list_runs(run_filter, 200, cursor)
                runs = []
                for stored in page.runs:
                    live = self._states.get(stored.run_id)
                    run = live.run if live is not None else stored
                    sub.known.add(run.run_id)
                    runs.append(_summary(run, self._hub.watcher_count(run.run_id)))
                for chunk in chunks(runs, self._limits.response_bytes):
                    yield chunk
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            yield InitialStateComplete()
            while True:
                await sub.wait()
                if sub.closed_reason is not None:
                    raise Unavailable(sub.closed_reason)
                changed = sub.take()
                if changed:
                    for chunk in chunks(changed, self._limits.response_bytes):
                        yield chunk
                elif sub.take_heartbeat():
                    yield Heartbeat(0, self._clock())
        finally:
            self._runs_hub.unsubscribe(sub)

    def _pages(self, events: Sequence[EncodedEvent]) -> Iterator[list[EncodedEvent]]:
        """Splits events into messages of bounded count and size, at least one event each."""
        page: list[EncodedEvent] = []
        size = 0
        for event in events:
            if page and (
                len(page) >= self._limits.watch_page_events
                or size + len(event.framed) > self._limits.watch_page_bytes
            ):
                yield page
                page, size = [], 0
            page.append(event)
            size += len(event.framed)
        if page:
            yield page

    # --- background monitors --------------------------------------------------------------------

    async def _watch_for_stalls(self) -> None:
        """Marks running runs whose producer went silent for too long as STALLED."""
        policy = self._policy
        interval = max(0.05, min(1.0, policy.stall_after / 4, policy.stall_min / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._check_stalls(policy)
            except Exception:
                log.exception("stall check failed; trying again in %.1fs", interval)

    async def _check_stalls(self, policy: insight.InsightPolicy) -> None:
        now = time.monotonic()
        for run_id, state in list(self._states.items()):
            if (
                state.run.status != run_pb2.RUN_STATUS_RUNNING
                or state.run.health == run_pb2.RUN_HEALTH_STALLED
            ):
                continue
            heard = self._last_heard.setdefault(run_id, now)
            history = self._history.get(
                (state.run.tenant, state.run.workflow)
            ) or insight.WorkflowHistory(1)
            threshold = insight.stall_threshold(state, history, policy)
            silence = now - heard
            if silence > threshold:
                await self._mark_stalled(run_id, threshold)

    async def _mark_stalled(self, run_id: str, threshold: float) -> None:
        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            # Re-checked under the lock: the producer may have reported while we waited.
            silence = time.monotonic() - self._last_heard.get(run_id, time.monotonic())
            if (
                state.run.status != run_pb2.RUN_STATUS_RUNNING
                or state.run.health == run_pb2.RUN_HEALTH_STALLED
                or silence <= threshold
            ):
                return []
            step = state.run.current_step_id or "the run"
            reason = f"{step}: no report for {silence:.0f}s (expected within {threshold:.0f}s)"
            return [insight.health_event(state.run.health, run_pb2.RUN_HEALTH_STALLED, reason)]

        with contextlib.suppress(RunstreamError):
            await _uncancellable(self._commit(run_id, prepare, producer=False))

    async def apply_retention(self) -> list[str]:
        """Purges the event logs of finished runs past the retention policy; returns their ids."""
        days = self._retention.days
        before = (
            int((self._clock() - timedelta(days=days)).timestamp() * 1e6)
            if days is not None
            else None
        )
        purged = await self._store.purge_events(
            ended_before_us=before, keep_newest=self._retention.runs
        )
        for run_id in purged:
            # Under the run's lock: a load in progress read the snapshot before the purge, and
            # must not cache it unpurged. (It finishes first; then this corrects it.)
            async with self._lock(run_id):
                state = self._states.get(run_id)
                if state is not None:
                    state.run.purged_seq = state.run.last_seq
        return purged

    async def _apply_retention_periodically(self) -> None:
        while True:
            try:
                purged = await self.apply_retention()
                if purged:
                    log.info("retention purged the event logs of %d ended runs", len(purged))
            except Exception:
                log.exception("retention pass failed; trying again at the next interval")
            await asyncio.sleep(self._retention.interval)


def _check_interval(seconds: float) -> None:
    if not 0.1 <= seconds <= 300:
        raise InvalidArgument("heartbeat_interval", "must be between 100ms and 5m")
