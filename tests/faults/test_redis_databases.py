"""Two deployments on two databases of one redis-server, with the same key prefix, stay apart.

A Redis's databases share their pub/sub channels. Before, both deployments published their
commit notices on ``P:commits``: a run with the same id in each took the other's events into
its state and its watchers' streams (events never stored in its own database, and then two
different events at one seq), and every other commit logged a failed replica commit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

from tests.conftest import RedisProcess, serving_on


async def test_deployments_on_two_databases_of_one_redis_see_only_their_own_runs(
    tmp_path: Path, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"redis://127.0.0.1:{redis_server.port}"
    async with (
        serving_on(f"{base}/1?prefix=dbs", tmp_path / "one") as one,
        serving_on(f"{base}/2?prefix=dbs", tmp_path / "two") as two,
        grpc.aio.insecure_channel(one.target) as to_one,
        grpc.aio.insecure_channel(two.target) as to_two,
    ):
        runs_one = run_service_pb2_grpc.RunServiceStub(to_one)  # type: ignore[no-untyped-call]
        runs_two = run_service_pb2_grpc.RunServiceStub(to_two)  # type: ignore[no-untyped-call]
        report_one = report_service_pb2_grpc.ReportServiceStub(to_one)  # type: ignore[no-untyped-call]
        report_two = report_service_pb2_grpc.ReportServiceStub(to_two)  # type: ignore[no-untyped-call]
        for runs in (runs_one, runs_two):
            await runs.CreateRun(run_service_pb2.CreateRunRequest(run_id="same", workflow="w"))
        watch = runs_two.WatchRun(run_service_pb2.WatchRunRequest(run_id="same"))
        seen: list[tuple[int, str]] = []

        async def follow() -> None:  # until two's own custom event
            async for response in watch:
                for e in response.events:
                    seen.append((e.seq, e.WhichOneof("payload") or ""))
                    if e.custom.type == "only-in-two":
                        return

        following = asyncio.create_task(follow())
        with caplog.at_level(logging.ERROR):
            await report_one.AppendEvents(
                report_service_pb2.AppendEventsRequest(
                    run_id="same",
                    events=[
                        ev.RunEvent(run_started=ev.RunStarted()),
                        ev.RunEvent(custom=ev.Custom(type="only-in-one")),
                    ],
                )
            )
            await asyncio.sleep(0.5)  # a notice, had it crossed over, arrives well within this
            await report_two.AppendEvents(
                report_service_pb2.AppendEventsRequest(
                    run_id="same", events=[ev.RunEvent(custom=ev.Custom(type="only-in-two"))]
                )
            )
            await asyncio.wait_for(following, 10)
        watch.cancel()
        run_two = (await runs_two.GetRun(run_service_pb2.GetRunRequest(run_id="same"))).run
        run_one = (await runs_one.GetRun(run_service_pb2.GetRunRequest(run_id="same"))).run
    assert seen == [(1, "run_created"), (2, "custom")]
    assert run_two.last_seq == 2 and run_one.last_seq == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
