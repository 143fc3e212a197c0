"""A stream that ended lets go of the runs it held in memory: the runs a producer reports on
or a viewer follows stay loaded while the stream is open (past the cache's limit if need be)
and leave like any other once it closes, so closed producers and dashboards do not fill the
server's memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import Limits

from tests.clients.support import until
from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, ev, serving

LIMITS = Limits(cached_runs=2, cached_ended_runs=1)
HELD = 4
"""Runs the stream holds: more than the cache keeps."""


async def interact(
    stubs: Stubs, run_ids: list[str]
) -> grpc.aio.StreamStreamCall[ds.InteractRequest, ds.InteractResponse]:
    """An Interact stream following the runs, once it was prompted for a question asked on
    each (which loads the run, held from then on)."""
    hang_up = asyncio.Event()

    async def requests() -> AsyncIterator[ds.InteractRequest]:
        yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=run_ids))
        await hang_up.wait()

    decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
    stream = decisions.Interact(requests())
    await stream.initial_metadata()  # subscribed
    for run_id in run_ids:
        await append(stubs, run_id, ask())
        assert (await anext(aiter(stream))).prompt.run_id == run_id
    return stream


async def reports(
    stubs: Stubs, run_ids: list[str]
) -> list[grpc.aio.StreamStreamCall[rp.ReportRequest, rp.ReportResponse]]:
    """A Report stream on each run, once each is acknowledged as attached."""
    hang_up = asyncio.Event()

    async def attach(run_id: str) -> AsyncIterator[rp.ReportRequest]:
        yield rp.ReportRequest(run_id=run_id, batch_id=1)
        await hang_up.wait()

    streams = [stubs.report.Report(attach(run_id)) for run_id in run_ids]
    for stream in streams:
        assert (await anext(aiter(stream))).ack.batch_id == 1
    return streams


async def held_then_let_go(
    server: RunstreamServer, stubs: Stubs, streams: Sequence[grpc.aio.Call]
) -> None:
    """Runs other than the streams' come and go through the cache: while the streams are
    open, the cache stays over its limit with the runs they hold; once they end, it is back
    within it."""
    runs = server.runs
    assert runs is not None

    async def after_another_run() -> int:
        other = await create_run(stubs)
        await append(stubs, other.run_id, custom(1))
        return runs.cached_runs

    assert await after_another_run() > LIMITS.cached_runs
    for stream in streams:
        stream.cancel()

    async def let_go() -> bool:
        return await after_another_run() <= LIMITS.cached_runs

    await until(let_go, within=10)


def ask() -> ev.RunEvent:
    question = ev.DecisionRequested(
        decision_id="persona", prompt="Who first?", options=[ev.DecisionOption(value="pros")]
    )
    return ev.RunEvent(decision_requested=question)


async def test_an_ended_interact_stream_lets_go_of_the_runs_it_followed(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with serving(server_config(tmp_path / "runstream.db", limits=LIMITS)) as (srv, stubs):
        followed = [(await create_run(stubs)).run_id for _ in range(HELD)]
        await held_then_let_go(srv, stubs, [await interact(stubs, followed)])


async def test_ended_report_streams_let_go_of_the_runs_they_reported_on(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with serving(server_config(tmp_path / "runstream.db", limits=LIMITS)) as (srv, stubs):
        produced = [(await create_run(stubs)).run_id for _ in range(HELD)]
        await held_then_let_go(srv, stubs, await reports(stubs, produced))
