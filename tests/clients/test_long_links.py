"""The SDK over a link with a long round trip (a producer on another continent, a satellite
link): found in review on real hosts, the SDK's channel gave each connection attempt 100 ms
(grpc.min_reconnect_backoff_ms, which gRPC also takes as the connect timeout), so at 300 ms
each way a first call took four connections and 1.9 s, and at 2.5 s each way none ever
connected ("timed out before receiving SETTINGS frame")."""

from __future__ import annotations

import asyncio

import runstream
from runstream_server.app import RunstreamServer

from tests.clients.support import proxy_to


async def test_a_client_connects_at_once_over_a_link_of_a_long_round_trip(
    server: RunstreamServer,
) -> None:
    port = int(server.target.rsplit(":", 1)[1])
    async with proxy_to(port) as proxy:
        proxy.delay = 0.3  # each way: HTTP/2's settings take 0.6 s to come back
        async with runstream.connect(proxy.target) as client:
            run = await asyncio.wait_for(client.start_run("far-away"), 20)
            await run.complete()
            await run.close()
        assert proxy.accepted == 1
