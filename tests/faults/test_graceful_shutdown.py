"""SIGTERM (or SIGINT, SIGHUP): health turns NOT_SERVING, live streams end UNAVAILABLE, the
process exits cleanly; a second signal cuts the drain and the grace short."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
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


async def test_sigterm_ends_health_watches_instead_of_waiting_for_them(
    server_process: ServerProcess,
) -> None:
    """A load balancer's or a probe's open Health/Watch hears NOT_SERVING, then its stream
    ends, and the process exits without waiting out its grace for it."""
    server_process.extra = ("--shutdown-grace", "5")
    server_process.start()
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        statuses = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await statuses.read()).status == health_pb2.HealthCheckResponse.SERVING

        assert server_process.process is not None
        server_process.process.terminate()  # SIGTERM
        assert (await statuses.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await asyncio.wait_for(statuses.read(), 2) is grpc.aio.EOF
        assert await statuses.code() == grpc.StatusCode.OK
    try:
        code = await asyncio.to_thread(server_process.process.wait, 2)  # the grace is 5 s
    except subprocess.TimeoutExpired:
        pytest.fail("an open health Watch held the shutdown for its grace")
    assert code == 0


async def open_reflection_session(channel: grpc.aio.Channel) -> Any:
    """A call in flight that only its client ends (grpcurl's, grpcui's): it holds a stop for
    its grace."""
    session = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await session.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    assert (await session.read()).list_services_response.service
    return session


async def exit_code_within(server: ServerProcess, seconds: float) -> int | None:
    assert server.process is not None
    try:
        return await asyncio.to_thread(server.process.wait, seconds)
    except subprocess.TimeoutExpired:
        return None


async def test_sighup_drains_as_sigterm_does_and_a_second_signal_skips_the_drain(
    server_process: ServerProcess,
) -> None:
    """SIGHUP (the terminal or SSH session of `serve` closed) killed the server at once, with
    no drain; a second Ctrl-C or SIGTERM during a drain was ignored: `--drain-delay 5000`
    (milliseconds meant) was a stop of 83 minutes that only SIGKILL cut short."""
    server_process.extra = ("--drain-delay", "600", "--shutdown-grace", "600")
    server_process.start()
    assert server_process.process is not None
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        session = await open_reflection_session(channel)
        server_process.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING  # draining, not dead
        assert await exit_code_within(server_process, 0.5) is None
        server_process.process.send_signal(signal.SIGINT)
        assert await exit_code_within(server_process, 10) == 0
        with pytest.raises(grpc.aio.AioRpcError):
            await session.read()
    logged = server_process.store_path.with_suffix(".log").read_text()
    assert "draining: NOT_SERVING for 600 s before shutting down" in logged
    assert "SIGINT again: skipping the rest of the drain and grace; ending calls now" in logged


async def test_a_second_sigterm_cuts_the_grace_of_calls_in_flight(
    server_process: ServerProcess,
) -> None:
    server_process.extra = ("--shutdown-grace", "600")
    server_process.start()
    assert server_process.process is not None
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        session = await open_reflection_session(channel)
        server_process.process.terminate()
        assert await exit_code_within(server_process, 1) is None  # the call has its grace
        server_process.process.terminate()
        assert await exit_code_within(server_process, 10) == 0
        with pytest.raises(grpc.aio.AioRpcError):
            await session.read()
    logged = server_process.store_path.with_suffix(".log").read_text()
    assert "SIGTERM again: skipping the rest of the drain and grace; ending calls now" in logged


async def test_the_stop_logs_the_signal_and_the_rejections_not_summarised_yet(
    server_process: ServerProcess,
) -> None:
    """The rejections after the first of a minute are summarised when the minute ends: those
    of a server's last minute were never logged (three bad tokens sent just before SIGTERM
    logged one), and "shutting down" did not say what asked for it."""
    server_process.start()
    assert server_process.process is not None
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        for run_id in ("nope-1", "nope-2", "nope-3"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert server_process.terminate() == 0
    logged = server_process.store_path.with_suffix(".log").read_text().splitlines()
    summaries = [line for line in logged if "more requests rejected" in line]
    assert len(summaries) == 1, logged
    assert summaries[0].endswith(
        "2 more requests rejected since the last report: "
        "/runstream.v1.RunService/GetRun NOT_FOUND x2"
    )
    assert any(line.endswith("shutting down (SIGTERM)") for line in logged), logged
