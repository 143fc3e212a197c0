"""RunService: snapshots, listings, cancellation and the WatchRun stream.

The watch streams write their messages themselves (``context.write``) rather than yield them
to gRPC: a send that stands still (a client that stopped reading) is then awaited in this
handler's task, and the hub's clock, which cancels that wait (see
:class:`~runstream_server.domain.hub.Sends`), ends the stream with a status. A handler that
yields is not written for by its own frames: cancelled in gRPC's write, its call would end
with no status at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

from grpc import aio
from grpc._cython.cygrpc import ExecuteBatchError  # type: ignore[import-not-found]
from runstream.v1 import event_pb2, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as pb

from runstream_server.api.watch_args import watch_run_args, watch_runs_args
from runstream_server.domain.hub import Sends
from runstream_server.domain.runs import Heartbeat, InitialStateComplete, RunManager, Snapshot
from runstream_server.domain.state import to_timestamp
from runstream_server.domain.watching import WatchItem
from runstream_server.domain.watching_runs import RunsItem

Context = aio.ServicerContext[Any, Any]
Item = TypeVar("Item")

# A response holding one empty event encodes as the events field's tag and a zero length:
# the tag as the contract numbers the field, worked out once.
_EVENTS_TAG = pb.WatchRunResponse(events=[event_pb2.RunEvent()]).SerializeToString()[:-1]


def frame_event(data: bytes) -> bytes:
    """`data`, an encoded event, as one element of ``WatchRunResponse.events``: its tag, its
    length, the bytes. The domain frames each event once with it (its ``Frame``), and
    :meth:`RunServicer.WatchRun` yields the concatenations the hub makes as they are."""
    length = len(data)
    out = bytearray(_EVENTS_TAG)
    while length > 0x7F:
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + data


class RunServicer(run_service_pb2_grpc.RunServiceServicer):
    """Translates RunService calls to :class:`RunManager` calls."""

    def __init__(self, runs: RunManager, default_heartbeat: float) -> None:
        self._runs = runs
        self._default_heartbeat = default_heartbeat

    async def CreateRun(
        self, request: pb.CreateRunRequest, context: Context
    ) -> pb.CreateRunResponse:
        run = await self._runs.create_run(
            run_id=request.run_id,
            workflow=request.workflow,
            display_name=request.display_name,
            labels=dict(request.labels),
            steps=list(request.steps),
            targets=list(request.targets),
        )
        return pb.CreateRunResponse(run=run)

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        run, activity, decisions, left_out = await self._runs.get_run_details(request.run_id)
        return pb.GetRunResponse(
            run=run,
            recent_activity=activity,
            open_decisions=decisions,
            open_decisions_left_out=left_out,
        )

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        runs, token = await self._runs.list_runs(
            filter_text=request.filter, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListRunsResponse(runs=runs, next_page_token=token)

    async def ListSteps(
        self, request: pb.ListStepsRequest, context: Context
    ) -> pb.ListStepsResponse:
        steps, token = await self._runs.list_steps(
            request.run_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListStepsResponse(steps=steps, next_page_token=token)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: Context
    ) -> pb.CancelRunResponse:
        run = await self._runs.cancel_run(
            request.run_id, reason=request.reason, cancelled_by=request.cancelled_by
        )
        return pb.CancelRunResponse(run=run)

    async def PauseRun(self, request: pb.PauseRunRequest, context: Context) -> pb.PauseRunResponse:
        run = await self._runs.pause_run(
            request.run_id, reason=request.reason, requested_by=request.requested_by
        )
        return pb.PauseRunResponse(run=run)

    async def ResumeRun(
        self, request: pb.ResumeRunRequest, context: Context
    ) -> pb.ResumeRunResponse:
        run = await self._runs.resume_run(
            request.run_id, reason=request.reason, requested_by=request.requested_by
        )
        return pb.ResumeRunResponse(run=run)

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        events, token = await self._runs.list_events(
            request.run_id,
            filter_text=request.filter,
            page_size=request.page_size,
            page_token=request.page_token,
            order_by=request.order_by,
        )
        return pb.ListEventsResponse(events=events, next_page_token=token)

    async def WatchRuns(self, request: pb.WatchRunsRequest, context: Context) -> None:
        sends = Sends()
        items = self._runs.watch_runs(
            **watch_runs_args(request, self._default_heartbeat),
            accepted=lambda: context.send_initial_metadata(()),
            sends=sends,
        )
        await write_all(items, sends, context, _runs_response)

    async def WatchRun(self, request: pb.WatchRunRequest, context: Context) -> None:
        """Writes pre-encoded WatchRunResponse bytes (see ``raw_response_methods``).

        Event batches are the concatenation of events encoded once at append time, so a
        hundred watchers cost a hundred writes, not a hundred serializations, and the bytes
        go out as the hub made them.
        """
        sends = Sends()
        items = self._runs.watching.watch(
            **watch_run_args(request, self._default_heartbeat),
            keep_open=request.keep_open,
            # The headers as the watch is accepted, not with the first message (which an idle
            # run sends a heartbeat later): the client learns at once that its stream stands.
            accepted=lambda: context.send_initial_metadata(()),
            sends=sends,
        )
        await write_all(items, sends, context, _watch_response)


async def write_all(
    items: AsyncGenerator[Item, None],
    sends: Sends,
    context: Context,
    encode: Callable[[Item], object],
) -> None:
    """Writes each of a watch's items as it comes, counting the sends for the hub's clock
    (see the module docstring). A cancel of a write is thrown into the watch, which answers
    it: with its refusal when the clock ended a send that stood still, else it goes on (the
    client went away).

    The watch must have sent the headers (its ``accepted``) before its first item: gRPC
    sends them with the first write otherwise, and a status sent while that write waits
    would send them again, which gRPC refuses (TOO_MANY_OPERATIONS), leaving the stream
    without a status for ever."""
    async with contextlib.aclosing(items):
        async for item in items:
            sends.started += 1
            try:
                await context.write(encode(item))
            except asyncio.CancelledError as cancel:
                await items.athrow(cancel)
                raise
            except ExecuteBatchError as gone:
                # The client went away while the write waited: the call is over, as when a
                # stream's yield meets it in grpc's own loop (where it is logged at DEBUG),
                # not an error of the server's.
                raise asyncio.CancelledError("the client went away") from gone
            sends.finished += 1


def _watch_response(item: WatchItem) -> bytes:
    """A WatchRun item, encoded: event batches are already (as the hub made them)."""
    if type(item) is bytes:
        return item
    if isinstance(item, Heartbeat):
        beat = pb.Heartbeat(head_seq=item.head_seq, server_time=to_timestamp(item.server_time))
        return pb.WatchRunResponse(heartbeat=beat).SerializeToString()
    assert isinstance(item, Snapshot)
    return pb.WatchRunResponse(snapshot=item.run).SerializeToString()


def _runs_response(item: RunsItem) -> pb.WatchRunsResponse:
    if isinstance(item, list):
        return pb.WatchRunsResponse(runs=item)
    if isinstance(item, InitialStateComplete):
        return pb.WatchRunsResponse(
            initial_state_complete=True, ended_runs_left_out=item.ended_runs_left_out
        )
    beat = pb.Heartbeat(server_time=to_timestamp(item.server_time))
    return pb.WatchRunsResponse(heartbeat=beat)
