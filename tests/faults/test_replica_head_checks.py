"""On Redis, idle watchers check their run's head at each heartbeat, in case a notice from
another replica was lost; one check serves all of a run's idle watchers for a second.

Real redis-server, real servers: a lost notice still reaches the watcher a heartbeat later,
and a crowd of idle watchers on fast heartbeats costs Redis a read per second, not a read per
watcher and heartbeat. A check that cannot reach Redis ends no stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import duration_pb2
from redis.asyncio.connection import AbstractConnection
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.following import Notices
from runstream_server.store.base import CommitNotice

from tests.clients.support import eventually
from tests.conftest import RedisProcess, replica_channels, serving_on

BEAT = duration_pb2.Duration(nanos=100_000_000)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Watcher:
    """A WatchRun stream on 100 ms heartbeats, read in the background."""

    def __init__(self, stub: run_service_pb2_grpc.RunServiceStub, run_id: str) -> None:
        self.seqs: list[int] = []
        self.beats = 0
        self._call = stub.WatchRun(rs.WatchRunRequest(run_id=run_id, heartbeat_interval=BEAT))
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self._call:
            if response.HasField("heartbeat"):
                self.beats += 1
            self.seqs.extend(e.seq for e in response.events)

    @property
    def open(self) -> bool:
        return not self._task.done()

    def close(self) -> None:
        self._call.cancel()
        self._task.cancel()


async def idle_watchers(
    stub: run_service_pb2_grpc.RunServiceStub, count: int
) -> tuple[str, list[Watcher]]:
    """A new run and `count` watchers of it, each past its first heartbeat."""
    run_id = (await stub.CreateRun(rs.CreateRunRequest(workflow="idle"))).run.run_id
    watchers = [Watcher(stub, run_id) for _ in range(count)]
    await eventually(lambda: all(w.beats >= 1 for w in watchers), within=20)
    return run_id, watchers


async def hgets(redis: RedisProcess) -> int:
    """How many HGETs Redis has served (a head check reads the run's snapshot with one)."""
    client = aioredis.from_url(redis.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


async def test_forty_idle_watchers_on_fast_heartbeats_cost_redis_a_read_per_second(
    redis: RedisProcess, tmp_path: Path
) -> None:
    async with (
        serving_on(redis.url, tmp_path, grace=None) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        _, watchers = await idle_watchers(run_service_pb2_grpc.RunServiceStub(channel), 40)
        beats, reads = sum(w.beats for w in watchers), await hgets(redis)
        await asyncio.sleep(2.0)
        beats, reads = sum(w.beats for w in watchers) - beats, await hgets(redis) - reads
        for watcher in watchers:
            watcher.close()
    # 40 streams at 10 heartbeats a second sent hundreds of heartbeats, each after a head
    # check; one read per check would be as many HGETs.
    assert beats >= 400
    assert reads <= 6, f"{reads} HGETs for {beats} heartbeats"


async def test_a_commit_whose_notice_is_lost_reaches_an_idle_watcher_on_the_other_replica(
    redis: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_notice = Notices.on_notice

    def lose_commits(self: Notices, notice: object) -> None:  # pub/sub dropped every commit
        if not isinstance(notice, CommitNotice):
            on_notice(self, notice)  # type: ignore[arg-type]

    monkeypatch.setattr(Notices, "on_notice", lose_commits)
    async with replica_channels(redis.url, tmp_path) as (on_a, on_b):
        run_id = (
            await run_service_pb2_grpc.RunServiceStub(on_a).CreateRun(
                rs.CreateRunRequest(workflow="lost-notice")
            )
        ).run.run_id
        watchers = [Watcher(run_service_pb2_grpc.RunServiceStub(on_b), run_id) for _ in range(5)]
        await eventually(lambda: all(w.beats >= 1 for w in watchers), within=20)
        report = report_service_pb2_grpc.ReportServiceStub(on_a)  # type: ignore[no-untyped-call]
        acked = await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(
                run_id=run_id,
                events=[event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))] * 3,
            )
        )
        last = acked.last_seq
        # No notice reaches B: only the head checks at the watchers' heartbeats can tell.
        await eventually(lambda: all(w.seqs and w.seqs[-1] == last for w in watchers), within=10)
        for watcher in watchers:
            assert watcher.seqs == list(range(1, last + 1))
            watcher.close()


async def test_head_checks_that_cannot_reach_redis_end_no_idle_watcher(
    redis: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every Redis command fails for a while (connections broken under them, as in a
    failover): the idle watchers' head checks fail, and the watchers keep their streams and
    heartbeats; once Redis serves again, the next commit reaches every one of them."""

    async def broken(connection: AbstractConnection) -> None:
        await connection.disconnect()

    async with (
        serving_on(redis.url, tmp_path, grace=None) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        run_id, watchers = await idle_watchers(run_service_pb2_grpc.RunServiceStub(channel), 5)
        monkeypatch.setattr(AbstractConnection, "check_health", broken)
        beats = [w.beats for w in watchers]
        # 100 ms heartbeats for two seconds: the run's checks (one a second) fail
        await eventually(
            lambda: all(w.beats >= b + 20 for w, b in zip(watchers, beats, strict=True)),
            within=10,
        )
        monkeypatch.undo()
        report = report_service_pb2_grpc.ReportServiceStub(channel)  # type: ignore[no-untyped-call]
        acked = await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(
                run_id=run_id, events=[event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))]
            )
        )
        await eventually(lambda: all(w.seqs[-1] == acked.last_seq for w in watchers), within=10)
        for watcher in watchers:
            assert watcher.open
            assert watcher.seqs == list(range(1, acked.last_seq + 1))
            watcher.close()
