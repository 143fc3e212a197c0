"""What a client is told when the server fails in a way it did not foresee (a bug): INTERNAL
and where to look, never the exception itself, which may hold a path, a query or a token."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.server.conftest import Stubs
from tests.server.support import create_run


async def test_an_unexpected_error_is_internal_and_keeps_its_details_to_the_log(
    server: RunstreamServer,
    stubs: Stubs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = await create_run(stubs)
    runs = server.runs
    assert runs is not None

    async def broken(run_id: str) -> None:
        raise RuntimeError("password=hunter2 in /srv/secret.db")

    monkeypatch.setattr(runs, "get_run_details", broken)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error; see server logs"
    assert "hunter2" not in repr(info.value.trailing_metadata())  # nor in the status details
    assert "hunter2" in caplog.text  # the operator finds it in the log, with its traceback
    # And the call's own line, which the default level shows for a server error only,
    # written as the call ends on the server: maybe just after the client has its status.
    for _ in range(500):
        if lines := request_lines(caplog):
            break
        await asyncio.sleep(0.01)
    assert lines == [(logging.WARNING, "runstream.v1.RunService/GetRun INTERNAL")]


def request_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The request log's lines: level and what they begin with."""
    return [
        (r.levelno, r.getMessage().partition(" in ")[0])
        for r in caplog.records
        if r.name == "runstream.requests"
    ]


async def test_a_status_a_handler_gave_itself_is_no_unexpected_error(
    stubs: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that ends its call with a status of its own (health Check names an unknown
    service NOT_FOUND) is answered that status, and nothing is logged as a server error."""
    health = health_pb2_grpc.HealthStub(stubs.channel)  # type: ignore[no-untyped-call]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
