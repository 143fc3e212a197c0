"""GetStats through the raw stubs: the stream counts an operator reads follow the streams
clients hold open, on every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc, stats_service_pb2_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import stats_service_pb2 as ss
from runstream_server.observability.windows import LatencyWindow, RollingCounter

from tests.clients.support import until
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, ev


async def test_an_open_interact_stream_is_counted_until_it_closes(stubs: Stubs) -> None:
    stats = stats_service_pb2_grpc.StatsServiceStub(stubs.channel)
    decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
    run = await create_run(stubs, "review")
    asked = ev.DecisionRequested(
        decision_id="persona",
        prompt="Which persona first?",
        options=[ev.DecisionOption(value="pros", label="Pros")],
    )
    await append(stubs, run.run_id, ev.RunEvent(decision_requested=asked))

    async def interact_streams() -> int:
        answer = await stats.GetStats(ss.GetStatsRequest())
        return answer.stats.interact_streams

    assert await interact_streams() == 0
    hang_up = asyncio.Event()

    async def requests() -> AsyncIterator[ds.InteractRequest]:
        yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run.run_id]))
        await hang_up.wait()

    stream = decisions.Interact(requests())
    first = await anext(aiter(stream))
    assert first.prompt.decision_id == "persona"  # the server is serving the stream
    assert await interact_streams() == 1
    answer = await stats.GetStats(ss.GetStatsRequest())
    assert (answer.stats.watchers, answer.stats.watch_runs_streams) == (0, 0)
    stream.cancel()  # the person in the loop closes the tab
    hang_up.set()

    async def closed() -> bool:
        return await interact_streams() == 0

    await until(closed)
    assert await stream.code() == grpc.StatusCode.CANCELLED


async def test_watchers_and_producers_are_counted_each_as_their_own(stubs: Stubs) -> None:
    """Two watchers and one producer on a run read as two watchers and one producer."""
    stats = stats_service_pb2_grpc.StatsServiceStub(stubs.channel)
    run = await create_run(stubs)
    watches = [stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id)) for _ in range(2)]
    for watch in watches:
        await watch.initial_metadata()  # the watch is accepted
    hang_up = asyncio.Event()

    async def reports() -> AsyncIterator[rp.ReportRequest]:
        yield rp.ReportRequest(run_id=run.run_id, batch_id=1)
        await hang_up.wait()

    producer = stubs.report.Report(reports())
    assert (await anext(aiter(producer))).ack.batch_id == 1  # attached
    answer = await stats.GetStats(ss.GetStatsRequest())
    assert (answer.stats.watchers, answer.stats.producers) == (2, 1)
    for stream in (*watches, producer):
        stream.cancel()
    hang_up.set()

    async def closed() -> bool:
        answer = await stats.GetStats(ss.GetStatsRequest())
        return (answer.stats.watchers, answer.stats.producers) == (0, 0)

    await until(closed)


def test_the_last_minute_is_sixty_seconds_and_latencies_are_nearest_rank() -> None:
    """GetStats' last-minute figures: events added 60 s ago have left the count (its
    window is the 60 whole seconds to now), and the p50 of four latencies is the second."""
    now = [1000.0]
    counter = RollingCounter(clock=lambda: now[0])
    counter.add(5)
    now[0] += 59
    counter.add(2)
    assert counter.total() == 7
    now[0] += 1
    assert counter.total() == 2
    window = LatencyWindow(clock=lambda: now[0])
    for seconds in (0.4, 0.1, 0.3, 0.2):
        window.observe(seconds)
    assert window.percentiles(0.25, 0.5, 0.99) == [0.1, 0.2, 0.4]
