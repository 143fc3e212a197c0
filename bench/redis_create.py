"""What creating a run costs on the Redis store: figures, never pass/fail.

Creating a run on Redis writes its index entries (every run, the active runs, the tenant's
runs), then runs the append script that stores its first event and its snapshot. This
creates runs one after another, each waiting for the one before (as a producer's CreateRun
does), and times them two ways:

  store   RedisEventStore.append(expected_seq=0) alone: the store's own round trips
  rpc     CreateRun over gRPC to an in-process server on that store (the whole call)

against a real redis-server with the AOF on, with ``appendfsync always`` (Redis answers a
write only once it is on disk, so every round trip that writes waits for an fsync) and
``everysec``. Figures per creation: mean, p50, p99 and creations per second.

Then what the active-runs limit reads at a CreateRun (with auth on, a tenant's runs not yet
ended, counted up to the limit): one tenant's count while other tenants have 0 to 4,000
runs active, per count.

    .venv/bin/python bench/redis_create.py               # 2,000 creations each (~1 minute)
    .venv/bin/python bench/redis_create.py --runs 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from runstream.cli.replicas import redis_server
from runstream.v1 import event_pb2, run_pb2, run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.base import RunFilter, StoredEvent
from runstream_server.store.redis import RedisEventStore

RUN_CREATED = event_pb2.RunEvent.DESCRIPTOR.fields_by_name["run_created"].number


def first_event(run_id: str) -> tuple[list[StoredEvent], run_pb2.Run]:
    """A run's first event and its snapshot, about the size CreateRun stores."""
    run = run_pb2.Run(run_id=run_id, workflow="bench", tenant="acme")
    run.status = run_pb2.RUN_STATUS_RUNNING
    run.create_time.GetCurrentTime()
    run.labels["team"] = "bench"
    event = event_pb2.RunEvent(run_id=run_id, seq=1)
    event.run_created.workflow = "bench"
    return [StoredEvent(1, RUN_CREATED, "", event.SerializeToString())], run


async def time_store(url: str, runs: int) -> list[float]:
    store = RedisEventStore(f"{url}?prefix=store{uuid.uuid4().hex[:8]}")
    await store.open()
    took = []
    try:
        for _ in range(runs):
            events, snapshot = first_event(uuid.uuid4().hex)
            started = time.perf_counter()
            await store.append(snapshot.run_id, events, snapshot, expected_seq=0)
            took.append(time.perf_counter() - started)
    finally:
        await store.close()
    return took


async def time_rpc(url: str, runs: int, directory: Path) -> list[float]:
    config = ServerConfig(
        address="127.0.0.1:0",
        store_path=directory / "unused.db",
        store_url=f"{url}?prefix=rpc{uuid.uuid4().hex[:8]}",
    )
    server = RunstreamServer(config)
    await server.start()
    took = []
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = run_service_pb2_grpc.RunServiceStub(channel)
            request = run_service_pb2.CreateRunRequest(workflow="bench", labels={"team": "bench"})
            await stub.CreateRun(request)  # the channel is up before the clock starts
            for _ in range(runs):
                started = time.perf_counter()
                await stub.CreateRun(request)
                took.append(time.perf_counter() - started)
    finally:
        await server.stop(grace=0.5)
    return took


async def time_tenant_count(url: str, others: list[int], counts: int) -> list[list[float]]:
    """The active-runs check of a tenant with one active run, timed `counts` times after each
    step of other tenants' active runs in `others` (cumulative)."""
    store = RedisEventStore(f"{url}?prefix=count{uuid.uuid4().hex[:8]}")
    await store.open()
    active = frozenset({run_pb2.RUN_STATUS_PENDING, run_pb2.RUN_STATUS_RUNNING})
    figures, made = [], 0
    try:
        events, snapshot = first_event(uuid.uuid4().hex)
        snapshot.tenant = "newco"
        await store.append(snapshot.run_id, events, snapshot, expected_seq=0)
        for total in others:
            while made < total:
                batch = []
                for i in range(min(50, total - made)):
                    events, snapshot = first_event(uuid.uuid4().hex)
                    snapshot.tenant = f"tenant{(made + i) // 10}"
                    batch.append(store.append(snapshot.run_id, events, snapshot, expected_seq=0))
                await asyncio.gather(*batch)
                made += len(batch)
            took = []
            for _ in range(counts):
                started = time.perf_counter()
                page = await store.list_runs(RunFilter(active, tenant="newco"), 2000, None)
                took.append(time.perf_counter() - started)
                assert len(page.runs) == 1
            figures.append(took)
    finally:
        await store.close()
    return figures


def row(fsync: str, way: str, took: list[float]) -> str:
    ms = sorted(t * 1000 for t in took)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{fsync:>9} {way:>6} {len(ms):>6,} {statistics.fmean(ms):>8.3f} "
        f"{statistics.median(ms):>8.3f} {p99:>8.3f} {len(ms) / (sum(ms) / 1000):>9,.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="creations per figure")
    runs = parser.parse_args().runs
    heads = ("mean ms", "p50 ms", "p99 ms")
    print(f"{'fsync':>9} {'way':>6} {'runs':>6} {' '.join(f'{h:>8}' for h in heads)} {'runs/s':>9}")
    for fsync in ("always", "everysec"):
        with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp), fsync) as url:
            print(row(fsync, "store", asyncio.run(time_store(url, runs))))
            print(row(fsync, "rpc", asyncio.run(time_rpc(url, runs, Path(tmp)))))
    others = [0, 1000, 4000]
    print(f"\n{'others':>9} {'way':>6} {'counts':>6} {' '.join(f'{h:>8}' for h in heads)}")
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp), "everysec") as url:
        figures = asyncio.run(time_tenant_count(url, others, 50))
    for total, took in zip(others, figures, strict=True):
        print(row(f"{total:,}", "count", took)[:-10])


if __name__ == "__main__":
    main()
