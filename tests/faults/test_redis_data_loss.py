"""A Redis that lost acknowledged data (restored from an older copy, restarted without its AOF,
failed over to a replica that lagged): the replica that held the run says so once, ends the
run's watch streams with DATA_LOSS naming the seqs lost, and serves the run as the store has it
now. Found in review: watchers waited on heartbeats with no status, GetRun kept showing the
lost events, and new events went out under seqs the watchers had already seen.

A real grpc.aio server on a real redis-server; the older copy is the run's keys as DUMP saw them
at seq 6, RESTOREd after three more events were acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from runstream.v1 import report_service_pb2_grpc, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.hub import Hub
from runstream_server.domain.ledger import RunLedger
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.conftest import RedisProcess, redis_store_url, serving_on
from tests.server.support import append, custom


@dataclass
class Replica:
    """A server on the test's Redis, its stubs, and a client of that Redis to damage it."""

    server: RunstreamServer
    runs: run_service_pb2_grpc.RunServiceStub
    stubs: Any  # what tests.server.support.append takes: a `report` stub
    redis: aioredis.Redis
    keys: RedisKeys

    async def create_run(self) -> str:
        return (await self.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id


@pytest.fixture
async def replica(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[Replica]:
    url = redis_store_url(redis_server, tmp_path / "store")
    options = parse_url(url)
    client = aioredis.from_url(options.url)
    try:
        async with (
            serving_on(url, tmp_path / "a") as server,
            grpc.aio.insecure_channel(server.target) as channel,
        ):
            stubs = type(
                "Stubs", (), {"report": report_service_pb2_grpc.ReportServiceStub(channel)}
            )
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            yield Replica(server, runs, stubs, client, RedisKeys(options.prefix))
    finally:
        await client.aclose()


async def test_a_run_the_store_rolled_back_ends_its_watchers_with_data_loss(
    replica: Replica, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, "runstream.runs")
    # What a GetRun sent the moment the streams end would read. They ended before the run
    # was read again, so a watcher in another process, doing as DATA_LOSS says, got the lost
    # head and, resuming from it, skipped the new events stored under the reused seqs
    # (found in review; a client in this process is answered after the read).
    ledgers: list[RunLedger] = []
    told_at: list[int] = []
    read_again, lose = RunLedger.restore, Hub.lose

    async def restore(self: RunLedger, run_id: str) -> Any:
        ledgers.append(self)
        return await read_again(self, run_id)

    def lose_noting_the_head(self: Hub, run_id: str, reason: str) -> None:
        held = ledgers[-1].cached(run_id) if ledgers else None
        told_at.append(held.last_seq if held is not None else -1)
        lose(self, run_id, reason)

    monkeypatch.setattr(RunLedger, "restore", restore)
    monkeypatch.setattr(Hub, "lose", lose_noting_the_head)
    runs, stubs, client = replica.runs, replica.stubs, replica.redis
    run_id = await replica.create_run()
    await append(stubs, run_id, *(custom(n) for n in range(5)))  # seqs 2-6
    older = {key: await client.dump(key) for key in replica.keys.run(run_id)}
    await append(stubs, run_id, *(custom(n) for n in range(5, 8)))  # seqs 7-9

    request = rs.WatchRunRequest(run_id=run_id, keep_open=True)
    request.heartbeat_interval.FromMilliseconds(200)
    seen: list[int] = []
    watch = runs.WatchRun(request)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        async with asyncio.timeout(20):
            async for response in watch:
                seen += [e.seq for e in response.events]
                if seen and seen[-1] == 9:
                    for key, value in older.items():  # the older copy comes back
                        await client.restore(key, 0, value, replace=True)
    assert seen == list(range(1, 10))
    assert ended.value.code() == grpc.StatusCode.DATA_LOSS
    assert "the store lost seqs 7-9" in (ended.value.details() or "")
    got = await runs.GetRun(rs.GetRunRequest(run_id=run_id))
    assert got.run.last_seq == 6  # as the store has it now
    assert told_at == [6]  # so already when the streams ended
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([m for m in errors if "the store lost seqs 7-9" in m]) == 1, errors


async def test_a_resync_checks_every_run_when_the_store_lost_one_entirely(
    replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    """After a gap in notices a replica checks every run it holds against the store's heads.
    Found in review: a run the store no longer had at all (a Redis emptied, or restored from
    a copy older than the run) raised KeyError there, which ended the resync, so no other run
    was checked and no loss was said; and a run the store lost entirely stayed RUNNING on the
    replica, its new watchers waiting for ever."""
    caplog.set_level(logging.ERROR, "runstream.runs")
    runs, stubs, client, keys = replica.runs, replica.stubs, replica.redis, replica.keys
    gone, kept = await replica.create_run(), await replica.create_run()
    await append(stubs, gone, *(custom(n) for n in range(3)))  # seqs 2-4
    await append(stubs, kept, *(custom(n) for n in range(5)))  # seqs 2-6
    older = {key: await client.dump(key) for key in keys.run(kept)}
    await append(stubs, kept, *(custom(n) for n in range(5, 8)))  # seqs 7-9
    await client.delete(*keys.run(gone))  # the store has no such run any more
    for key, value in older.items():
        await client.restore(key, 0, value, replace=True)

    replica.server.runs._notices.on_notice(None)  # a gap in the notices: resync
    for _ in range(100):
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        if len(errors) >= 2:
            break
        await asyncio.sleep(0.05)
    assert any(f"run {gone!r}: the store lost seqs 1-4" in m for m in errors), errors
    assert any(f"run {kept!r}: the store lost seqs 7-9" in m for m in errors), errors
    assert not any("KeyError" in m or "failed" in m for m in errors), errors
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await runs.GetRun(rs.GetRunRequest(run_id=gone))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    got = await runs.GetRun(rs.GetRunRequest(run_id=kept))
    assert got.run.last_seq == 6
