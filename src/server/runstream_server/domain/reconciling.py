"""Keeping the runs this process holds in line with a shared store.

On a shared store other replicas write too, and what they tell this one can be missed: a
notice lost in a reconnect, a purge made elsewhere. Readers and watchers ask here before they
trust what this process holds: :meth:`StoreChecks.refresh` catches a run up when the store's
head is past it, :meth:`StoreChecks.check_head` does that for idle watchers at most once a
second per run, and :meth:`StoreChecks.learn_purge` takes a purge this process was not told
of. A store whose head is *behind* what this process folded lost events it had acknowledged
(:meth:`StoreChecks._lost`). On the embedded store, where this process is the only writer,
these checks read nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from runstream_server.domain.hub import Hub
from runstream_server.domain.ledger import RunLedger, check_not_purged
from runstream_server.domain.state import RunState
from runstream_server.errors import NotFound, Unavailable
from runstream_server.store.base import EventStore

log = logging.getLogger("runstream.runs")
HEAD_CHECK_SECONDS = 1.0
"""How long one idle-watcher check of a run's head in a shared store serves the others."""


class StoreChecks:
    """Checks of the runs this process holds against the store (shared, or written by this
    process's own retention passes), and their repairs."""

    def __init__(self, ledger: RunLedger, store: EventStore, hub: Hub) -> None:
        self._ledger = ledger
        self._store = store
        self._hub = hub
        self._head_checks: dict[str, asyncio.Future[None]] = {}

    async def learn_purge(self, run_id: str) -> None:
        """Takes the held run's ``purged_seq`` from the store: another replica purged its log
        (told by a notice, or found by a reader missing events the state says exist)."""
        if self._ledger.cached(run_id) is None:
            return
        stored = await self._store.load_run(run_id)
        if stored is None:
            return
        async with self._ledger.locked(run_id) as slot:
            if slot.state is not None and stored.purged_seq > slot.state.run.purged_seq:
                slot.state.run.purged_seq = stored.purged_seq

    async def state_knowing_purge(self, run_id: str) -> RunState:
        """The run's state, with any purge of its log known: on a shared store an ended run
        this process holds is checked against the store, in case the notice of another
        replica's purge was lost."""
        state = await self._ledger.state(run_id)
        if self._store.shared and state.is_terminal and state.run.purged_seq < state.last_seq:
            await self.learn_purge(run_id)
            state = await self._ledger.state(run_id)
        return state

    async def check_gap(self, run_id: str, after_seq: int, field_name: str) -> None:
        """The log holds nothing after `after_seq` though the run's head is beyond it: its
        events were purged, by another replica or by this process's retention pass, which
        tells the runs in memory only once it has written all of its batch (the store tells
        first). FAILED_PRECONDITION naming `field_name` when they were."""
        await self.learn_purge(run_id)
        check_not_purged(await self._ledger.state(run_id), after_seq, field_name)

    async def check_head(self, run_id: str, state: RunState) -> None:
        """:meth:`refresh` for idle watchers, which check at their heartbeats that no lost
        notice left them behind: one check of a run serves every caller until it is
        :data:`HEAD_CHECK_SECONDS` old, so a run's idle watchers cost the store one read per
        second, not one per watcher and heartbeat.

        A check that cannot read the store (UNAVAILABLE) tells nothing: the watchers stay as
        they are, and their next heartbeat checks again. A store that stays unreachable shows
        in health and in every call that needs it, and a shared one ends the streams after a
        grace (``StoreHealth.follow``), not this check."""
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
            await self._ledger.catch_up(run_id)
        elif head < state.last_seq:
            await self._lost(run_id, state, head)

    async def _lost(self, run_id: str, state: RunState, head: int) -> None:
        """The store holds the run's log only up to `head`, behind what this process folded
        (Redis restarted without its AOF, flushed, restored from an older copy, or failed
        over to a replica that lagged): says so once, ends the run's watch streams with
        DATA_LOSS naming the seqs lost (their watchers saw events the store no longer has,
        and new events may come under the same seqs), and reads the run again as the store
        has it now. A run the store no longer has is forgotten: every call then answers
        NOT_FOUND, as the store does (it was served as it was held, RUNNING for ever)."""
        async with self._ledger.locked(run_id) as slot:
            if slot.state is not state or state.last_seq <= head:
                return  # read again or moved on meanwhile: another check got there first
            last = state.last_seq
            lost = f"seq {last}" if head + 1 == last else f"seqs {head + 1}-{last}"
            reason = (
                f"run {run_id!r}: the store lost {lost}, which this server had acknowledged "
                "(its data was restored from an older copy or lost); read the run again"
            )
            log.error("%s", reason)
            try:
                restored: RunState | None = await self._ledger.restore(run_id)
            except NotFound:
                restored = None  # its slot goes with the lock
            self._ledger.set_state(slot, restored)
            # Only now: a watcher told to read the run again reads it as the store has it.
            self._hub.lose(run_id, reason)
