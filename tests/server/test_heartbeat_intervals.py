"""Streams with different heartbeat intervals share the server's one heartbeat clock: a
stream that asks for short heartbeats gets them though a stream with long ones, opened
before it, set the clock's next turn far off."""

from __future__ import annotations

import asyncio

from google.protobuf import duration_pb2
from runstream.v1 import run_service_pb2

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import create_run

# Heartbeats are timers: the commit path changes nothing here.
STORES = BOTH_STORES


async def test_a_short_heartbeat_comes_though_a_long_one_was_asked_first(stubs: Stubs) -> None:
    run = await create_run(stubs)
    slow = stubs.runs.WatchRun(
        run_service_pb2.WatchRunRequest(
            run_id=run.run_id, after_seq=1, heartbeat_interval=duration_pb2.Duration(seconds=300)
        )
    )
    try:
        await asyncio.wait_for(slow.initial_metadata(), 5)  # on the clock, due in 5 minutes
        fast = stubs.runs.WatchRun(
            run_service_pb2.WatchRunRequest(
                run_id=run.run_id,
                after_seq=1,
                heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
            )
        )
        beats = 0
        async with asyncio.timeout(10):
            async for response in fast:
                assert response.HasField("heartbeat") and response.heartbeat.head_seq == 1
                beats += 1
                if beats == 3:
                    break
        fast.cancel()
    finally:
        slow.cancel()
