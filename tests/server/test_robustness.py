"""Regressions from review: odd names, big events, forged tokens, bad times, bounded memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import Limits

from tests.conftest import ConfigFactory
from tests.server.support import append, create_run, custom, ev, seqs, watch_all


@pytest.mark.parametrize("workflow", ["build AND deploy", "ends with \\", 'a = "b'])
async def test_any_accepted_workflow_name_keeps_its_runs_writable(stubs, workflow) -> None:  # type: ignore[no-untyped-def]
    if '"' in workflow:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await create_run(stubs, "a", workflow=workflow)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return
    run = await create_run(stubs, "a", workflow=workflow)
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    listed = await stubs.runs.ListRuns(
        rs.ListRunsRequest(filter='workflow = "' + workflow.replace("\\", "\\\\") + '"')
    )
    assert [r.run_id for r in listed.runs] == [run.run_id]


async def test_a_quoted_and_is_part_of_the_value(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, labels={"team": "growth AND brand"})
    listed = await stubs.runs.ListRuns(
        rs.ListRunsRequest(filter='labels.team = "growth AND brand"')
    )
    assert [r.run_id for r in listed.runs] == [run.run_id]


async def test_large_events_are_delivered_in_messages_under_the_limit(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    for start in range(0, 60, 10):
        batch = []
        for n in range(start, start + 10):
            event = custom(n)
            event.custom.data.update({"blob": "x" * 100_000})
            batch.append(event)
        await append(stubs, run.run_id, *batch)
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    responses = await watch_all(stubs, run.run_id)
    assert seqs(responses) == list(range(1, 63))
    assert max(r.ByteSize() for r in responses) <= 1024 * 1024 + 200_000


async def test_forged_page_tokens_are_invalid_argument(stubs) -> None:  # type: ignore[no-untyped-def]
    await create_run(stubs)
    await create_run(stubs)
    first = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1))
    token = first.next_page_token
    middle = len(token) // 2
    forged = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1, page_token=forged))
    assert (info.value.code(), info.value.details().split(":")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )


async def test_impossible_times_are_invalid_argument(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    bad_time = custom(1)
    bad_time.event_time.CopyFrom(timestamp_pb2.Timestamp(seconds=10**12))
    long_wait = ev.RunEvent(
        decision_requested=ev.DecisionRequested(
            decision_id="d",
            prompt="?",
            options=[ev.DecisionOption(value="y")],
            timeout=duration_pb2.Duration(seconds=10**10),
        )
    )
    for event, field in (
        (bad_time, "events[0].event_time"),
        (long_wait, "events[0].decision_requested.timeout"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await append(stubs, run.run_id, event)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(field + ":")


async def test_ended_runs_are_evicted_from_memory_and_reload_on_use(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    server = RunstreamServer(server_config(tmp_path / "e.db", limits=Limits(cached_ended_runs=3)))
    await server.start()
    try:
        runs = server.runs
        assert runs is not None
        ids = []
        for n in range(10):
            run = await runs.create_run(
                run_id=f"r{n}", workflow="wf", display_name="", labels={}, steps=[]
            )
            await runs.append(run.run_id, [ev.RunEvent(run_completed=ev.RunCompleted())])
            ids.append(run.run_id)
        assert runs.cached_runs <= 3
        for _ in range(50):  # unknown ids cost no memory
            with pytest.raises(Exception, match="not found"):
                await runs.get_run("ghost")
        assert runs.cached_runs <= 3
        oldest = await runs.get_run(ids[0])  # reloaded from the store
        assert (oldest.run_id, oldest.last_seq) == ("r0", 2)
    finally:
        await server.stop(grace=0.1)


async def test_a_thousand_creates_at_once_all_succeed(stubs) -> None:  # type: ignore[no-untyped-def]
    """A thousand calls at once, more than the store has connections (on Redis, redis-py's
    pool of 100 refused the rest with MaxConnectionsError, which the server answered
    UNAVAILABLE): the calls over it wait for a connection instead."""
    requests = [rs.CreateRunRequest(workflow="burst") for _ in range(1000)]
    created = await asyncio.gather(*(stubs.runs.CreateRun(r) for r in requests))
    listed = await stubs.runs.ListRuns(
        rs.ListRunsRequest(filter='workflow = "burst"', page_size=1000)
    )
    assert len({c.run.run_id for c in created}) == 1000
    assert {r.run_id for r in listed.runs} == {c.run.run_id for c in created}
