"""An end cut short by a crash heals: retention still purges the run's log, active
listings never show it, and a server starting counts it ended.

A real grpc.aio server on a real redis-server. The crash is the one the Redis store guards
against by its order of writes when a run ends: the append script stores the terminal
snapshot, then the run is moved from ``P:active`` to ``P:ended``, ZADD first. A server killed
between the script and that move leaves the ended run in ``P:active`` and out of
``P:ended``, which is where retention chooses runs from; the test writes those leftovers
directly with a real redis client, as test_replica_listing fakes a create cut short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from runstream.v1 import event_pb2 as ev
from runstream.v1 import report_service_pb2, report_service_pb2_grpc, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import Retention
from runstream_server.store.redis_index import RunIndex
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.conftest import RedisProcess, redis_store_url, serving_on
from tests.server.support import scrape

ACTIVE = "status = PENDING"  # active only: ListRuns reads P:active


class Replica:
    """A server whose retention purges every ended run (passes when the test says so), its
    stubs, and a plain redis client on its store's keys."""

    def __init__(self, url: str, server: RunstreamServer) -> None:
        self.url = url
        self.server = server
        self.channel = grpc.aio.insecure_channel(server.target)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.report = report_service_pb2_grpc.ReportServiceStub(self.channel)
        self.keys = RedisKeys(parse_url(url).prefix)
        self.redis = aioredis.from_url(parse_url(url).url)

    async def retention(self) -> list[str]:
        assert self.server.runs is not None
        return await self.server.runs.apply_retention()

    async def listed(self, filter_text: str) -> list[str]:
        response = await self.runs.ListRuns(rs.ListRunsRequest(filter=filter_text))
        return [r.run_id for r in response.runs]

    async def create(self) -> rs.CreateRunResponse:
        return await self.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))

    async def end_cut_short(self) -> tuple[str, int]:
        """A run that ended, with the index entries a crash right after the append script
        leaves: in ``P:active``, not in ``P:ended``. Returns its id and head seq."""
        created = (await self.create()).run
        events = [
            ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}") for n in (1, 2)
        ]
        events.append(ev.RunEvent(run_completed=ev.RunCompleted()))
        done = await self.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=created.run_id, events=events)
        )
        await self.redis.zadd(
            self.keys.active, {created.run_id: created.create_time.ToMicroseconds()}
        )
        await self.redis.zrem(self.keys.ended, created.run_id)
        return created.run_id, done.last_seq

    async def indexed(self, run_id: str) -> tuple[bool, bool]:
        """Whether the run is in ``P:active``, and in ``P:ended``."""
        active = await self.redis.zscore(self.keys.active, run_id)
        ended = await self.redis.zscore(self.keys.ended, run_id)
        return active is not None, ended is not None

    async def purged(self, run_id: str) -> int:
        got = await self.runs.GetRun(rs.GetRunRequest(run_id=run_id))
        return got.run.purged_seq


@pytest.fixture
async def replica(tmp_path: Path, redis_server: RedisProcess) -> AsyncIterator[Replica]:
    url = redis_store_url(redis_server, tmp_path / "shared")
    # Every ended run is past the policy; the pass at start finds nothing, and the next
    # passes run when the test says so.
    async with serving_on(url, tmp_path / "a", retention=Retention(runs=0, interval=3600)) as a:
        replica = Replica(url, a)
        try:
            yield replica
        finally:
            await replica.channel.close()
            await replica.redis.aclose()


async def test_retention_purges_a_run_whose_end_was_cut_short_without_anyone_listing(
    replica: Replica,
) -> None:
    r = replica
    running = (await r.create()).run.run_id
    run_id, head = await r.end_cut_short()
    assert await r.indexed(run_id) == (True, False)

    assert await r.retention() == [run_id]  # no ListRuns came by first

    assert await r.purged(run_id) == head
    # Swept out of P:active, and out of P:ended too once purged: no pass reads it again.
    assert await r.indexed(run_id) == (False, False)
    assert await r.listed(ACTIVE) == [running]
    assert await r.indexed(running) == (True, False)  # a run still going is left alone
    assert await r.retention() == []


async def test_an_active_listing_that_meets_a_run_whose_end_was_cut_short_moves_it_to_ended(
    replica: Replica,
) -> None:
    r = replica
    running = (await r.create()).run.run_id
    run_id, head = await r.end_cut_short()

    assert await r.listed(ACTIVE) == [running]
    assert await r.indexed(run_id) == (False, True)  # not just out of P:active
    assert await r.listed(ACTIVE) == [running]

    assert await r.retention() == [run_id]
    assert await r.purged(run_id) == head


async def test_retention_finds_a_run_whose_end_was_cut_short_behind_a_batch_of_running_ones(
    replica: Replica, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = replica
    monkeypatch.setattr(RunIndex, "SWEEP_BATCH", 2, raising=False)
    running = [(await r.create()).run.run_id for _ in range(5)]  # older than the leftover
    run_id, head = await r.end_cut_short()

    # Each pass examines two entries of P:active, oldest first, on from where the last
    # pass stopped (and over from the oldest once past the newest): the leftover, sixth of
    # six, is met within three passes from the oldest, four from anywhere.
    passes = []
    while run_id not in (passes[-1] if passes else []):
        assert len(passes) < 4, f"not purged after {passes}"
        passes.append(await r.retention())
    assert len(passes) >= 2  # not all in one pass: the batch is what bounds a pass
    assert passes[-1] == [run_id] and not any(passes[:-1])
    assert await r.purged(run_id) == head
    assert sorted(await r.listed(ACTIVE)) == sorted(running)
    for other in running:
        assert await r.indexed(other) == (True, False)


async def test_a_server_starting_counts_a_run_whose_end_was_cut_short_as_ended(
    replica: Replica, tmp_path: Path
) -> None:
    """The run counts a server makes at start (its runs-by-status gauges): a run left in
    ``P:active`` by an end cut short is counted under its ended status and moved to
    ``P:ended``, not counted as a run still going."""
    r = replica
    running = (await r.create()).run.run_id
    run_id, _ = await r.end_cut_short()
    async with serving_on(r.url, tmp_path / "b", metrics_address="127.0.0.1:0") as b:
        samples = await scrape(b)
    counts = {
        (name, dict(labels).get("status", "")): value
        for (name, labels), value in samples.items()
        if name in ("runstream_runs", "runstream_active_runs") and value
    }
    assert sum(v for (name, _), v in counts.items() if name == "runstream_active_runs") == 1
    assert counts[("runstream_runs", "succeeded")] == 1
    assert await r.indexed(run_id) == (False, True)
    assert await r.indexed(running) == (True, False)
