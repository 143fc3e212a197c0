"""A watcher that reads everything is never taken for one that stopped reading, however long
it idles between messages (``watch_send_timeout``; see test_send_stalls for the others)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, custom, ev, serving

# The send timeout: the commit path changes nothing here.
STORES = BOTH_STORES

TIMEOUT = 1.0


@pytest.fixture
async def timed(tmp_path: Path, server_config: ConfigFactory) -> AsyncIterator[Stubs]:
    config = server_config(tmp_path / "runstream.db", watch_send_timeout=TIMEOUT)
    async with serving(config) as (_, stubs):
        yield stubs


async def test_a_watcher_idle_longer_than_the_send_timeout_is_not_ended(timed: Stubs) -> None:
    """Its heartbeats come further apart than the send timeout: the send of its last message
    finished long ago, and nothing is under way while it idles."""
    run = await create_run(timed)
    await append(timed, run.run_id, custom(1))
    beat = duration_pb2.Duration(seconds=30)
    stream = timed.runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id, heartbeat_interval=beat))
    first = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert [e.seq for e in first.events] == [1, 2]
    await asyncio.sleep(2.5 * TIMEOUT)  # the clock looks at the stream every TIMEOUT / 4
    await append(timed, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    rest = [r async for r in stream]  # ends OK once the run ended
    assert [e.seq for r in rest for e in r.events] == [3]
