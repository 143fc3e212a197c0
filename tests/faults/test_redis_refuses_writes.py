"""Redis reachable but refusing writes: out of memory (maxmemory with noeviction, Redis's
default policy), unable to save to its disk (MISCONF), or a read-only replica (after a
failover, or a URL naming a replica).

Each lasts until an operator acts. Every write is answered UNAVAILABLE naming the reason
(which producers retry; it used to be INTERNAL, and the SDK's reporter gave up for good),
reads go on, nothing is half-written, and writes work again once Redis takes them. Real
redis-server of its own (these change its configuration), in-process server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio
import runstream
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs

from tests.clients.support import until
from tests.conftest import RedisProcess, free_port, redis_store_url, serving_on
from tests.server.conftest import Stubs
from tests.server.support import custom, scrape, value


@pytest.fixture(scope="module")
def refusing_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    redis_process = RedisProcess(tmp_path_factory.mktemp("refusing"))
    redis_process.start()
    try:
        yield redis_process
    finally:
        redis_process.stop()


Change = Callable[[Any, RedisProcess], Awaitable[None]]


async def out_of_memory(admin: Any, process: RedisProcess) -> None:
    await admin.config_set("maxmemory", "1")


async def memory_again(admin: Any, process: RedisProcess) -> None:
    await admin.config_set("maxmemory", "0")


async def cannot_save(admin: Any, process: RedisProcess) -> None:
    # A snapshot that cannot be renamed into place (a directory has its name) fails, and
    # with save points set Redis then refuses writes (stop-writes-on-bgsave-error).
    (process.directory / "dump.rdb").mkdir()
    await admin.config_set("save", "3600 1")
    await admin.bgsave()
    await until(lambda: _bgsave_failed(admin), within=10)


async def _bgsave_failed(admin: Any) -> bool:
    info = await admin.info("persistence")
    return info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_status"] == "err"


async def saving_again(admin: Any, process: RedisProcess) -> None:
    await admin.config_set("save", "")
    (process.directory / "dump.rdb").rmdir()


async def read_only(admin: Any, process: RedisProcess) -> None:
    await admin.replicaof("127.0.0.1", str(free_port()))  # a primary that never answers


async def primary_again(admin: Any, process: RedisProcess) -> None:
    await admin.replicaof("NO", "ONE")


REFUSALS = {
    "out-of-memory": (out_of_memory, memory_again, "it is out of memory"),
    "cannot-save": (cannot_save, saving_again, "it cannot save"),
    "read-only": (read_only, primary_again, "it is a read-only replica"),
}


@pytest.fixture
async def admin(refusing_redis: RedisProcess) -> AsyncIterator[Any]:
    async with redis.asyncio.from_url(refusing_redis.url) as client:
        yield client


def code_of(call: Awaitable[Any]) -> Awaitable[grpc.aio.AioRpcError]:
    async def failing() -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        return raised.value

    return failing()


@pytest.mark.parametrize("refusal", REFUSALS, ids=list(REFUSALS))
async def test_writes_redis_refuses_are_unavailable_and_work_again_once_it_takes_them(
    refusing_redis: RedisProcess, admin: Any, tmp_path: Path, refusal: str
) -> None:
    refuse, restore, reason = REFUSALS[refusal]
    url = redis_store_url(refusing_redis, tmp_path)
    async with (
        serving_on(url, tmp_path) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stubs = Stubs.on(channel)
        run = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="refused"))).run
        first = await stubs.report.AppendEvents(
            rp.AppendEventsRequest(run_id=run.run_id, events=[custom(1)])
        )
        before = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
        await refuse(admin, refusing_redis)
        try:
            writes = {
                "AppendEvents": stubs.report.AppendEvents(
                    rp.AppendEventsRequest(run_id=run.run_id, events=[custom(2)])
                ),
                "CreateRun": stubs.runs.CreateRun(rs.CreateRunRequest(workflow="refused")),
                "PauseRun": stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id)),
                "CancelRun": stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id)),
            }
            for name, write in writes.items():
                error = await code_of(write)
                assert error.code() == grpc.StatusCode.UNAVAILABLE, (name, error.details())
                assert f"the Redis store refuses writes: {reason}" in (error.details() or ""), (
                    name,
                    error.details(),
                )
            read = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
            assert read == before
        finally:
            await restore(admin, refusing_redis)

        # Nothing of the refused writes was stored: the log goes on where it was.
        again = await stubs.report.AppendEvents(
            rp.AppendEventsRequest(run_id=run.run_id, events=[custom(2)])
        )
        assert again.last_seq == first.last_seq + 1
        events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
        assert [e.seq for e in events.events] == list(range(1, again.last_seq + 1))


async def test_a_producer_keeps_reporting_through_a_redis_out_of_memory(
    refusing_redis: RedisProcess, admin: Any, tmp_path: Path
) -> None:
    """The SDK's reporter retries what was refused, and every event is stored once when
    Redis takes writes again (it used to stop for good with InternalError)."""
    url = redis_store_url(refusing_redis, tmp_path)
    async with (
        serving_on(url, tmp_path) as server,
        runstream.connect(server.target, reconnect_timeout=30) as client,
    ):
        run = await client.start_run("through-oom")
        await run.flush()
        await out_of_memory(admin, refusing_redis)
        try:
            for n in range(20):
                await run.custom("tick", {"n": n})
            flushing = asyncio.ensure_future(run.flush())
            await asyncio.sleep(1.0)  # the reporter meets the refusal, and retries
            assert not flushing.done()
        finally:
            await memory_again(admin, refusing_redis)
        await asyncio.wait_for(flushing, 30)
        await run.complete()
        await run.close()
        events = [e async for e in client.list_events(run.run_id)]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        ticks = [e.raw.custom.data["n"] for e in events if e.kind == runstream.EventKind.CUSTOM]
        assert ticks == list(range(20))


@pytest.mark.parametrize("refusal", ["out-of-memory", "read-only"])
async def test_a_server_started_while_redis_refuses_writes_counts_the_stored_runs(
    refusing_redis: RedisProcess, admin: Any, tmp_path: Path, refusal: str
) -> None:
    """The start's count by the indexes of the ended runs writes (its walk enters the ends
    they miss): refused, it reads every run instead, and the server starts all the same."""
    refuse, restore, _ = REFUSALS[refusal]
    url = redis_store_url(refusing_redis, tmp_path)
    async with (
        serving_on(url, tmp_path / "a") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        stubs = Stubs.on(channel)
        for workflow in ("kept", "stopped"):
            await stubs.runs.CreateRun(rs.CreateRunRequest(run_id=workflow, workflow=workflow))
        await stubs.runs.CancelRun(rs.CancelRunRequest(run_id="stopped"))
    await refuse(admin, refusing_redis)
    try:
        async with serving_on(url, tmp_path / "b", metrics_address="127.0.0.1:0") as server:
            samples = await scrape(server)
    finally:
        await restore(admin, refusing_redis)
    assert value(samples, "runstream_runs", status="cancelled") == 1
    assert value(samples, "runstream_runs", status="pending") == 1
