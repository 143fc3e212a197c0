"""The ledger of runs in this process: their state, the one write path, and what commits.

Every write, a producer's batch or the server's own (a cancellation, an answer, a deadline,
a stall), goes through :meth:`RunLedger.commit`, in this order:

1. under the run's lock, idempotency keys the log already holds are answered with their
   original seqs and not stored again (the first attempt does not look them up: the store
   refuses an append with a key it holds, like a moved head, and the retry looks them up);
2. the new events are numbered and folded into a *copy* of the run's derived state
   (:mod:`~runstream_server.domain.folding`), which rejects what the state does not allow
   (anything after a terminal event, for instance). Before a terminal event the server
   closes the run's open decisions and fires its last milestones; right after a producer
   event it adds the milestones that event crossed, and after the batch what the batch
   implies: a health change, a moved estimate;
3. all of it is written in one durable append with the new snapshot, on the condition that
   the run's head is still the seq the copy was folded on. When another replica appended
   first, the run catches up from the log and steps 1-3 run again;
4. only then does the in-memory state move on, and the commit's one
   :class:`~runstream_server.domain.commits.CommitRecord` goes to every consumer: watchers
   (the hub), WatchRuns, and the consumers the run manager registers (producer links and
   decision feeds, deadline timers, the stall tracker). Commits of other replicas arrive as
   notices from the store (one reader per process, see following.py) and produce the same
   record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import types
from collections.abc import Callable, Coroutine, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar, cast

from runstream.v1 import event_pb2, run_pb2

from runstream_server.auth import principal as access
from runstream_server.domain import insight
from runstream_server.domain.commits import CommitRecord
from runstream_server.domain.events import (
    KIND_BY_FIELD,
    EncodedEvent,
    check_id,
    check_snapshot_size,
)
from runstream_server.domain.folding import fold
from runstream_server.domain.health import TROUBLE_KINDS, TROUBLED
from runstream_server.domain.hub import Hub, RunsHub
from runstream_server.domain.limits import AppendResult, EventAck, Limits
from runstream_server.domain.slots import RunSlot, RunSlots
from runstream_server.domain.state import (
    REMEMBERED_KINDS,
    TERMINAL_STATUSES,
    RunState,
    now_utc,
)
from runstream_server.errors import (
    FailedPrecondition,
    NotFound,
    NothingStored,
    PermissionDenied,
    RunstreamError,
    Unavailable,
)
from runstream_server.store.base import (
    CommitNotice,
    EventStore,
    HeadMoved,
    StoredEvent,
)

log = logging.getLogger("runstream.runs")
_T = TypeVar("_T")
Prepare = Callable[[RunState], Sequence[event_pb2.RunEvent]]
Consumer = Callable[[CommitRecord], None]
_NOT_ITS_RUN = (
    "run {run_id!r} was created by another subject: a producer's token reports to, and "
    "reads, its own runs; another's needs {needs}"
)
_TO_READ = "the 'viewer' role to read it, 'operator' to report to it"
_TO_REPORT = "the 'operator' role"
_MAX_ATTEMPTS = 50
HEAD_CHECK_SECONDS = 1.0
"""How long one idle-watcher check of a run's head in a shared store serves the others."""


async def uncancellable(work: Coroutine[Any, Any, _T], *, alone: bool = False) -> _T:
    """Runs `work` to completion even if the caller is cancelled meanwhile.

    `work` runs in the caller's task, so a commit that never waits (SQLite with
    ``synchronous=NORMAL``) costs no task of its own and no turn of the event loop. Only its
    waits are shielded: the caller waits on a future of its own, so cancelling the caller
    never cancels what `work` waits for; a cancelled caller hands `work` to a task that
    finishes it. That task's outcome is always retrieved, so a failure nobody waits for any
    more is not reported as a lost task exception.

    With `alone`, `work` runs in a task of its own from the start: for work whose waits time
    out through ``asyncio.timeout`` (redis-py's socket timeout), which cancels the task it
    was entered in. In the caller's task that cancellation ended the caller, as if it had
    been cancelled, instead of raising in `work`.
    """
    if alone:
        return await asyncio.shield(_finishing(work))
    return await _drive(work, _STARTING, background=False)


def _finishing(work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
    """`work` in a task of its own whose outcome is always retrieved, so a failure nobody
    waits for any more is not reported as a lost task exception."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


_STARTING: Any = object()
"""What :func:`_drive` is given for a coroutine that has not started yet."""


@types.coroutine
def _drive(
    work: Coroutine[Any, Any, _T], waiting: Any, *, background: bool
) -> Generator[Any, None, _T]:
    """Steps `work` as a task would, from where it waits on `waiting` (None: a bare yield).

    In the foreground, a cancellation hands `work` over to a task of its own and ends the
    caller; in that task, it is passed on to `work`, as to any task's coroutine (the event
    loop is closing).
    """
    resume: Callable[[Any], Any] = work.send
    argument: Any = None
    while True:
        if waiting is not _STARTING:
            try:
                yield from _until_done(waiting)
            except asyncio.CancelledError as exc:
                if not background:
                    _finishing(_finish(work, waiting))
                    raise
                resume, argument = work.throw, exc
            except GeneratorExit:  # the caller's task is gone (its loop closed without it)
                work.close()
                raise
        try:
            waiting = resume(argument)
        except StopIteration as done:
            return cast(_T, done.value)
        resume, argument = work.send, None
        if getattr(waiting, "_asyncio_future_blocking", None):
            waiting._asyncio_future_blocking = False  # taken, as a task takes it


def _until_done(waiting: Any) -> Generator[Any, None, None]:
    """Waits until `waiting` (a future `work` yielded, or None) is done, without ever
    cancelling it: a cancellation cancels a future of the caller's own."""
    if waiting is None:
        yield  # a bare yield (sleep(0)): the task steps us again on its next turn
        return
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(_: Any) -> None:
        if not mine.done():  # else the caller was cancelled meanwhile
            mine.set_result(None)

    waiting.add_done_callback(done)
    yield from mine


async def _finish(work: Coroutine[Any, Any, _T], waiting: Any) -> _T:
    return await _drive(work, waiting, background=True)


def check_not_purged(state: RunState, after_seq: int, field_name: str) -> None:
    """FAILED_PRECONDITION naming `field_name` when events after `after_seq` were purged."""
    purged = state.run.purged_seq
    if purged and after_seq < purged:
        raise FailedPrecondition(
            f"{field_name}: events {after_seq + 1}..{purged} of run {state.run.run_id!r} "
            "were removed by the retention policy; read the run's snapshot instead "
            "(GetRun, or WatchRun with include_snapshot)"
        )


def check_kept(state: RunState, newest_seq: int, field_name: str) -> None:
    """FAILED_PRECONDITION naming `field_name` when retention removed every event up to
    `newest_seq`: a newest-first page from there would start inside purged history."""
    if newest_seq <= state.run.purged_seq:
        check_not_purged(state, 0, field_name)


def by_seq(event: StoredEvent) -> int:
    return event.seq


def payload_name(event: event_pb2.RunEvent) -> str:
    name: str | None = event.WhichOneof("payload")
    assert name is not None
    return name


def decode(event: StoredEvent) -> event_pb2.RunEvent:
    return event_pb2.RunEvent.FromString(event.data)


def framed(events: Sequence[StoredEvent]) -> list[EncodedEvent]:
    return [EncodedEvent.wrap(e) for e in events]


def summary(run: run_pb2.Run, viewers: int) -> run_pb2.Run:
    """A run without its steps, for lists and WatchRuns."""
    brief = run_pb2.Run()
    brief.CopyFrom(run)
    brief.ClearField("steps")
    brief.viewer_count = viewers
    count_down(brief)
    return brief


def count_down(run: run_pb2.Run) -> None:
    """Readers get the remaining time as of now; the stored estimate is as of its event."""
    insight.count_down(run, now_utc())


# A load that failed answers the callers that queued behind it for this long (seconds).
_SHARED_LOAD_FAILURE = 1.0


class RunLedger:
    """The runs this process holds, the one write path, and the delivery of every commit."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub,
        runs_hub: RunsHub,
        limits: Limits,
        policy: insight.InsightPolicy,
        clock: Callable[[], datetime],
        pinned: Callable[[str], bool],
        viewers: Callable[[str], int],
    ) -> None:
        """`pinned` says which runs must stay in memory (watched, produced to); `viewers`
        counts a run's watchers on every replica."""
        self._store = store
        self._hub = hub
        self._runs_hub = runs_hub
        self._limits = limits
        self._policy = policy
        self._clock = clock
        self._viewers = viewers
        self._slots = RunSlots(limits.cached_runs, limits.cached_ended_runs, pinned=pinned)
        # Step durations learnt per (tenant, workflow): a tenant's estimates never come from,
        # or tell anything about, another tenant's runs.
        self._history: dict[tuple[str, str], insight.WorkflowHistory] = {}
        self._history_read: dict[tuple[str, str], float] = {}  # when, by time.monotonic()
        self._history_reads: dict[tuple[str, str], asyncio.Future[None]] = {}  # under way
        self.consumers: list[Consumer] = []
        """Called with every commit record after the hubs, under the run's lock."""
        self.elsewhere: Callable[[run_pb2.Run, Sequence[StoredEvent]], None] = _ignored
        """Called with the events of other replicas' commits to a run held here, once each,
        and the run's state after them."""
        self._head_checks: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def cached(self, run_id: str) -> RunState | None:
        """The run's state if this process holds it, without loading it."""
        return self._slots.state(run_id)

    def in_memory(self, run_id: str) -> bool:
        """Whether this process holds the run, or is loading it now (without loading it)."""
        return run_id in self._slots

    def loading_runs(self) -> list[str]:
        """The runs being loaded into memory now."""
        return self._slots.loading_runs()

    def locked(self, run_id: str) -> AbstractAsyncContextManager[RunSlot]:
        """Holds the run's lock (its slot stays while held)."""
        return self._slots.locked(run_id)

    def set_state(self, slot: RunSlot, state: RunState) -> None:
        """Installs a run's state (holding its lock): a run just created."""
        self._slots.set_state(slot, state)

    # --- state ----------------------------------------------------------------------------------

    async def state(self, run_id: str) -> RunState:
        """The run's state; NOT_FOUND when it does not exist or the caller may not see it."""
        state = self._slots.state(run_id)
        if state is None:
            check_id("run_id", run_id)
            async with self._slots.locked(run_id) as slot:
                state = await self._load(slot)
        if not access.can_see(state.run.tenant):  # another tenant's run: as if it did not exist
            raise NotFound(f"run {run_id!r} not found")
        if not access.reaches(state.run.created_by, writing=False):
            # A producer reads to report too (attach_run): say what each takes.
            raise PermissionDenied(_NOT_ITS_RUN.format(run_id=run_id, needs=_TO_READ))
        return state

    async def writable(self, run_id: str) -> RunState:
        """The run's state, for a caller that reports to it: PERMISSION_DENIED for a producer
        token and a run another subject created."""
        state = await self.state(run_id)
        if not access.reaches(state.run.created_by, writing=True):
            raise PermissionDenied(_NOT_ITS_RUN.format(run_id=run_id, needs=_TO_REPORT))
        return state

    def held(self, run_id: str) -> RunState:
        """The state of a run this process pins in memory (watched, or just loaded)."""
        state = self._slots.state(run_id)
        assert state is not None, f"run {run_id} is not in memory"
        return state

    async def _load(self, slot: RunSlot) -> RunState:
        """The run's state, loaded from the store if it is not in memory; holds its lock."""
        if slot.state is None:
            failed = slot.failure
            if failed is not None and time.monotonic() - failed[0] < _SHARED_LOAD_FAILURE:
                raise failed[1]  # queued behind a load that just failed: its answer
            try:
                state = await self._restore(slot.run_id)
            except NotFound:
                raise
            except Exception as exc:
                slot.failure = (time.monotonic(), exc)
                raise
            slot.failure = None
            self._slots.set_state(slot, state)
        assert slot.state is not None
        return slot.state

    async def _restore(self, run_id: str) -> RunState:
        snapshot = await self._store.load_run(run_id)
        if snapshot is None:
            raise NotFound(f"run {run_id!r} not found")
        kinds: tuple[int, ...] = REMEMBERED_KINDS
        if snapshot.health in TROUBLED and snapshot.status not in TERMINAL_STATUSES:
            kinds += TROUBLE_KINDS  # a healthy run has no troubles to rebuild
        remembered = await self._store.read_events(run_id, 0, 1_000_000, kinds=kinds)
        activity = await self._store.read_events_before(
            run_id, None, 50, [event_pb2.EVENT_KIND_AGENT_ACTIVITY]
        )
        # A store read after the snapshot may already hold newer events: fold only up to the
        # snapshot's seq; the newer ones arrive through catching up.
        head = snapshot.last_seq
        events = sorted((e for e in remembered + activity if e.seq <= head), key=by_seq)
        return RunState.restore(snapshot, (decode(e) for e in events))

    async def workflow_history(self, tenant: str, workflow: str) -> insight.WorkflowHistory:
        """The workflow's history: read from the store once, then kept up to date by the
        commits this process folds; on a shared store read again every `history_refresh`
        seconds, for the runs that other replicas completed."""
        key = (tenant, workflow)
        history = self._history.get(key)
        stale = self._store.shared and (
            time.monotonic() - self._history_read.get(key, 0.0) > self._policy.history_refresh
        )
        if history is None or stale:
            reading = self._history_reads.get(key)
            if reading is None:  # one read at a time per workflow, shared by its callers
                reading = self._history_reads[key] = asyncio.ensure_future(self._read_history(key))
                reading.add_done_callback(lambda _: self._history_reads.pop(key, None))
            await asyncio.shield(reading)
            history = self._history[key]
        return history

    async def _read_history(self, key: tuple[str, str]) -> None:
        started = time.monotonic()
        limit = self._policy.history_runs
        read = insight.WorkflowHistory(limit)
        runs = await self._store.succeeded_runs(*key, limit)
        for run in reversed(runs):  # oldest first, so the newest stay in the window
            read.learn(run)
        if self._history_read.get(key, -math.inf) < started:  # no newer read meanwhile
            self._history[key] = read
            self._history_read[key] = started

    # --- the one write path -------------------------------------------------------------------

    async def whole(self, work: Coroutine[Any, Any, _T]) -> _T:
        """`work` (a commit) run to its end even if the caller is cancelled: see
        :func:`uncancellable`; alone on a shared store, whose calls time out."""
        return await uncancellable(work, alone=self._store.shared)

    async def commit(
        self,
        run_id: str,
        events: Sequence[event_pb2.RunEvent] | Prepare,
        *,
        producer: bool,
    ) -> AppendResult:
        """Numbers, applies, durably stores and publishes events: see the module docstring.

        `events` may be a function of the locked state, for server writes whose content
        depends on it (an answer to a decision that must still be open). When another
        replica appended first, the run catches up and the batch is folded again.
        """
        for attempt in range(_MAX_ATTEMPTS):
            async with self._slots.locked(run_id) as slot:
                state = await self._load(slot)  # evicted meanwhile: reloaded
                batch = events(state) if callable(events) else events
                if not batch:
                    return AppendResult([], state.last_seq)
                # The store refuses a key it holds, so the first attempt folds without
                # looking keys up (one store round trip less); the next ones, and a fold that
                # fails (a resent event the state no longer allows), look them up.
                try:
                    draft, acks, staged = await self._fold(
                        state, batch, producer=producer, look_up_keys=attempt > 0
                    )
                except RunstreamError:
                    if attempt > 0 or not any(e.idempotency_key for e in batch):
                        raise
                    draft, acks, staged = await self._fold(
                        state, batch, producer=producer, look_up_keys=True
                    )
                if not staged:
                    if acks:  # all sent before: acknowledged once durable as a new write
                        await self._store.confirm(run_id)
                    return AppendResult(acks, draft.last_seq)
                fresh = [
                    EncodedEvent.of(e.seq, KIND_BY_FIELD[payload_name(e)], e.idempotency_key, data)
                    for e, data in ((e, e.SerializeToString()) for e in staged)
                ]
                if producer:
                    check_snapshot_size(draft, self._limits.max_snapshot_bytes)
                try:
                    await self._store.append(run_id, fresh, draft.run, expected_seq=state.last_seq)
                except HeadMoved as moved:
                    if moved.actual != state.last_seq:  # not only a key the log holds
                        await self._catch_up(slot, moved=True)
                    continue
                self._slots.set_state(slot, draft)
                self.deliver(CommitRecord(draft, fresh, staged))
                return AppendResult(acks, draft.last_seq)
        raise NothingStored(f"run {run_id!r} is written by too many replicas at once; retry")

    async def _fold(
        self,
        state: RunState,
        events: Sequence[event_pb2.RunEvent],
        *,
        producer: bool,
        look_up_keys: bool,
    ) -> tuple[RunState, list[EventAck], list[event_pb2.RunEvent]]:
        """The state after the batch, each event's ack, and the events to store; keys the
        log already holds are answered with their seqs when `look_up_keys` (refused when
        they hold another kind of event)."""
        history = await self.workflow_history(state.run.tenant, state.run.workflow)
        known = (
            await self._store.find_keys(state.run.run_id, [e.idempotency_key for e in events])
            if producer and look_up_keys
            else {}
        )
        return fold(
            state,
            events,
            producer=producer,
            known=known,
            history=history,
            now=self._clock(),
            policy=self._policy,
        )

    # --- what a commit tells everyone -----------------------------------------------------------

    def deliver(self, record: CommitRecord) -> None:
        """Hands one commit, local or another replica's, to every consumer (under its lock)."""
        state = record.state
        self._hub.publish(record.run_id, record.events)
        for consume in self.consumers:
            consume(record)
        succeeded = state.run.status == run_pb2.RUN_STATUS_SUCCEEDED
        if succeeded and any(e.HasField("run_completed") for e in record.decoded):
            history = self._history.get((state.run.tenant, state.run.workflow))
            if history is not None:
                history.learn(state.run)
        self.publish_run(state)

    def publish_run(self, state: RunState) -> None:
        if self._runs_hub.active:
            self._runs_hub.publish(summary(state.run, self._viewers(state.run.run_id)))

    async def _catch_up(
        self, slot: RunSlot, notice: CommitNotice | None = None, *, moved: bool = False
    ) -> None:
        """Folds in what other replicas committed after the held state, and delivers it.

        The notice's events are used when they continue the state; anything else (a gap, a
        notice without events, no notice at all) is read from the log.
        """
        loaded = slot.state is None
        state = await self._load(slot)
        if notice is not None and notice.last_seq <= state.last_seq:
            if loaded:  # read just now, the notice's commit included: nothing else told WatchRuns
                self.publish_run(state)
            return  # ours, or already folded
        stored: list[StoredEvent] = []
        if notice is not None and notice.events and notice.first_seq == state.last_seq + 1:
            stored = list(notice.events)
        else:
            while batch := await self._store.read_events(
                slot.run_id, state.last_seq + len(stored), 1000
            ):
                stored += batch
        if not stored:
            if moved:  # the head moved but the log shows nothing new: trust the store
                self._slots.set_state(slot, await self._restore(slot.run_id))
            return
        decoded = [decode(e) for e in stored]
        draft = state.copy()
        try:
            for event in decoded:
                draft.apply(event, "replica")
        except RunstreamError:
            log.warning("run %s did not fold from the log; reloading it", slot.run_id)
            draft = await self._restore(slot.run_id)
        self._slots.set_state(slot, draft)
        self.elsewhere(draft.run, stored)
        self.deliver(CommitRecord(draft, framed(stored), decoded))

    async def catch_up(self, run_id: str, notice: CommitNotice | None = None) -> None:
        """Folds in another replica's commit (a notice; None: whatever the log holds)."""
        async with self._slots.locked(run_id) as slot:
            await self._catch_up(slot, notice)

    def held_runs(self) -> list[tuple[str, RunState]]:
        """The runs this process holds in memory, with their states."""
        return list(self._slots.held())

    async def learn_purge(self, run_id: str) -> None:
        """Takes the held run's ``purged_seq`` from the store: another replica purged its log
        (told by a notice, or found by a reader missing events the state says exist)."""
        if self._slots.state(run_id) is None:
            return
        stored = await self._store.load_run(run_id)
        if stored is None:
            return
        async with self._slots.locked(run_id) as slot:
            if slot.state is not None and stored.purged_seq > slot.state.run.purged_seq:
                slot.state.run.purged_seq = stored.purged_seq

    async def state_knowing_purge(self, run_id: str) -> RunState:
        """The run's state, with any purge of its log known: on a shared store an ended run
        this process holds is checked against the store, in case the notice of another
        replica's purge was lost."""
        state = await self.state(run_id)
        if self._store.shared and state.is_terminal and state.run.purged_seq < state.last_seq:
            await self.learn_purge(run_id)
            state = await self.state(run_id)
        return state

    async def check_gap(self, run_id: str, after_seq: int, field_name: str) -> None:
        """The log holds nothing after `after_seq` though the run's head is beyond it: its
        events were purged, maybe by another replica (then the store tells this one first).
        FAILED_PRECONDITION naming `field_name` when they were."""
        if self._store.shared:
            await self.learn_purge(run_id)
        check_not_purged(await self.state(run_id), after_seq, field_name)

    async def check_head(self, run_id: str, state: RunState) -> None:
        """:meth:`refresh` for idle watchers, which check at their heartbeats that no lost
        notice left them behind: one check of a run serves every caller until it is
        :data:`HEAD_CHECK_SECONDS` old, so a run's idle watchers cost the store one read per
        second, not one per watcher and heartbeat.

        A check that cannot read the store (UNAVAILABLE) tells nothing: the watchers stay as
        they are, and their next heartbeat checks again. A store that stays unreachable shows
        in health and in every call that needs it; it is no reason to end idle streams."""
        check = self._head_checks.get(run_id)
        if check is None:
            check = self._head_checks[run_id] = asyncio.ensure_future(self.refresh(run_id, state))
            check.add_done_callback(self._forget_head_check(run_id))
        try:
            await asyncio.shield(check)
        except Unavailable as exc:
            log.debug("run %s: head check failed (%s); the next heartbeat checks", run_id, exc)

    def _forget_head_check(self, run_id: str) -> Callable[[asyncio.Future[None]], None]:
        def forget(check: asyncio.Future[None]) -> None:
            check.cancelled() or check.exception()  # retrieved: nobody may be waiting any more
            asyncio.get_running_loop().call_later(
                HEAD_CHECK_SECONDS, self._head_checks.pop, run_id, None
            )

        return forget

    async def refresh(self, run_id: str, state: RunState, head: int | None = None) -> None:
        """Catches the held run up with the store when another replica moved it on: when
        the run's stored head (`head`, when the caller read it already) is past `state`.
        A head behind it (or a run gone) means the store lost what it had acknowledged:
        :meth:`_lost`."""
        if head is None:
            head = (await self._store.heads([run_id])).get(run_id, 0)
        if head > state.last_seq:
            async with self._slots.locked(run_id) as slot:
                await self._catch_up(slot)
        elif head < state.last_seq:
            await self._lost(run_id, state, head)

    async def _lost(self, run_id: str, state: RunState, head: int) -> None:
        """The store holds the run's log only up to `head`, behind what this process folded
        (Redis restarted without its AOF, flushed, restored from an older copy, or failed
        over to a replica that lagged): says so once, ends the run's watch streams with
        DATA_LOSS naming the seqs lost (their watchers saw events the store no longer has,
        and new events may come under the same seqs), and reads the run again as the store
        has it now. A run the store no longer has stays as it was held, its watchers ended."""
        async with self._slots.locked(run_id) as slot:
            if slot.state is not state or state.last_seq <= head:
                return  # read again or moved on meanwhile: another check got there first
            last = state.last_seq
            lost = f"seq {last}" if head + 1 == last else f"seqs {head + 1}-{last}"
            reason = (
                f"run {run_id!r}: the store lost {lost}, which this server had acknowledged "
                "(its data was restored from an older copy or lost); read the run again"
            )
            log.error("%s", reason)
            self._hub.lose(run_id, reason)
            with contextlib.suppress(NotFound):
                self._slots.set_state(slot, await self._restore(run_id))


def _ignored(run: run_pb2.Run, events: Sequence[StoredEvent]) -> None:
    pass
