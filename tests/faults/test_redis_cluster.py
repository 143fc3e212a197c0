"""Must show: replicas on a 3-master Redis Cluster; runs spread over the shards.

Three real redis-server processes in cluster mode, formed with ``redis-cli --cluster
create``; two `runstream serve` replicas with ``?cluster=1``. All keys of a run share the
hash tag ``{run_id}``, so each run's append script runs on one shard, and different runs land
on different shards.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

from tests.conftest import RedisProcess, two_replicas


def redis_cli(*args: str) -> str:
    binary = shutil.which("redis-cli")
    assert binary is not None, "redis-cli is missing; run `make setup`"
    done = subprocess.run([binary, *args], capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    nodes = [
        RedisProcess(tmp_path / f"node{i}", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf")
        for i in range(3)
    ]  # fmt: skip
    try:
        for node in nodes:
            node.start()
        redis_cli(
            "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
            "--cluster-replicas", "0", "--cluster-yes",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "cluster_state:ok" not in redis_cli("-p", str(nodes[0].port), "cluster", "info"):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_a_run_watched_through_a_three_master_cluster(
    redis_cluster: list[RedisProcess], tmp_path: Path
) -> None:
    url = f"{redis_cluster[0].url}?cluster=1&prefix=c"
    with two_replicas(tmp_path, url) as (a, b):
        async with (
            grpc.aio.insecure_channel(a.target) as on_a,
            grpc.aio.insecure_channel(b.target) as on_b,
        ):
            runs_a = run_service_pb2_grpc.RunServiceStub(on_a)
            report_a = report_service_pb2_grpc.ReportServiceStub(on_a)
            runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
            ids = []
            for _ in range(12):
                created = await runs_a.CreateRun(run_service_pb2.CreateRunRequest(workflow="c"))
                ids.append(created.run.run_id)
            watched = ids[0]

            async def watch() -> list[int]:
                call = runs_b.WatchRun(run_service_pb2.WatchRunRequest(run_id=watched))
                return [e.seq async for r in call for e in r.events]

            watcher = asyncio.create_task(watch())
            for start in range(0, 2000, 100):
                batch = [
                    ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")
                    for n in range(start, start + 100)
                ]
                await report_a.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=watched, events=batch)
                )
            done = ev.RunEvent(run_completed=ev.RunCompleted())
            last = await report_a.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=watched, events=[done])
            )
            seen = await asyncio.wait_for(watcher, 60)
            assert seen == list(range(1, last.last_seq + 1))
            listed = await runs_b.ListRuns(run_service_pb2.ListRunsRequest(page_size=50))
            assert sorted(r.run_id for r in listed.runs) == sorted(ids)
    # Each run's keys sit on one shard; twelve runs spread over several of them.
    per_shard = [
        len(redis_cli("-p", str(n.port), "--scan", "--pattern", "c:{*}:meta").split())
        for n in redis_cluster
    ]
    assert sum(per_shard) == 12
    assert sum(1 for count in per_shard if count) >= 2, per_shard
