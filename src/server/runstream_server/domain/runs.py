"""The run manager: the domain's entry point for everything a client asks of a run.

It creates runs, appends producers' batches, answers queries, pauses, resumes and cancels,
and hands out watches, knowing no gRPC. What happens when an event arrives is in one place,
the ledger (:mod:`runstream_server.domain.ledger`): a run's first event goes through
:meth:`~runstream_server.domain.ledger.RunLedger.create`, every later write through
:meth:`~runstream_server.domain.ledger.RunLedger.commit`, and every commit, this process's
or another replica's, yields one :class:`~runstream_server.domain.commits.CommitRecord` that
the consumers wired here receive: producer links and decision feeds
(:class:`~runstream_server.domain.commits.Links`), deadline timers
(:mod:`~runstream_server.domain.decisions`) and the stall tracker
(:mod:`~runstream_server.domain.monitors`). Watching lives in
:mod:`~runstream_server.domain.watching` (WatchRuns in
:mod:`~runstream_server.domain.watching_runs`), reads in :mod:`~runstream_server.domain.reading`,
the checks of a new run in :mod:`~runstream_server.domain.creating` and those of a cancel,
pause or resume in :mod:`~runstream_server.domain.control`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
    Sequence,
)
from datetime import datetime
from typing import Any

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server import principal as access
from runstream_server.domain import control, insight
from runstream_server.domain.commits import (
    RESYNC,
    AppendResult,
    ControlSignal,
    DecisionFeed,
    EventAck,
    Links,
    Mailbox,
    ProducerLink,
    Signal,
    forwarded_first,
)
from runstream_server.domain.creating import run_created
from runstream_server.domain.decisions import DEADLINE_KEY_PREFIX, Decisions
from runstream_server.domain.events import Frame, check_batch
from runstream_server.domain.following import Notices
from runstream_server.domain.hub import Hub, RunsHub, Sends
from runstream_server.domain.ledger import (
    Prepare,
    RunLedger,
    summary,
)
from runstream_server.domain.limits import Limits, Retention
from runstream_server.domain.monitors import RetentionPasses, StallTracker
from runstream_server.domain.observer import NO_OBSERVER, DeliveryObserver
from runstream_server.domain.reading import Reading
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.domain.store_passes import StorePasses
from runstream_server.domain.viewers import ViewerCounts
from runstream_server.domain.watching import (
    Heartbeat,
    Snapshot,
    StreamGate,
    Watching,
    WatchItem,
)
from runstream_server.domain.watching_runs import InitialStateComplete, RunsItem, WatchingRuns
from runstream_server.errors import ShuttingDown
from runstream_server.store.base import EventStore, StoredEvent

__all__ = [
    "DEADLINE_KEY_PREFIX",
    "RESYNC",
    "AppendResult",
    "ControlSignal",
    "DecisionFeed",
    "EventAck",
    "Heartbeat",
    "InitialStateComplete",
    "Limits",
    "Mailbox",
    "ProducerLink",
    "Retention",
    "RunManager",
    "RunsItem",
    "Signal",
    "Snapshot",
    "WatchItem",
    "forwarded_first",
]

log = logging.getLogger("runstream.runs")


class RunManager:
    """Creates runs, appends events, answers queries and feeds watchers. Knows no gRPC."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub | None = None,
        limits: Limits | None = None,
        policy: insight.InsightPolicy | None = None,
        retention: Retention | None = None,
        clock: Callable[[], datetime] | None = None,
        observer: DeliveryObserver = NO_OBSERVER,
        *,
        frame: Frame,
    ) -> None:
        """`clock`: what every "now" compared with stored times reads; the store's (on a
        shared store, the one all replicas read) unless given. `frame`: how a watch response
        holds each event (the API's :func:`~runstream_server.api.run_service.frame_event`)."""
        self._store = store
        self._limits = limits or Limits()
        self._hub = hub or Hub(
            page_events=self._limits.watch_page_events, page_bytes=self._limits.watch_page_bytes
        )
        self._runs_hub = RunsHub(self._hub.clock)
        self._policy = policy or insight.InsightPolicy()
        self._clock = clock or store.clock

        def now() -> datetime:  # tests move the clock after construction
            return self._clock()

        self._retention = RetentionPasses(store, retention or Retention(), now, self._purged)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed_reason: str | None = None
        self._links = Links()
        self._ledger = RunLedger(
            store,
            self._hub,
            self._runs_hub,
            self._limits,
            self._policy,
            now,
            pinned=lambda run_id: (
                bool(self._hub.watcher_count(run_id)) or self._links.in_use(run_id)
            ),
            releases=lambda: self._hub.releases + self._links.releases,
            viewers=lambda run_id: self._viewers.total(run_id),
            frame=frame,
        )
        self._ledger.elsewhere = lambda run, events: observer.committed_elsewhere(
            run.run_id, events, run
        )
        self._observer = observer
        checks = StoreChecks(self._ledger, store, self._hub)
        self._viewers = ViewerCounts(
            store,
            self._hub,
            self._runs_hub,
            self._ledger.cached,
            lambda run, count: summary(run, count, now()),
        )
        self._notices = Notices(
            self._ledger,
            checks,
            store,
            self._runs_hub,
            elsewhere=self._not_held_elsewhere,
            viewers_changed=self._viewers.changed_elsewhere,
            rearm=lambda: self._passes.arm_deadlines(),
            spawn=self._spawn,
        )
        self._decisions = Decisions(
            self._ledger,
            checks,
            self._links,
            now,
            self._check_open,
            self._spawn,
            self._limits.response_bytes,
            self._limits.max_followed_runs,
        )
        self._passes = StorePasses(store, self._decisions.deadlines, observer)
        self._stalls = StallTracker(store, self._policy, now, self._ledger)
        self._ledger.consumers += [
            self._links.on_commit,
            self._decisions.deadlines.on_commit,
            self._stalls.on_commit,
        ]
        self._reading = Reading(self._ledger, checks, store, self._viewers, self._limits)
        self._gate = StreamGate(self._check_open, self._hub, self._runs_hub)
        self._watching = Watching(
            self._ledger,
            checks,
            store,
            self._hub,
            self._limits,
            now,
            observer,
            self._gate.check,
            self.get_run,
            self._spawn,
        )
        self._watching_runs = WatchingRuns(
            self._ledger,
            store,
            self._viewers,
            self._runs_hub,
            self._limits,
            now,
            observer,
            self._gate.check,
        )

    @property
    def cached_runs(self) -> int:
        """How many runs this process holds in memory now."""
        return len(self._ledger)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Follows other replicas' commits, re-arms stored decision deadlines and starts the
        stall and retention monitors."""
        if self._store.shared:  # the subscription's first resync arms the stored deadlines
            self._spawn(self._store.follow(self._notices.on_notice))
            self._spawn(self._notices.apply_forever())
            self._spawn(self._viewers.reread_forever())
        else:
            await self._passes.arm_deadlines()
        self._spawn(self._stalls.run_forever())
        if self._retention.enabled:
            self._spawn(self._retention.run_forever())

    def stored_open_decisions(self) -> AsyncIterator[tuple[str, decision_pb2.Decision]]:
        """The open decisions of every waiting or paused run in the store (StorePasses)."""
        return self._passes.open_decisions()

    def store_lost(self, reason: str | None) -> None:
        """The shared store out of reach (`reason`), or back (None): StreamGate.store_lost."""
        self._gate.store_lost(reason)

    def shutdown(self, reason: str = "server is shutting down; resume elsewhere") -> None:
        """Ends every stream with UNAVAILABLE so clients resume elsewhere; stops timers."""
        self._closed_reason = reason
        self._hub.close(reason)
        self._runs_hub.close(reason)
        self._links.close()
        self._decisions.deadlines.close()
        for task in self._tasks:
            task.cancel()

    async def stopped(self) -> None:
        """Waits until the background work :meth:`shutdown` cancelled has ended, and the
        commits its tasks and the calls cut by the stop left under way."""
        loop = asyncio.get_running_loop()
        until = loop.time() + 5  # bounded: a shutdown must not hang on one stubborn task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=until - loop.time())
        if committing := list(self._ledger.under_way):
            await asyncio.wait(committing, timeout=max(0.0, until - loop.time()))

    def _not_held_elsewhere(self, run_id: str, events: Sequence[StoredEvent]) -> None:
        """Another replica's commit to a run this process does not hold: its deadlines must
        not rest on one replica, and the figures of the whole store move with it."""
        self._decisions.deadlines.arm_from_stored(run_id, events)
        self._observer.committed_elsewhere(run_id, events, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed_reason is not None:  # shut down: the store is closing, start nothing
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Forgets a finished background task; one that died of an error says so (nothing
        else would read its exception, and the work it did every few seconds stops)."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a background task of the server stopped", exc_info=exc)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise ShuttingDown(self._closed_reason)

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
        created = run_created(
            run_id=run_id or uuid.uuid4().hex,
            workflow=workflow,
            display_name=display_name,
            labels=labels,
            steps=steps,
            targets=targets,
            limits=self._limits,
            now=self._clock(),
        )
        return await self._ledger.whole(self._ledger.create(created))

    async def get_run(self, run_id: str) -> run_pb2.Run:
        return await self._reading.get_run(run_id)

    async def get_run_details(
        self, run_id: str
    ) -> tuple[run_pb2.Run, list[event_pb2.RunEvent], list[decision_pb2.Decision], int]:
        """The snapshot, the last 50 agent activities and the open decisions of a run, and
        how many open decisions its byte budget left out."""
        return await self._reading.get_run_details(run_id)

    async def list_runs(
        self, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Run], str]:
        return await self._reading.list_runs(
            filter_text=filter_text, page_size=page_size, page_token=page_token
        )

    async def list_steps(
        self, run_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Step], str]:
        return await self._reading.list_steps(run_id, page_size=page_size, page_token=page_token)

    async def list_events(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str, order_by: str = ""
    ) -> tuple[list[event_pb2.RunEvent], str]:
        """A page of the run's stored events in seq order (newest first with `order_by`
        "seq desc"), filtered by kind."""
        return await self._reading.list_events(
            run_id,
            filter_text=filter_text,
            page_size=page_size,
            page_token=page_token,
            order_by=order_by,
        )

    # --- appending ------------------------------------------------------------------------------

    async def append(self, run_id: str, events: Sequence[event_pb2.RunEvent]) -> AppendResult:
        """Appends a producer's batch: all of it, durably, or none of it.

        Returns one turn of the event loop after the commit, so the watchers it woke send
        its events before the producer's ack goes out (acking first delayed them by a third
        of a millisecond when the producer shares the server's core).
        """
        self._check_open()
        check_batch(run_id, events, self._limits)
        for event in events:
            if event.HasField("run_cancelled"):  # who cancelled: the token's subject
                cancelled = event.run_cancelled
                cancelled.cancelled_by = access.acting_as(cancelled.cancelled_by)
        await self._ledger.writable(run_id)  # NOT_FOUND (or not its run) before anything else
        result = await self._ledger.whole(self._ledger.commit(run_id, events, producer=True))
        await asyncio.sleep(0)  # the watchers first
        return result

    # --- run control ----------------------------------------------------------------------------

    async def _control(self, run_id: str, prepare: Prepare) -> run_pb2.Run:
        """A pause, resume or cancel: committed, and told to producers by the commit."""
        self._check_open()
        await self._ledger.state(run_id)
        await self._ledger.whole(self._ledger.commit(run_id, prepare, producer=False))
        return await self.get_run(run_id)

    async def cancel_run(self, run_id: str, *, reason: str, cancelled_by: str) -> run_pb2.Run:
        """Cancels a run, records it in the log and tells the run's producers."""
        return await self._control(run_id, control.cancelling(run_id, reason, cancelled_by))

    async def pause_run(self, run_id: str, *, reason: str, requested_by: str) -> run_pb2.Run:
        """Pauses a running run; its producers hold at their next step boundary."""
        return await self._control(run_id, control.pausing(run_id, reason, requested_by))

    async def resume_run(self, run_id: str, *, reason: str, requested_by: str) -> run_pb2.Run:
        """Resumes a paused run, back to RUNNING (or WAITING_FOR_INPUT with open decisions)."""
        return await self._control(run_id, control.resuming(run_id, reason, requested_by))

    # --- decisions (see domain/decisions.py) ----------------------------------------------------

    async def submit_decision(
        self, run_id: str, decision_id: str, *, choice: str, skip: bool, answered_by: str
    ) -> decision_pb2.Decision:
        """Answers (or skips) a decision; the first valid answer wins, repeats are idempotent."""
        return await self._decisions.submit(
            run_id, decision_id, choice=choice, skip=skip, answered_by=answered_by
        )

    async def get_decision(self, run_id: str, decision_id: str) -> decision_pb2.Decision:
        return await self._decisions.get(run_id, decision_id)

    async def list_decisions(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[decision_pb2.Decision], str]:
        return await self._decisions.list(
            run_id, filter_text=filter_text, page_size=page_size, page_token=page_token
        )

    async def open_decisions(self, run_id: str) -> list[decision_pb2.Decision]:
        """The run's open decisions, also once retention purged its decision history."""
        return await self._decisions.open_decisions(run_id)

    async def follow_decisions(self, feed: DecisionFeed, run_ids: Sequence[str]) -> None:
        """Subscribes `feed` to runs: their open decisions now, then every change."""
        await self._decisions.follow(feed, run_ids)

    def unfollow_decisions(self, feed: DecisionFeed) -> None:
        self._decisions.unfollow(feed)

    # --- producers ------------------------------------------------------------------------------

    async def attach_producer(self, run_id: str) -> ProducerLink:
        """Registers a producer stream for controls and answers; NOT_FOUND for unknown runs."""
        self._check_open()
        state = await self._ledger.writable(run_id)
        return self._links.attach(state)  # no await since the read: the state is current

    def detach_producer(self, link: ProducerLink) -> None:
        self._links.detach(link)

    # --- watching (see domain/watching.py and watching_runs.py) ---------------------------------

    @property
    def watching(self) -> Watching:
        """WatchRun's streams: :meth:`~runstream_server.domain.watching.Watching.watch`, the
        run's events after a cursor, live, each exactly once and in order."""
        return self._watching

    def watch_runs(
        self,
        *,
        filter_text: str,
        heartbeat_interval: float,
        initial_ended_limit: int = 0,
        accepted: Callable[[], Awaitable[object]] | None = None,
        sends: Sends | None = None,
    ) -> AsyncGenerator[RunsItem, None]:
        """The current state of every matching run (of those ended, the newest
        `initial_ended_limit` when it is not 0), then each run-level change; `accepted` and
        `sends` as :meth:`~runstream_server.domain.watching.Watching.watch`
        takes them."""
        return self._watching_runs.watch_runs(
            filter_text=filter_text,
            heartbeat_interval=heartbeat_interval,
            initial_ended_limit=initial_ended_limit,
            accepted=accepted,
            sends=sends,
        )

    # --- background monitors --------------------------------------------------------------------

    async def apply_retention(self) -> list[str]:
        """Purges the event logs of finished runs past the retention policy; returns their ids."""
        return await self._retention.apply()

    async def _purged(self, run_id: str) -> None:
        # Under the run's lock: a load in progress read the snapshot before the purge, and
        # must not cache it unpurged. (It finishes first; then this corrects it.)
        async with self._ledger.locked(run_id) as slot:
            if slot.state is not None:
                slot.state.run.purged_seq = slot.state.run.last_seq
