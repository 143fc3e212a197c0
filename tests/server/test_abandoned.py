"""A run whose producer is gone for good ends, when the server is told to end such runs.

A producer that crashed left its run RUNNING (or PENDING) and STALLED for ever: it never
ended, so retention, which purges ended runs' logs only, never freed it, and every list of
active runs showed it. With ``InsightPolicy.abandon_after`` (``serve --abandon-after``) the
stall check ends a run that stayed STALLED that much longer: a RunFailed with the error code
ABANDONED, which its watchers see like any other ending. Without it nothing changes.

The servers' clock is the test's (as in test_never_started): a run is silent because the
test moved the clock, never because the machine was slow.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import ConfigFactory, RedisProcess, redis_store_url
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import (
    Clock,
    append,
    clocked_replicas,
    clocked_server,
    create_run,
    ev,
    get_run,
    keyless,
    on_clock,
    rp,
    until_health,
)

# The stall check's timers: the commit path changes nothing here.
STORES = BOTH_STORES

STALL_AFTER = 60.0
ABANDON_AFTER = 3600.0
CHECK_EVERY = 0.1
PASSES = 3 * CHECK_EVERY  # long enough for two passes or more


def policy(abandon_after: float | None = ABANDON_AFTER) -> InsightPolicy:
    return InsightPolicy(
        stall_after=STALL_AFTER,
        start_within=STALL_AFTER,
        abandon_after=abandon_after,
        check_every=CHECK_EVERY,
    )


async def abandoned(stubs: Stubs, run_id: str) -> run_pb2.Run:
    """The run once the background check ended it (a pass every CHECK_EVERY)."""
    for _ in range(300):
        run = await get_run(stubs, run_id)
        if run.status == run_pb2.RUN_STATUS_FAILED:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} was not ended")


async def started_run(stubs: Stubs) -> run_pb2.Run:
    run = await create_run(stubs, "crawl")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(run_started=ev.RunStarted()),
        ev.RunEvent(step_started=ev.StepStarted(step_id="crawl")),
    )
    return run


async def test_a_run_stalled_past_abandon_after_ends_failed_abandoned_for_its_watchers(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with clocked_server(tmp_path, server_config, policy()) as (stubs, clock):
        run = await started_run(stubs)
        never_started = await create_run(stubs, "crawl")
        watch = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id))
        clock.move(STALL_AFTER + 1)
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        await until_health(stubs, never_started.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(ABANDON_AFTER - 60)  # stalled, not yet long enough
        await asyncio.sleep(PASSES)
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_RUNNING

        clock.move(120)
        events: list[Any] = []
        async with asyncio.timeout(15):
            async for response in watch:  # the watch ends with the run
                events.extend(response.events)
        failed = events[-1].run_failed
        assert (failed.error.code, failed.error.message) == (
            "ABANDONED",
            "abandoned: STALLED and silent for 1h 1m, no report from its producer; the server "
            "ends a run that stays so for longer than 1h",
        )
        ended = await get_run(stubs, run.run_id)
        assert ended.status == run_pb2.RUN_STATUS_FAILED
        assert ended.error.code == "ABANDONED"
        other = await abandoned(stubs, never_started.run_id)  # checked in the same passes
        assert other.error.message.startswith(
            "abandoned: STALLED and silent for 1h 1m, never started by its producer;"
        )

        # The producer coming back finds its run ended, as after any ending.
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        active = await stubs.runs.ListRuns(rs.ListRunsRequest(filter="status = RUNNING"))
        assert list(active.runs) == []


async def test_a_stalled_run_whose_producer_reports_again_is_not_abandoned(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A report within the hour makes the run HEALTHY: it ends only once STALLED again, and
    for longer than the hour from then."""
    async with clocked_server(tmp_path, server_config, policy()) as (stubs, clock):
        run = await started_run(stubs)
        clock.move(STALL_AFTER + 1)
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(ABANDON_AFTER - 100)
        progress = ev.StepProgress(step_id="crawl", percent=50.0)
        await append(stubs, run.run_id, ev.RunEvent(step_progress=progress))
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_HEALTHY)
        clock.move(ABANDON_AFTER)  # past the hour since the first stall: stalled again only
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        await asyncio.sleep(PASSES)
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_RUNNING
        clock.move(ABANDON_AFTER + 1)
        assert (await abandoned(stubs, run.run_id)).error.code == "ABANDONED"


async def test_without_abandon_after_a_silent_run_waits_for_its_producer(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with clocked_server(tmp_path, server_config, policy(None)) as (stubs, clock):
        run = await started_run(stubs)
        clock.move(STALL_AFTER + 1)
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(365 * 86400)
        await asyncio.sleep(PASSES)
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_RUNNING
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_SUCCEEDED


async def test_two_replicas_end_an_abandoned_run_once(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """Both replicas check the same STALLED run in the shared store at the same moment: one
    RunFailed is written, and both answer FAILED."""
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    redis: RedisProcess = request.getfixturevalue("redis_server")
    url = redis_store_url(redis, tmp_path / "shared")
    clock = Clock()
    async with clocked_replicas(url, tmp_path, policy(), clock) as ((a, stubs_a), (b, stubs_b)):
        run = await started_run(stubs_a)
        clock.move(STALL_AFTER + 1)
        await until_health(stubs_b, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(ABANDON_AFTER + 1)
        assert a.runs is not None and b.runs is not None
        # Both checks at once, besides the replicas' own background ones: the race itself.
        await asyncio.gather(a.runs._stalls.check(), b.runs._stalls.check())
        for stubs in (stubs_a, stubs_b):
            assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_FAILED
        response = await stubs_b.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, filter="kind = RUN_FAILED")
        )
        assert [e.run_failed.error.code for e in response.events] == ["ABANDONED"]


async def test_a_producer_still_attached_is_told_to_stop_and_one_attaching_later_too(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Silence is all the server can judge (a hung producer keeps its stream open), so a
    producer only slow, its Report stream open, gets a CANCEL control saying why at once,
    rather than working on until its next report is refused; one that attaches after the
    run ended gets it as it attaches."""
    async with clocked_server(tmp_path, server_config, policy()) as (stubs, clock):
        run = await started_run(stubs)
        report = stubs.report.Report()
        await report.write(rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[keyless(1)]))
        assert (await report.read()).ack.batch_id == 1
        clock.move(STALL_AFTER + 1)
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(ABANDON_AFTER + 1)
        async with asyncio.timeout(15):
            control = (await report.read()).control
        assert (control.action, control.status) == (
            rp.CONTROL_ACTION_CANCEL,
            run_pb2.RUN_STATUS_FAILED,
        )
        assert control.reason.startswith("abandoned: STALLED and silent for 1h")
        await report.done_writing()
        later = stubs.report.Report()
        await later.write(rp.ReportRequest(run_id=run.run_id))
        async with asyncio.timeout(15):
            told = (await later.read()).control
        assert (told.action, told.reason) == (rp.CONTROL_ACTION_CANCEL, control.reason)
        later.cancel()


async def test_a_producer_that_reports_as_the_run_is_judged_keeps_it(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The check lists a run STALLED and silent too long, and its producer reports before
    the check's write: the write, judged again on the committed state, does nothing."""
    clock = Clock()
    # abandon_after unset: no background check abandons it; the test makes the check's call.
    server = RunstreamServer(server_config(tmp_path / "p.db", insight=policy(None)))
    await server.start()
    on_clock(server, clock)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            run = await started_run(stubs)
            clock.move(STALL_AFTER + 1)
            await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
            clock.move(ABANDON_AFTER + 1)
            progress = ev.StepProgress(step_id="crawl", percent=50.0)
            await append(stubs, run.run_id, ev.RunEvent(step_progress=progress))
            assert server.runs is not None
            running = run_pb2.RUN_STATUS_RUNNING
            await server.runs._stalls.abandon(run.run_id, running, ABANDON_AFTER)
            now = await get_run(stubs, run.run_id)
    finally:
        await server.stop(grace=0.1)
    assert (now.status, now.health) == (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_HEALTH_HEALTHY)


async def test_time_the_server_was_down_is_not_counted_and_a_paused_run_is_left_alone(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A run STALLED for most of the hour, then the server down for two: the producer could
    not have reported meanwhile, so the run gets the hour again from the server's return.
    A paused run is never stalled, so never abandoned."""
    clock = Clock()
    async with clocked_server(tmp_path, server_config, policy(), clock) as (stubs, _):
        run = await started_run(stubs)
        paused = await started_run(stubs)
        await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=paused.run_id, reason="lunch"))
        clock.move(STALL_AFTER + 1)
        await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        clock.move(ABANDON_AFTER - 60)
    clock.move(2 * ABANDON_AFTER)  # down
    async with clocked_server(tmp_path, server_config, policy(), clock) as (stubs, _):
        await asyncio.sleep(PASSES)  # passes on its return
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_RUNNING
        clock.move(ABANDON_AFTER + 1)
        assert (await abandoned(stubs, run.run_id)).error.code == "ABANDONED"
        assert (await get_run(stubs, paused.run_id)).status == run_pb2.RUN_STATUS_PAUSED


async def test_a_producer_whose_clock_is_days_off_is_stalled_and_abandoned_on_time(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Silence is counted from when the server received the last event, by its own clock,
    not from the event's time: a producer whose clock ran 2 days ahead kept its run HEALTHY
    for 2 days (it seemed to have spoken in the future), so it was never abandoned; one
    2 days behind was STALLED by the first check after a restart (which forgets when it last
    heard each producer), as soon as it went quiet."""
    clock = Clock()

    async def skewed_run(stubs: Stubs, skew: timedelta) -> str:
        run = await create_run(stubs, "crawl")
        events = [
            ev.RunEvent(run_started=ev.RunStarted()),
            ev.RunEvent(step_started=ev.StepStarted(step_id="crawl")),
        ]
        for event in events:
            event.event_time.FromDatetime(clock.now + skew)
        await append(stubs, run.run_id, *events)
        return run.run_id

    async with clocked_server(tmp_path, server_config, policy(), clock) as (stubs, _):
        ahead = await skewed_run(stubs, timedelta(days=2))
        behind = await skewed_run(stubs, -timedelta(days=2))
    async with clocked_server(tmp_path, server_config, policy(), clock) as (stubs, _):
        await asyncio.sleep(PASSES)  # passes after the restart
        assert (await get_run(stubs, behind)).health == run_pb2.RUN_HEALTH_HEALTHY
        clock.move(STALL_AFTER + 1)
        for run_id in (ahead, behind):
            stalled = await until_health(stubs, run_id, run_pb2.RUN_HEALTH_STALLED)
            assert stalled.health_reason == "crawl: no report for 61s (expected within 60s)"
        clock.move(ABANDON_AFTER + 1)
        for run_id in (ahead, behind):
            assert (await abandoned(stubs, run_id)).error.code == "ABANDONED"
