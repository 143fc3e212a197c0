"""A graceful stop as load balancers and probes see it through grpc.health.v1.

Health turns NOT_SERVING the moment the drain begins; open Watch streams say so and then end,
so they do not hold the stop for its grace; while calls in flight hold the drain, a Check
still gets an answer, NOT_SERVING, and new work is refused with UNAVAILABLE. Watch streams,
which need no token, are capped per server.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc, run_service_pb2, run_service_pb2_grpc
from runstream_server.api.introspection import HealthService
from runstream_server.app import RunstreamServer

from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import (
    append,
    create_run,
    custom,
    get_run,
    retry_info,
    serving,
    status_detail,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
RUN_SERVICE = "runstream.v1.RunService"
GRACE = 5.0
"""The stops' grace: long enough that a stop held for it fails the tests' 2 s bounds."""


def ask(service: str = "") -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


async def rest_of(watch: Any) -> list[int]:
    """The statuses a Watch stream still sends, until it ends."""
    statuses = []
    while (response := await watch.read()) is not grpc.aio.EOF:
        statuses.append(response.status)
    return statuses


async def watch_once_a_slot_frees(health: Any, service: str) -> tuple[Any, int]:
    """A Watch of `service` and its first status, asked again while the server has not yet
    seen a cancelled stream end (the cancel and the new call race to its event loop)."""
    for _ in range(100):
        watch = health.Watch(ask(service))
        try:
            return watch, (await watch.read()).status
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
        await asyncio.sleep(0.02)
    raise AssertionError("no Watch slot freed after a stream was cancelled")


async def test_stop_tells_health_watchers_not_serving_then_ends_their_streams(
    server: RunstreamServer,
) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = health.Watch(ask())
        service = health.Watch(ask(RUN_SERVICE))
        unknown = health.Watch(ask("no.such.Service"))
        assert (await overall.read()).status == SERVING
        assert (await service.read()).status == SERVING
        assert (await unknown.read()).status == SERVICE_UNKNOWN

        stopping = asyncio.create_task(server.stop(grace=GRACE))
        assert await rest_of(overall) == [NOT_SERVING]
        assert await rest_of(service) == [NOT_SERVING]
        assert await rest_of(unknown) == []  # woken too, to end
        for watch in (overall, service, unknown):
            assert await watch.code() == grpc.StatusCode.OK
        # Nothing else is open: the stop does not wait out its grace for the watchers.
        await asyncio.wait_for(stopping, 2)


async def test_check_answers_not_serving_while_a_call_in_flight_holds_the_drain(
    server: RunstreamServer,
) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        # A call in flight that only its client ends: a reflection session (grpcurl, grpcui).
        session = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        await session.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert (await session.read()).list_services_response.service
        watch = health.Watch(ask())
        assert (await watch.read()).status == SERVING

        stopping = asyncio.create_task(server.stop(grace=GRACE))
        assert (await watch.read()).status == NOT_SERVING  # the drain has begun
        assert (await health.Check(ask(), timeout=2)).status == NOT_SERVING
        async with grpc.aio.insecure_channel(server.target) as another:
            check = health_pb2_grpc.HealthStub(another).Check(ask(RUN_SERVICE), timeout=2)
            assert (await check).status == NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as info:
                runs = run_service_pb2_grpc.RunServiceStub(another)
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="late"), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (info.value.details() or "")
            # Refused before any of it was done: Envoy may send it to another replica.
            trailers = dict(info.value.trailing_metadata() or ())
            assert trailers["x-runstream-unprocessed"] == "shutting-down"
        assert not stopping.done()

        session.cancel()  # the last call in flight ends: the stop does not wait out its grace
        await asyncio.wait_for(stopping, 2)


async def test_a_drain_delay_answers_not_serving_and_serves_on_before_the_shutdown(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    server = RunstreamServer(server_config(tmp_path / "drain.db", drain_delay=1.0))
    await server.start()
    async with grpc.aio.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        stopping = asyncio.create_task(server.stop(grace=GRACE))
        await asyncio.sleep(0.1)
        assert (await health.Check(ask(), timeout=2)).status == NOT_SERVING
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="late"))
        assert created.run.run_id
        assert not stopping.done()
        await asyncio.wait_for(stopping, 3)


async def test_the_calls_in_flight_get_their_whole_grace_after_the_drain_delay(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The drain delay comes before the grace, not out of it: with a 1 s delay and a 2 s
    grace, a call in flight 2.5 s after the stop began is still served."""
    server = RunstreamServer(server_config(tmp_path / "drain.db", drain_delay=1.0))
    await server.start()
    async with grpc.aio.insecure_channel(server.target) as channel:
        session = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        await session.write(listing)
        assert (await session.read()).list_services_response.service
        stopping = asyncio.create_task(server.stop(grace=2.0))
        await asyncio.sleep(2.5)
        assert not session.done(), "the call was cut before its grace was over"
        await session.write(listing)
        assert (await session.read()).list_services_response.service
        session.cancel()
        await asyncio.wait_for(stopping, 2)


async def test_a_server_stopped_right_after_it_started_stops_at_once(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The store's background followers end when cancelled, even where the library under
    them swallowed the cancellation (a Redis pub/sub read did): a stop waited out its 5 s
    bound for them, on every Redis-backed server stopped right after it started."""
    for i in range(3):
        server = RunstreamServer(server_config(tmp_path / f"{i}.db"))
        await server.start()
        await asyncio.wait_for(server.stop(grace=GRACE), 2)


async def test_a_stopped_server_leaves_no_task_of_its_own_running(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A stop ends the work that ran beside the server, the store's health watch first:
    left running, it went on asking a closed store every half second in the caller's loop
    (an embedding application's, a test's)."""
    before = asyncio.all_tasks()
    server = RunstreamServer(server_config(tmp_path / "stopped.db"))
    await server.start()
    await server.stop(grace=0.5)
    left = sorted(task.get_name() for task in asyncio.all_tasks() - before)
    assert left == [], f"tasks left running after the stop: {left}"


async def test_watch_streams_past_the_cap_are_resource_exhausted_and_those_within_it_work(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The probe: unauthenticated Watch streams on made-up 2 KB names, 10,000 of them, grew the
    server by 90 MB. Past the cap a Watch is refused; a slot frees when a stream closes."""
    server = RunstreamServer(server_config(tmp_path / "runstream.db", health_watch_streams=2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            overall = health.Watch(ask())
            made_up = health.Watch(ask("x" * 2048))
            assert (await overall.read()).status == SERVING
            assert (await made_up.read()).status == SERVICE_UNKNOWN

            refused = health.Watch(ask("y" * 2048))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await refused.read()
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.details() == (
                "2 health Watch streams are open on this server, the most allowed; "
                "close one, or ask with Check"
            )
            assert retry_info(info.value) == 5.0
            assert (await health.Check(ask(), timeout=2)).status == SERVING

            made_up.cancel()
            service, status = await watch_once_a_slot_frees(health, RUN_SERVICE)
            assert status == SERVING

            stopping = asyncio.create_task(server.stop(grace=GRACE))
            assert await rest_of(overall) == [NOT_SERVING]
            assert await rest_of(service) == [NOT_SERVING]
            for watch in (overall, service):
                assert await watch.code() == grpc.StatusCode.OK
            await asyncio.wait_for(stopping, 2)
    finally:
        await server.stop(grace=0.5)


async def test_a_watch_writing_when_the_shutdown_begins_still_says_not_serving() -> None:
    """grpc_health raises its shutting-down flag before it sets NOT_SERVING, which waits for
    the lock a Watch holds while it writes: a Watch that finished writing SERVING then saw the
    flag ended its stream without ever saying NOT_SERVING (seen once in CI)."""
    service = HealthService()
    await service.set("", health_pb2.HealthCheckResponse.SERVING)
    sent: list[int] = []
    first_written = asyncio.Event()

    class Stream:
        async def write(self, response: health_pb2.HealthCheckResponse) -> None:
            sent.append(response.status)
            if len(sent) == 1:
                await first_written.wait()  # the first write is still on its way

    watch = asyncio.create_task(service.Watch(health_pb2.HealthCheckRequest(), Stream()))
    await asyncio.sleep(0.05)
    shutdown = asyncio.create_task(service.enter_graceful_shutdown())
    await asyncio.sleep(0.05)
    first_written.set()
    async with asyncio.timeout(5):
        await watch
        await shutdown
    assert sent == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]


async def test_calls_cut_at_the_end_of_the_grace_are_logged_with_their_method(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A call still in flight when the shutdown grace is over is cut by gRPC, and its client
    gets a bare UNAVAILABLE ("Cancelling all calls"): the log said only "stopped", so an
    operator could not tell a cut call from a client's own failure (found in review)."""
    caplog.set_level(logging.INFO, logger="runstream.server")
    async with grpc.aio.insecure_channel(server.target) as channel:
        # A call in flight that only its client ends: a reflection session.
        session = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
        await session.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert (await session.read()).list_services_response.service
        await server.stop(grace=0.3)
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            await session.read()
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "WARNING",
        "cutting 1 calls still in flight (the shutdown grace is over): "
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ) in said
    stopped = [message for level, message in said if message.startswith("stopped in ")]
    assert len(stopped) == 1 and stopped[0].endswith("; 1 calls in flight were cut"), said


async def test_the_drain_waits_for_calls_to_stop_coming_and_refuses_them_as_unprocessed(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """With a quiet period, calls a load balancer still sends during the drain reach the
    server and are refused as never acted on (retried elsewhere), not cut by gRPC's stop;
    the stop goes on once they stopped coming for that long."""
    server = RunstreamServer(server_config(tmp_path / "quiet.db", drain_quiet=1.0))
    await server.start()
    async with grpc.aio.insecure_channel(server.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="early"))
        stopping = asyncio.create_task(server.stop(grace=GRACE))
        for _ in range(5):  # 1.5 s of calls, each well within the quiet period of the last
            await asyncio.sleep(0.3)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="late"), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            trailers = dict(info.value.trailing_metadata() or ())
            assert trailers.get("x-runstream-unprocessed") == "shutting-down"
        assert not stopping.done()
        await asyncio.wait_for(stopping, 3)  # a quiet period after the last call


async def test_an_interact_stream_open_at_the_stop_ends_unavailable_for_the_viewer_to_reconnect(
    server: RunstreamServer,
) -> None:
    """Ended OK, the viewer's SDK would take the stream for finished and never follow its
    runs again; UNAVAILABLE (reason SHUTTING_DOWN) sends it to another replica."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        run = await create_run(Stubs.on(channel))
        call = decision_service_pb2_grpc.DecisionServiceStub(channel).Interact()
        await call.write(ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run.run_id])))
        await call.initial_metadata()  # subscribed
        stopping = asyncio.create_task(server.stop(grace=GRACE))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call.read(), 2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "server is shutting down; reconnect to resume"
        reason = status_detail(info.value, error_details_pb2.ErrorInfo)
        assert reason is not None and reason.reason == "SHUTTING_DOWN"
        await asyncio.wait_for(stopping, 2)


def held_appends(server: RunstreamServer) -> tuple[asyncio.Event, asyncio.Event]:
    """Holds the server's store appends from now on: each sets the first event as it reaches
    the store, then waits for the second before it writes."""
    assert server._store is not None
    inner = server._store.inner
    store_append, reached, release = inner.append, asyncio.Event(), asyncio.Event()

    async def held_append(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await release.wait()
        return await store_append(*args, **kwargs)

    inner.append = held_append
    return reached, release


async def test_a_commit_under_way_when_the_server_stops_is_stored_before_its_store_closes(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A call cut by the stop hands its commit to a task of its own, which the stop waits
    for before it closes the store: the store closed under it, and the commit, one the
    server had taken and begun, was lost with an error."""
    config = server_config(tmp_path / "commit.db")
    server = RunstreamServer(config)
    await server.start()
    async with grpc.aio.insecure_channel(server.target) as channel:
        stubs = Stubs.on(channel)
        run = await create_run(stubs)
        reached, release = held_appends(server)
        call = asyncio.ensure_future(append(stubs, run.run_id, custom(1)))
        await asyncio.wait_for(reached.wait(), 5)
        asyncio.get_running_loop().call_later(0.5, release.set)
        await server.stop(grace=0)
        with pytest.raises(grpc.aio.AioRpcError):
            await call  # cut by the stop: the producer sends it again, under its key
    async with serving(config) as (_, stubs):
        assert (await get_run(stubs, run.run_id)).last_seq == 2


async def test_a_stop_waits_for_no_commit_of_another_server_in_its_event_loop(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The commits a stop waits for are its own server's: with two servers in one event
    loop (an embedding, the demo's replicas), one stopped while the other's commit was held
    waited out the whole 5 s bound for it (found in review)."""
    busy = RunstreamServer(server_config(tmp_path / "busy.db"))
    idle = RunstreamServer(server_config(tmp_path / "idle.db"))
    await busy.start()
    await idle.start()
    release = asyncio.Event()
    try:
        async with grpc.aio.insecure_channel(busy.target) as channel:
            stubs = Stubs.on(channel)
            run = await create_run(stubs)
            reached, release = held_appends(busy)
            call = asyncio.ensure_future(append(stubs, run.run_id, custom(1)))
            await asyncio.wait_for(reached.wait(), 5)
            call.cancel()  # the producer gives up: its commit goes on in a task of its own
            await asyncio.wait_for(idle.stop(grace=0), 4)
    finally:
        release.set()
        await idle.stop(grace=0)
        await busy.stop(grace=0)
