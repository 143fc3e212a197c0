"""A store file damaged under the running server (cut short, or overwritten: `cp backup.db
runs.db` onto a live store) is answered UNAVAILABLE naming it, health turns NOT_SERVING, and
the log says so once. Found in review: every call got INTERNAL "see server logs" and wrote a
traceback (4,518 in a minute with a retrying client) while health stayed SERVING.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer, ServerConfig

from tests.faults.storage import until_health
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def bulky(n: int) -> event_pb2.RunEvent:
    """An event of 2 KB: 2,000 of them are more than SQLite's page cache holds."""
    event = custom(n)
    event.custom.data.update({"text": "x" * 2000})
    return event


async def stubs_of(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(
        channel,
        run_service_pb2_grpc.RunServiceStub(channel),
        report_service_pb2_grpc.ReportServiceStub(channel),
    )


async def write_history(store: Path) -> run_pb2.Run:
    """A run of 2,000 bulky events (4 MB) in `store`, written and checkpointed into the
    file by a server's clean stop; returns the run as created."""
    first = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await first.start()
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stubs = await stubs_of(channel)
            old = await create_run(stubs)
            for batch in range(40):
                await append(stubs, old.run_id, *(bulky(batch * 50 + i) for i in range(50)))
    finally:
        await first.stop(grace=0.5)
    return old


async def test_a_store_cut_short_under_the_server_is_unavailable_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "runstream.db"
    config = ServerConfig(address="127.0.0.1:0", store_path=store)
    old = await write_history(store)
    server = RunstreamServer(config)
    await server.start()
    caplog.set_level(logging.ERROR)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = await stubs_of(channel)
            live = await create_run(stubs)
            os.truncate(store, 64 * 1024)
            for _ in range(3):  # a client that retries: one line in the log, not one each
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    request = rs.ListEventsRequest(run_id=old.run_id, page_size=1000)
                    await stubs.runs.ListEvents(request)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "the store file is damaged" in (refused.value.details() or "")
                assert "restarted" in (refused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                request = report_service_pb2.AppendEventsRequest(
                    run_id=live.run_id, events=[custom(1)]
                )
                await stubs.report.AppendEvents(request)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            await until_health(channel, NOT_SERVING)
    finally:
        await server.stop(grace=0.5)
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "damaged" in said[0].getMessage() and said[0].exc_info is None
