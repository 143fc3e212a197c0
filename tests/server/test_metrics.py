"""Prometheus metrics: scraped over real HTTP before and after a run, parsed by Prometheus's
own parser (prometheus_client.parser), and moved by exactly what the run did."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import runstream
from runstream import DecisionState, RunStatus
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.errors import Unavailable
from runstream_server.observability.windows import RollingCounter

from tests.clients.support import eventually
from tests.conftest import free_port
from tests.server.support import Samples, custom, ev, opened, scrape, scrape_blocking, value


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunstreamServer]:
    config = ServerConfig(
        address="127.0.0.1:0",
        store_path=tmp_path / "runstream.db",
        metrics_address="127.0.0.1:0",
    )
    srv = RunstreamServer(config)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


async def test_counters_and_histograms_move_by_what_a_run_did(server: RunstreamServer) -> None:
    before = await scrape(server)
    assert value(before, "runstream_watchers") == 0
    async with (
        runstream.connect(server.target) as producer,
        runstream.connect(server.target) as viewer,
    ):
        run = await producer.start_run("campaign", steps=["research", "persona", "copy"])
        seen: list[runstream.Event] = []

        async def follow() -> None:
            async for event in viewer.watch(run.run_id):
                seen.append(event)

        watching = asyncio.create_task(follow())
        await eventually(lambda: server.telemetry is not None and bool(seen))
        during = await scrape(server)
        assert value(during, "runstream_watchers") == 1
        assert value(during, "runstream_producers") == 1
        assert (
            value(during, "runstream_runs", status="running") >= 1
            or value(during, "runstream_runs", status="pending") >= 1
        )

        async with run:
            async with run.step("research"):
                pass
            async with run.step("persona"):
                asking = asyncio.create_task(
                    run.ask("Which persona?", ["hiker", "runner"], timeout=timedelta(minutes=5))
                )
                for _ in range(2000):
                    open_now = await viewer.list_decisions(run.run_id, state=DecisionState.OPEN)
                    if open_now:
                        break
                    await asyncio.sleep(0.01)
                asked = await scrape(server)
                assert value(asked, "runstream_decisions_open") == 1
                decision_id = open_now[0].decision_id
                await viewer.submit_decision(run.run_id, decision_id, "runner", answered_by="ana")
                assert (await asyncio.wait_for(asking, 20)).choice == "runner"
            async with run.step("copy"):
                pass
            await run.complete(summary="done")
        await asyncio.wait_for(watching, 20)
        with pytest.raises(runstream.NotFoundError):
            await viewer.get_run("no-such-run")
        final = await viewer.get_run(run.run_id)
        assert final.status == RunStatus.SUCCEEDED

    after = await scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("runstream_events_appended_total", kind="run_created") == 1
    assert moved("runstream_events_appended_total", kind="step_started") == 3
    assert moved("runstream_events_appended_total", kind="step_completed") == 3
    assert moved("runstream_events_appended_total", kind="decision_requested") == 1
    assert moved("runstream_events_appended_total", kind="decision_resolved") == 1
    assert moved("runstream_events_appended_total", kind="run_completed") == 1
    appended = sum(
        v - value(before, n, **dict(labels))
        for (n, labels), v in after.items()
        if n == "runstream_events_appended_total"
    )
    assert appended == final.last_seq  # every event of the run, counted once
    # The watcher got every event once; the delivery counter says so.
    assert moved("runstream_events_delivered_total") == len(seen) == final.last_seq
    assert moved("runstream_watcher_lag_events_count") >= 1
    # Watchers and producers up, then down again.
    assert value(after, "runstream_watchers") == 0
    assert value(after, "runstream_producers") == 0
    # The decision's answer time: one observation, answered, within the 5 minutes.
    assert moved("runstream_decision_answer_seconds_count", outcome="answered") == 1
    answer_seconds = moved("runstream_decision_answer_seconds_sum", outcome="answered")
    assert 0 <= answer_seconds < 300
    assert value(after, "runstream_decisions_open") == 0
    # Runs by status, and durable appends timed.
    assert moved("runstream_runs", status="succeeded") == 1
    assert value(after, "runstream_runs", status="running") == 0
    assert moved("runstream_append_duration_seconds_count") >= 1
    # Requests by method and code, including the failed one.
    assert (
        moved(
            "runstream_grpc_requests_total", method="runstream.v1.RunService/CreateRun", code="OK"
        )
        == 1
    )
    assert (
        moved(
            "runstream_grpc_requests_total",
            method="runstream.v1.RunService/GetRun",
            code="NOT_FOUND",
        )
        == 1
    )
    assert (
        moved(
            "runstream_grpc_request_duration_seconds_count",
            method="runstream.v1.RunService/WatchRun",
        )
        == 1
    )
    assert value(after, "runstream_store_errors_total", operation="append") == 0
    # Never a run id as a label.
    assert not any(run.run_id in str(labels) for (_, labels) in after)


async def test_calls_to_unknown_methods_count_as_other_unimplemented(
    server: RunstreamServer,
) -> None:
    """A method the server does not have is counted, under one label whatever its name."""
    before = await scrape(server)
    async with grpc.aio.insecure_channel(server.target) as channel:
        for method in ("/runstream.v1.RunService/Nope", "/foo.Bar/Baz", "/foo.Bar/Qux"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(method)(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = await scrape(server)
    labels = {"method": "other", "code": "UNIMPLEMENTED"}
    moved = value(after, "runstream_grpc_requests_total", **labels) - value(
        before, "runstream_grpc_requests_total", **labels
    )
    assert moved == 3
    assert not any("Nope" in str(labels) or "foo.Bar" in str(labels) for (_, labels) in after)


@contextlib.asynccontextmanager
async def serving(store: Path, *, metrics: bool = False) -> AsyncIterator[RunstreamServer]:
    """A server on `store` (with /metrics if asked), stopped on the way out."""
    config = ServerConfig(address="127.0.0.1:0", store_path=store)
    server = RunstreamServer(replace(config, metrics_address="127.0.0.1:0") if metrics else config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.5)


async def test_runs_by_status_are_counted_from_the_store_at_start(tmp_path: Path) -> None:
    """A restarted server reports the runs it already had, not only those it saw created."""
    store = tmp_path / "runstream.db"
    async with serving(store) as first, runstream.connect(first.target) as client:
        done = await client.start_run("wf", steps=["a"])
        async with done:
            await done.complete()
        await client.start_run("wf", steps=["a"])  # left running
    async with serving(store, metrics=True) as second:
        samples = await scrape(second)
        assert value(samples, "runstream_runs", status="succeeded") == 1
        assert (
            value(samples, "runstream_runs", status="pending")
            + value(samples, "runstream_runs", status="running")
            == 1
        )
        active = sum(v for (name, _), v in samples.items() if name == "runstream_active_runs")
        assert active == 1  # the run left running, whatever its health


async def test_a_run_id_in_use_is_the_callers_mistake_not_a_store_error(tmp_path: Path) -> None:
    """A CreateRun for a run id the store holds (its run not in memory: created before a
    restart, or by another replica) is refused by the store; it is answered ALREADY_EXISTS
    and counted by its code, not as a failed store append an alert would page for."""
    store = tmp_path / "runstream.db"
    async with serving(store) as first:
        assert first.runs is not None
        await first.runs.create_run(
            run_id="taken", workflow="wf", display_name="", labels={}, steps=[]
        )
    async with serving(store, metrics=True) as second, runstream.connect(second.target) as client:
        request = run_service_pb2.CreateRunRequest(run_id="taken", workflow="wf")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.raw_run_service.CreateRun(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        samples = await scrape(second)
        assert second.telemetry is not None
        assert second.telemetry.store_errors_total == 0
    assert value(samples, "runstream_store_errors_total", operation="append") == 0
    method = "runstream.v1.RunService/CreateRun"
    assert (
        value(samples, "runstream_grpc_requests_total", method=method, code="ALREADY_EXISTS") == 1
    )


async def test_a_failed_event_read_is_counted_under_its_operation(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListEvents reads the run's log from the store: when that read fails, the call is
    UNAVAILABLE and runstream_store_errors_total{operation="read_events"} says which."""
    runs = server.runs
    assert runs is not None and server._store is not None
    await runs.create_run(run_id="read", workflow="wf", display_name="", labels={}, steps=[])

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise Unavailable("the store is unreachable")

    monkeypatch.setattr(server._store.inner, "read_events", unreachable)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListEvents(run_service_pb2.ListEventsRequest(run_id="read"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    samples = await scrape(server)
    assert value(samples, "runstream_store_errors_total", operation="read_events") == 1


async def test_runs_not_yet_started_count_among_the_active_runs(
    server: RunstreamServer,
) -> None:
    """A PENDING run has no health yet: it is counted as "unspecified", so the health gauge
    adds up to the runs not ended (it left them out)."""
    async with runstream.connect(server.target) as client:
        for _ in range(2):
            await client.raw_run_service.CreateRun(
                run_service_pb2.CreateRunRequest(workflow="wf"), timeout=10
            )
        samples = await scrape(server)
    assert value(samples, "runstream_runs", status="pending") == 2
    assert value(samples, "runstream_active_runs", health="unspecified") == 2
    assert sum(v for (name, _), v in samples.items() if name == "runstream_active_runs") == 2


async def test_each_stream_gauge_counts_its_own_streams_and_each_open_question_counts(
    server: RunstreamServer,
) -> None:
    """Two watchers of one run and no producer read as two watchers and no producers, and a
    run with two questions waiting as two open decisions: the run's one producer and one
    question of the test above could not tell a gauge from its neighbour."""
    runs = server.runs
    assert runs is not None
    await runs.create_run(run_id="asking", workflow="wf", display_name="", labels={}, steps=[])
    for decision_id in ("persona", "channel"):
        question = ev.DecisionRequested(
            decision_id=decision_id,
            prompt="Which?",
            options=[ev.DecisionOption(value=v, label=v) for v in ("a", "b")],
        )
        await runs.append("asking", [ev.RunEvent(decision_requested=question)])
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        watches = [
            stub.WatchRun(run_service_pb2.WatchRunRequest(run_id="asking")) for _ in range(2)
        ]
        for watch in watches:
            await opened(watch)
        samples = await scrape(server)
        for watch in watches:
            watch.cancel()
    assert value(samples, "runstream_watchers") == 2
    assert value(samples, "runstream_producers") == 0
    assert value(samples, "runstream_decisions_open") == 2


def histogram(samples: Samples, name: str) -> tuple[list[tuple[float, float]], float, float]:
    """A histogram's (upper bound, cumulative count) buckets in order, its count and sum."""
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (n, labels), v in samples.items()
        if n == f"{name}_bucket"
    )
    return buckets, value(samples, f"{name}_count"), value(samples, f"{name}_sum")


async def test_histograms_are_cumulative_and_sum_what_they_observed(
    server: RunstreamServer,
) -> None:
    """The append duration and watcher lag histograms, which the server keeps itself: each
    bucket holds the observations at or below its bound (a watcher that read a whole ended
    run ends 0 events behind), +Inf holds them all, and the sum is of what was observed (the
    appends took less time than the test spent making them)."""
    runs = server.runs
    assert runs is not None
    began = time.monotonic()
    await runs.create_run(run_id="told", workflow="wf", display_name="", labels={}, steps=[])
    for n in range(3):
        await runs.append("told", [custom(n)])
    await runs.append("told", [ev.RunEvent(run_completed=ev.RunCompleted())])
    took = time.monotonic() - began
    before = await scrape(server)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        request = run_service_pb2.WatchRunRequest(run_id="told")
        assert [e.seq for r in [r async for r in stub.WatchRun(request)] for e in r.events]
    after = await scrape(server)
    for name in ("runstream_append_duration_seconds", "runstream_watcher_lag_events"):
        buckets, count, _ = histogram(after, name)
        assert count >= 1
        assert [n for _, n in buckets] == sorted(n for _, n in buckets), name
        assert buckets[-1] == (float("inf"), count), name
    _, appends, seconds = histogram(after, "runstream_append_duration_seconds")
    assert appends == 5
    assert 0 < seconds < took
    lag_before, deliveries_before, _ = histogram(before, "runstream_watcher_lag_events")
    lag_after, deliveries_after, _ = histogram(after, "runstream_watcher_lag_events")
    caught_up = dict(lag_after)[0.0] - dict(lag_before).get(0.0, 0.0)
    assert caught_up == deliveries_after - deliveries_before >= 1


async def test_the_delivered_counter_keeps_what_the_last_minute_lets_go(
    server: RunstreamServer,
) -> None:
    """runstream_events_delivered_total is a counter: a minute later it still holds every
    delivery, while GetStats' last-minute figure (the telemetry's clock moved on) has
    none. A counter that fell would read as a restart to rate()."""
    now = [1000.0]
    telemetry = server.telemetry
    assert telemetry is not None
    telemetry.delivered_recently = RollingCounter(clock=lambda: now[0])
    runs = server.runs
    assert runs is not None
    await runs.create_run(run_id="told", workflow="wf", display_name="", labels={}, steps=[])
    await runs.append("told", [ev.RunEvent(run_completed=ev.RunCompleted())])
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        request = run_service_pb2.WatchRunRequest(run_id="told")
        assert [r async for r in stub.WatchRun(request)]
    delivered = value(await scrape(server), "runstream_events_delivered_total")
    assert delivered == 2 == telemetry.delivered_recently.total()
    now[0] += 120
    assert telemetry.delivered_recently.total() == 0
    assert value(await scrape(server), "runstream_events_delivered_total") == delivered


async def test_a_call_past_its_deadline_counts_as_deadline_exceeded(
    server: RunstreamServer,
) -> None:
    """gRPC cancels the handler of a call whose deadline passed as it does one whose client
    hung up; the metric says which, as the client's status does (it said CANCELLED).

    The second call's deadline is one gRPC sends rounded up (1.002 s travels as 101 units of
    10 ms), so its client gives up, and its hang-up reaches the server, about 8 ms before the
    server's own deadline passes: it counted as CANCELLED, and so did, now and then, a call
    whose deadline was sent exactly but whose header the server read late under load."""
    method = "runstream.v1.RunService/WatchRuns"
    before = await scrape(server)
    async with runstream.connect(server.target) as client:
        for timeout in (0.3, 1.002):
            call = client.raw_run_service.WatchRuns(
                run_service_pb2.WatchRunsRequest(), timeout=timeout
            )
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for _ in call:
                    pass
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        call = client.raw_run_service.WatchRuns(run_service_pb2.WatchRunsRequest())
        await anext(aiter(call))
        call.cancel()

        def moved(code: str) -> float:
            now = value(after, "runstream_grpc_requests_total", method=method, code=code)
            return now - value(before, "runstream_grpc_requests_total", method=method, code=code)

        after = await scrape(server)
        for _ in range(100):  # the calls end on the server a moment after their clients'
            if moved("CANCELLED") >= 1 and moved("DEADLINE_EXCEEDED") >= 2:
                break
            await asyncio.sleep(0.05)
            after = await scrape(server)
    assert moved("DEADLINE_EXCEEDED") == 2
    assert moved("CANCELLED") == 1


async def test_decisions_open_at_start_are_counted_without_loading_their_runs(
    tmp_path: Path,
) -> None:
    """A restarted server reports the questions still waiting, and times their answers from
    when they were asked; counting them reads the store and leaves memory to runs in use."""
    store = tmp_path / "runstream.db"
    async with serving(store) as first:
        runs = first.runs
        assert runs is not None
        for run_id in ("waiting", "answered"):
            await runs.create_run(
                run_id=run_id, workflow="wf", display_name="", labels={}, steps=[]
            )
            question = ev.DecisionRequested(
                decision_id="persona",
                prompt="Which persona?",
                options=[ev.DecisionOption(value=v, label=v) for v in ("hiker", "runner")],
            )
            await runs.append(run_id, [ev.RunEvent(decision_requested=question)])
        await runs.submit_decision(
            "answered", "persona", choice="hiker", skip=False, answered_by="ana"
        )
    async with serving(store, metrics=True) as second:
        runs = second.runs
        assert runs is not None
        assert value(await scrape(second), "runstream_decisions_open") == 1
        assert runs.cached_runs == 0
        await runs.submit_decision(
            "waiting", "persona", choice="runner", skip=False, answered_by="ana"
        )
        after = await scrape(second)
        assert value(after, "runstream_decisions_open") == 0
        assert value(after, "runstream_decision_answer_seconds_count", outcome="answered") == 1


async def test_a_busy_metrics_port_is_refused_and_nothing_is_left_running(tmp_path: Path) -> None:
    first = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0", store_path=tmp_path / "a.db", metrics_address="127.0.0.1:0"
        )
    )
    await first.start()
    try:
        busy = f"127.0.0.1:{first.metrics_port}"
        second = RunstreamServer(
            ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "b.db", metrics_address=busy)
        )
        with pytest.raises(OSError, match="cannot serve metrics on"):
            await second.start()
    finally:
        await first.stop(grace=0.5)


async def test_a_port_alone_serves_every_interface_at_metrics_only_and_is_logged_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A port alone was logged as http://PORT:PORT/metrics; and every path answered with the
    metrics, so a scrape or probe at a mistyped path never failed."""
    port = free_port()
    config = ServerConfig(
        address="127.0.0.1:0", store_path=tmp_path / "a.db", metrics_address=str(port)
    )
    server = RunstreamServer(config)
    with caplog.at_level(logging.INFO, logger="runstream.server"):
        await server.start()
    try:
        assert f"metrics on http://0.0.0.0:{port}/metrics" in caplog.messages
        content_type, _ = await asyncio.to_thread(scrape_blocking, port)
        assert content_type.startswith("text/plain")
        for path in ("/", "/metric", "/metrics/", "/metrics/x", "/favicon.ico"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                await asyncio.to_thread(
                    urllib.request.urlopen, f"http://127.0.0.1:{port}{path}", timeout=10
                )
            assert refused.value.code == 404, path
            assert b"/metrics" in refused.value.read()
    finally:
        await server.stop(grace=0.5)
