"""The client's reads of stored runs: a run's snapshot, its events, its steps, and the runs.

:class:`RunQueries` is the query half of :class:`~runstream.Client`: unary RunService calls
that return what the server stores now, page by page or all of it. Following a run live is
:mod:`runstream._watch`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING

from runstream import _arguments as arguments
from runstream import _convert as convert
from runstream import _requests as rpc
from runstream._decision_calls import listed_decisions
from runstream._events import EventKind
from runstream._types import DecisionState, Event, Run, RunDetails, Step
from runstream.v1 import run_service_pb2

if TYPE_CHECKING:
    from runstream._connection import Connection

__all__ = ["RunQueries"]


class RunQueries:
    """Reads runs, their events and their steps as the server stores them now."""

    _connection: Connection

    async def get_run(self, run_id: str) -> Run:
        """The run's current snapshot. NotFoundError for an unknown run."""
        return convert.run_from_pb((await self._get_run(run_id)).run)

    async def get_run_details(self, run_id: str) -> RunDetails:
        """The run's snapshot with its last 50 agent activities and its open decisions, every
        one: those GetRun's response had no room for (it holds about 512 KiB of them) are
        read with ListDecisions."""
        response = await self._get_run(run_id)
        details = convert.run_details_from_pb(response)
        if response.open_decisions_left_out:
            listed = await listed_decisions(self._connection, run_id, DecisionState.OPEN)
            details = dataclasses.replace(details, open_decisions=tuple(listed))
        return details

    async def _get_run(self, run_id: str) -> run_service_pb2.GetRunResponse:
        self._connection.open()
        response: run_service_pb2.GetRunResponse = await self._connection.unary(
            self._connection.run_service.GetRun, run_service_pb2.GetRunRequest(run_id=run_id)
        )
        return response

    async def list_events_page(
        self,
        run_id: str,
        *,
        kinds: Iterable[EventKind] | None = None,
        page_size: int = 100,
        page_token: str = "",
        newest_first: bool = False,
        after_seq: int = 0,
        before_seq: int | None = None,
    ) -> tuple[list[Event], str]:
        """One page of a run's stored events in seq order, and the next page's token ("" last).

        With ``newest_first`` the page holds the newest events first (``order_by`` "seq
        desc"): the last alerts of a long run without reading its log from the start.
        ``after_seq`` and ``before_seq`` keep the events between them (both exclusive): the
        server reads from there, so the events before what a view shows are one call however
        long the log. A token continues only the listing it came from: the same ``kinds``,
        bounds and ``newest_first``, else InvalidArgumentError.

        FailedPreconditionError when the page would start inside history the server's
        retention policy purged (see ``Run.purged_seq``); newest first, the listing ends at
        the oldest event still stored.
        """
        event_filter = rpc.event_filter(kinds or (), after_seq, before_seq)
        self._connection.open()
        response: run_service_pb2.ListEventsResponse = await self._connection.unary(
            self._connection.run_service.ListEvents,
            run_service_pb2.ListEventsRequest(
                run_id=run_id,
                page_size=arguments.count("page_size", page_size, arguments.INT32_MAX),
                page_token=page_token,
                filter=event_filter,
                order_by="seq desc" if newest_first else "",
            ),
        )
        return [convert.event_from_pb(e, run_id) for e in response.events], (
            response.next_page_token
        )

    async def list_events(
        self,
        run_id: str,
        *,
        kinds: Iterable[EventKind] | None = None,
        page_size: int = 500,
        newest_first: bool = False,
        after_seq: int = 0,
        before_seq: int | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Every stored event of the run (of these kinds, between ``after_seq`` and
        ``before_seq``, both exclusive), in seq order, page by page.

        The history view: unlike ``watch`` it returns what is stored now and ends, live run
        or not. With ``newest_first`` it starts at the newest event (below ``before_seq``)
        and goes back, so stopping after a few gives the run's latest (``page_size`` then
        bounds what one call fetches: ask for about as many as you will read). NotFoundError
        for an unknown run.
        """
        kind_filter = rpc.event_kinds(kinds)
        rpc.event_filter(kind_filter, after_seq, before_seq)  # refused before any call
        page_token = ""
        while True:
            events, page_token = await self.list_events_page(
                run_id,
                kinds=kind_filter,
                page_size=page_size,
                page_token=page_token,
                newest_first=newest_first,
                after_seq=after_seq,
                before_seq=before_seq,
            )
            for event in events:
                yield event
            if not page_token:
                return

    async def list_runs_page(
        self, filter: str = "", page_size: int = 50, page_token: str = ""
    ) -> tuple[list[Run], str]:
        """One page of runs, most recently created first, and the next page's token ("" last).

        ``filter`` is a conjunction of comparisons such as ``status = RUNNING AND
        workflow = "campaign-generator" AND labels.team = "growth"``. Runs come without steps.
        """
        self._connection.open()
        response: run_service_pb2.ListRunsResponse = await self._connection.unary(
            self._connection.run_service.ListRuns,
            run_service_pb2.ListRunsRequest(
                filter=filter,
                page_size=arguments.count("page_size", page_size, arguments.INT32_MAX),
                page_token=page_token,
            ),
        )
        return [convert.run_from_pb(r) for r in response.runs], response.next_page_token

    async def list_runs(self, filter: str = "", page_size: int = 50) -> AsyncGenerator[Run, None]:
        """Every run matching ``filter``, most recent first, fetching pages as needed."""
        page_token = ""
        while True:
            runs, page_token = await self.list_runs_page(
                filter=filter, page_size=page_size, page_token=page_token
            )
            for run in runs:
                yield run
            if not page_token:
                return

    async def list_steps(self, run_id: str) -> list[Step]:
        """Every step of the run, in plan order. NotFoundError for an unknown run."""
        self._connection.open()
        steps: list[Step] = []
        async for response in self._connection.every_page(
            self._connection.run_service.ListSteps,
            lambda page_token: run_service_pb2.ListStepsRequest(
                run_id=run_id, page_size=1000, page_token=page_token
            ),
        ):
            steps.extend(convert.step_from_pb(s) for s in response.steps)
        return steps
