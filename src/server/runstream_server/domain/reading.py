"""Reading runs: GetRun, ListRuns, ListSteps, ListEvents, and the details of one run.

Reads answer from the run's state as this process holds it (loaded from the store when it is
not in memory) and from the store's log; nothing here writes. Every page stops at the
response byte budget, so nothing a producer was allowed to store can make a read fail, and
page tokens are bound to the query that issued them (see queries.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server import principal as access
from runstream_server.domain import insight
from runstream_server.domain.ledger import (
    RunLedger,
    check_kept,
    check_not_purged,
    summary,
)
from runstream_server.domain.limits import Limits
from runstream_server.domain.queries import (
    MAX_SEQ,
    EventFilter,
    decode_token,
    encode_token,
    fitting,
    newest_first,
    parse_event_filter,
    parse_filter,
)
from runstream_server.domain.queries import page_size as clamp_page_size
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.domain.state import RunState, copied
from runstream_server.domain.viewers import ViewerCounts
from runstream_server.errors import InvalidArgument
from runstream_server.store.base import EventStore, StoredEvent


class Reading:
    """The read side of the run manager."""

    def __init__(
        self,
        ledger: RunLedger,
        checks: StoreChecks,
        store: EventStore,
        viewers: ViewerCounts,
        limits: Limits,
    ) -> None:
        self._ledger = ledger
        self._checks = checks
        self._store = store
        self._viewers = viewers
        self._limits = limits

    async def get_run(self, run_id: str) -> run_pb2.Run:
        run = copied((await self._ledger.state(run_id)).run)
        run.viewer_count = (await self._viewers.read([run_id]))[run_id]
        insight.count_down(run, self._ledger.now())
        return run

    async def get_run_details(
        self, run_id: str
    ) -> tuple[run_pb2.Run, list[event_pb2.RunEvent], list[decision_pb2.Decision], int]:
        """The snapshot, the last 50 agent activities and the open decisions of a run, and
        how many open decisions were left out.

        Activities (newest kept) and decisions (oldest kept) are trimmed to the response
        byte budget each, so large ones cannot make the response exceed the message limit;
        the decisions left out are counted, for the caller to list them (ListDecisions).
        """
        state = await self._ledger.state(run_id)
        run = await self.get_run(run_id)
        budget = self._limits.response_bytes
        newest = list(reversed(state.recent_activity))
        kept = fitting((e.ByteSize() for e in newest), budget)
        activity = [copied(e) for e in reversed(newest[:kept])]
        decisions = state.open_decisions()
        kept = fitting((d.ByteSize() for d in decisions), budget)
        return run, activity, [copied(d) for d in decisions[:kept]], len(decisions) - kept

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
            # (create time in microseconds, run id), as next_cursor gave it; nothing else, a
            # number string past int64 included, which SQLite could not bind (INTERNAL).
            match after:
                case [int(created), str(run_id)]:  # decode_token: ints in int64, no bools
                    cursor = (created, run_id)
                case _:
                    raise InvalidArgument("page_token", "is not a token this server issued")
        budget = self._limits.response_bytes
        now = self._ledger.now()
        runs: list[run_pb2.Run] = []
        positions: list[tuple[int, str]] = []
        held = 0  # bytes of the summaries
        next_cursor = cursor
        # The store's pages stop at the budget's worth of snapshots (up to 2 MiB each), and
        # each is summarized before the next is read: what the call holds is about what it
        # may send, until the page is full or its summaries pass the budget.
        while True:
            page = await self._store.list_runs(
                run_filter, size - len(runs), next_cursor, max_bytes=budget
            )
            counts = await self._viewers.read([r.run_id for r in page.runs])
            # The store's copies, this call's own.
            summaries = [summary(r, counts[r.run_id], now, owned=True) for r in page.runs]
            runs += summaries
            positions += page.positions
            held += sum(r.ByteSize() for r in summaries)
            next_cursor = page.next_cursor
            del page  # its snapshots, before the next page is read
            if next_cursor is None or len(runs) >= size or held > budget:
                break
        kept = fitting((r.ByteSize() for r in runs), budget)
        if kept < len(runs):  # cut short by size: the next page starts after the last kept
            runs = runs[:kept]
            next_cursor = positions[kept - 1]
        token = encode_token({"scope": scope, "after": list(next_cursor)}) if next_cursor else ""
        return runs, token

    async def list_steps(
        self, run_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Step], str]:
        state = await self._ledger.state(run_id)
        size = clamp_page_size(page_size, 100)
        start = 0
        if page_token:
            offset = decode_token(page_token, f"steps|{run_id}", "run_id").get("offset")
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
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str, order_by: str = ""
    ) -> tuple[list[event_pb2.RunEvent], str]:
        """A page of the run's stored events in seq order (newest first when `order_by` is
        "seq desc"), filtered by kind and by a window of seqs (``seq > 100 AND seq < 200``).

        A token holds the last seq it listed and is bound to the filter and the order: oldest
        first the scope is the one tokens had before ``order_by`` existed, so those still
        work. Either way a page that would start inside purged history is
        FAILED_PRECONDITION; newest first, the page that reaches purged history is the last.
        The listing starts at the window's near end (read from there, not from the log's
        start or head) and ends at its far end.
        """
        state = await self._ledger.state(run_id)
        window = parse_event_filter(filter_text)
        descending = newest_first(order_by)
        size = clamp_page_size(page_size, 100)
        listing = "events desc" if descending else "events"
        scope = hashlib.sha256(f"{listing}|{run_id}|{filter_text.strip()}".encode()).hexdigest()
        scope = scope[:16]
        position_key = "before" if descending else "after"
        position: int | None = None
        if page_token:
            value = decode_token(page_token, scope, "run_id, filter and order_by").get(position_key)
            if not isinstance(value, int) or not 0 <= value < MAX_SEQ:
                raise InvalidArgument("page_token", "is not a token this server issued")
            position = value
        if window.empty:
            return [], ""
        budget = self._limits.response_bytes
        # Where the listing starts: the token's position, else the filter's near bound.
        bounded = window.after > 0 or window.before is not None
        field = "page_token" if page_token else "filter" if bounded else "run_id"
        if descending:
            before = window.before if position is None else position
            events = await self._newest_first(state, before, window, size + 1, field, budget)
        else:
            after = max(position or 0, window.after)
            check_not_purged(state, after, field)
            events = await self._store.read_events(
                run_id, after, size + 1, window.kinds, before_seq=window.before, max_bytes=budget
            )
            if not events and after < min(state.last_seq, (window.before or MAX_SEQ) - 1):
                await self._checks.check_gap(run_id, after, field)
        # The store read no more than the budget and one event (two at least), so an event
        # past those kept, when it exists, is among those read: `more` is exact.
        kept = min(size, fitting((len(e.data) for e in events), budget))
        more = len(events) > kept
        events = events[:kept]
        token = encode_token({"scope": scope, position_key: events[-1].seq}) if more else ""
        return [e.decode() for e in events], token

    async def _newest_first(
        self,
        state: RunState,
        before: int | None,
        window: EventFilter,
        limit: int,
        field: str,
        max_bytes: int,
    ) -> list[StoredEvent]:
        """Up to `limit` stored events of the window below seq `before` (from the head when
        None), newest first, up to `max_bytes` (see the store's read); FAILED_PRECONDITION
        naming `field` when retention removed all of them."""
        run_id = state.run.run_id
        newest = state.last_seq if before is None else min(before - 1, state.last_seq)
        check_kept(state, newest, field)
        events = await self._store.read_events_before(
            run_id, before, limit, window.kinds, after_seq=window.after, max_bytes=max_bytes
        )
        if not events:  # purged, and not yet known here: StoreChecks.check_gap
            await self._checks.learn_purge(run_id)
            check_kept(await self._ledger.state(run_id), newest, field)
        return events
