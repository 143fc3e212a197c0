"""With Redis as the store, a replica's trouble reaching Redis shows in its metrics and
stats: failed operations and failed health pings while Redis is down, by operation; the
notice subscription's reconnect once Redis is back; and the replica carries on."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest
import runstream
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.app import LIVENESS_SERVICE, RunstreamServer, ServerConfig
from runstream_server.domain.following import Notices
from runstream_server.errors import Unavailable
from runstream_server.store.base import CommitNotice

from tests.conftest import RedisProcess, redis_store_url, replicas_serving, serving_on
from tests.server.support import custom

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health(target: str, service: str) -> int:
    """What grpc.health.v1 Check says for `service`, as a Kubernetes probe would ask."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def errors(samples: Samples) -> dict[str, float]:
    """Store errors by operation."""
    return {
        dict(labels)["operation"]: value
        for (name, labels), value in samples.items()
        if name == "runstream_store_errors_total"
    }


async def until(port: int, name: str, labels: dict[str, str], at_least: float) -> Samples:
    for _ in range(600):
        samples = await asyncio.to_thread(scrape, port)
        if samples.get((name, frozenset(labels.items())), 0) >= at_least:
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {at_least}")


async def test_redis_errors_and_reconnects_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "runstream.monitors")
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=tmp_path / "unused.db",
            store_url=redis.url,
            metrics_address="127.0.0.1:0",
        )
    )
    await server.start()
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("redis-metrics", steps=["a"])
            await run.flush()
            before = await asyncio.to_thread(scrape, server.metrics_port)
            assert (
                before.get(
                    ("runstream_store_errors_total", frozenset({("operation", "append")})), 0
                )
                == 0
            )

            redis.kill()
            await asyncio.sleep(2.5)  # a few stall checks (one a second) while Redis is down
            async with grpc.aio.insecure_channel(server.target) as channel:
                report = report_service_pb2_grpc.ReportServiceStub(channel)  # type: ignore[no-untyped-call]
                event = event_pb2.RunEvent(
                    idempotency_key="k1", custom=event_pb2.Custom(type="tick")
                )
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await report.AppendEvents(
                        report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[event])
                    )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            # Out of rotation (readiness), but alive (liveness): no restart while Redis is down.
            for _ in range(600):
                if await health(server.target, "") == NOT_SERVING:
                    break
                await asyncio.sleep(0.05)
            assert await health(server.target, "") == NOT_SERVING
            assert await health(server.target, LIVENESS_SERVICE) == SERVING
            down = await until(
                server.metrics_port, "runstream_store_errors_total", {"operation": "ping"}, 1
            )
            # The refused append failed at its one Redis operation (the append script).
            assert errors(down).keys() >= {"ping", "append"}, errors(down)

            # Subscribing at start is no reconnect.
            reconnects_before = before.get(("runstream_store_reconnects_total", frozenset()), 0)
            assert reconnects_before == 0
            redis.start()  # same port, same directory: the AOF brings the data back
            # The replica's one notice subscription comes back, and that is counted.
            await until(
                server.metrics_port, "runstream_store_reconnects_total", {}, reconnects_before + 1
            )
            # The stall checks that failed meanwhile said so once, in a line, no traceback.
            stalls = [
                r
                for r in caplog.records
                if r.getMessage().startswith("stall check") and r.levelno >= logging.WARNING
            ]
            assert [(r.levelname, r.exc_info) for r in stalls] == [("WARNING", None)]
            assert "the Redis store is unreachable" in stalls[0].getMessage()
            stats = await client.get_stats()
            assert stats.store_kind == "redis"
            assert stats.store_errors_total >= 2
            await run.complete()
            assert (await client.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED
    finally:
        await server.stop(grace=0.5)
        redis.stop()


@pytest.mark.parametrize("operation", ["changed_since", "load_runs"])
async def test_a_failed_read_after_a_notice_gap_is_counted_by_operation(
    redis_server: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    """After a gap in notices a WatchRuns stream reads the runs that may have changed
    (changed_since) and their snapshots (load_runs). When Redis fails that read, the stream
    ends UNAVAILABLE and the failure is counted under the operation's name. Found in review:
    the store wrapper did not define these two, so their failures were not counted."""
    url = redis_store_url(redis_server, tmp_path / "store")
    async with (
        serving_on(url, tmp_path / "a", metrics_address="127.0.0.1:0") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
        watch = runs.WatchRuns(run_service_pb2.WatchRunsRequest())
        async for response in watch:
            if response.initial_state_complete:
                break
        assert server._store is not None and server.runs is not None

        async def unreachable(*args: object) -> None:
            raise Unavailable("the Redis store is unreachable")

        monkeypatch.setattr(server._store.inner, operation, unreachable)
        server.runs._notices.on_notice(None)  # a gap in the notices: the stream reads again
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(10):
                async for _ in watch:
                    pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        samples = await asyncio.to_thread(scrape, server.metrics_port)
        assert errors(samples).get(operation) == 1, errors(samples)


async def test_an_append_another_replica_got_to_first_is_a_conflict_not_an_error(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A appends on a head B has moved (B's notice lost): the store refuses it, A
    reloads and retries, and the append succeeds. That race is counted as a conflict, not
    as a failed store append, which an alert on store errors would page for."""
    on_notice = Notices.on_notice

    def lose_commits(self: Notices, notice: object) -> None:
        if not isinstance(notice, CommitNotice):
            on_notice(self, notice)  # type: ignore[arg-type]

    monkeypatch.setattr(Notices, "on_notice", lose_commits)
    url = redis_store_url(redis_server, tmp_path / "store")
    async with replicas_serving(url, tmp_path, metrics_address="127.0.0.1:0") as ((a, _), (b, _)):
        assert a.runs is not None and b.runs is not None
        await a.runs.create_run(run_id="raced", workflow="wf", display_name="", labels={}, steps=[])
        await b.runs.append("raced", [custom(1)])
        await a.runs.append("raced", [custom(2)])  # on seq 1, where A last saw the run
        assert (await a.runs.get_run("raced")).last_seq == 3
        samples = await asyncio.to_thread(scrape, a.metrics_port)
    assert samples.get(("runstream_store_conflicts_total", frozenset())) == 1
    assert errors(samples).get("append", 0) == 0
