"""Redis restarts under a running server (same port, same directory): once health is SERVING
again, every call is served, with no client retry to hide a failure; and the outage costs
the log a line when the notice subscription is lost and one when it is back, not a warning
every half second."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import runstream
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig

from tests.clients.support import eventually, until
from tests.conftest import RedisProcess, serving_on

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Restartable:
    """A Redis of the test's own, to stop and start again, and a server on it."""

    redis: RedisProcess
    server: RunstreamServer


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[Restartable]:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    server = RunstreamServer(
        ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "unused.db", store_url=redis.url)
    )
    try:
        await server.start()
        yield Restartable(redis, server)
    finally:
        await server.stop(grace=0.5)
        redis.stop()


async def health_is(health: health_pb2_grpc.HealthStub, wanted: int) -> bool:
    """Whether readiness (grpc.health.v1 Check of "") says `wanted`."""
    return int((await health.Check(health_pb2.HealthCheckRequest())).status) == wanted


async def test_calls_right_after_redis_restarted_are_all_served(
    restartable: Restartable,
) -> None:
    redis, server = restartable.redis, restartable.server
    # A raw gRPC client: no SDK retry between the test and what the server answers.
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]

        async def create_all() -> list[grpc.StatusCode]:
            async def create() -> grpc.StatusCode:
                try:
                    await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

            return await asyncio.gather(*(create() for _ in range(20)))

        # Twenty at once: the store's pool opens about as many connections to this Redis.
        assert await create_all() == [grpc.StatusCode.OK] * 20
        redis.stop()
        await until(lambda: health_is(health, NOT_SERVING), within=10)
        await asyncio.to_thread(redis.start)  # same port, same directory: the AOF
        await until(lambda: health_is(health, SERVING), within=10)
        assert await create_all() == [grpc.StatusCode.OK] * 20
        listed = await runs.ListRuns(run_service_pb2.ListRunsRequest(page_size=100))
        assert len(listed.runs) == 40  # each create stored once


async def test_a_redis_outage_is_logged_once_and_its_end_once(
    restartable: Restartable, caplog: pytest.LogCaptureFixture
) -> None:
    redis, server = restartable.redis, restartable.server
    caplog.set_level(logging.DEBUG, "runstream.store.redis")
    caplog.set_level(logging.INFO, "runstream.server")
    redis.kill()
    await asyncio.sleep(4)  # eight attempts to subscribe again meanwhile, had each waited 0.5 s
    lost = [
        r.getMessage()
        for r in caplog.records
        if r.name == "runstream.store.redis" and r.levelno >= logging.WARNING
    ]
    assert len(lost) == 1, lost
    assert lost[0].startswith("lost the Redis notice subscription")
    await asyncio.to_thread(redis.start)
    started = time.monotonic()

    def back() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.INFO and "notice subscription is back" in r.getMessage()
        ]

    await eventually(lambda: bool(back()), within=10)
    assert len(back()) == 1
    # The server's store health says the outage ended at INFO, as it began at WARNING.
    await eventually(lambda: any(r.getMessage() == "store reachable again" for r in caplog.records))
    ended = [r for r in caplog.records if r.getMessage() == "store reachable again"]
    assert [r.levelno for r in ended] == [logging.INFO]
    # Subscribed as soon as the health check reaches Redis (every 0.5 s), not when the
    # backed-off wait ends (attempts at 0, 0.5, 1.5, 3.5 and 7.5 s into the outage): until
    # then, the replica says SERVING while its watchers hear nothing of other replicas.
    assert time.monotonic() - started < 2.0
    # The replica carries on: a call made now is served.
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))


async def test_a_redis_back_with_other_settings_is_said_to_be_so(
    restartable: Restartable, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis restarted without its configuration (a container given none) came back with
    AOF off or an evicting policy, and the server, which checks both at start, served on
    without a word: a restart of that Redis, or a full one, loses acknowledged events."""
    redis = restartable.redis
    caplog.set_level(logging.INFO, "runstream.store.redis")
    redis.stop()
    redis.extra = ("--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    await asyncio.to_thread(redis.start)

    def said(level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "runstream.store.redis"
            and r.levelno == level
            and "notice subscription" not in r.getMessage()
        ]

    await eventually(lambda: bool(said(logging.ERROR)), within=10)
    await eventually(lambda: bool(said(logging.WARNING)), within=5)
    assert said(logging.ERROR) == [
        f"the Redis store {redis.url} evicts keys when its memory is full (maxmemory-policy "
        "allkeys-lru), which would delete events this server acknowledged as stored: set "
        "maxmemory-policy noeviction (CONFIG SET, and in redis.conf or the provider's settings)"
    ]
    assert said(logging.WARNING) == [
        f"the Redis store {redis.url} runs with appendonly no: a restart of Redis loses every "
        "event it acknowledged since its last RDB save; set appendonly yes (CONFIG SET, and in "
        "redis.conf)"
    ]


async def test_a_replica_out_of_its_stores_reach_ends_its_watches_to_resume_elsewhere(
    restartable: Restartable,
) -> None:
    """A replica that lost Redis kept its watch streams open, heartbeats and all: watchers of
    a run another replica went on writing saw it frozen for the whole outage (120 s in the
    review), told nothing, while health said NOT_SERVING to new clients only. Past a grace of
    a few seconds the streams now end UNAVAILABLE, new ones are refused until the store is
    back, and a watch then resumes where it was."""
    redis, server = restartable.redis, restartable.server
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        run = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))).run
        request = run_service_pb2.WatchRunRequest(run_id=run.run_id)
        request.heartbeat_interval.FromSeconds(1)
        watch = runs.WatchRun(request)
        assert [e.seq for e in (await watch.read()).events] == [1]
        redis.stop()
        lost = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(20):
                while True:  # heartbeats, until the stream ends
                    await watch.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "resume on another replica" in (ended.value.details() or "")
        assert 4.5 < time.monotonic() - lost < 12
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in runs.WatchRun(request):
                pass
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.to_thread(redis.start)
        await until(lambda: health_is(health, SERVING), within=10)
        request.after_seq = 0
        again = runs.WatchRun(request)
        assert [e.seq for e in (await again.read()).events] == [1]
        again.cancel()


async def test_a_frozen_redis_gets_unavailable_and_the_producer_goes_on_after(
    restartable: Restartable,
) -> None:
    """Redis stopped (SIGSTOP) longer than the store's 8 s socket timeout: a write in flight
    times out. That used to end its call as if the client had cancelled it, with no status
    at all: a producer's report stream hung for ever, a CreateRun until its deadline."""
    redis, server = restartable.redis, restartable.server
    assert redis.process is not None
    async with (
        runstream.connect(server.target) as client,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        run = await client.start_run("wf", key_prefix="frozen")

        async def report() -> None:
            for n in range(300):
                await run.custom("tick", {"n": n})
                await asyncio.sleep(0.01)
            await run.complete()

        producer = asyncio.create_task(report())
        await asyncio.sleep(0.5)
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"), timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "Redis store is unreachable" in str(refused.value.details())
            # A change that times out may still be applied once Redis wakes: the status says so.
            assert "may still be applied" in str(refused.value.details())
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        await asyncio.wait_for(producer, 20)
        listed = await runs.ListEvents(
            run_service_pb2.ListEventsRequest(run_id=run.run_id, page_size=1000)
        )
    assert [e.seq for e in listed.events] == list(range(1, len(listed.events) + 1))
    ticks = [e.custom.data["n"] for e in listed.events if e.HasField("custom")]
    assert ticks == list(range(300))  # each stored once, in order


async def test_a_cancel_on_a_frozen_redis_is_unavailable_within_the_clients_deadline(
    restartable: Restartable,
) -> None:
    """A run of a workflow whose history this replica had not read yet: its cancel first read
    the history, waiting out the store's 8 s socket timeout, then the cancel's write waited as
    long again, so the SDK's 10 s deadline ran out first and it got DEADLINE_EXCEEDED, with
    nothing said of the change perhaps being applied (found in review). The commit waits for
    the history half a second at most, then goes on without it, as when it cannot be read."""
    redis, server = restartable.redis, restartable.server
    assert redis.process is not None
    async with grpc.aio.insecure_channel(server.target) as channel:  # created, never started
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="new"))).run.run_id
    async with runstream.connect(server.target) as client:
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(runstream.UnavailableError, match="may still be applied"):
                await client.cancel_run(run_id)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        # As the status advises: read the run before repeating the change.
        if (await client.get_run(run_id)).status.name != "CANCELLED":
            await client.cancel_run(run_id)
        assert (await client.get_run(run_id)).status.name == "CANCELLED"


async def test_callers_queued_behind_a_load_that_fails_share_its_unavailable(
    restartable: Restartable, tmp_path: Path
) -> None:
    """Redis frozen: four calls at once about a run this replica has not loaded (another
    replica created it). The first load waits out the store's socket timeout; the calls queued
    behind it on the run's lock each started a load of their own and waited as long again, so the
    fourth got UNAVAILABLE after 40 s (found in review). They share the first one's answer."""
    redis, server = restartable.redis, restartable.server
    assert redis.process is not None
    async with serving_on(redis.url, tmp_path / "other") as other:
        async with grpc.aio.insecure_channel(other.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
            created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
        run_id = created.run.run_id
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        began = time.monotonic()

        async def get() -> tuple[grpc.StatusCode, float, str]:
            try:
                await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=60)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), time.monotonic() - began, str(exc.details())
            return grpc.StatusCode.OK, time.monotonic() - began, ""

        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            answers = await asyncio.gather(*(get() for _ in range(4)))
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert [code for code, _, _ in answers] == [grpc.StatusCode.UNAVAILABLE] * 4
        assert max(at for _, at, _ in answers) < 2 * min(at for _, at, _ in answers), answers
        # A read is told it changed nothing, not sent to look for a change "still applied"
        # (found in review: the advice for writes was given to every call).
        for _, _, details in answers:
            assert "on a read, which changed nothing: try again" in details, details
            assert "may still be applied" not in details, details
        got = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=30)
        assert got.run.run_id == run_id


async def test_a_call_with_the_sdks_default_deadline_gets_the_stores_unavailable(
    restartable: Restartable,
) -> None:
    """With the SDK's default deadline (10 s) equal to the store's socket timeout, a cancel
    while Redis was frozen ended in the caller's own DEADLINE_EXCEEDED, so nobody read that
    it may still be applied, and it was (found in review)."""
    redis, server = restartable.redis, restartable.server
    assert redis.process is not None
    async with runstream.connect(server.target) as client:
        run = await client.start_run("wf", key_prefix="cancelled")
        await run.flush()
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(runstream.UnavailableError) as refused:
                await client.cancel_run(run.run_id, reason="frozen")
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert "may still be applied" in str(refused.value)
        await run.close()


async def test_the_cli_says_what_a_running_server_says_of_its_store_and_no_more(
    restartable: Restartable,
) -> None:
    """With its Redis down the server answers UNAVAILABLE naming the cause; the CLI added
    "(is a Runstream server running at ...?)", sending the operator to check a server that
    was running (found in review). That hint is for when nothing answers."""
    from tests.e2e.test_cli import runstream_cli

    redis, server = restartable.redis, restartable.server
    redis.stop()
    done = await asyncio.to_thread(runstream_cli, "runs", "--target", server.target)
    assert done.returncode == 1
    assert "the Redis store is unreachable" in done.stderr, done.stderr
    assert "is a Runstream server running" not in done.stderr, done.stderr
    nobody = await asyncio.to_thread(runstream_cli, "runs", "--target", "127.0.0.1:1")
    assert "is a Runstream server running at 127.0.0.1:1?" in nobody.stderr, nobody.stderr
