"""A read whose caller left stops on Redis as it does on SQLite.

Found in review: on Redis a ListEvents or WatchRun wanting a kind the run rarely has walks
the run's log a page of 1,000 entries at a time until it has enough, and redis-py can
swallow the cancel gRPC sends when the caller leaves (a deadline, a cancel), so a caller who
gave up after a second left the server reading a long log to its end: 14 s of a core per
call on a 500,000-event run, and forty such calls queued minutes of work.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from runstream.v1 import event_pb2
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import ServerConfig

from tests.conftest import RedisProcess, redis_store_url
from tests.server.conftest import Stubs
from tests.server.support import serving

EVENTS = 60_000  # 60 pages of the log: well over a second to read them all


@pytest.fixture
async def stubs(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[Stubs]:
    url = redis_store_url(redis_server, tmp_path)
    config = ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "unused.db", store_url=url)
    async with serving(config) as (_, stubs):
        yield stubs


async def xrange_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


async def test_a_filtered_read_of_a_long_log_stops_when_its_caller_leaves(
    stubs: Stubs, redis_server: RedisProcess
) -> None:
    run_id = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="long"))).run.run_id
    tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
    for _ in range(EVENTS // 1000):
        await stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=[tick] * 1000))
    redis = aioredis.Redis.from_url(redis_server.url)
    alerts = "kind = ALERT"
    try:
        calls = (
            lambda: stubs.runs.ListEvents(
                rs.ListEventsRequest(run_id=run_id, filter=alerts), timeout=0.3
            ),
            # A watcher of alerts only, reading the run from its start.
            lambda: stubs.runs.WatchRun(
                rs.WatchRunRequest(run_id=run_id, kinds=[event_pb2.EVENT_KIND_ALERT]),
                timeout=0.3,
            ).read(),
        )
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await asyncio.sleep(0.3)  # the cancel reaches the handler
            left = await xrange_calls(redis)
            await asyncio.sleep(1.5)
            assert await xrange_calls(redis) - left <= 1  # at most the page under way
    finally:
        await redis.aclose()
