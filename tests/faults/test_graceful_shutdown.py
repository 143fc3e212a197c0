"""SIGTERM: health turns NOT_SERVING, live streams end UNAVAILABLE, the process exits cleanly."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

from tests.conftest import ServerProcess


async def test_sigterm_drains_gracefully(server_process: ServerProcess) -> None:
    server_process.start()
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        run = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="drain"))).run
        watch = runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run.run_id))
        assert [e.seq for e in (await anext(aiter(watch))).events] == [1]

        # An attached producer that sends nothing: its stream ends as the watcher's does.
        async def attach_only():  # type: ignore[no-untyped-def]
            yield report_service_pb2.ReportRequest(run_id=run.run_id)
            await asyncio.Event().wait()

        report = report_service_pb2_grpc.ReportServiceStub(channel).Report(attach_only())
        assert (await anext(aiter(report))).ack.last_seq == 1
        statuses = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await anext(aiter(statuses))).status == health_pb2.HealthCheckResponse.SERVING

        assert server_process.process is not None
        server_process.process.terminate()  # SIGTERM
        assert (await anext(aiter(statuses))).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(anext(aiter(watch)), 10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resume" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(anext(aiter(report)), 10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "reconnect to resume" in (info.value.details() or "")
    assert server_process.process.wait(20) == 0
