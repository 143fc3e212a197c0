"""Long-lived background tasks that die of an error: the death is heard at once.

A server whose store-health watcher died must not go on answering SERVING (its health no
longer follows the store), and the death is logged at ERROR with its traceback; a store's
own background work (the Redis filter-index walks) dying is logged the same way. No real
cause of such a death is known (they would be bugs), so each is forced with monkeypatch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream_server.app import RunstreamServer
from runstream_server.observability import ObservedStore
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.redis_filters import FilterIndexes

from tests.clients.support import eventually, until
from tests.conftest import ConfigFactory, RedisProcess, redis_store_url
from tests.server.conftest import BOTH_STORES

STORES = BOTH_STORES

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _death_logged(caplog: pytest.LogCaptureFixture, task: str, cause: str) -> bool:
    """Whether the death of the background task `task` of `cause` was logged at ERROR,
    with its traceback."""
    return any(
        r.levelno == logging.ERROR
        and task in r.getMessage()
        and r.exc_info is not None
        and cause in str(r.exc_info[1])
        for r in caplog.records
    )


async def test_health_says_not_serving_once_its_store_watch_died(
    tmp_path: Path,
    server_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_ping(self: ObservedStore) -> bool:
        raise RuntimeError("a bug in the store's ping")

    monkeypatch.setattr(ObservedStore, "ping", broken_ping)
    server = RunstreamServer(server_config(tmp_path / "s.db"))
    caplog.set_level(logging.ERROR, "runstream.server")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            ask = health_pb2.HealthCheckRequest

            async def not_serving() -> bool:
                return bool((await health.Check(ask(), timeout=2)).status == NOT_SERVING)

            await until(not_serving, within=10)
            for service in ("runstream.v1.RunService", "runstream.v1.ReportService"):
                assert (await health.Check(ask(service=service), timeout=2)).status == NOT_SERVING
            # Liveness still answers: the process is up, only readiness is in doubt.
            live = await health.Check(ask(service="liveness"), timeout=2)
            assert live.status == health_pb2.HealthCheckResponse.SERVING
        assert _death_logged(caplog, "runstream-store-health", "a bug in the store's ping")
    finally:
        await server.stop(grace=0.1)


async def test_a_redis_store_whose_filter_walk_died_says_so(
    redis_server: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_walk(self: FilterIndexes) -> int:
        raise KeyError("a bug in the walk")

    monkeypatch.setattr(FilterIndexes, "catch_up", broken_walk)
    caplog.set_level(logging.ERROR, "runstream.server")
    store = RedisEventStore(redis_store_url(redis_server, tmp_path / "walk"))
    await store.open()
    try:
        await eventually(lambda: _death_logged(caplog, "filter-walks", "a bug in the walk"))
    finally:
        await store.close()
