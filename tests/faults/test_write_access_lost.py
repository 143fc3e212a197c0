"""A running server that loses write access to its store behaves as with a full disk: writes
answer UNAVAILABLE naming the problem, health says NOT_SERVING, the SDK keeps its events and
delivers them, once each, when write access is back.

Issue 8, item 13 (write access lost while running). The store file and its WAL are made
immutable with ``chattr +i`` under the running server: even writes through the descriptors
SQLite already holds then fail (SQLITE_IOERR_WRITE), as on a file system gone read-only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import runstream
from grpc_health.v1 import health_pb2
from runstream import Custom, EventKind
from runstream.v1 import report_service_pb2, report_service_pb2_grpc, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig

from tests.faults.storage import health, immutable, until_health
from tests.server.conftest import Stubs
from tests.server.support import create_run, custom

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_losing_write_access_while_running_answers_unavailable_until_it_is_back(
    tmp_path: Path,
) -> None:
    store = tmp_path / "runstream.db"
    server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await server.start()
    try:
        async with (
            runstream.connect(server.target, reconnect_timeout=None) as client,
            grpc.aio.insecure_channel(server.target) as channel,
        ):
            stubs = Stubs(
                channel,
                run_service_pb2_grpc.RunServiceStub(channel),
                report_service_pb2_grpc.ReportServiceStub(channel),
            )
            raw = await create_run(stubs)
            run = await client.start_run("write-access")
            for i in range(10):
                await run.custom("before", {"i": i})
            await run.flush()

            with immutable(store, store.with_name(store.name + "-wal")):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stubs.report.AppendEvents(
                        report_service_pb2.AppendEventsRequest(
                            run_id=raw.run_id, events=[custom(1)]
                        )
                    )
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "the store had an I/O error" in (refused.value.details() or "")
                await until_health(channel, NOT_SERVING)
                for i in range(10):
                    await run.custom("during", {"i": i})
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(run.flush(), 2.0)
                assert (await client.get_run(run.run_id)).run_id == run.run_id  # reads go on

            await asyncio.wait_for(run.flush(), 30)
            await until_health(channel, SERVING)
            assert await health(channel) == SERVING
            await run.complete("write access is back")
            events = [e async for e in client.watch(run.run_id)]
    finally:
        await server.stop(grace=0.5)

    ticks = [e.payload for e in events if isinstance(e.payload, Custom)]
    assert [(t.type, t.data["i"]) for t in ticks] == [("before", i) for i in range(10)] + [
        ("during", i) for i in range(10)
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind == EventKind.RUN_COMPLETED
