"""The decisions a producer asks a human to make about its run, and their answers.

:class:`RunDecisions` is the producer's side of decisions for
:class:`~runstream.RunReporter`: ``ask()`` checks the question before sending, reports
DecisionRequested and waits until the decision closes (or raises the server's refusal of the
question). The closed decision comes back on the report stream.
Because a decision may close while the stream is broken, every reconnect is followed by a
``GetDecision`` for each decision still awaited (after the new stream is attached, so a
closure is either pushed on it or visible to that read). After ``attach_run`` it also knows
the run's decisions asked before: asking again with one of their ids waits for that answer
instead of asking twice. A question whose idempotency key the run already holds (a replay
under the key_prefix of an earlier process, asked without its decision_id) was not stored:
its ack says so, and ``ask()`` then waits for the question asked before under that key if it
is the same question, and raises FailedPreconditionError naming what the key holds if not.
An ``ask()`` its caller cancels leaves a question it sent open for the viewers; asking again
with that decision_id waits for its answer instead of being refused as already asked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from runstream import _event_builders as builders
from runstream._errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    RunstreamError,
)
from runstream._types import Decision, DecisionOutcome, DecisionResult, OptionLike

if TYPE_CHECKING:
    from runstream._outbox import Outbox
    from runstream._report_gate import ReportGate
    from runstream._report_stream import ReportStream, Signal
    from runstream._run_control import RunControl
    from runstream.v1 import event_pb2

__all__ = ["RunDecisions"]


@dataclass(frozen=True, slots=True)
class _KeyTaken:
    """An awaited question's ack: the run already held an event under its key, at seq."""

    seq: int
    key: str


class RunDecisions:
    """The decisions asked on one run's reporter: asking, awaiting and catching up."""

    def __init__(
        self,
        run_id: str,
        *,
        gate: ReportGate,
        stream: ReportStream,
        outbox: Outbox,
        signal: Signal,
        control: RunControl,
        get_decision: Callable[[str, str], Awaitable[Decision]],
        list_decisions: Callable[[str], Awaitable[list[Decision]]],
    ) -> None:
        self._run_id = run_id
        self._gate = gate
        self._stream = stream
        self._outbox = outbox
        self._signal = signal
        self._control = control
        self._get_decision = get_decision
        self._list_decisions = list_decisions
        # Ids ever asked here, and the ones ask() still awaits (None until the closed
        # decision, or the server's refusal of the question, arrives). After attach_run():
        # the run's decisions asked before, and every closed decision this reporter heard of.
        self._asked: set[str] = set()
        self._awaited: dict[str, Decision | RunstreamError | _KeyTaken | None] = {}
        self._questions: dict[str, event_pb2.DecisionRequested] = {}
        self._asked_before: dict[str, Decision] = {}
        self._closed: dict[str, Decision] = {}
        # Ids whose ask() the caller cancelled after the question was sent, with the question.
        self._given_up: dict[str, event_pb2.DecisionRequested] = {}

    @property
    def open_before(self) -> tuple[Decision, ...]:
        """The decisions asked before ``attach_run`` that are still open, as far as known."""
        return tuple(
            decision
            for decision_id, decision in self._asked_before.items()
            if decision.is_open and decision_id not in self._closed
        )

    @property
    def awaiting(self) -> bool:
        """Whether an ``ask()`` is waiting for its answer."""
        return bool(self._awaited)

    async def learn_asked_before(self) -> None:
        """Reads the run's decisions asked before ``attach_run``."""
        for decision in await self._list_decisions(self._run_id):
            self._asked_before[decision.decision_id] = decision
            if not decision.is_open:
                self._closed.setdefault(decision.decision_id, decision)

    async def ask(
        self,
        prompt: str,
        options: Iterable[OptionLike],
        *,
        default: str | None,
        timeout: timedelta | float | None,  # noqa: ASYNC109
        can_skip: bool,
        context: Mapping[str, Any] | None,
        decision_type: str,
        affects_workflow: bool,
        decision_id: str | None,
    ) -> DecisionResult:
        """``RunReporter.ask()``, which documents it."""
        if isinstance(options, str):  # iterating "yes" would offer "y", "e" and "s"
            raise InvalidArgumentError(
                f"options: {options[:40]!r} is one string; give a list of options"
            )
        choices = [builders.decision_option(option) for option in options]
        decision_id = decision_id if decision_id is not None else f"d-{uuid.uuid4().hex[:16]}"
        # Building the question checks it: one the server would refuse raises here, before
        # anything is sent (and without the new stream the server's refusal costs).
        event = builders.decision_requested_event(
            decision_id,
            prompt,
            choices,
            default,
            timeout,
            can_skip,
            context,
            decision_type,
            affects_workflow,
        )
        resumed = decision_id in self._given_up
        if decision_id in self._asked and not resumed:
            raise InvalidArgumentError(
                f"decision_id: {decision_id!r} was already asked on run {self._run_id!r}"
            )
        # Closed since attach_run, asked by another reporter of the run (an agent of the
        # same team): its answer, not a question the server would refuse at complete().
        closed_elsewhere = (
            not resumed and decision_id not in self._asked_before and decision_id in self._closed
        )
        # Asking again under the id of a question already sent waits for that question's
        # answer: only when it is the same question, or the caller would get the answer to
        # another one (a choice perhaps not among its options).
        if resumed:
            self._check_same(decision_id, self._given_up[decision_id], event)
        elif decision_id in self._asked_before:
            self._check_same(decision_id, self._asked_before[decision_id], event)
        elif closed_elsewhere:
            self._check_same(decision_id, self._closed[decision_id], event)
        self._gate.check_can_report()
        self._asked.add(decision_id)
        self._awaited[decision_id] = self._closed.get(decision_id)
        self._questions[decision_id] = event.decision_requested
        sent = resumed or decision_id in self._asked_before or closed_elsewhere
        try:
            if resumed:
                # Its closure may have been pushed while nobody awaited it on a broken stream.
                await self._reread(decision_id)
            elif decision_id in self._asked_before:
                # Asked before attach_run: wait for that question's answer instead of asking
                # again, and skip the key its DecisionRequested took, so later keys line up.
                self._outbox.next_key += 1
            elif not closed_elsewhere:
                await self._gate.admit(event)
                sent = True
            decision = await self._await(decision_id)
            self._given_up.pop(decision_id, None)
        except asyncio.CancelledError:
            # The caller gave up waiting (a wait_for that timed out): a question sent stays
            # open for the viewers, and asking again with its id waits for its answer; one
            # not sent yet (cancelled while the buffer was full) may be asked afresh.
            if sent:
                self._given_up[decision_id] = event.decision_requested
            else:
                self._asked.discard(decision_id)
            raise
        finally:
            self._awaited.pop(decision_id, None)
            self._questions.pop(decision_id, None)
        if decision.outcome == DecisionOutcome.CANCELLED:
            # The closed decision can overtake the CANCEL control; the run says why.
            await self._control.learn_cancellation()
            if self._control.cancelled:
                raise self._control.cancelled_error()
            raise FailedPreconditionError(  # completed or failed, by another task or producer
                f"run {self._run_id!r} ended while decision {decision_id!r} was open: "
                "the question was closed unanswered"
            )
        answered = decision.outcome in (DecisionOutcome.ANSWERED, DecisionOutcome.DEFAULTED)
        return DecisionResult(
            decision_id=decision.decision_id,
            outcome=decision.outcome,
            choice=decision.choice if answered and decision.choice else None,
            answered_by=decision.answered_by,
            decision=decision,
        )

    def _check_same(
        self,
        decision_id: str,
        asked: Decision | event_pb2.DecisionRequested,
        event: event_pb2.RunEvent,
    ) -> None:
        if not _same_question(asked, event.decision_requested):
            raise FailedPreconditionError(
                f"decision {decision_id!r} was already asked on run {self._run_id!r} as "
                f"another question ({_difference(asked, event.decision_requested)}); its "
                "answer would not be this question's: ask this one under another decision_id"
            )

    async def _await(self, decision_id: str) -> Decision:
        awaited = decision_id  # or the same question, asked before under this one's key
        try:
            while True:
                decision = self._awaited.get(awaited)
                if isinstance(decision, RunstreamError):
                    if not _asked_by_another(decision) or awaited not in self._questions:
                        raise decision
                    # Another reporter of the run (an agent of the same team) asked it first,
                    # after attach_run: the same question waits for that one's answer, as one
                    # asked before attach_run does (it was refused every time).
                    stored = await self._get_decision(self._run_id, awaited)
                    if not _same_question(stored, self._questions[awaited]):
                        raise decision
                    self._awaited[awaited] = self._closed.get(awaited) if stored.is_open else stored
                    continue
                if isinstance(decision, _KeyTaken):
                    stored = await self._asked_under(decision_id, decision)
                    if stored.decision_id != awaited:
                        self._awaited.pop(awaited, None)
                        awaited = stored.decision_id
                    self._awaited[awaited] = self._closed.get(awaited) if stored.is_open else stored
                    continue
                if decision is not None:
                    return decision
                self._gate.raise_if_failed()
                self._stream.raise_if_unreachable()  # no stream to bring the answer
                if self._stream.stopped:
                    raise FailedPreconditionError(
                        f"the reporter of run {self._run_id!r} closed while decision "
                        f"{awaited!r} was open"
                    )
                await self._signal.wait()
        finally:
            if awaited != decision_id:
                self._awaited.pop(awaited, None)

    async def _asked_under(self, decision_id: str, taken: _KeyTaken) -> Decision:
        """The decision the run stored under the key of this question, which was not stored:
        the same question asked before (by an earlier process of a replaying producer), or
        FailedPreconditionError naming what the key holds instead."""
        question = self._questions[decision_id]
        decisions = await self._list_decisions(self._run_id)
        stored = next((d for d in decisions if d.requested_seq == taken.seq), None)
        if stored is None:
            holds = f"event {taken.seq}, which is not a decision"
        elif stored.decision_id == decision_id or _same_question(stored, question):
            return stored
        else:
            holds = f"decision {stored.decision_id!r} ({stored.prompt!r})"
        raise FailedPreconditionError(
            f"decision {decision_id!r} was not asked: run {self._run_id!r} already holds "
            f"{holds} under its idempotency key {taken.key!r}. A producer that attaches with "
            "the key_prefix of an earlier process must report the same events in the same "
            "order; attach with a fresh key_prefix (None) to report new ones"
        )

    def on_decision(self, decision: Decision) -> None:
        """A decision of the run closed (pushed on the stream, or re-read)."""
        if decision.is_open:
            return
        self._closed[decision.decision_id] = decision
        if decision.decision_id in self._awaited:
            self._awaited[decision.decision_id] = decision
            self._signal.fire()

    def on_duplicate(self, event: event_pb2.RunEvent, seq: int) -> None:
        """The run already held an event under this event's key: if it is an awaited
        question, ``ask()`` finds out what the run holds there."""
        if not event.HasField("decision_requested"):
            return
        decision_id = event.decision_requested.decision_id
        if decision_id in self._awaited and self._awaited[decision_id] is None:
            self._awaited[decision_id] = _KeyTaken(seq, event.idempotency_key)
            self._signal.fire()

    def on_refused(self, event: event_pb2.RunEvent, error: RunstreamError) -> bool:
        """Whether the refused event is the question of a waiting ``ask()``, which then
        raises the refusal (the question was not stored: it may be asked again)."""
        if not event.HasField("decision_requested"):
            return False
        decision_id = event.decision_requested.decision_id
        if decision_id in self._given_up:  # refused after its ask() was cancelled
            del self._given_up[decision_id]
            self._asked.discard(decision_id)
        if decision_id not in self._awaited:
            return False
        self._asked.discard(decision_id)
        self._awaited[decision_id] = error
        self._signal.fire()
        return True

    async def recheck(self) -> None:
        """After a reconnect: re-reads every decision still awaited, since its closure may
        have been pushed on the broken stream. Raises the reads' RunstreamError."""
        for decision_id in [d for d, closed in self._awaited.items() if closed is None]:
            await self._reread(decision_id)

    async def _reread(self, decision_id: str) -> None:
        try:
            decision = await self._get_decision(self._run_id, decision_id)
        except NotFoundError:
            return  # Not stored yet; it will be, on this stream, which gets its closure.
        self.on_decision(decision)


def _asked_by_another(error: RunstreamError) -> bool:
    """Whether the server refused a question because the run already has one under its id."""
    return isinstance(error, InvalidArgumentError) and "already has a decision" in error.message


def _difference(
    stored: Decision | event_pb2.DecisionRequested, question: event_pb2.DecisionRequested
) -> str:
    """What makes ``question`` another question than ``stored``: naming the prompt alone said
    nothing when only the options' order or the default differed."""
    if stored.prompt != question.prompt:
        return f"its prompt was {stored.prompt!r}, not {question.prompt!r}"
    if stored.decision_type != question.decision_type:
        return f"its type was {stored.decision_type!r}, not {question.decision_type!r}"
    if stored.default_option != question.default_option:
        return f"its default was {stored.default_option!r}, not {question.default_option!r}"
    asked = [option.value for option in stored.options]
    return f"its options were {asked}, not {[option.value for option in question.options]}"


def _same_question(
    stored: Decision | event_pb2.DecisionRequested, question: event_pb2.DecisionRequested
) -> bool:
    """Whether a stored decision (or a question sent) asks what this question asks: the same
    prompt, type, option values and default (its id, timeout and context may differ)."""
    return (
        stored.prompt == question.prompt
        and stored.decision_type == question.decision_type
        and stored.default_option == question.default_option
        and [option.value for option in stored.options] == [o.value for o in question.options]
    )
