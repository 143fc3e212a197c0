"""RunService: snapshots, listings, cancellation and the WatchRun stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio
from runstream.v1 import run_service_pb2 as pb
from runstream.v1 import run_service_pb2_grpc

from runstream_server.domain.runs import Heartbeat, RunManager, Snapshot
from runstream_server.domain.state import to_timestamp

Context = aio.ServicerContext[Any, Any]


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
        )
        return pb.CreateRunResponse(run=run)

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        return pb.GetRunResponse(run=await self._runs.get_run(request.run_id))

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

    async def WatchRun(self, request: pb.WatchRunRequest, context: Context) -> AsyncIterator[bytes]:
        """Yields pre-encoded WatchRunResponse bytes (see ``raw_response_methods``).

        Event batches are the concatenation of events encoded once at append time, so a
        hundred watchers cost a hundred writes, not a hundred serializations.
        """
        heartbeat = (
            request.heartbeat_interval.ToNanoseconds() / 1e9
            if request.HasField("heartbeat_interval")
            else self._default_heartbeat
        )
        items = self._runs.watch(
            request.run_id,
            after_seq=request.after_seq,
            include_snapshot=request.include_snapshot,
            kinds=list(request.kinds),
            heartbeat_interval=heartbeat,
            keep_open=request.keep_open,
        )
        async for item in items:
            if isinstance(item, list):
                yield b"".join(event.framed for event in item)
            elif isinstance(item, Heartbeat):
                beat = pb.Heartbeat(
                    head_seq=item.head_seq, server_time=to_timestamp(item.server_time)
                )
                yield pb.WatchRunResponse(heartbeat=beat).SerializeToString()
            elif isinstance(item, Snapshot):
                yield pb.WatchRunResponse(snapshot=item.run).SerializeToString()
