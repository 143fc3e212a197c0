"""A replica whose Redis notice subscription goes silent: a link that drops packets without a
reset, or a connection still crawling on TCP's retransmission backoff after its link came
back. Nothing closes it, so the replica must find out by itself, subscribe again and resync;
until then its watchers would hear another replica's commits only at their heartbeats.

Real redis-server (the session's, under a key prefix of its own), two in-process replicas:
A reaches Redis through a TcpProxy, B directly.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
import redis.asyncio
from google.protobuf import duration_pb2
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs

from tests.clients.support import TcpProxy, eventually
from tests.conftest import RedisProcess, redis_store_url, serving_on


async def test_a_silent_notice_subscription_is_replaced_and_watchers_hear_the_other_replica(
    redis_server: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_store_url(redis_server, tmp_path)
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    via_proxy = url.replace(f":{redis_server.port}/", f":{proxy.port}/")
    tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
    try:
        async with (
            serving_on(via_proxy, tmp_path / "a", grace=None) as a,
            serving_on(url, tmp_path / "b", grace=None) as b,
            grpc.aio.insecure_channel(a.target) as on_a,
            grpc.aio.insecure_channel(b.target) as on_b,
            redis.asyncio.from_url(redis_server.url) as client,
        ):
            runs_a = run_service_pb2_grpc.RunServiceStub(on_a)
            runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
            report_b = report_service_pb2_grpc.ReportServiceStub(on_b)  # type: ignore[no-untyped-call]
            run_id = (await runs_b.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id
            seen: list[int] = []

            async def watch() -> None:  # no heartbeat (and so no head check) for 5 minutes
                request = rs.WatchRunRequest(
                    run_id=run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
                )
                async for response in runs_a.WatchRun(request):
                    seen.extend(e.seq for e in response.events)

            async def append() -> int:
                request = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick])
                return int((await report_b.AppendEvents(request)).last_seq)

            watcher = asyncio.create_task(watch())
            try:
                first = await append()
                await eventually(lambda: first in seen, within=10)  # A follows B's commits

                # A's subscription, as Redis sees it: the one pub/sub client behind the proxy.
                subscribers = await client.client_list(_type="pubsub")
                ports = [int(c["addr"].rsplit(":", 1)[1]) for c in subscribers]
                [notices] = [port for port in ports if port in proxy.upstream_ports]
                with caplog.at_level(logging.INFO, "runstream.store.redis"):
                    proxy.stall_connection(notices)
                    second = await append()
                    # Heard within seconds, rather than at a heartbeat 5 minutes away.
                    await eventually(lambda: second in seen, within=10)
                assert seen == list(range(1, second + 1))  # each once, in order
                said = [
                    (r.levelno, r.getMessage())
                    for r in caplog.records
                    if "notice subscription" in r.getMessage()
                ]
                assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said
                assert "did not answer the subscription's PING" in said[0][1]
            finally:
                watcher.cancel()
    finally:
        await proxy.close()
