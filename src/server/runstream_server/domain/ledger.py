"""The ledger of runs in this process: their state, the one write path, and what commits.

A run begins with :meth:`RunLedger.create`, which stores its ``run_created`` event as seq 1
(the store refuses a run id it holds: ALREADY_EXISTS) and delivers it as steps 3 and 4 below
do. Every later write, a producer's batch or the server's own (a cancellation, an answer, a
deadline, a stall), goes through :meth:`RunLedger.commit`. A producer's Report stream hands
it the batches that queued while its previous commit was made as one batch (group commit,
:mod:`~runstream_server.domain.reporting`, which makes a refused group again one batch at a
time). A commit goes in this order:

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

A store that answers an append with a bare UNAVAILABLE leaves open whether it was stored
(a Redis that stopped answering may run the script when it wakes; one whose replicas did not
confirm it in time has it on the primary): the run is then *unsure*, and its state is read
on from the log before it answers for the run again. Its watchers get such a write with the
store's notice of it, as any replica's (following.py), which a read may have beaten.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar

from runstream.v1 import event_pb2, run_pb2

from runstream_server import principal as access
from runstream_server.domain import insight
from runstream_server.domain.commits import AppendResult, CommitRecord, EventAck
from runstream_server.domain.events import (
    KIND_BY_FIELD,
    EncodedEvent,
    Frame,
    check_id,
    check_snapshot_size,
    payload_field,
)
from runstream_server.domain.folding import fold
from runstream_server.domain.health import TROUBLE_KINDS, TROUBLED
from runstream_server.domain.histories import WorkflowHistories
from runstream_server.domain.hub import Hub, RunsHub
from runstream_server.domain.limits import Limits
from runstream_server.domain.slots import RunSlot, RunSlots
from runstream_server.domain.state import (
    REMEMBERED_KINDS,
    TERMINAL_STATUSES,
    RunState,
    copied,
)
from runstream_server.domain.uncancellable import uncancellable
from runstream_server.errors import (
    AlreadyExists,
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
    read_every_event,
)

log = logging.getLogger("runstream.ledger")
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


def check_not_purged(state: RunState, after_seq: int, field_name: str) -> None:
    """FAILED_PRECONDITION naming `field_name` when events after `after_seq` were purged."""
    purged = state.run.purged_seq
    if purged and after_seq < purged:
        raise FailedPrecondition(
            f"{field_name}: events {after_seq + 1}..{purged} of run {state.run.run_id!r} "
            "were removed by the retention policy; read the run's snapshot instead "
            "(GetRun, or WatchRun with include_snapshot)",
            reason="EVENTS_PURGED",
        )


def check_kept(state: RunState, newest_seq: int, field_name: str) -> None:
    """FAILED_PRECONDITION naming `field_name` when retention removed every event up to
    `newest_seq`: a newest-first page from there would start inside purged history."""
    if newest_seq <= state.run.purged_seq:
        check_not_purged(state, 0, field_name)


def by_seq(event: StoredEvent) -> int:
    return event.seq


def summary(run: run_pb2.Run, viewers: int, now: datetime, *, owned: bool = False) -> run_pb2.Run:
    """A run without its steps, for lists and WatchRuns, its estimate counted down to `now`.
    `owned`: `run` is the caller's own copy (read from the store for it), which may lose its
    steps."""
    brief = without_steps(run, owned=owned)
    brief.viewer_count = viewers
    insight.count_down(brief, now)
    return brief


def without_steps(run: run_pb2.Run, *, owned: bool) -> run_pb2.Run:
    """A copy of `run` without its steps that holds none of their memory: a protobuf message
    keeps what it ever held until it is freed, steps cleared or not, so the copy is made of a
    message whose steps are already cleared (`run` itself when the caller owns it, else a
    first copy, which is let go). A WatchRuns stream holds one summary per changed run until
    it sends it; copied with their steps, runs near the 2 MiB limit kept 2 MiB each."""
    if not owned:
        whole = run_pb2.Run()
        whole.CopyFrom(run)
        run = whole
    run.ClearField("steps")
    brief = run_pb2.Run()
    brief.CopyFrom(run)
    return brief


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
        releases: Callable[[], int],
        viewers: Callable[[str], int],
        frame: Frame,
    ) -> None:
        """`pinned` says which runs must stay in memory (watched, produced to), `releases`
        how many times a run stopped being so (:class:`.slots.RunSlots`); `viewers`
        counts a run's watchers on every replica; `frame` frames each event once for every
        watcher, as the API's WatchRun response holds it."""
        self._store = store
        self._frame = frame
        self._hub = hub
        self._runs_hub = runs_hub
        self._limits = limits
        self._policy = policy
        self._clock = clock
        self._viewers = viewers
        self._slots = RunSlots(
            limits.cached_runs, limits.cached_ended_runs, pinned=pinned, releases=releases
        )
        self.histories = WorkflowHistories(store, policy)
        self.consumers: list[Consumer] = []
        """Called with every commit record after the hubs, under the run's lock."""
        self.elsewhere: Callable[[run_pb2.Run, Sequence[StoredEvent]], None] = _ignored
        """Called with the events of other replicas' commits to a run held here, once each,
        and the run's state after them."""
        self.under_way: set[asyncio.Task[Any]] = set()
        """The commits running in tasks of their own (:meth:`whole`), their callers cancelled
        or gone: what a stop waits for before it closes the store."""

    def __len__(self) -> int:
        return len(self._slots)

    def now(self) -> datetime:
        """Now by the clock commits are stamped with (the store's, on a shared store)."""
        return self._clock()

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

    def set_state(self, slot: RunSlot, state: RunState | None) -> None:
        """Installs a run's state (holding its lock): a run just created, or read again;
        None forgets the run (its slot goes when the lock is released)."""
        self._slots.set_state(slot, state)

    # --- state ----------------------------------------------------------------------------------

    async def state(self, run_id: str) -> RunState:
        """The run's state; NOT_FOUND when it does not exist or the caller may not see it."""
        state = self._slots.state(run_id, settled=True)
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

    def pinned_state(self, run_id: str) -> RunState:
        """The state of a run the caller keeps in memory by holding a subscription to it (a
        watched run is pinned); unlike :meth:`cached`, a run not in memory is a bug here."""
        state = self._slots.state(run_id)
        assert state is not None, (
            f"run {run_id} is not in memory: the caller must hold a subscription to it"
        )
        return state

    async def _load(self, slot: RunSlot) -> RunState:
        """The run's state, loaded from the store if it is not in memory, read on from the
        log if it is unsure; holds its lock."""
        if slot.state is not None and slot.unsure:
            await self._read_on(slot, slot.state)
        elif slot.state is None:
            failed = slot.failure
            if failed is not None and time.monotonic() - failed[0] < _SHARED_LOAD_FAILURE:
                raise failed[1]  # queued behind a load that just failed: its answer
            try:
                state = await self.restore(slot.run_id)
            except NotFound:
                raise
            except Exception as exc:
                slot.failure = (time.monotonic(), exc)
                raise
            slot.failure = None
            self._slots.set_state(slot, state)
        assert slot.state is not None
        return slot.state

    async def restore(self, run_id: str) -> RunState:
        """The run's state read from the store as it is now (NOT_FOUND when it has none)."""
        snapshot = await self._store.load_run(run_id)
        if snapshot is None:
            raise NotFound(f"run {run_id!r} not found")
        kinds: tuple[int, ...] = REMEMBERED_KINDS
        if snapshot.health in TROUBLED and snapshot.status not in TERMINAL_STATUSES:
            kinds += TROUBLE_KINDS  # a healthy run has no troubles to rebuild
        remembered = await read_every_event(self._store, run_id, kinds)
        activity = await self._store.read_events_before(
            run_id, None, 50, [event_pb2.EVENT_KIND_AGENT_ACTIVITY]
        )
        # A store read after the snapshot may already hold newer events: fold only up to the
        # snapshot's seq; the newer ones arrive through catching up.
        head = snapshot.last_seq
        events = sorted((e for e in remembered + activity if e.seq <= head), key=by_seq)
        return RunState.restore(snapshot, (e.decode() for e in events))

    # --- the one write path -------------------------------------------------------------------

    async def create(self, created: event_pb2.RunEvent) -> run_pb2.Run:
        """Stores a new run from its ``run_created`` event (seq 1), installs its state and
        delivers the commit: ALREADY_EXISTS when this process or the store holds the run id.

        Unlike :meth:`commit` there is no head to catch up with and nothing to retry: the
        store writes a first event only for a run id it does not hold, and answers
        AlreadyExists otherwise, whichever replica created it (a HeadMoved, which no store
        raises for a first event, reaches the caller as ABORTED)."""
        run_id = created.run_id
        async with self._slots.locked(run_id) as slot:
            if slot.state is not None:
                raise AlreadyExists(f"run {run_id!r} already exists")
            state = RunState.new(run_id)
            state.apply(created)
            snapshot = state.run.SerializeToString()  # once: checked, then stored
            check_snapshot_size(state, snapshot, self._limits.max_snapshot_bytes)
            data = created.SerializeToString()
            first = EncodedEvent(1, KIND_BY_FIELD["run_created"], "", data, self._frame(data))
            await self._store.append(run_id, [first], state.run, expected_seq=0, encoded=snapshot)
            self._slots.set_state(slot, state)
            self.deliver(CommitRecord(state, [first], [created]))
            return copied(state.run)

    async def whole(self, work: Coroutine[Any, Any, _T]) -> _T:
        """`work` (a commit) run to its end even if the caller is cancelled: see
        :func:`uncancellable`; alone on a shared store, whose calls time out."""
        return await uncancellable(work, alone=self._store.shared, under_way=self.under_way)

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
                frame = self._frame
                fresh: list[EncodedEvent] = []
                for e in staged:
                    name = payload_field(e)
                    assert name is not None  # folded, so it has its payload
                    data = e.SerializeToString()
                    kind = KIND_BY_FIELD[name]
                    fresh.append(EncodedEvent(e.seq, kind, e.idempotency_key, data, frame(data)))
                snapshot = draft.run.SerializeToString()  # once: checked, then stored
                if producer:
                    check_snapshot_size(draft, snapshot, self._limits.max_snapshot_bytes)
                try:
                    await self._store.append(
                        run_id, fresh, draft.run, expected_seq=state.last_seq, encoded=snapshot
                    )
                except HeadMoved as moved:
                    if moved.actual != state.last_seq:  # not only a key the log holds
                        await self._catch_up(slot, moved=True)
                    continue
                except NothingStored:
                    raise
                except Unavailable:  # maybe stored: read the log before answering again
                    slot.unsure = True
                    raise
                self._slots.set_state(slot, draft)
                self.deliver(CommitRecord(draft, fresh, staged))
                return AppendResult(acks, draft.last_seq)
        raise NothingStored(
            f"run {run_id!r} is written by too many replicas at once; retry", reason="RUN_CONTENDED"
        )

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
        history = await self.histories.get(state.run.tenant, state.run.workflow)
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

    def framed(self, events: Sequence[StoredEvent]) -> list[EncodedEvent]:
        """The store's records framed for watchers (each as it is when it already is)."""
        frame = self._frame
        return [EncodedEvent.wrap(e, frame) for e in events]

    def deliver(self, record: CommitRecord) -> None:
        """Hands one commit, local or another replica's, to every consumer (under its lock)."""
        state = record.state
        self._hub.publish(record.run_id, record.events)
        for consume in self.consumers:
            consume(record)
        succeeded = state.run.status == run_pb2.RUN_STATUS_SUCCEEDED
        if succeeded and any(e.HasField("run_completed") for e in record.decoded):
            self.histories.learn(state.run)
        self.publish_run(state)

    def publish_run(self, state: RunState) -> None:
        if self._runs_hub.active:
            viewers = self._viewers(state.run.run_id)
            self._runs_hub.publish(summary(state.run, viewers, self._clock()))

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
        if notice is not None and notice.events and notice.first_seq == state.last_seq + 1:
            await self._fold_in(slot, state, list(notice.events))
        else:
            await self._read_on(slot, state, moved=moved)

    async def _read_on(self, slot: RunSlot, state: RunState, *, moved: bool = False) -> None:
        """Folds in and delivers whatever the log holds after the held state: the run is
        sure again once read."""
        stored: list[StoredEvent] = []
        while batch := await self._store.read_events(
            slot.run_id, state.last_seq + len(stored), 1000
        ):
            stored += batch
        await self._fold_in(slot, state, stored, moved=moved)
        slot.unsure = False  # once folded: a fold that failed to reload leaves it unsure

    async def _fold_in(
        self, slot: RunSlot, state: RunState, stored: list[StoredEvent], *, moved: bool = False
    ) -> None:
        """Installs the held state with `stored` (the events after it) folded in, and
        delivers them."""
        if not stored:
            if moved:  # the head moved but the log shows nothing new: trust the store
                self._slots.set_state(slot, await self.restore(slot.run_id))
            return
        decoded = [e.decode() for e in stored]
        draft = state.copy()
        try:
            for event in decoded:
                draft.apply(event, "replica")
        except RunstreamError:
            log.warning("run %s did not fold from the log; reloading it", slot.run_id)
            draft = await self.restore(slot.run_id)
        self._slots.set_state(slot, draft)
        self.elsewhere(draft.run, stored)
        self.deliver(CommitRecord(draft, self.framed(stored), decoded))

    async def catch_up(self, run_id: str, notice: CommitNotice | None = None) -> None:
        """Folds in another replica's commit (a notice; None: whatever the log holds)."""
        async with self._slots.locked(run_id) as slot:
            await self._catch_up(slot, notice)

    def held_runs(self) -> list[tuple[str, RunState]]:
        """The runs this process holds in memory, with their states."""
        return list(self._slots.held())


def _ignored(run: run_pb2.Run, events: Sequence[StoredEvent]) -> None:
    pass
