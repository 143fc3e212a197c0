"""The client's side of DecisionService: read a run's decisions, answer them, interact live.

:class:`DecisionCalls` is the decision half of :class:`~runstream.Client`, for viewers and
operators answering what producers ask (a producer asks with ``RunReporter.ask()``, see
:mod:`runstream._run_decisions`). The live, two-way connection is
:class:`~runstream.Interaction` (:mod:`runstream._interaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from runstream import _convert as convert
from runstream import _requests as rpc
from runstream._interaction import Interaction
from runstream._types import Decision, DecisionState, WatchLink
from runstream.v1 import decision_service_pb2, run_service_pb2

if TYPE_CHECKING:
    from runstream._connection import Connection

__all__ = ["DecisionCalls", "listed_decisions"]


async def listed_decisions(
    connection: Connection, run_id: str, state: DecisionState | None
) -> list[Decision]:
    """The run's decisions (of that state, when given) from every page of ListDecisions."""
    filter = "" if state in (None, DecisionState.UNSPECIFIED) else f"state = {state.name}"
    decisions: list[Decision] = []
    async for response in connection.every_page(
        connection.decision_service.ListDecisions,
        lambda page_token: decision_service_pb2.ListDecisionsRequest(
            run_id=run_id, page_size=1000, page_token=page_token, filter=filter
        ),
    ):
        decisions.extend(convert.decision_from_pb(d) for d in response.decisions)
    return decisions


class DecisionCalls:
    """Reads, answers and interacts with the decisions of runs."""

    _connection: Connection

    async def submit_decision(
        self,
        run_id: str,
        decision_id: str,
        choice: str | None = None,
        *,
        skip: bool = False,
        answered_by: str = "",
    ) -> Decision:
        """Answers (or, with ``skip=True``, skips) a decision; returns it closed.

        The first valid answer wins. Raises InvalidArgumentError for a choice that is not an
        option or a skip that is not allowed, NotFoundError for an unknown run or decision,
        FailedPreconditionError when the run already ended, and AbortedError when the
        decision was already closed otherwise (the message names the winning answer). The
        same answer again returns the same decision, until the retention policy purges the
        run's events: its decisions go with them, and every call about them is then
        FailedPreconditionError.
        """
        self._connection.open()
        response: decision_service_pb2.SubmitDecisionResponse = await self._connection.unary(
            self._connection.decision_service.SubmitDecision,
            rpc.submit_decision_request(run_id, decision_id, choice, skip, answered_by),
        )
        return convert.decision_from_pb(response.decision)

    async def get_decision(self, run_id: str, decision_id: str) -> Decision:
        """One decision of a run. NotFoundError when the run or decision is unknown,
        FailedPreconditionError when the retention policy purged the run's events (its
        decisions went with them)."""
        self._connection.open()
        response: decision_service_pb2.GetDecisionResponse = await self._connection.unary(
            self._connection.decision_service.GetDecision,
            decision_service_pb2.GetDecisionRequest(run_id=run_id, decision_id=decision_id),
        )
        return convert.decision_from_pb(response.decision)

    async def list_decisions(
        self, run_id: str, *, state: DecisionState | None = None
    ) -> list[Decision]:
        """The run's decisions in the order they were asked; only OPEN or RESOLVED ones when
        ``state`` says so. NotFoundError for an unknown run, FailedPreconditionError when the
        retention policy purged its events (its decisions went with them)."""
        self._connection.open()
        return await listed_decisions(self._connection, run_id, state)

    async def _check_run(self, run_id: str) -> None:
        """NotFoundError (or PermissionDeniedError) unless the run exists for this caller."""
        await self._connection.unary(
            self._connection.run_service.GetRun, run_service_pb2.GetRunRequest(run_id=run_id)
        )

    def interact(
        self,
        run_ids: Iterable[str],
        viewer: str = "",
        *,
        max_updates: int = 1000,
        on_link: Callable[[WatchLink], object] | None = None,
    ) -> Interaction:
        """A live, two-way connection to the decisions of these runs (DecisionService.Interact).

        Use ``async with client.interact([run_id], viewer="ana") as interaction:`` and
        ``async for update in interaction:`` for DecisionPrompt, DecisionClosed and
        AnswerResult updates; answer with ``await interaction.answer(run_id, decision_id,
        choice)``. ``viewer`` is recorded as who answered when an answer names nobody.
        At most ``max_updates`` updates wait for the caller to iterate; past that, the
        waiting ones are replaced by a resync of the open decisions (see Interaction).
        ``on_link`` hears where the stream stands, as for ``watch()`` (``after_seq`` is
        always 0 here): CONNECTING, LIVE once the server accepted the subscription (before
        any prompt), RECONNECTING with the error and the delay when it is lost.
        """
        self._connection.open()
        return Interaction(
            self._connection.decision_service.Interact,
            self.get_decision,
            self._check_run,
            run_ids,
            viewer=viewer,
            metadata=self._connection.call_metadata(),
            reconnect_timeout=self._connection.reconnect_timeout,
            check_open=self._connection.check_open,
            max_updates=max_updates,
            on_link=on_link,
            diagnosis=self._connection.diagnosis,
        )
