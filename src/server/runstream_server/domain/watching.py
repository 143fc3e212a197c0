"""Watching: a run's events after a cursor, exactly once and in order, then live (WatchRun;
WatchRuns, the runs' changes, is :mod:`~runstream_server.domain.watching_runs`).

A watcher reads from the store until it is level with the run's head, then from the hub,
which holds only committed events (local, or another replica's learned by the ledger); any
gap, a full buffer or events committed while it read, is filled from the store again. On a
shared store, an idle watcher asks the ledger to check the run's head at each heartbeat (one
store read serves all of a run's idle watchers for a second), so a lost notice from another
replica delays it by a heartbeat and a second at most.

A stream whose writer counts its sends (``sends``: see :class:`~runstream_server.domain.hub.Sends`)
ends RESOURCE_EXHAUSTED, reason ``SEND_STALLED``, once one message has waited the hub's send
timeout to be sent: its client stopped reading, and all the stream held goes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runstream.v1 import run_pb2

from runstream_server.domain.events import VALID_KINDS, EncodedEvent, check_id
from runstream_server.domain.hub import (
    Hub,
    RunsHub,
    RunsSubscription,
    Sends,
    Subscription,
)
from runstream_server.domain.ledger import (
    RunLedger,
    check_not_purged,
)
from runstream_server.domain.limits import Limits
from runstream_server.domain.observer import DeliveryObserver
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.errors import (
    DataLoss,
    InvalidArgument,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from runstream_server.store.base import EventStore, stop_if_cancelled

log = logging.getLogger("runstream.streams")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An idle stream's proof of life: every matching event up to head_seq was sent."""

    head_seq: int
    server_time: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run as of `run.last_seq`, sent first to watchers that ask for it."""

    run: run_pb2.Run


WatchItem = bytes | Heartbeat | Snapshot


HEARTBEAT_SECONDS = (0.1, 300.0)
"""The heartbeat intervals a watch may ask for, and so the server's default too (``serve
--heartbeat``): a default outside them would refuse every watch that does not set its own."""

DEFAULT_HEARTBEAT_SECONDS = 15.0
"""The heartbeat interval of a watch that does not ask for one, unless the server is given
another (``serve --heartbeat``, :attr:`~runstream_server.app.ServerConfig.heartbeat_interval`)."""


def check_interval(seconds: float) -> None:
    lowest, highest = HEARTBEAT_SECONDS
    if not lowest <= seconds <= highest:
        raise InvalidArgument("heartbeat_interval", "must be between 100ms and 5m")


def check_watch(
    run_id: str,
    *,
    after_seq: int,
    include_snapshot: bool,
    kinds: Sequence[int],
    heartbeat_interval: float,
) -> None:
    """A WatchRun request's own checks, which need no run (INVALID_ARGUMENT naming the field)."""
    for i, kind in enumerate(kinds):
        if kind not in VALID_KINDS:
            raise InvalidArgument(f"kinds[{i}]", f"unknown event kind {kind}")
    if after_seq < 0:
        raise InvalidArgument("after_seq", "must not be negative")
    if include_snapshot and after_seq:
        raise InvalidArgument("after_seq", "must be 0 when include_snapshot is set")
    check_interval(heartbeat_interval)
    check_id("run_id", run_id)


class StreamGate:
    """Whether new watch streams (WatchRun and WatchRuns) are taken."""

    def __init__(self, check_open: Callable[[], None], hub: Hub, runs_hub: RunsHub) -> None:
        """`check_open` refuses while the server stops."""
        self._check_open = check_open
        self._hubs = (hub, runs_hub)
        self._store_lost: str | None = None
        """Why watches are refused: the shared store is out of reach (see store_lost)."""

    def check(self) -> None:
        """Refuses a new stream: UNAVAILABLE while the server stops or the store is lost."""
        self._check_open()
        if self._store_lost is not None:
            raise Unavailable(self._store_lost, reason="STORE_UNAVAILABLE")

    def store_lost(self, reason: str | None) -> None:
        """Ends every watch stream with UNAVAILABLE (``STORE_UNAVAILABLE``) and refuses new
        ones while `reason` is set, or takes them again (None): a replica that lost its shared
        store cannot hear the other replicas' events, and its watchers, told nothing, saw a
        frozen run for as long as the outage lasted while another replica served it."""
        self._store_lost = reason
        if reason is not None:
            for hub in self._hubs:
                hub.end_streams(reason, "STORE_UNAVAILABLE")


class Watching:
    """WatchRun over the ledger's runs."""

    def __init__(
        self,
        ledger: RunLedger,
        checks: StoreChecks,
        store: EventStore,
        hub: Hub,
        limits: Limits,
        clock: Callable[[], datetime],
        observer: DeliveryObserver,
        check_accepting: Callable[[], None],
        snapshot: Callable[[str], Awaitable[run_pb2.Run]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        """`check_accepting` refuses a new stream (:meth:`StreamGate.check`); `snapshot`
        answers GetRun (the first item of a watch with include_snapshot)."""
        self._ledger = ledger
        self._checks = checks
        self._store = store
        self._hub = hub
        self._limits = limits
        self._clock = clock
        self._observer = observer
        self._check_accepting = check_accepting
        self._snapshot = snapshot
        self._spawn = spawn

    async def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        include_snapshot: bool = False,
        kinds: Sequence[int] = (),
        heartbeat_interval: float = DEFAULT_HEARTBEAT_SECONDS,
        keep_open: bool = False,
        accepted: Callable[[], Awaitable[object]] | None = None,
        sends: Sends | None = None,
    ) -> AsyncGenerator[WatchItem, None]:
        """Yields the run's events after `after_seq`, live, each exactly once and in order.

        Events come as ``bytes``: the encoded ``events`` of one WatchRunResponse. They come
        from the store until the watcher is level with the run's head, then from the hub,
        which hands each commit's encoded batch to the subscription (see hub.py); whenever
        the subscription falls behind (a full buffer, a gap) the store fills in again. Ends
        after the terminal event unless `keep_open`. `accepted` is awaited once the watch
        passed its checks and is subscribed, before anything is yielded. `sends`: the
        writer's count of its sends, for the stream to end once one stands still (its
        cancel, thrown in at the yield, comes out as that refusal).
        """
        self._check_accepting()
        check_watch(
            run_id,
            after_seq=after_seq,
            include_snapshot=include_snapshot,
            kinds=kinds,
            heartbeat_interval=heartbeat_interval,
        )
        state = await self._ledger.state(run_id)
        if after_seq > state.last_seq and self._store.shared:
            await self._checks.refresh(run_id, state)  # another replica may be ahead of this one
            state = await self._ledger.state(run_id)
        if after_seq > state.last_seq:
            raise OutOfRange(
                f"after_seq: {after_seq} is beyond the last seq {state.last_seq} of run {run_id!r}"
            )
        if not include_snapshot:
            check_not_purged(state, after_seq, "after_seq")
        wanted = frozenset(kinds) or None
        hub, observer = self._hub, self._observer
        max_events, max_bytes = self._limits.watch_page_events, self._limits.watch_page_bytes
        sub = hub.subscribe(
            run_id, kinds=wanted, heartbeat_interval=heartbeat_interval, sends=sends
        )
        stream = f"WatchRun of run {run_id!r}"
        try:
            if self._ledger.cached(run_id) is None:
                # Loading it evicted it again (every other run in memory is pinned); the
                # subscription pins it from now on.
                await self._ledger.state(run_id)
            self.viewers_changed(run_id)  # one more (told of a run in memory)
            sub.cursor = after_seq
            if accepted is not None:
                await accepted()
            if include_snapshot:
                snapshot = await self._snapshot(run_id)
                sub.cursor = snapshot.last_seq
                yield Snapshot(snapshot)
            while True:
                # The fast path, once per message: whatever the hub handed over meanwhile.
                chunk = sub.take(max_events, max_bytes)
                if chunk is not None:
                    observer.delivered(
                        chunk.events, self._ledger.pinned_state(run_id).last_seq - sub.sent
                    )
                    yield chunk.data
                    continue
                if sub.closed_reason is not None:
                    raise ended(sub, stream, _RESUME_AFTER_SEQ, observer)
                if sub.behind:
                    async with contextlib.aclosing(
                        self._replay(sub, run_id, wanted, stream)
                    ) as pages:
                        async for page in pages:
                            yield page
                    continue
                head = self._ledger.pinned_state(run_id)
                if head.is_terminal and sub.cursor >= head.last_seq and not keep_open:
                    return
                if sub.take_heartbeat():
                    if self._store.shared:  # a lost notice must not leave this watcher behind
                        await self._checks.check_head(run_id, head)
                        # What it missed is delivered (or read) next; and what commits
                        # delivered during the check goes out before a heartbeat covers it.
                        if self._ledger.pinned_state(run_id).last_seq > sub.cursor or not sub.level:
                            continue
                    yield Heartbeat(sub.sent, self._clock())
                    continue
                await sub.wait()
        except asyncio.CancelledError:
            if not sub.stalled:
                raise
            raise stalled(sub, stream, _RESUME_AFTER_SEQ, observer) from None
        finally:
            hub.unsubscribe(sub)
            self.viewers_changed(run_id)  # one fewer

    async def _replay(
        self, sub: Subscription, run_id: str, wanted: frozenset[int] | None, stream: str
    ) -> AsyncGenerator[bytes, None]:
        """Catches `sub` up from the store, from its cursor to the run's head as it moves
        meanwhile, one message of events at a time, then lets it go live."""
        if sub.overflowed:
            self._observer.overflowed()
        max_events, max_bytes = self._limits.watch_page_events, self._limits.watch_page_bytes
        cursor = sub.cursor
        left = until = 0  # a read of up to max_events: what is left, its end
        while cursor < (head_seq := self._ledger.pinned_state(run_id).last_seq):
            if sub.closed_reason is not None:  # shutting down: resume elsewhere
                raise ended(sub, stream, _RESUME_AFTER_SEQ, self._observer)
            # With a rare kind wanted, pages go by with nothing sent that would find the
            # watcher gone, and a store may swallow the cancel.
            stop_if_cancelled()
            # Never past the head: the store may hold a commit not yet folded (and
            # acknowledged), which a resume after it would find out of range.
            if not left:
                left = max_events if wanted else min(max_events, head_seq - cursor)
                until = head_seq
            # The store reads a page's bytes and one event more, not max_events of any size
            # (a watcher that stopped reading pinned 500 events of up to 256 KiB each).
            stored = await self._store.read_events(
                run_id, cursor, left, wanted or (), before_seq=until + 1, max_bytes=max_bytes
            )
            cut = len(stored) < left and sum(len(e.data) for e in stored) > max_bytes
            read_all = wanted is not None and len(stored) < left and not cut
            if not stored or read_all:
                await self._checks.check_gap(run_id, cursor, "after_seq")
            pages = list(self._pages(self._ledger.framed(stored)))
            if cut and len(pages) > 1:
                # The page those begin is read again with what follows, so messages are
                # what one read of max_events made of them. A lone event past the budget is
                # a message of its own: set aside, it was never sent.
                pages.pop()
            left = left - sum(map(len, pages)) if cut else 0
            del stored
            for page in pages:
                cursor = page[-1].seq
                self._observer.delivered(
                    len(page), self._ledger.pinned_state(run_id).last_seq - cursor
                )
                yield b"".join(e.framed for e in page)
                sub.active_at = self._hub.clock.now()
            if read_all:
                cursor = until
            elif not pages:
                break
        # No await since the last look at the head: publish delivers from here.
        sub.go_live(cursor)

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

    def viewers_changed(self, run_id: str) -> None:
        """Records this process's watcher count (for other replicas) and tells WatchRuns."""
        state = self._ledger.cached(run_id)
        if state is not None:
            self._ledger.publish_run(state)
        if self._store.shared:
            self._spawn(self._store.set_viewers(run_id, self._hub.watcher_count(run_id)))


def ended(
    sub: Subscription | RunsSubscription, stream: str, resume: str, observer: DeliveryObserver
) -> DataLoss | Unavailable | ResourceExhausted:
    """Why a watch stream ends early: the store lost events it may have sent (DATA_LOSS),
    the server stops (UNAVAILABLE: resume elsewhere), or a send stood still."""
    reason = sub.closed_reason or ""
    if isinstance(sub, Subscription) and sub.lost:
        return DataLoss(reason, reason="EVENTS_LOST")
    if sub.stalled:  # its cancel was swallowed on the way (a store read may)
        return stalled(sub, stream, resume, observer)
    return Unavailable(reason, reason=sub.closed_code)


def stalled(
    sub: Subscription | RunsSubscription, stream: str, resume: str, observer: DeliveryObserver
) -> ResourceExhausted:
    """The refusal that ends a stream whose send stood still for the send timeout,
    counted and logged once; the clock's cancel of its task is taken back (the task goes
    on to send the refusal)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    observer.send_stalled()
    log.info(
        "%s ended: a message waited %gs to be sent (the client stopped reading)",
        stream,
        sub.stalled,
    )
    return ResourceExhausted(
        f"a message waited {sub.stalled:g}s to be sent: the watcher stopped reading; {resume}",
        reason="SEND_STALLED",
        retry_after=0.0,
    )


_RESUME_AFTER_SEQ = "watch again with after_seq set to the last seq it received"
