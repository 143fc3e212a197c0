"""Following other replicas: the notices of the store's one reader, applied in order.

The store's reader (one per process) hands every notice to :meth:`Notices.on_notice`, which
only queues it; one task applies them in order. A commit notice of a run this process holds,
or is loading (its load may have read the store before that commit), is folded in by the
ledger (which reads any gap from the log) and delivered like a local commit. A run it does
not hold still has its deadlines armed here, so they never rest on one replica. A viewer
count change goes to WatchRuns, a purge corrects the held state. A gap (a reconnect, or a
queue that overflowed) checks every held or loading run against the store's head, each on
its own: one whose check fails is logged, and the others are still checked (when the store
failed some, every held run is checked again, less and less often, until it answers); WatchRuns
streams read the runs that may have changed since the gap began; and the deadlines of the
store's open decisions are armed again, in a task of its own so that the notices after the
gap do not wait for that scan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from runstream_server.domain.hub import RunsHub
from runstream_server.domain.ledger import RunLedger
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.domain.state import RunState
from runstream_server.errors import NotFound, RunstreamError, Unavailable
from runstream_server.store.base import (
    CommitNotice,
    EventStore,
    Notice,
    PurgedNotice,
    StoredEvent,
    ViewersNotice,
    stop_if_cancelled,
)

log = logging.getLogger("runstream.runs")

# A resync reads the heads of this many held runs in one round trip, then catches up this
# many of the runs that moved at once.
_HEADS_AT_ONCE = 1000
_RESYNC_AT_ONCE = 32

# What a gap lost was committed after the last notice heard before it, give or take what a
# run's stamped create or end time may lag its notice by (a replica stalled between the two,
# clocks apart): WatchRuns streams read the runs that may have changed since, this much before.
_GAP_MARGIN_US = 60_000_000


@dataclass(frozen=True, slots=True)
class _Gap:
    """Notices were lost; what they told was committed after `since_us` (epoch us)."""

    since_us: int


@dataclass(frozen=True, slots=True)
class _Recheck:
    """The runs a resync could not check (the store failed): check the held ones again."""


_Queued = CommitNotice | ViewersNotice | PurgedNotice | _Gap | _Recheck


REARM_RETRY = (0.5, 30.0)
"""Seconds between scans of the stored deadlines the store refused: the first, the most."""

RECHECK_RETRY = (0.5, 30.0)
"""Seconds between checks of the held runs a resync could not check: the first, the most."""


class Notices:
    """Other replicas' notices, queued as they arrive and applied in order by one task."""

    def __init__(
        self,
        ledger: RunLedger,
        checks: StoreChecks,
        store: EventStore,
        runs_hub: RunsHub,
        elsewhere: Callable[[str, Sequence[StoredEvent]], None],
        viewers_changed: Callable[[Sequence[str]], Awaitable[None]],
        rearm: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        """`elsewhere` hears the events of each commit to a run this process does not hold
        (to arm their deadlines, and for the store's figures), and after a gap `rearm` arms
        the deadlines the gap may have carried, in a task `spawn` starts; `viewers_changed`
        hears that another replica's viewer count changed."""
        self._ledger = ledger
        self._checks = checks
        self._store = store
        self._runs_hub = runs_hub
        self._elsewhere = elsewhere
        self._viewers_changed = viewers_changed
        self._rearm = rearm
        self._spawn = spawn
        self._rearming = False  # a scan of the stored deadlines is under way
        self._rearm_again = False  # and another gap came meanwhile: scan once more after it
        self._recheck_wait = RECHECK_RETRY[0]  # before the next check of runs the store failed
        self._recheck_due = False  # that check is waited for
        self._store_failed = False  # the last check of the held runs: said once a streak
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=10_000)
        # The store's clock: a gap's start is compared with the index entries other
        # replicas stamped (their creations, their runs' ends).
        self._now_us = store.clock.time_us
        self._heard_us = self._drained_us = self._now_us()
        """When the last notice was heard, and when every notice heard was applied."""

    def on_notice(self, notice: Notice) -> None:
        """Called by the store's one reader for this process: queued, applied in order; a
        gap (None: the reader lost notices after the last one it passed on) is queued with
        the time from which the store is read again."""
        if notice is None:
            item: _Queued = _Gap(self._heard_us - _GAP_MARGIN_US)
        else:
            self._heard_us = self._now_us()
            item = notice
        self._put(item)

    def _put(self, item: _Queued) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:  # far behind: drop the backlog, resync from the store
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_Gap(self._drained_us - _GAP_MARGIN_US))

    async def apply_forever(self) -> None:
        while True:
            stop_if_cancelled()
            notice = await self._queue.get()
            try:
                if isinstance(notice, _Gap):
                    await self._resync(notice.since_us)
                elif isinstance(notice, _Recheck):
                    await self._check_held()
                elif isinstance(notice, ViewersNotice):
                    await self._viewers_changed([notice.run_id])
                elif isinstance(notice, PurgedNotice):
                    await self._checks.learn_purge(notice.run_id)
                else:
                    await self._apply(notice)
            except Unavailable as exc:  # the store is out of reach, which it logs itself
                log.warning("another replica's commit was not applied (%s); it resyncs on use", exc)
            except Exception:
                log.exception("applying another replica's commit failed; it resyncs on use")
            if self._queue.empty():  # every notice heard so far is applied
                self._drained_us = self._now_us()

    async def _apply(self, notice: CommitNotice) -> None:
        run_id = notice.run_id
        # A run being loaded may have been read before this commit: catching up waits for
        # the load and folds in what it missed, which no later notice may ever bring.
        if not self._ledger.in_memory(run_id):
            # Not held here: nothing to fold, but its deadlines must not rest on one replica.
            # This commit's events only: the ones after it come with their own notices.
            events = notice.events or tuple(
                await self._store.read_events(
                    run_id, notice.first_seq - 1, notice.last_seq - notice.first_seq + 1
                )
            )
            self._elsewhere(run_id, events)
            if not self._runs_hub.active:
                return
        await self._ledger.catch_up(run_id, notice)

    def _rearm_soon(self) -> None:
        """Arms the stored deadlines in a task of its own: the scan reads the questions of
        every waiting run, and other replicas' commits must not queue behind it. One scan at
        a time; a gap during one runs another after it."""
        if self._rearming:
            self._rearm_again = True
            return
        self._rearming = True
        self._spawn(self._rearm_until_done())

    async def _rearm_until_done(self) -> None:
        """Scans until a scan succeeds with no gap since: a store out of reach (the gap's
        cause, often) is asked again, less and less often, until it answers."""
        wait, waiting = REARM_RETRY[0], False
        try:
            while True:
                self._rearm_again = False
                try:
                    await self._rearm()
                except Unavailable as exc:
                    if not waiting:
                        log.warning(
                            "after a gap in notices: the stored deadlines wait for the store "
                            "(%s); they are armed once it answers",
                            exc.message,
                        )
                    waiting, self._rearm_again = True, True
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, REARM_RETRY[1])
                    continue
                except Exception:  # a bug: the next gap, or a restart, arms them
                    log.exception("after a gap in notices: the stored deadlines were not armed")
                else:
                    if waiting:
                        log.info("after a gap in notices: the stored deadlines are armed")
                    waiting = False
                if not self._rearm_again:
                    return
        finally:
            self._rearming = False

    async def _resync(self, since_us: int) -> None:
        """After a gap in notices since `since_us`: every held run against the store's head,
        every run being loaded (its load may have read the store before the commits the gap
        lost), the runs WatchRuns streams follow, and the stored decision deadlines (a
        question the gap lost would rest on one replica)."""
        await self._check_held()
        self._runs_hub.missed(since_us)  # WatchRuns streams read what moved on meanwhile
        self._rearm_soon()

    async def _check_held(self) -> None:
        """Every held and loading run against the store; those the store failed to check are
        checked again later (:data:`RECHECK_RETRY`), a bug is said and left."""
        held, loading = self._ledger.held_runs(), self._ledger.loading_runs()
        failed: list[tuple[str, Exception]] = []  # the store's errors
        broken: list[tuple[str, Exception]] = []  # anything else: a bug

        def fail(run_ids: Sequence[str], exc: Exception) -> None:
            """Notes the runs a check failed for; the other runs are still checked."""
            failures = failed if isinstance(exc, (RunstreamError, OSError)) else broken
            failures.extend((run_id, exc) for run_id in run_ids)

        async def refresh(run_id: str, state: RunState, head: int) -> None:
            try:
                await self._checks.refresh(run_id, state, head)
            except Exception as exc:
                fail([run_id], exc)

        # The notices that queue meanwhile wait for the whole resync: the heads of many runs
        # in each round trip (reading each snapshot took a second per 5,000 runs), then a
        # few dozen of the runs that moved at a time.
        for start in range(0, len(held), _HEADS_AT_ONCE):
            some = held[start : start + _HEADS_AT_ONCE]
            try:
                heads = await self._store.heads([run_id for run_id, _ in some])
            except Exception as exc:
                fail([run_id for run_id, _ in some], exc)
                continue
            # A head behind the held state (0: the store has no such run) is a store that lost
            # data: refresh says so.
            known = ((r, state, heads.get(r, 0)) for r, state in some)
            moved = [(r, state, head) for r, state, head in known if head != state.last_seq]
            for begin in range(0, len(moved), _RESYNC_AT_ONCE):
                await asyncio.gather(*(refresh(*m) for m in moved[begin : begin + _RESYNC_AT_ONCE]))
        for run_id in loading:
            try:
                await self._ledger.catch_up(run_id)
            except NotFound:  # a run asked for that does not exist
                pass
            except Exception as exc:
                fail([run_id], exc)
        # One line each, however many runs, the store's once while it fails. A bug, not the
        # store, is an ERROR with its traceback, and its runs catch up at their next notice or
        # heartbeat.
        store_level = logging.DEBUG if self._store_failed else logging.WARNING
        if failed:
            self._recheck_later()
        elif self._store_failed:
            log.info("after a gap in notices: every held run is checked")
            self._recheck_wait = RECHECK_RETRY[0]
        self._store_failed = bool(failed)
        for failures, bug in ((failed, False), (broken, True)):
            if failures:
                run_id, first = failures[0]
                log.log(
                    logging.ERROR if bug else store_level,
                    "resync after a gap in notices: %d of %d runs %s (the first, %s: %r); %s",
                    len(failures),
                    len(held) + len(loading),
                    "failed to be checked by a bug" if bug else "could not be checked",
                    run_id,
                    first,
                    "they catch up at their next notice or heartbeat"
                    if bug
                    else "the held runs are checked again once the store answers",
                    exc_info=first if bug else None,
                )

    def _recheck_later(self) -> None:
        """Queues a check of the held runs after the current wait, which doubles (one at a
        time: the heads of all held runs take one round trip per thousand), in a task that
        ends with the server."""
        if self._recheck_due:
            return
        self._recheck_due = True
        wait, self._recheck_wait = self._recheck_wait, min(self._recheck_wait * 2, RECHECK_RETRY[1])
        self._spawn(self._recheck_after(wait))

    async def _recheck_after(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
        finally:
            self._recheck_due = False
        self._put(_Recheck())
