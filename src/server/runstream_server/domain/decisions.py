"""Humans in the loop: answers to a run's decisions, their deadlines, and their feeds.

An answer is a server write through the ledger, re-checked under the run's lock against the
committed state: the first valid answer wins, the same answer again returns the same result,
another one is ABORTED. A deadline writes the default (or TIMED_OUT) the same way, with an
idempotency key that is the same on every replica, so when several replicas arm the same
deadline one resolution is stored and the others find the decision closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from runstream.v1 import decision_pb2, event_pb2

from runstream_server import principal as access
from runstream_server.domain.commits import DecisionFeed, Links
from runstream_server.domain.events import SERVER_KEY_PREFIX, check_id
from runstream_server.domain.ledger import RunLedger
from runstream_server.domain.monitors import Deadlines
from runstream_server.domain.queries import decode_token, encode_token, fitting
from runstream_server.domain.queries import page_size as clamp_page_size
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.domain.state import RunState, copied, status_name
from runstream_server.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RunstreamError,
    Unavailable,
)

log = logging.getLogger("runstream.decisions")
DEADLINE_KEY_PREFIX = f"{SERVER_KEY_PREFIX}deadline:"
"""Idempotency key of the DecisionResolved a deadline writes: the same on every replica."""


def _describe(decision: decision_pb2.Decision) -> str:
    outcome = event_pb2.DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_")
    by = f" by {decision.answered_by}" if decision.answered_by else ""
    choice = f" with {decision.choice!r}" if decision.choice else ""
    # The label a person saw beside the value a program gave (found in review: the CLI said
    # 'go' where the page had shown "Go ahead").
    label = next((o.label for o in decision.options if o.value == decision.choice), "")
    if label and label != decision.choice:
        choice += f" ({label})"
    return f"{outcome}{choice}{by}"


def _check_decisions_kept(state: RunState) -> None:
    """FAILED_PRECONDITION when retention purged the run's log. A run's decisions are kept in
    its log (the snapshot does not hold them), so they went with it: none can be told, not
    even whether an id was ever asked."""
    purged = state.run.purged_seq
    if purged:
        raise FailedPrecondition(
            f"run_id: events 1..{purged} of run {state.run.run_id!r} were removed by the "
            "retention policy, and the run's decisions with them; its snapshot (GetRun) "
            "still says how it ended",
            reason="EVENTS_PURGED",
        )


class Decisions:
    """Answers, deadlines and decision feeds of the ledger's runs."""

    def __init__(
        self,
        ledger: RunLedger,
        checks: StoreChecks,
        links: Links,
        clock: Callable[[], datetime],
        check_open: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        response_bytes: int,
        max_followed_runs: int,
    ) -> None:
        self._ledger = ledger
        self._checks = checks
        self._links = links
        self._clock = clock
        self._check_open = check_open
        self._spawn = spawn
        self._response_bytes = response_bytes
        self._max_followed_runs = max_followed_runs
        self.deadlines = Deadlines(clock, self.deadline_fired)

    async def submit(
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
        state = await self._knowing(run_id, decision_id)
        asked = state.decisions.get(decision_id)
        if (
            asked is not None
            and asked.state == decision_pb2.DECISION_STATE_OPEN
            and asked.HasField("deadline")
            and self.deadlines.due(run_id, decision_id, asked.deadline.ToDatetime(UTC))
        ):
            # Too late, even if the timer has not run yet: the deadline closes it first.
            await self.deadline_passed(run_id, decision_id)

        def prepare(state: RunState) -> list[event_pb2.RunEvent]:
            _check_decisions_kept(state)  # purged meanwhile
            decision = self._decision(state, decision_id)
            outcome = (
                event_pb2.DECISION_OUTCOME_SKIPPED if skip else event_pb2.DECISION_OUTCOME_ANSWERED
            )
            if (
                decision.state == decision_pb2.DECISION_STATE_RESOLVED
                and decision.outcome == outcome
                and decision.choice == choice
            ):
                return []  # the same answer again, also once the run ended: the same result
            values = [o.value for o in decision.options]
            if not skip and choice not in values:
                raise InvalidArgument(
                    "choice", f"{choice!r} is not one of the options {', '.join(map(repr, values))}"
                )
            if skip and not decision.can_skip:
                raise InvalidArgument("skip", f"decision {decision_id!r} cannot be skipped")
            if state.is_terminal:
                raise FailedPrecondition(
                    f"run {run_id!r} already ended ({status_name(state.run.status)}); "
                    f"decision {decision_id!r} was {_describe(decision)}",
                    reason="RUN_ENDED",
                )
            if decision.state == decision_pb2.DECISION_STATE_RESOLVED:
                raise Aborted(f"decision {decision_id!r} was already closed: {_describe(decision)}")
            resolved = event_pb2.DecisionResolved(
                decision_id=decision_id,
                outcome=outcome,
                choice=choice,
                answered_by=access.acting_as(answered_by),
            )
            return [event_pb2.RunEvent(decision_resolved=resolved)]

        await self._ledger.whole(self._ledger.commit(run_id, prepare, producer=False))
        return copied(self._decision(await self._kept(run_id), decision_id))

    @staticmethod
    def _decision(state: RunState, decision_id: str) -> decision_pb2.Decision:
        decision = state.decisions.get(decision_id)
        if decision is None:
            raise NotFound(
                f"run {state.run.run_id!r} has no decision {decision_id!r}",
                reason="DECISION_NOT_FOUND",
            )
        return decision

    async def _kept(self, run_id: str) -> RunState:
        """The run's state; FAILED_PRECONDITION when retention purged its decisions."""
        state = await self._checks.state_knowing_purge(run_id)
        _check_decisions_kept(state)
        return state

    async def _knowing(self, run_id: str, decision_id: str) -> RunState:
        """The run's state, first caught up with the store if it does not know the decision:
        another replica may have asked it while this one's notices had a gap."""
        state = await self._kept(run_id)
        if decision_id not in state.decisions:
            await self._checks.refresh(run_id, state)
            state = await self._kept(run_id)
        return state

    async def get(self, run_id: str, decision_id: str) -> decision_pb2.Decision:
        check_id("run_id", run_id)
        check_id("decision_id", decision_id)
        return copied(self._decision(await self._knowing(run_id, decision_id), decision_id))

    async def open_decisions(self, run_id: str) -> list[decision_pb2.Decision]:
        """The run's open decisions, in the order they were asked: none once it ended, so
        also once retention purged it."""
        return [copied(d) for d in (await self._ledger.state(run_id)).open_decisions()]

    async def list(
        self, run_id: str, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[decision_pb2.Decision], str]:
        state = await self._kept(run_id)
        wanted = filter_text.replace(" ", "").upper()
        states = {
            "": None,
            "STATE=OPEN": decision_pb2.DECISION_STATE_OPEN,
            "STATE=RESOLVED": decision_pb2.DECISION_STATE_RESOLVED,
        }
        if wanted not in states:
            raise InvalidArgument("filter", "use 'state = OPEN', 'state = RESOLVED' or nothing")
        only = states[wanted]
        size = clamp_page_size(page_size, 100)
        after = 0
        scope = f"decisions|{run_id}|{wanted}"
        if page_token:
            # The last listed decision's seq, not an offset: decisions that close between
            # pages leave the OPEN list (and join RESOLVED) without shifting the next page.
            seq = decode_token(page_token, scope, "run_id and filter").get("after_seq")
            if not isinstance(seq, int) or seq < 0:
                raise InvalidArgument("page_token", "is not a token this server issued")
            after = seq
        decisions = [
            d
            for d in state.decisions.values()  # in the order asked: requested_seq ascending
            if d.requested_seq > after and (only is None or d.state == only)
        ]
        page = [copied(d) for d in decisions[:size]]
        page = page[: fitting((d.ByteSize() for d in page), self._response_bytes)]
        more = len(page) < len(decisions)
        token = encode_token({"scope": scope, "after_seq": page[-1].requested_seq}) if more else ""
        return page, token

    async def follow(self, feed: DecisionFeed, run_ids: Sequence[str]) -> None:
        """Subscribes `feed` to runs: their open decisions now, then every change."""
        self._check_open()
        for i, run_id in enumerate(run_ids):
            check_id(f"subscribe.run_ids[{i}]", run_id)
        added = set(run_ids) - feed.run_ids
        if len(feed.run_ids) + len(added) > self._max_followed_runs:
            raise ResourceExhausted(
                f"subscribe.run_ids: an Interact stream follows at most "
                f"{self._max_followed_runs} runs; this one follows {len(feed.run_ids)}, and "
                f"this subscription adds {len(added)}",
                reason="INTERACT_RUN_LIMIT",
            )
        for run_id in run_ids:  # all must exist before any is followed
            await self._ledger.state(run_id)
        for run_id in run_ids:
            # Read again in case a later load evicted it; followed with no await after, so
            # no commit slips between. Following pins it for the loads after: with the cache
            # full, the load here may already have let it go again, and the next one keeps it
            # (prompts reach the feed either way: commits find feeds by run id).
            self._links.follow(feed, await self._ledger.state(run_id))

    def unfollow(self, feed: DecisionFeed) -> None:
        self._links.unfollow(feed)

    def deadline_fired(self, run_id: str, decision_id: str, attempt: int) -> None:
        self._spawn(self.deadline_passed(run_id, decision_id, attempt))

    async def deadline_passed(self, run_id: str, decision_id: str, attempt: int = 0) -> None:
        """Closes a decision nobody answered: its default, or timed out. Once, under lock.

        A failed write (the disk, not the rules) is logged and retried with backoff, so a
        transient error cannot leave the decision open forever. Every replica may fire the
        same deadline: the event's idempotency key is the same on all of them, and the write
        checks the head, so one DecisionResolved is stored and the others find it closed.
        """
        self.deadlines.disarm(run_id, decision_id)

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
            key = f"{DEADLINE_KEY_PREFIX}{decision_id}"
            return [event_pb2.RunEvent(decision_resolved=resolved, idempotency_key=key)]

        try:
            await self._ledger.whole(self._ledger.commit(run_id, prepare, producer=False))
        except RunstreamError as exc:
            # The run or decision went away: nothing to close. But a store that cannot take
            # writes now (disk full, Redis down) must not drop the deadline: that is retried.
            if not isinstance(exc, Unavailable) or self._shut_down():
                return
            delay = self.deadlines.retry(run_id, decision_id, attempt)
            log.warning(
                "closing decision %s of run %s failed (%s); retrying in %.1fs",
                decision_id,
                run_id,
                exc,
                delay,
            )
        except Exception:
            delay = self.deadlines.retry(run_id, decision_id, attempt)
            log.exception(
                "closing decision %s of run %s failed; retrying in %.1fs",
                decision_id,
                run_id,
                delay,
            )

    def _shut_down(self) -> bool:
        try:
            self._check_open()
        except Unavailable:
            return True
        return False
