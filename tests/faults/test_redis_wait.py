"""``--store redis://...?wait=N``: an event is acknowledged only once N Redis replicas have it.

A real primary and a real replica (`redis-server --replicaof`). With the replica up, an
acknowledged event is already on the replica. With the replica down, the producer gets
UNAVAILABLE saying how many replicas confirmed, also when it sends the same events again
(a resend is not acknowledged on the strength of the primary alone); once the replica is
back, the resend is acknowledged, and the event is stored once.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from redis import Redis
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.app import RunstreamServer, ServerConfig

from tests.conftest import RedisProcess


def redis_cli(port: int, *args: str) -> str:
    binary = shutil.which("redis-cli")
    assert binary is not None, "redis-cli is missing; run `make setup`"
    done = subprocess.run(
        [binary, "-p", str(port), *args], capture_output=True, timeout=30, check=True
    )
    return done.stdout.decode()


def wait_until_linked(primary: RedisProcess, replica: RedisProcess) -> None:
    deadline = time.monotonic() + 30
    while "master_link_status:up" not in redis_cli(replica.port, "info", "replication"):
        assert time.monotonic() < deadline, "the replica did not sync with the primary"
        time.sleep(0.05)
    while "connected_slaves:1" not in redis_cli(primary.port, "info", "replication"):
        assert time.monotonic() < deadline, "the primary does not see its replica"
        time.sleep(0.05)


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[RedisProcess, RedisProcess, RunstreamServer]]:
    primary = RedisProcess(tmp_path / "primary")
    primary.start()
    replica = RedisProcess(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    server: RunstreamServer | None = None
    try:
        replica.start()
        wait_until_linked(primary, replica)
        server = RunstreamServer(
            ServerConfig(
                address="127.0.0.1:0",
                store_path=tmp_path / "unused.db",
                store_url=f"{primary.url}?prefix=w&wait=1&wait_timeout_ms=300",
            )
        )
        await server.start()
        yield primary, replica, server
    finally:
        if server is not None:
            await server.stop(grace=0.5)
        replica.stop()
        primary.stop()


def tick(n: int) -> ev.RunEvent:
    return ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")


def stream_on(redis: RedisProcess, run_id: str) -> list[str]:
    """The seqs of the run's stream as this Redis holds it."""
    with Redis(port=redis.port) as client:
        return [entry_id.decode() for entry_id, _ in client.xrange(f"w:{{{run_id}}}:log")]


async def test_wait_acknowledges_only_what_the_replica_has(
    setup: tuple[RedisProcess, RedisProcess, RunstreamServer],
) -> None:
    primary, replica, server = setup
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"))).run.run_id

        # Replica up: what is acknowledged is on the replica already, not on its way there.
        acked = await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(1), tick(2)])
        )
        assert acked.last_seq == 3
        assert stream_on(replica, run_id) == ["1-0", "2-0", "3-0"]

        # Replica down: no acknowledgement on the primary's word, and a precise status.
        replica.kill()
        request = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(3)])
        for _ in range(2):  # the first send, then the same event sent again
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await report.AppendEvents(request)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == (
                "only 0 of 1 Redis replicas acknowledged the write in time; it is stored on "
                "the primary, retry to confirm"
            )

        # Replica back: the resend is acknowledged with the seq it was stored at, once.
        replica.start()
        wait_until_linked(primary, replica)
        again = await report.AppendEvents(request)
        assert [(a.seq, a.duplicate) for a in again.events] == [(4, True)]
        assert stream_on(primary, run_id) == ["1-0", "2-0", "3-0", "4-0"]
        assert stream_on(replica, run_id) == ["1-0", "2-0", "3-0", "4-0"]
