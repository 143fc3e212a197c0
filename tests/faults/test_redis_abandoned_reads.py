"""Reads of some kinds of a long log on Redis: filtered in Redis, and stopped when the
caller leaves, as on SQLite.

Found in review: on Redis a ListEvents or WatchRun wanting a kind the run rarely has walks
the run's log a page of 1,000 entries at a time until it has enough. Every page came to the
replica to be parsed and dropped there (7 MB for a 60,000-event log, 14 s of the replica's
core for 500,000 events), and redis-py can swallow the cancel gRPC sends when the caller
leaves (a deadline, a cancel), so a caller who gave up left the server reading the log to
its end: forty such calls queued minutes of work.
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

EVENTS = 60_000


@pytest.fixture
async def stubs(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[Stubs]:
    url = redis_store_url(redis_server, tmp_path)
    config = ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "unused.db", store_url=url)
    async with serving(config) as (_, stubs):
        yield stubs


async def xrange_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


async def long_run(stubs: Stubs, events: int, *, alert_every: int = 0) -> str:
    """A run of `events` ticks, with an alert after every `alert_every` of them."""
    run_id = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="long"))).run.run_id
    tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
    alert = event_pb2.RunEvent(alert=event_pb2.Alert(message="disk almost full"))
    for sent in range(0, events, 1000):
        batch = [tick] * 1000
        if alert_every and (sent + 1000) % alert_every == 0:
            batch[-1] = alert
        await stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=batch))
    return run_id


async def net_output(redis: aioredis.Redis) -> int:
    return int((await redis.info("stats"))["total_net_output_bytes"])


async def test_a_filtered_read_takes_only_the_wanted_events_from_redis(
    stubs: Stubs, redis_server: RedisProcess
) -> None:
    run_id = await long_run(stubs, EVENTS, alert_every=20_000)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        sent = await net_output(redis)
        alerts = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run_id, filter="kind = ALERT")
        )
        assert [e.seq for e in alerts.events] == [20_001, 40_001, 60_001]
        # The three alerts, not the 60,000 ticks: about 7 MB when every page came over.
        assert await net_output(redis) - sent < 100_000
        watch = stubs.runs.WatchRun(
            rs.WatchRunRequest(run_id=run_id, kinds=[event_pb2.EVENT_KIND_ALERT]), timeout=5
        )
        sent = await net_output(redis)
        first = await watch.read()
        assert [e.seq for e in first.events][:1] == [20_001]
        assert await net_output(redis) - sent < 100_000
        watch.cancel()
    finally:
        await redis.aclose()


async def test_a_filtered_read_of_a_long_log_stops_when_its_caller_leaves(
    stubs: Stubs, redis_server: RedisProcess
) -> None:
    # Long enough that reading it all takes the server well past the callers' deadline.
    run_id = await long_run(stubs, 3 * EVENTS)
    redis = aioredis.Redis.from_url(redis_server.url)
    alerts = "kind = ALERT"
    try:
        calls = (
            lambda: stubs.runs.ListEvents(
                rs.ListEventsRequest(run_id=run_id, filter=alerts), timeout=0.08
            ),
            # A watcher of alerts only, reading the run from its start.
            lambda: stubs.runs.WatchRun(
                rs.WatchRunRequest(run_id=run_id, kinds=[event_pb2.EVENT_KIND_ALERT]),
                timeout=0.08,
            ).read(),
        )
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await asyncio.sleep(0.2)  # the cancel reaches the handler
            left = await xrange_calls(redis)
            await asyncio.sleep(0.8)
            assert await xrange_calls(redis) - left <= 1  # at most the page under way
    finally:
        await redis.aclose()
