"""WatchRuns on replica B after a gap in B's notices: of the runs that may have changed in
the gap, those that did are told again, a run that stopped matching the stream's filter
among them (once more, with the state that left the filter), and those that did not
change are not told again.

Real redis-server, two in-process replicas (test_replica_resync's): A writes, B streams.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runstream.v1 import event_pb2, report_service_pb2, run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.clients.support import eventually
from tests.conftest import RedisProcess
from tests.faults.test_replica_resync import two_replicas

RUNNING, SUCCEEDED = run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_SUCCEEDED


async def test_a_run_that_left_the_filter_in_a_gap_is_told_once_more_and_no_other(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    async with two_replicas(redis_server, tmp_path) as replicas:

        async def append(run_id: str, event: event_pb2.RunEvent) -> None:
            request = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[event])
            await replicas.report_a.AppendEvents(request)

        started = event_pb2.RunEvent(run_started=event_pb2.RunStarted())
        going, ending = [
            (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="gap"))).run.run_id
            for _ in range(2)
        ]
        for run_id in (going, ending):
            await append(run_id, started)
        told: list[tuple[str, int]] = []
        complete = asyncio.Event()

        async def follow() -> None:
            stream = replicas.runs_b.WatchRuns(rs.WatchRunsRequest(filter="status = RUNNING"))
            async for response in stream:
                told.extend((run.run_id, run.status) for run in response.runs)
                if response.initial_state_complete:
                    complete.set()

        follower = asyncio.create_task(follow())
        try:
            await asyncio.wait_for(complete.wait(), 10)
            assert sorted(told) == sorted([(going, RUNNING), (ending, RUNNING)])
            await replicas.redis.client_kill_filter(_type="pubsub")  # back in about 0.5 s
            await append(ending, event_pb2.RunEvent(run_completed=event_pb2.RunCompleted()))
            await eventually(lambda: (ending, SUCCEEDED) in told, within=10)
            await asyncio.sleep(1.0)  # the resync after the gap is done: nothing more
            assert sorted(told[2:]) == [(ending, SUCCEEDED)]
        finally:
            follower.cancel()
