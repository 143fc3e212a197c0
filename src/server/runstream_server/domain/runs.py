"""The run manager: the domain's entry point for everything a client asks of a run.

It creates runs, appends producers' batches, answers queries, pauses, resumes and cancels,
and hands out watches, knowing no gRPC. What happens when an event arrives is in one place,
the ledger (:mod:`runstream_server.domain.ledger`): every write goes through
:meth:`~runstream_server.domain.ledger.RunLedger.commit`, and every commit, this process's
or another replica's, yields one :class:`~runstream_server.domain.commits.CommitRecord` that
the consumers wired here receive: producer links and decision feeds
(:class:`~runstream_server.domain.commits.Links`), deadline timers
(:mod:`~runstream_server.domain.decisions`) and the stall tracker
(:mod:`~runstream_server.domain.monitors`). Watching lives in
:mod:`~runstream_server.domain.watching`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.auth import principal as access
from runstream_server.domain import insight
from runstream_server.domain.commits import (
    RESYNC,
    CommitRecord,
    ControlSignal,
    DecisionFeed,
    Links,
    ProducerLink,
)
from runstream_server.domain.decisions import DEADLINE_KEY_PREFIX, Decisions
from runstream_server.domain.events import (
    KIND_BY_FIELD,
    EncodedEvent,
    check_id,
    check_snapshot_size,
    validate_produced_event,
)
from runstream_server.domain.hub import Hub, RunsHub
from runstream_server.domain.ledger import (
    Prepare,
    RunLedger,
    copied,
    count_down,
    decode,
    summary,
    uncancellable,
)
from runstream_server.domain.limits import AppendResult, EventAck, Limits, Retention
from runstream_server.domain.monitors import StallTracker
from runstream_server.domain.observer import NO_OBSERVER, DeliveryObserver
from runstream_server.domain.queries import (
    LABEL_KEY,
    decode_token,
    encode_token,
    fitting,
    parse_filter,
    parse_kinds,
)
from runstream_server.domain.queries import (
    page_size as clamp_page_size,
)
from runstream_server.domain.state import RunState, now_utc, status_name, to_timestamp
from runstream_server.domain.viewers import ViewerCounts
from runstream_server.domain.watching import (
    Heartbeat,
    InitialStateComplete,
    RunsItem,
    Snapshot,
    Watching,
    WatchItem,
    check_not_purged,
)
from runstream_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    RunstreamError,
    Unavailable,
)
from runstream_server.store.base import EventStore, RunFilter

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
    "ProducerLink",
    "Retention",
    "RunManager",
    "RunsItem",
    "Snapshot",
    "WatchItem",
]

log = logging.getLogger("runstream.runs")


def _reason(what: str, by: str, why: str) -> str:
    """E.g. "paused by ops: review", "paused by ops", "review" or "paused"."""
    if by:
        return f"{what} by {by}: {why}" if why else f"{what} by {by}"
    return why or what


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
        self._limits = limits or Limits()
        self._hub = hub or Hub(
            page_events=self._limits.watch_page_events, page_bytes=self._limits.watch_page_bytes
        )
        self._runs_hub = RunsHub(self._hub.clock)
        self._policy = policy or insight.InsightPolicy()
        self._retention = retention or Retention()
        self._clock = clock
        now = lambda: self._clock()  # noqa: E731 - tests move the clock after construction
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
            elsewhere=lambda run_id, events: self._decisions.deadlines.arm_from(run_id, events),
            viewers=lambda run_id: self._viewers.total(run_id),
            viewers_changed=lambda run_ids: self._viewers.changed_elsewhere(run_ids),
        )
        self._viewers = ViewerCounts(store, self._hub, self._runs_hub, self._ledger.cached, summary)
        self._decisions = Decisions(
            self._ledger,
            self._links,
            now,
            self._check_open,
            self._spawn,
            self._limits.response_bytes,
        )
        self._stalls = StallTracker(
            store, self._policy, now, self._ledger.workflow_history, self._mark_stalled
        )
        self._ledger.consumers += [
            self._links.on_commit,
            self._decisions.deadlines.on_commit,
            self._stalls.on_commit,
        ]
        self._watching = Watching(
            self._ledger,
            store,
            self._viewers,
            self._hub,
            self._runs_hub,
            self._limits,
            now,
            observer,
            self._check_open,
            self.get_run,
            self._spawn,
        )

    @property
    def cached_runs(self) -> int:
        """How many runs this process holds in memory now."""
        return len(self._ledger)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Follows other replicas' commits, re-arms stored decision deadlines and starts the
        stall and retention monitors."""
        if self._store.shared:
            self._spawn(self._store.follow(self._ledger.on_notice))
            self._spawn(self._ledger.apply_notices())
            self._spawn(self._viewers.reread_forever())
        for status in (run_pb2.RUN_STATUS_WAITING_FOR_INPUT, run_pb2.RUN_STATUS_PAUSED):
            cursor: tuple[int, str] | None = None
            while True:
                page = await self._store.list_runs(RunFilter(frozenset({status})), 500, cursor)
                for run in page.runs:
                    state = await self._ledger.state(run.run_id)
                    for decision in state.open_decisions():
                        if decision.HasField("deadline"):
                            deadline = decision.deadline.ToDatetime(UTC)
                            self._decisions.deadlines.arm(
                                run.run_id, decision.decision_id, deadline
                            )
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        self._spawn(self._stalls.run_forever())
        if self._retention.days is not None or self._retention.runs is not None:
            self._spawn(self._apply_retention_periodically())

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
        """Waits until the background work :meth:`shutdown` cancelled has ended."""
        if self._tasks:  # bounded: a shutdown must not hang on one stubborn task
            await asyncio.wait(list(self._tasks), timeout=5)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed_reason is not None:  # shut down: the store is closing, start nothing
            work.close()
            return
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise Unavailable(self._closed_reason)

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
        return await uncancellable(self._create_locked(run_id, created))

    async def _create_locked(self, run_id: str, created: event_pb2.RunEvent) -> run_pb2.Run:
        async with self._ledger.locked(run_id) as slot:
            if slot.state is not None:
                raise AlreadyExists(f"run {run_id!r} already exists")
            state = RunState.new(run_id)
            state.apply(created)
            check_snapshot_size(state, self._limits.max_snapshot_bytes)
            encoded = EncodedEvent.of(
                1, KIND_BY_FIELD["run_created"], "", created.SerializeToString()
            )
            await self._store.append(run_id, [encoded], state.run, expected_seq=0)
            self._ledger.set_state(slot, state)
            self._ledger.deliver(CommitRecord(state, [encoded], [created], local=True))
            return copied(state.run)

    async def get_run(self, run_id: str) -> run_pb2.Run:
        run = copied((await self._ledger.state(run_id)).run)
        run.viewer_count = (await self._viewers.read([run_id]))[run_id]
        count_down(run)
        return run

    async def get_run_details(
        self, run_id: str
    ) -> tuple[run_pb2.Run, list[event_pb2.RunEvent], list[decision_pb2.Decision]]:
        """The snapshot, the last 50 agent activities and the open decisions of a run.

        Activities (newest kept) and decisions (oldest kept) are trimmed to the response
        byte budget each, so large ones cannot make the response exceed the message limit.
        """
        state = await self._ledger.state(run_id)
        run = await self.get_run(run_id)
        budget = self._limits.response_bytes
        newest = list(reversed(state.recent_activity))
        kept = fitting((e.ByteSize() for e in newest), budget)
        activity = [copied(e) for e in reversed(newest[:kept])]
        decisions = state.open_decisions()
        decisions = decisions[: fitting((d.ByteSize() for d in decisions), budget)]
        return run, activity, [copied(d) for d in decisions]

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
        counts = await self._viewers.read([r.run_id for r in page.runs])
        runs = [summary(r, counts[r.run_id]) for r in page.runs]
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
        state = await self._ledger.state(run_id)
        size = clamp_page_size(page_size, 100)
        start = 0
        if page_token:
            offset = decode_token(page_token, f"steps|{run_id}").get("offset")
            if not isinstance(offset, int) or offset < 0:
                raise InvalidArgument("page_token", "is not a token this server issued")
            start = offset
        steps = [copied(s) for s in state.run.steps[start : start + size]]
        steps = steps[: fitting((s.ByteSize() for s in steps), self._limits.response_bytes)]
        end = start + len(steps)
        more = end < len(state.run.steps)
        token = encode_token({"scope": f"steps|{run_id}", "offset": end}) if more else ""
        return steps, token

    async def list_events(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[event_pb2.RunEvent], str]:
        """A page of the run's stored events in seq order, filtered by kind."""
        state = await self._ledger.state(run_id)
        kinds = parse_kinds(filter_text)
        size = clamp_page_size(page_size, 100)
        scope = hashlib.sha256(f"events|{run_id}|{filter_text.strip()}".encode()).hexdigest()[:16]
        after = 0
        if page_token:
            value = decode_token(page_token, scope).get("after")
            if not isinstance(value, int) or not 0 <= value < 2**62:
                raise InvalidArgument("page_token", "is not a token this server issued")
            after = value
        check_not_purged(state, after, "page_token" if page_token else "run_id")
        events = await self._store.read_events(run_id, after, size + 1, kinds)
        if not events and after < state.last_seq and self._store.shared:
            await self._ledger.learn_purge(run_id)  # another replica may have purged the log
            state = await self._ledger.state(run_id)
            check_not_purged(state, after, "page_token" if page_token else "run_id")
        kept = min(size, fitting((len(e.data) for e in events), self._limits.response_bytes))
        more = len(events) > kept
        events = events[:kept]
        token = encode_token({"scope": scope, "after": events[-1].seq}) if more else ""
        return [decode(e) for e in events], token

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
        await self._ledger.state(run_id)  # NOT_FOUND before anything else
        return await uncancellable(self._ledger.commit(run_id, events, producer=True))

    # --- run control ----------------------------------------------------------------------------

    async def _control(self, run_id: str, prepare: Prepare) -> run_pb2.Run:
        """A pause, resume or cancel: committed, and told to producers by the commit."""
        self._check_open()
        await self._ledger.state(run_id)
        await uncancellable(self._ledger.commit(run_id, prepare, producer=False))
        return await self.get_run(run_id)

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

        return await self._control(run_id, prepare)

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

        return await self._control(run_id, prepare)

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

        return await self._control(run_id, prepare)

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

    async def follow_decisions(self, feed: DecisionFeed, run_ids: Sequence[str]) -> None:
        """Subscribes `feed` to runs: their open decisions now, then every change."""
        await self._decisions.follow(feed, run_ids)

    def unfollow_decisions(self, feed: DecisionFeed) -> None:
        self._decisions.unfollow(feed)

    # --- producers ------------------------------------------------------------------------------

    async def attach_producer(self, run_id: str) -> ProducerLink:
        """Registers a producer stream for controls and answers; NOT_FOUND for unknown runs."""
        self._check_open()
        state = await self._ledger.state(run_id)
        return self._links.attach(state)  # no await since the read: the state is current

    def detach_producer(self, link: ProducerLink) -> None:
        self._links.detach(link)

    # --- watching (see domain/watching.py) ------------------------------------------------------

    def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        include_snapshot: bool = False,
        kinds: Sequence[int] = (),
        heartbeat_interval: float = 15.0,
        keep_open: bool = False,
    ) -> AsyncIterator[WatchItem]:
        """The run's events after `after_seq`, live, each exactly once and in order."""
        return self._watching.watch(
            run_id,
            after_seq=after_seq,
            include_snapshot=include_snapshot,
            kinds=kinds,
            heartbeat_interval=heartbeat_interval,
            keep_open=keep_open,
        )

    def watch_runs(self, *, filter_text: str, heartbeat_interval: float) -> AsyncIterator[RunsItem]:
        """The current state of every matching run, then each run-level change."""
        return self._watching.watch_runs(
            filter_text=filter_text, heartbeat_interval=heartbeat_interval
        )

    # --- background monitors --------------------------------------------------------------------

    async def _mark_stalled(self, run_id: str, threshold: float) -> None:
        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            # Re-checked under the lock, on the committed state: the producer may have
            # reported meanwhile, or another replica recorded the stall first.
            silence = self._stalls.silence(state.run)
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
            await uncancellable(self._ledger.commit(run_id, prepare, producer=False))

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
            async with self._ledger.locked(run_id) as slot:
                if slot.state is not None:
                    slot.state.run.purged_seq = slot.state.run.last_seq
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
