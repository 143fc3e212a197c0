"""Health turning NOT_SERVING says why, in the store's own words, once per outage.

The server's store health logged "store unreachable" for every store: on SQLite, for a full
disk or a file damaged under it, which is Redis's wording for a store out of reach, beside
the store's own ERROR saying what it was (found in review). The line now says what the store
says: the file damaged, the storage fault, Redis out of reach naming it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from runstream_server.app import RunstreamServer, ServerConfig

from tests.clients.support import eventually
from tests.conftest import RedisProcess, serving_on
from tests.faults.storage import immutable, until_health
from tests.faults.test_store_damaged_live import a_server_of_a_store_cut_short
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, serving

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

HEALTH_CHECKS = 1.5
"""Long enough for the store's health to be checked three times more (every 0.5 s)."""


HEALTH_LINES = ("store not serving: ", "store serving again", "store reachable again")


def health_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the server's store health logged as it turned NOT_SERVING and back."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "runstream.server" and r.getMessage().startswith(HEALTH_LINES)
    ]


async def test_a_store_file_damaged_under_the_server_is_said_damaged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "runstream.server")
    async with a_server_of_a_store_cut_short(tmp_path / "runstream.db") as cut:
        with pytest.raises(grpc.aio.AioRpcError):
            await cut.stubs.runs.ListEvents(cut.past_the_cut)  # the server finds the damage
        await until_health(cut.stubs.channel, NOT_SERVING)
        await asyncio.sleep(HEALTH_CHECKS)  # checks that find it damaged still: no more lines
        said = health_said(caplog)
    assert len(said) == 1, said
    assert said[0].startswith("store not serving: the store file is damaged ("), said


async def test_a_store_that_cannot_be_written_says_why_and_when_it_serves_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Write access lost under the running server (the file and its WAL made immutable): an
    I/O error on every write, as on a file system gone read-only."""
    caplog.set_level(logging.INFO, "runstream.server")
    store = tmp_path / "runstream.db"
    server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            run = await create_run(stubs)
            with immutable(store, store.with_name(store.name + "-wal")):
                with pytest.raises(grpc.aio.AioRpcError):
                    await append(stubs, run.run_id, custom(1))
                await until_health(channel, NOT_SERVING)
                await asyncio.sleep(HEALTH_CHECKS)
            await until_health(channel, SERVING)
    finally:
        await server.stop(grace=0.5)
    assert health_said(caplog) == [
        "store not serving: the store had an I/O error",
        "store serving again",
    ]


async def test_writes_refused_while_the_store_cannot_take_them_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every write fails while write access is lost; the store's ERROR saying why is logged
    once for the outage, not once per refused write (a retrying producer would fill the log),
    and the store takes writes again after it."""
    caplog.set_level(logging.INFO, "runstream.store")
    store = tmp_path / "runstream.db"
    async with serving(ServerConfig(address="127.0.0.1:0", store_path=store)) as (_, stubs):
        run = await create_run(stubs)
        with immutable(store, store.with_name(store.name + "-wal")):
            for n in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await append(stubs, run.run_id, custom(n))
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await until_health(stubs.channel, SERVING)
        await append(stubs, run.run_id, custom(3))
    said = [r.getMessage() for r in caplog.records if r.name == "runstream.store"]
    assert len([line for line in said if "cannot take writes" in line]) == 1, said


async def test_a_redis_out_of_reach_is_said_unreachable_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "runstream.server")
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        async with serving_on(redis.url, tmp_path):
            redis.kill()
            await eventually(lambda: bool(health_said(caplog)), within=10)
            await asyncio.sleep(HEALTH_CHECKS)
            [said] = health_said(caplog)
            await asyncio.to_thread(redis.start)
            await eventually(lambda: len(health_said(caplog)) == 2, within=10)
    finally:
        redis.stop()
    assert said.startswith(f"store not serving: the Redis store {redis.url} is unreachable ("), said
    assert "Connect" in said, said  # redis-py's own words: the connection was refused
    assert health_said(caplog)[1:] == ["store reachable again"]
