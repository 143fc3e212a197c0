"""WatchRuns: every matching run's state, then each run-level change.

A stream is told of the runs in the store, newest first (of those ended, the newest
``initial_ended_limit`` when it is set), marks the end of that initial state, and from then on
hears each change the runs hub hands it. After a gap in the notices (a replica that lost its
shared store's subscription for a while) the runs that may have moved meanwhile are read again
and sent once more, as live changes would have been.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from runstream.v1 import run_pb2

from runstream_server import principal as access
from runstream_server.domain.hub import RunsHub, RunsSubscription, Sends
from runstream_server.domain.ledger import RunLedger, summary, without_steps
from runstream_server.domain.limits import Limits
from runstream_server.domain.observer import DeliveryObserver
from runstream_server.domain.queries import chunks, matches, parse_filter
from runstream_server.domain.state import TERMINAL_STATUSES
from runstream_server.domain.viewers import ViewerCounts
from runstream_server.domain.watching import Heartbeat, check_interval, ended, stalled
from runstream_server.errors import InvalidArgument
from runstream_server.store.base import EventStore, RunFilter, RunPage


@dataclass(frozen=True, slots=True)
class InitialStateComplete:
    """Marks the end of a WatchRuns stream's initial state; `ended_runs_left_out`: its
    ``initial_ended_limit`` left matching runs that ended out of it."""

    ended_runs_left_out: bool = False


RunsItem = list[run_pb2.Run] | Heartbeat | InitialStateComplete

MAX_INITIAL_ENDED_LIMIT = 100_000
_EVERY_STATUS = frozenset(run_pb2.RunStatus.values()) - {run_pb2.RUN_STATUS_UNSPECIFIED}


def check_watch_runs(
    *, filter_text: str, heartbeat_interval: float, initial_ended_limit: int = 0
) -> RunFilter:
    """A WatchRuns request's own checks (INVALID_ARGUMENT naming the field); its filter."""
    run_filter = parse_filter(filter_text)
    check_interval(heartbeat_interval)
    if not 0 <= initial_ended_limit <= MAX_INITIAL_ENDED_LIMIT:
        raise InvalidArgument(
            "initial_ended_limit",
            f"must be between 0 (every run) and {MAX_INITIAL_ENDED_LIMIT:,}, "
            f"got {initial_ended_limit}",
        )
    return run_filter


class WatchingRuns:
    """WatchRuns over the ledger's runs and the store's."""

    def __init__(
        self,
        ledger: RunLedger,
        store: EventStore,
        viewers: ViewerCounts,
        runs_hub: RunsHub,
        limits: Limits,
        clock: Callable[[], datetime],
        observer: DeliveryObserver,
        check_accepting: Callable[[], None],
    ) -> None:
        """`check_accepting` refuses a new stream while the server stops or the shared store
        is out of reach (:class:`~runstream_server.domain.watching.StreamGate`)."""
        self._ledger = ledger
        self._store = store
        self._viewers = viewers
        self._runs_hub = runs_hub
        self._limits = limits
        self._clock = clock
        self._observer = observer
        self._check_accepting = check_accepting

    async def watch_runs(
        self,
        *,
        filter_text: str,
        heartbeat_interval: float,
        initial_ended_limit: int = 0,
        accepted: Callable[[], Awaitable[object]] | None = None,
        sends: Sends | None = None,
    ) -> AsyncGenerator[RunsItem, None]:
        """Yields the current state of every matching run (of those ended, the newest
        `initial_ended_limit` when it is not 0), then each run-level change; `accepted` and
        `sends` as :meth:`watch` takes them."""
        self._check_accepting()
        checked = check_watch_runs(
            filter_text=filter_text,
            heartbeat_interval=heartbeat_interval,
            initial_ended_limit=initial_ended_limit,
        )
        run_filter = replace(checked, tenant=access.visible_tenant())
        sub = self._runs_hub.subscribe(
            lambda run: matches(run_filter, run),
            heartbeat_interval=heartbeat_interval,
            sends=sends,
        )
        try:
            if accepted is not None:
                await accepted()
            async for listed in self._initial_state(sub, run_filter, initial_ended_limit):
                yield listed
            while True:
                await sub.wait()
                if sub.closed_reason is not None:
                    raise ended(sub, "WatchRuns", _WATCH_AGAIN, self._observer)
                if sub.missed_since is not None:
                    since, sub.missed_since = sub.missed_since, None
                    async for listed in self._relisted(sub, run_filter, since):
                        yield listed
                    continue
                changed = sub.take()
                if changed:
                    for chunk in chunks(changed, self._limits.response_bytes):
                        yield chunk
                elif sub.take_heartbeat():
                    yield Heartbeat(0, self._clock())
        except asyncio.CancelledError:
            if not sub.stalled:
                raise
            raise stalled(sub, "WatchRuns", _WATCH_AGAIN, self._observer) from None
        finally:
            self._runs_hub.unsubscribe(sub)

    async def _initial_state(
        self, sub: RunsSubscription, run_filter: RunFilter, ended_limit: int
    ) -> AsyncIterator[list[run_pb2.Run] | InitialStateComplete]:
        """Every matching run from the store, newest first, then the mark of the end; with
        an `ended_limit`, every one not ended, then the newest `ended_limit` of those ended
        (a long history is not read at each stream's open)."""
        parts: list[tuple[RunFilter, int | None]] = [(run_filter, None)]
        if ended_limit:
            statuses = run_filter.statuses or _EVERY_STATUS
            parts = [
                (replace(run_filter, statuses=part), limit)
                for part, limit in (
                    (statuses - TERMINAL_STATUSES, None),
                    (statuses & TERMINAL_STATUSES, ended_limit),
                )
                if part
            ]
        left_out = False
        for part_filter, limit in parts:
            async for page in self._newest(part_filter, limit):
                for chunk in chunks(
                    await self._summaries(page.runs, sub), self._limits.response_bytes
                ):
                    yield chunk
                if limit is not None:  # the last page says whether more match
                    left_out = page.next_cursor is not None
        yield InitialStateComplete(left_out)

    async def _newest(
        self, run_filter: RunFilter, limit: int | None = None
    ) -> AsyncIterator[RunPage]:
        """Pages of 200 matching runs, newest first, up to `limit` runs when given, each run
        without its steps (which nothing told of runs shows). The store is read the byte
        budget's worth of snapshots at a time (up to 2 MiB each), and each run copied
        without its steps as it comes: a page of whole snapshots, held while a stream that
        stopped reading waited, came to 400 MB."""
        cursor: tuple[int, str] | None = None
        while True:
            size = 200 if limit is None else min(200, limit)
            runs: list[run_pb2.Run] = []
            positions: list[tuple[int, str]] = []
            while True:
                read = await self._store.list_runs(
                    run_filter, size - len(runs), cursor, max_bytes=self._limits.response_bytes
                )
                runs += (without_steps(run, owned=True) for run in read.runs)
                positions += read.positions
                cursor = read.next_cursor
                del read  # its snapshots, before the next are read
                if cursor is None or len(runs) >= size:
                    break
            yield RunPage(runs, positions, cursor is not None, read_up_to=cursor)
            if limit is not None:
                limit -= len(runs)
                if limit <= 0:
                    return
            if cursor is None:
                return

    async def _loaded(self, run_ids: Sequence[str]) -> AsyncIterator[list[run_pb2.Run]]:
        """The stored snapshots of those runs, 200 per read."""
        for start in range(0, len(run_ids), 200):
            yield await self._store.load_runs(run_ids[start : start + 200])

    async def _relisted(
        self, sub: RunsSubscription, run_filter: RunFilter, since_us: int
    ) -> AsyncIterator[list[run_pb2.Run]]:
        """After a gap in notices that began at `since_us`: of the runs that may have
        changed since (not ended, created since, or whose end was stored since: the store's
        indexes) and those the stream was told of as not ended, the ones that moved on since
        the stream was told of them and match, or that it was told of and no longer match
        (sent once more, as a live change would be). A run that ended before the gap is not
        read again, unless the gap is older than the store can tell: then every matching run
        and every run the stream was told of is."""
        candidates = await self._store.changed_since(since_us)
        stored: AsyncIterator[list[run_pb2.Run]]
        if candidates is None:
            told = list(sub.known)
            stored = (page.runs async for page in self._newest(run_filter))
        else:
            told = list(sub.open)
            stored = self._loaded(candidates)
        listed: set[str] = set()
        async for runs in stored:
            listed.update(run.run_id for run in runs)
            async for chunk in self._moved(runs, sub):
                yield chunk
        async for runs in self._loaded([run_id for run_id in told if run_id not in listed]):
            async for chunk in self._moved(runs, sub):
                yield chunk

    async def _moved(
        self, stored: Sequence[run_pb2.Run], sub: RunsSubscription
    ) -> AsyncIterator[list[run_pb2.Run]]:
        """Of these runs, those that moved on since the stream was told of them and match,
        or that it was told of and no longer match, as the stream is told of them."""
        moved = [
            run
            for run in stored
            if sub.known.get(run.run_id) != run.last_seq
            and (run.run_id in sub.known or sub.matches(run))
        ]
        for chunk in chunks(await self._summaries(moved, sub), self._limits.response_bytes):
            yield chunk

    async def _summaries(
        self, stored: Sequence[run_pb2.Run], sub: RunsSubscription
    ) -> list[run_pb2.Run]:
        """What a WatchRuns stream is told of these runs (the held state where there is one),
        noted as told."""
        counts = await self._viewers.read([r.run_id for r in stored])
        runs = []
        for run in stored:
            live = self._ledger.cached(run.run_id)
            current = live.run if live is not None else run
            sub.told(current)
            runs.append(summary(current, counts[current.run_id], self._clock()))
        return runs


_WATCH_AGAIN = "watch again (the initial state comes anew)"
