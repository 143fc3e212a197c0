"""Estimates learn from the runs every replica completed: a replica reads a workflow's history
from the store again after `history_refresh`, since it folds only the runs it holds.

Two real grpc.aio servers on one real redis-server. Before, a replica that had read a
workflow's history once (empty, at its first run) never heard of the runs that completed
through the other: behind a load balancer the ETA came and went with the replica.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import RedisProcess, redis_store_url, replica_channels


class Replica:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        self.report = report_service_pb2_grpc.ReportServiceStub(channel)  # type: ignore[no-untyped-call]

    async def create(self) -> str:
        request = run_service_pb2.CreateRunRequest(
            workflow="research", steps=[run_pb2.StepSpec(step_id="a")]
        )
        return (await self.runs.CreateRun(request)).run.run_id

    async def append(self, run_id: str, *events: ev.RunEvent) -> None:
        await self.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=events)
        )


def at(event: ev.RunEvent, moment: datetime) -> ev.RunEvent:
    event.event_time.FromDatetime(moment)
    return event


async def test_a_replica_estimates_from_the_runs_another_replica_completed(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    url = redis_store_url(redis_server, tmp_path / "shared")
    policy = InsightPolicy(history_refresh=0.2)
    async with replica_channels(url, tmp_path, insight=policy) as (on_a, on_b):
        first, second = Replica(on_a), Replica(on_b)
        waiting = await first.create()  # A reads the workflow's history now: none yet
        started = ev.RunEvent(step_started=ev.StepStarted(step_id="a"))
        await first.append(waiting, started)
        assert not (
            await first.runs.GetRun(run_service_pb2.GetRunRequest(run_id=waiting))
        ).run.HasField("estimate")
        for _ in range(2):  # two runs complete through B, each step a taking 40 s
            done = await second.create()
            moment = datetime.now(UTC) - timedelta(minutes=5)
            await second.append(
                done,
                at(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), moment),
                at(
                    ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
                    moment + timedelta(seconds=40),
                ),
                at(ev.RunEvent(run_completed=ev.RunCompleted()), moment + timedelta(seconds=40)),
            )
        await asyncio.sleep(0.3)  # past A's history_refresh
        await first.append(
            waiting, ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=10))
        )
        run = (await first.runs.GetRun(run_service_pb2.GetRunRequest(run_id=waiting))).run
    assert run.estimate.source == run_pb2.ESTIMATE_SOURCE_HISTORY
    assert run.estimate.history_runs == 2
    assert 20 < run.estimate.remaining.ToNanoseconds() / 1e9 <= 40
