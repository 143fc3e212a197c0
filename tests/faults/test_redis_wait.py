"""``--store redis://...?wait=N``: an event is acknowledged only once N Redis replicas have it,
on one Redis and on a cluster (where the replicas counted are those of the run's master).

A real primary and a real replica (`redis-server --replicaof`). With the replica up, an
acknowledged event is already on the replica. With the replica down, the producer gets
UNAVAILABLE saying how many replicas confirmed, also when it sends the same events again
(a resend is not acknowledged on the strength of the primary alone); once the replica is
back, the resend is acknowledged, and the event is stored once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from redis import Redis
from redis.crc import key_slot
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)

from tests.conftest import (
    RedisProcess,
    move_slot,
    redis_cli,
    redis_cluster,
    serving_on,
    wait_until_linked,
)

# How long an append waits for the replica. A live replica confirms within a millisecond, but
# on a 2-core machine running the whole suite 300 ms once proved too short, and 1,000 ms
# once for the replica just linked again; each refusal with the replica down waits this long.
WAIT_MS = 2500


def tick(n: int) -> ev.RunEvent:
    return ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")


def stream_on(redis: RedisProcess, run_id: str, prefix: str = "w") -> list[str]:
    """The seqs of the run's stream as this Redis holds it (a cluster replica reads too)."""
    with Redis(port=redis.port) as client:
        if prefix == "cw":
            client.execute_command("READONLY")
        return [entry_id.decode() for entry_id, _ in client.xrange(f"{prefix}:{{{run_id}}}:log")]


async def acknowledged_only_with_the_replica(
    target: str,
    owners: Callable[[str], tuple[RedisProcess, RedisProcess]],
    prefix: str,
) -> str:
    """The scenario on any topology: `owners` names the Redis that owns a run, and its
    replica. Returns the run's id."""
    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"))).run.run_id
        primary, replica = owners(run_id)

        # Replica up: what is acknowledged is on the replica already, not on its way there.
        acked = await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(1), tick(2)])
        )
        assert acked.last_seq == 3
        assert stream_on(replica, run_id, prefix) == ["1-0", "2-0", "3-0"]

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
        assert stream_on(primary, run_id, prefix) == ["1-0", "2-0", "3-0", "4-0"]
        assert stream_on(replica, run_id, prefix) == ["1-0", "2-0", "3-0", "4-0"]
        return run_id


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A primary and its replica, linked."""
    primary = RedisProcess(tmp_path / "primary")
    replica = RedisProcess(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    try:
        primary.start()
        replica.start()
        wait_until_linked(primary, replica)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def waiting_url(primary: RedisProcess) -> str:
    return f"{primary.url}?prefix=w&wait=1&wait_timeout_ms={WAIT_MS}"


async def test_wait_acknowledges_only_what_the_replica_has(
    pair: tuple[RedisProcess, RedisProcess], tmp_path: Path
) -> None:
    async with serving_on(waiting_url(pair[0]), tmp_path) as server:
        await acknowledged_only_with_the_replica(server.target, lambda _: pair, "w")


async def test_a_cancel_stored_on_the_primary_alone_is_read_and_watched_at_once(
    pair: tuple[RedisProcess, RedisProcess], tmp_path: Path
) -> None:
    """A cancel the primary stored and no replica confirmed in time is answered UNAVAILABLE:
    the server's memory kept the run PENDING until the store's notice of its own commit came,
    so a GetRun before it said PENDING, and the cancel repeated after that read was refused
    "already ended". GetRun reads the log first; the watcher gets the end."""
    primary, replica = pair
    async with (
        serving_on(waiting_url(primary), tmp_path) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"))).run.run_id
        watch = runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id))
        assert [e.seq for e in (await watch.read()).events] == [1]
        replica.kill()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run_id))
        assert "it is stored on the primary" in str(refused.value.details())
        got = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
        assert got.run.status == run_pb2.RUN_STATUS_CANCELLED
        seen = []
        async with asyncio.timeout(10):
            while (response := await watch.read()) != grpc.aio.EOF:
                seen += [(e.seq, e.WhichOneof("payload")) for e in response.events]
        assert seen == [(2, "run_cancelled")]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    """Three masters, each with one replica."""
    with redis_cluster(tmp_path, replicas=1) as nodes:
        yield nodes


def owner_and_replica(nodes: list[RedisProcess], run_id: str) -> tuple[RedisProcess, RedisProcess]:
    """The master serving the run's slot, and its replica, from CLUSTER NODES."""
    slot = key_slot(f"{{{run_id}}}".encode())
    lines = [
        line.split()
        for line in redis_cli("-p", str(nodes[0].port), "cluster", "nodes").splitlines()
    ]
    by_port = {n.port: n for n in nodes}
    master_id = next(
        fields[0]
        for fields in lines
        if "master" in fields[2]
        for part in fields[8:]
        if int(part.partition("-")[0]) <= slot <= int(part.partition("-")[2] or part)
    )

    def port_of(fields: list[str]) -> int:
        return int(fields[1].split("@")[0].rsplit(":", 1)[1])

    master = next(by_port[port_of(f)] for f in lines if f[0] == master_id)
    replica = next(by_port[port_of(f)] for f in lines if f[3] == master_id)
    return master, replica


async def test_wait_on_a_cluster_counts_the_replica_of_the_runs_master(
    cluster: list[RedisProcess], tmp_path: Path
) -> None:
    url = f"{cluster[0].url}?cluster=1&prefix=cw&wait=1&wait_timeout_ms={WAIT_MS}"
    async with serving_on(url, tmp_path) as server:
        run_id = await acknowledged_only_with_the_replica(
            server.target, lambda run_id: owner_and_replica(cluster, run_id), "cw"
        )
        # The run's slot moves to another master: the next append meets MOVED there, goes
        # to the new owner, and is acknowledged once the new owner's replica has it.
        move_slot(cluster, key_slot(f"{{{run_id}}}".encode()))
        _, replica = owner_and_replica(cluster, run_id)
        async with grpc.aio.insecure_channel(server.target) as channel:
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            acked = await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(4)])
            )
        assert acked.last_seq == 5
        assert stream_on(replica, run_id, "cw") == ["1-0", "2-0", "3-0", "4-0", "5-0"]


def script_exists_calls(redis: RedisProcess) -> int:
    stats = redis_cli("-p", str(redis.port), "info", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_script|exists:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_wait_appends_in_one_round_trip_and_reloads_a_flushed_script(
    pair: tuple[RedisProcess, RedisProcess], tmp_path: Path
) -> None:
    primary, replica = pair
    async with (
        serving_on(waiting_url(primary), tmp_path) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        create = run_service_pb2.CreateRunRequest(workflow="w")
        run_id = (await runs.CreateRun(create)).run.run_id
        before = script_exists_calls(primary)
        for n in range(5):  # each append: the script and WAIT, nothing asked first
            await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(n)])
            )
        assert script_exists_calls(primary) == before

        # The primary forgets its scripts (as after a restart or a failover): the next
        # append loads it again and is stored once, on the replica too.
        redis_cli("-p", str(primary.port), "script", "flush")
        acked = await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick(5)])
        )
        assert [(a.seq, a.duplicate) for a in acked.events] == [(7, False)]
        seqs = ["1-0", "2-0", "3-0", "4-0", "5-0", "6-0", "7-0"]
        assert stream_on(primary, run_id) == seqs
        assert stream_on(replica, run_id) == seqs
