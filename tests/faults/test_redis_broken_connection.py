"""A Redis connection that breaks inside redis-py, between its check and its write (what a
cluster master failing over does to the connections of every replica): the call is
UNAVAILABLE, which every client retries, not INTERNAL, which none does."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from redis.asyncio.connection import AbstractConnection
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig

from tests.conftest import RedisProcess, redis_store_url


async def test_a_connection_closed_under_a_command_is_unavailable_then_the_store_serves_again(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "runstream.db"
    config = ServerConfig(
        address="127.0.0.1:0", store_path=store, store_url=redis_store_url(redis_server, store)
    )
    server = RunstreamServer(config)
    await server.start()

    async def closed_meanwhile(connection: AbstractConnection) -> None:
        """Another task closes the connection once redis-py checked it, before it writes:
        redis-py then fails with AttributeError ('NoneType' ... 'writelines'). Every command
        meets it while the patch is on: the server's background work too, so the call the
        test makes cannot slip through on a connection someone else broke first."""
        await connection.disconnect()

    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
            await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
            monkeypatch.setattr(AbstractConnection, "check_health", closed_meanwhile)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs.ListRuns(run_service_pb2.ListRunsRequest())
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "the Redis store is unreachable" in (refused.value.details() or "")
            monkeypatch.undo()  # the connections hold again
            listed = await runs.ListRuns(run_service_pb2.ListRunsRequest())
            assert len(listed.runs) == 1
    finally:
        await server.stop(grace=0.5)
