"""Must show: replicas on a 3-master Redis Cluster; runs spread over the shards.

Three real redis-server processes in cluster mode, formed with ``redis-cli --cluster
create``; two `runstream serve` replicas with ``?cluster=1``. All keys of a run share the
hash tag ``{run_id}``, so each run's append script runs on one shard, and different runs land
on different shards. Notices between replicas go through sharded pub/sub: each on the
channel of its run's slot, to the one shard that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.exceptions as redis_exceptions
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.crc import key_slot
from runstream.v1 import event_pb2 as ev
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.domain.insight import InsightPolicy
from runstream_server.store import redis_notices
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_notices import slot_tags

from tests.clients.support import eventually
from tests.conftest import (
    RedisProcess,
    finish_moving_slot,
    free_port,
    move_slot,
    owned_slots,
    redis_cli,
    redis_cluster,
    serving_on,
    start_moving_slot,
    two_replicas,
)
from tests.e2e.test_serve_redis import serve_and_exit


@pytest.fixture
def three_masters(tmp_path: Path) -> Iterator[list[RedisProcess]]:
    with redis_cluster(tmp_path) as nodes:
        yield nodes


def assert_sharded_notices(nodes: list[RedisProcess], run_id: str) -> None:
    """Each replica keeps one sharded subscription per shard, to the channel of every slot
    the shard owns; the run's notices went out with SPUBLISH on its slot's channel, on the
    shard that owns it. No node saw a classic PUBLISH or a classic subscription."""
    slot = key_slot(f"{{{run_id}}}".encode())
    channel = f"c:notices:{{{slot_tags()[slot]}}}"
    for node in nodes:
        port = str(node.port)
        assert redis_cli("-p", port, "pubsub", "channels").split() == []
        stats = redis_cli("-p", port, "info", "commandstats")
        assert "cmdstat_publish:" not in stats
        slots = owned_slots(node)
        listed = redis_cli("-p", port, "pubsub", "shardchannels", "c:notices:*").split()
        assert len(listed) == len(slots)
        if slot in slots:
            assert "cmdstat_spublish:" in stats
            # Both replicas, each through its one connection to this shard.
            assert redis_cli("-p", port, "pubsub", "shardnumsub", channel).split() == [channel, "2"]
            clients = [
                dict(field.split("=", 1) for field in line.split())
                for line in redis_cli("-p", port, "client", "list").splitlines()
            ]
            assert sum(1 for c in clients if int(c["ssub"])) == 2  # sharded subscriptions


@dataclass
class Replicas:
    """Two replicas on the cluster: A's run and report services, B's run service."""

    runs_a: run_service_pb2_grpc.RunServiceStub
    report_a: report_service_pb2_grpc.ReportServiceStub
    runs_b: run_service_pb2_grpc.RunServiceStub


@pytest.fixture
async def replicas(three_masters: list[RedisProcess], tmp_path: Path) -> AsyncIterator[Replicas]:
    url = f"{three_masters[0].url}?cluster=1&prefix=c"
    with two_replicas(tmp_path, url) as (a, b):
        async with (
            grpc.aio.insecure_channel(a.target) as on_a,
            grpc.aio.insecure_channel(b.target) as on_b,
        ):
            yield Replicas(
                run_service_pb2_grpc.RunServiceStub(on_a),
                report_service_pb2_grpc.ReportServiceStub(on_a),
                run_service_pb2_grpc.RunServiceStub(on_b),
            )


async def watch_by_notices(
    runs: run_service_pb2_grpc.RunServiceStub, run_id: str, seen: list[int]
) -> None:
    """Follows the run into `seen` with no heartbeat before it ends (5 minutes): only the
    notices of another replica's commits, live, bring the events."""
    request = run_service_pb2.WatchRunRequest(
        run_id=run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
    )
    async for response in runs.WatchRun(request):
        seen.extend(e.seq for e in response.events)


async def test_a_run_watched_through_a_three_master_cluster(
    three_masters: list[RedisProcess], replicas: Replicas, tmp_path: Path
) -> None:
    runs_a, report_a, runs_b = replicas.runs_a, replicas.report_a, replicas.runs_b
    ids = []
    for n in range(12):
        request = run_service_pb2.CreateRunRequest(workflow="c", labels={"team": "ab"[n % 2]})
        ids.append((await runs_a.CreateRun(request)).run.run_id)
    watched = ids[0]

    seen: list[int] = []
    watcher = asyncio.create_task(watch_by_notices(runs_b, watched, seen))
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
    try:
        await asyncio.wait_for(watcher, 60)
    except TimeoutError:  # say where B's watcher stopped, and what B logged
        b_log = (tmp_path / "b.log").read_text(errors="replace")[-4000:]
        raise AssertionError(
            f"B's watcher saw {len(seen)} of {last.last_seq} events (last: "
            f"{seen[-1] if seen else None}) in 60 s; B's log ends:\n{b_log}"
        ) from None
    assert seen == list(range(1, last.last_seq + 1))
    listed = await runs_b.ListRuns(run_service_pb2.ListRunsRequest(page_size=50))
    assert sorted(r.run_id for r in listed.runs) == sorted(ids)
    # By label, from the label's index (on its own shard), paged.
    request = run_service_pb2.ListRunsRequest(page_size=4, filter='labels.team = "a"')
    first = await runs_b.ListRuns(request)
    request.page_token = first.next_page_token
    second = await runs_b.ListRuns(request)
    assert [r.run_id for r in (*first.runs, *second.runs)] == ids[-2::-2]
    # A read of some kinds filters on the shard that holds the run (a script per page).
    for run_id in ids:
        created = await runs_b.ListEvents(
            run_service_pb2.ListEventsRequest(run_id=run_id, filter="kind = RUN_CREATED")
        )
        assert [e.seq for e in created.events] == [1]
    ended = await runs_b.ListEvents(
        run_service_pb2.ListEventsRequest(run_id=watched, filter="kind = RUN_COMPLETED")
    )
    assert [e.seq for e in ended.events] == [last.last_seq]
    assert_sharded_notices(three_masters, watched)
    # Each run's keys sit on one shard; twelve runs spread over several of them.
    per_shard = [
        len(redis_cli("-p", str(n.port), "--scan", "--pattern", "c:{*}:meta").split())
        for n in three_masters
    ]
    assert sum(per_shard) == 12
    assert sum(1 for count in per_shard if count) >= 2, per_shard


async def test_a_watcher_stays_live_when_the_runs_slot_moves_to_another_shard(
    three_masters: list[RedisProcess], replicas: Replicas
) -> None:
    runs_a, report_a, runs_b = replicas.runs_a, replicas.report_a, replicas.runs_b
    run_id = (await runs_a.CreateRun(run_service_pb2.CreateRunRequest(workflow="c"))).run.run_id
    seen: list[int] = []

    async def watch() -> None:
        request = run_service_pb2.WatchRunRequest(
            run_id=run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
        )
        async for response in runs_b.WatchRun(request):
            seen.extend(e.seq for e in response.events)

    async def report(first: int) -> int:
        batch = [
            ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")
            for n in range(first, first + 10)
        ]
        done = await report_a.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=batch)
        )
        return int(done.last_seq)

    watcher = asyncio.create_task(watch())
    head = await report(0)
    await eventually(lambda: seen[-1:] == [head], within=60)
    # B's watcher counts on A too: one pipelined read reaches the run's shard.
    deadline = time.monotonic() + 30
    while True:
        listed = await runs_a.ListRuns(run_service_pb2.ListRunsRequest())
        if [r.viewer_count for r in listed.runs] == [1]:
            break
        assert time.monotonic() < deadline, listed
        await asyncio.sleep(0.05)

    slot = key_slot(f"{{{run_id}}}".encode())
    owner = move_slot(three_masters, slot)
    # Redis unsubscribes the slot's channel on its old owner; each replica
    # subscribes again on the new one, and reads what it may have missed.
    channel = f"c:notices:{{{slot_tags()[slot]}}}"
    deadline = time.monotonic() + 60
    while redis_cli("-p", str(owner.port), "pubsub", "shardnumsub", channel).split()[1] != "2":
        assert time.monotonic() < deadline, "the replicas did not subscribe again"
        await asyncio.sleep(0.1)
    head = await report(10)
    await eventually(lambda: seen[-1:] == [head], within=60)
    assert seen == list(range(1, head + 1))
    watcher.cancel()


async def test_a_run_caught_halfway_through_a_slot_move_is_unavailable_until_it_moved(
    three_masters: list[RedisProcess], replicas: Replicas
) -> None:
    """While a slot moves key by key, a run whose keys are split between the two masters
    cannot take an append (Redis answers TRYAGAIN until redis-py gives up: "TTL exhausted").
    That is the cluster moving, as a failover is: UNAVAILABLE, which producers retry, not
    INTERNAL, which they take as final. Once the move completes the retry goes through."""
    runs_a, report_a = replicas.runs_a, replicas.report_a
    run_id = (await runs_a.CreateRun(run_service_pb2.CreateRunRequest(workflow="c"))).run.run_id
    tick = ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key="t1")
    append = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick])
    slot = key_slot(f"{{{run_id}}}".encode())
    source, target, rest = start_moving_slot(three_masters, slot, first_keys=1)
    assert rest, "the run should have keys left on its old master"

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await report_a.AppendEvents(append, timeout=30)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()
    assert "cluster" in (refused.value.details() or "")

    finish_moving_slot(three_masters, slot, source, target, rest)
    done = await report_a.AppendEvents(append, timeout=30)
    listed = await runs_a.ListEvents(run_service_pb2.ListEventsRequest(run_id=run_id))
    assert [e.idempotency_key for e in listed.events].count("t1") == 1
    assert done.last_seq == listed.events[-1].seq


def test_a_cluster_node_given_without_cluster_1_is_refused_in_one_line_naming_the_option(
    three_masters: list[RedisProcess], tmp_path: Path
) -> None:
    """A cluster node's URL without ``?cluster=1`` ended the server with a traceback
    (MovedError), or, for a prefix whose index keys happen to live on that node, started a
    server that refused every CreateRun as "the cluster is moving" for ever."""
    for prefix in ("c", "x15"):  # x15: its index keys were on the seed node in one review
        url = f"redis://127.0.0.1:{three_masters[0].port}/0?prefix={prefix}"
        done = serve_and_exit(url, tmp_path)
        said = done.stderr.decode() + done.stdout.decode()
        assert done.returncode == 1, said
        assert "Traceback" not in said, said
        last = said.splitlines()[-1]
        assert last.startswith("runstream: ") and "add ?cluster=1" in last, last


async def test_health_is_not_serving_while_the_cluster_is_down(
    three_masters: list[RedisProcess], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster with a slot no master serves (a shard lost with no replica to take over)
    answers PING on every node left but refuses every command (CLUSTERDOWN): health said
    SERVING all along, so load balancers and readiness probes kept sending work to a replica
    that could store nothing. It says NOT_SERVING until the slot is served again, and its log
    says why (it said "store unreachable" of a cluster that answered)."""
    caplog.set_level(logging.INFO, "runstream.server")
    slot = 0
    owner = next(node for node in three_masters if slot in owned_slots(node))
    url = f"{three_masters[0].url}?cluster=1&prefix=c"
    async with (
        serving_on(url, tmp_path) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]

        async def until(status: int) -> None:
            for _ in range(200):
                said = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                if said.status == status:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"health never turned {status}, still {said.status}")

        await until(health_pb2.HealthCheckResponse.SERVING)
        for node in three_masters:  # every node forgets who serves the slot
            redis_cli("-p", str(node.port), "cluster", "delslots", str(slot))
        assert all(
            "cluster_state:fail" in redis_cli("-p", str(n.port), "cluster", "info")
            for n in three_masters
        )
        await until(health_pb2.HealthCheckResponse.NOT_SERVING)
        down = f"store not serving: the Redis Cluster {url} is down: a slot no master serves"
        assert down in [r.getMessage() for r in caplog.records], caplog.text
        # A call on the lost slot says the cluster is down; it said "moving", as in a reshard
        # (found in review). "r6961" hashes to slot 0.
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w", run_id="r6961"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the Redis cluster is down (CLUSTERDOWN" in (refused.value.details() or "")
        redis_cli("-p", str(owner.port), "cluster", "addslots", str(slot))
        await until(health_pb2.HealthCheckResponse.SERVING)


async def test_a_replica_starts_from_another_node_while_the_urls_own_is_down(
    three_masters: list[RedisProcess], tmp_path: Path
) -> None:
    """The URL named one node: with it down, a new replica could not start though the
    cluster served (found in review). ``?nodes=`` names more to start from."""
    down = f"127.0.0.1:{free_port()}"  # a node that is gone: nothing listens there
    alone = f"redis://{down}/0?cluster=1&prefix=c"
    done = serve_and_exit(alone, tmp_path)
    assert done.returncode == 1
    assert b"cannot reach the Redis store" in done.stderr + done.stdout
    others = ",".join(f"127.0.0.1:{node.port}" for node in three_masters[1:])
    async with (
        serving_on(f"{alone}&nodes={others}", tmp_path) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"))
        got = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=created.run.run_id))
        assert got.run.workflow == "w"


async def test_a_lost_master_does_not_hold_up_the_notices_of_the_other_shards(
    three_masters: list[RedisProcess], replicas: Replicas
) -> None:
    """One master out of reach dropped the subscriptions to every shard until it came back:
    B's watcher of a run on a healthy shard got A's events only at its heartbeats, and a
    viewer's prompt came 27 s late (found in review, for each failover's 15-20 s, or the
    whole outage of a shard lost). B now follows the shards it reaches."""
    runs_a, report_a, runs_b = replicas.runs_a, replicas.report_a, replicas.runs_b
    for node in three_masters:  # the shards left serve their slots while one is lost
        redis_cli("-p", str(node.port), "config", "set", "cluster-require-full-coverage", "no")
    # The shard to lose holds none of the keys an append or its commit reads (the run's, the
    # workflow history's): with prefix "c", only the index of workflow "c"'s runs.
    lost = next(node for node in three_masters if 16383 in owned_slots(node))
    watched = ""
    while not watched or key_slot(f"{{{watched}}}".encode()) in owned_slots(lost):
        request = run_service_pb2.CreateRunRequest(workflow="c")
        watched = (await runs_a.CreateRun(request)).run.run_id
    seen: list[int] = []
    watcher = asyncio.create_task(watch_by_notices(runs_b, watched, seen))
    try:
        await eventually(lambda: seen == [1], within=20)
        lost.kill()
        await asyncio.sleep(2)  # B has lost its connection to that master meanwhile
        for n in range(5):
            tick = ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")
            appended = await report_a.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=watched, events=[tick])
            )
            # The notice brings it (no heartbeat, no resync would within this time).
            await eventually(lambda: seen[-1:] == [appended.last_seq], within=5)  # noqa: B023
        assert seen == list(range(1, appended.last_seq + 1))
    finally:
        watcher.cancel()


async def test_appends_go_on_while_the_shard_of_their_workflows_history_is_lost(
    three_masters: list[RedisProcess], tmp_path: Path
) -> None:
    """A commit reads its workflow's history (the ETA) from the store, again every
    history_refresh on a shared store: with the shard that holds it lost, every append of
    the workflow's runs failed UNAVAILABLE, though the runs' own shards served. Now commits
    go on with the history held (found while testing the lost-master case)."""
    for node in three_masters:
        redis_cli("-p", str(node.port), "config", "set", "cluster-require-full-coverage", "no")
    history = RedisKeys("c").succeeded("", "c")
    lost = next(node for node in three_masters if key_slot(history.encode()) in owned_slots(node))
    url = f"{three_masters[0].url}?cluster=1&prefix=c"
    policy = InsightPolicy(history_refresh=0.2)
    async with (
        serving_on(url, tmp_path, insight=policy) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = ""
        while not run_id or key_slot(f"{{{run_id}}}".encode()) in owned_slots(lost):
            request = run_service_pb2.CreateRunRequest(workflow="c")
            run_id = (await runs.CreateRun(request)).run.run_id
        lost.kill()
        await asyncio.sleep(0.5)  # the history held is stale: the next commit reads it again
        for n in range(3):
            tick = ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")
            appended = await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick])
            )
        assert appended.last_seq == 4


SUBSCRIBED = "following notices on 3 Redis shards"


@contextlib.asynccontextmanager
async def following_notices(
    nodes: list[RedisProcess], caplog: pytest.LogCaptureFixture
) -> AsyncIterator[asyncio.Task[None]]:
    """A Redis store on the cluster of `nodes` following notices: its follower's task, once
    subscribed to every shard; the follower stopped and the store closed on the way out."""
    caplog.set_level(logging.INFO, logger="runstream.store.redis")
    store = RedisEventStore(f"{nodes[0].url}?cluster=1&prefix=c")
    await store.open()
    following = asyncio.create_task(store.follow(lambda _: None))
    try:
        await eventually(lambda: SUBSCRIBED in caplog.text, within=20)
        yield following
    finally:
        await ended(following)
        await store.close()


async def ended(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def subscribers(nodes: list[RedisProcess]) -> list[str]:
    """The pub/sub connections `nodes` have open, one line each."""
    return [
        line
        for node in nodes
        for line in redis_cli("-p", str(node.port), "client", "list", "type", "pubsub")
        .strip()
        .splitlines()
    ]


async def test_following_that_stops_leaves_no_reader_running_and_no_connection_open(
    three_masters: list[RedisProcess],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Notices are read by one task per shard. A stop cancelled those readers and closed
    their connections without waiting for them; a reader whose cancellation was swallowed
    (on Python 3.11, a cancel landing as its read's own timeout expires becomes that timeout)
    read on, and redis-py opened its connection again after it was closed: a socket nobody
    closed, found as a lost-socket warning in CI. Readers are now cancelled until they end,
    and only then are their connections closed."""
    reads = redis_notices.Liveness.next_message
    swallowed: list[bool] = []

    async def swallowing_once(self: redis_notices.Liveness, pubsub: Any) -> Any:
        connection = pubsub.connection
        try:
            return await reads(self, pubsub)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(True)
            # What redis-py does with the timeout the cancel became: its retry handler
            # connects again (even with no retries left), then the timeout is raised.
            await connection.disconnect()
            await connection.connect()
            raise redis_exceptions.TimeoutError("Timeout reading from socket") from None

    monkeypatch.setattr(redis_notices.Liveness, "next_message", swallowing_once)
    async with following_notices(three_masters, caplog) as following:
        await ended(following)
        assert swallowed == [True]
        readers = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "").endswith("_read_shard")
        ]
        assert readers == []
        await asyncio.sleep(0.2)  # a reader left running would have connected again
        assert subscribers(three_masters) == []


def ssubscribes(node: RedisProcess) -> int:
    """SSUBSCRIBE commands `node` has been sent, accepted or refused."""
    for line in redis_cli("-p", str(node.port), "info", "commandstats").splitlines():
        if line.startswith("cmdstat_ssubscribe:"):
            fields = dict(f.split("=") for f in line.split(":", 1)[1].split(","))
            return int(fields["calls"]) + int(fields.get("rejected_calls", 0))
    return 0


async def test_a_lost_notice_connection_is_subscribed_again_once_by_the_follower_alone(
    three_masters: list[RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py connects a pub/sub again by itself when a read fails (even with no retries
    left: its retry handler reconnects before it gives up), subscribing it again behind the
    follower's back: a connection the follower did not know of, found open after a stop (a
    lost-socket warning failed CI). A lost connection now just ends the subscription, which
    the follower makes again, once: one SSUBSCRIBE per slot of the shard."""
    node = three_masters[1]
    async with following_notices(three_masters, caplog):
        before = ssubscribes(node)
        redis_cli("-p", str(node.port), "client", "kill", "type", "pubsub")
        await eventually(lambda: caplog.text.count(SUBSCRIBED) == 2, within=20)
        await asyncio.sleep(0.5)  # anything else that would subscribe has had its chance
        assert ssubscribes(node) - before == len(owned_slots(node))


async def test_following_cancelled_twice_still_closes_every_connection(
    three_masters: list[RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """A hurried stop cancels twice: the second cancellation, landing while the follower
    waited for its readers to end, skipped the closes after that wait, and every shard's
    subscription stayed open after the follower was gone."""
    async with following_notices(three_masters, caplog) as following:
        following.cancel()
        await asyncio.sleep(0)  # into its cleanup
        await ended(following)
        await eventually(lambda: subscribers(three_masters) == [], within=2)
