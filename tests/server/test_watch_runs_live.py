"""WatchRuns after its initial state: heartbeats while nothing changes, a run that stops
matching the stream's filter told once more (with the state that left the filter, so a
client takes it off its list) then never again, and a run's viewer count told as watchers
come and go."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import duration_pb2
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, ev

RUNNING, SUCCEEDED = run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_SUCCEEDED


async def told(stream: Any, until: str, status: int) -> list[tuple[str, int]]:
    """The (run, status) pairs the stream sends up to `until`'s with `status`."""
    got: list[tuple[str, int]] = []
    async with asyncio.timeout(10):
        async for response in stream:
            got += [(run.run_id, run.status) for run in response.runs]
            if (until, status) in got:
                return got
    raise AssertionError(f"the stream ended first: {got}")


async def test_an_idle_watch_runs_stream_gets_heartbeats(stubs: Stubs) -> None:
    await create_run(stubs)
    stream = stubs.runs.WatchRuns(
        rs.WatchRunsRequest(heartbeat_interval=duration_pb2.Duration(nanos=100_000_000))
    )
    try:
        async with asyncio.timeout(10):
            responses = [await anext(aiter(stream)) for _ in range(4)]
    finally:
        stream.cancel()
    assert len(responses[0].runs) == 1 and responses[1].initial_state_complete
    assert all(r.HasField("heartbeat") and not r.runs for r in responses[2:])


async def test_a_run_that_stops_matching_is_told_once_more_then_no_more(stubs: Stubs) -> None:
    """Both ways a stream learns of a run: in its initial state, and live."""
    started = ev.RunEvent(run_started=ev.RunStarted())
    done = ev.RunEvent(run_completed=ev.RunCompleted())
    first = await create_run(stubs, workflow="going")
    await append(stubs, first.run_id, started)
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter="status = RUNNING"))
    try:
        assert await told(stream, first.run_id, RUNNING) == [(first.run_id, RUNNING)]
        assert (await anext(aiter(stream))).initial_state_complete
        later = await create_run(stubs, workflow="going")
        await append(stubs, later.run_id, started)
        assert await told(stream, later.run_id, RUNNING) == [(later.run_id, RUNNING)]
        await append(stubs, first.run_id, done)
        await append(stubs, later.run_id, done)
        await create_run(stubs, workflow="going")  # pending: never matches
        last = await create_run(stubs, workflow="going")
        await append(stubs, last.run_id, started)
        assert await told(stream, last.run_id, RUNNING) == [
            (first.run_id, SUCCEEDED),
            (later.run_id, SUCCEEDED),
            (last.run_id, RUNNING),
        ]
    finally:
        stream.cancel()


async def test_a_watcher_coming_and_going_is_told_as_the_runs_viewer_count(stubs: Stubs) -> None:
    run = await create_run(stubs)
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest())
    counts: list[int] = []
    try:
        async with asyncio.timeout(10):
            assert (await anext(aiter(stream))).runs[0].viewer_count == 0
            assert (await anext(aiter(stream))).initial_state_complete
            watch = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id))
            assert [e.seq for e in (await anext(aiter(watch))).events] == [1]
            counts += [r.viewer_count for r in (await anext(aiter(stream))).runs]
            watch.cancel()
            while counts[-1:] != [0]:
                counts += [r.viewer_count for r in (await anext(aiter(stream))).runs]
    finally:
        stream.cancel()
    assert counts == [1, 0]
