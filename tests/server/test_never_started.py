"""A run whose producer never started it is STALLED after a while, and says why.

A run is created PENDING and starts with its producer's first event. A producer that dies in
between (a crash right after CreateRun, a deploy) left the run PENDING forever with nothing
saying anything was wrong. Now the stall check also looks at PENDING runs: one not started
within ``InsightPolicy.start_within`` of its creation gets a HealthChanged to STALLED with a
reason, keeps its status, and recovers when its producer starts it after all.

The servers' clock is the test's (``RunManager._clock``, as in test_decisions): a run is late
because the test moved the clock, never because the machine was slow; the stall check runs
in the background at its usual interval (a second here).
"""

from __future__ import annotations

import asyncio
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import pytest
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain import insight
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import ConfigFactory, RedisProcess, redis_store_url, serving_on
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import (
    Clock,
    append,
    clocked_replicas,
    clocked_server,
    create_run,
    ev,
    get_run,
    wall_clock_off,
)

# The stall check's timers: the commit path changes nothing here.
STORES = BOTH_STORES

START_WITHIN = 60.0
CHECK_EVERY = 0.1
# Running runs: the defaults (300 s).
POLICY = InsightPolicy(start_within=START_WITHIN, check_every=CHECK_EVERY)


async def stalled(stubs: Stubs, run_id: str) -> run_pb2.Run:
    """The run once the background check has marked it STALLED (at most a few passes)."""
    for _ in range(300):  # 15 s: many passes
        run = await get_run(stubs, run_id)
        if run.health == run_pb2.RUN_HEALTH_STALLED:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} was not marked STALLED")


async def health_changes(stubs: Stubs, run_id: str) -> list[Any]:
    """Every HealthChanged in the run's stored log, oldest first."""
    response = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run_id, filter="kind = HEALTH_CHANGED", page_size=100)
    )
    return [e.health_changed for e in response.events]


async def test_a_run_never_started_is_stalled_with_a_reason_and_recovers_when_it_starts(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with clocked_server(tmp_path, server_config, POLICY) as (stubs, clock):
        run = await create_run(stubs, "crawl", workflow="research")
        watch = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id))
        seen: list[Any] = []

        async def watched(kind: str) -> Any:
            """The next event of this kind the watcher receives."""
            async with asyncio.timeout(15):
                async for response in watch:
                    seen.extend(response.events)
                    found = [e for e in response.events if e.HasField(kind)]
                    if found:
                        return found[0]
            raise AssertionError(f"the watch ended before a {kind}")

        clock.move(START_WITHIN + 300)  # ten minutes after CreateRun, still not started
        change = (await watched("health_changed")).health_changed
        assert change.health == run_pb2.RUN_HEALTH_STALLED
        assert change.reason == (
            "created 6m ago and never started: its producer may have stopped before its first event"
        )

        now = await stalled(stubs, run.run_id)
        assert now.status == run_pb2.RUN_STATUS_PENDING  # stalled is health, not status
        assert not now.HasField("start_time") and not now.HasField("estimate")
        listed = await stubs.runs.ListRuns(rs.ListRunsRequest(filter="status = PENDING"))
        assert [(r.run_id, r.health) for r in listed.runs] == [
            (run.run_id, run_pb2.RUN_HEALTH_STALLED)
        ]

        # Its producer was only slow: it starts the run, which runs like any other.
        clock.move(5)
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(run_started=ev.RunStarted()),
            ev.RunEvent(step_started=ev.StepStarted(step_id="crawl")),
        )
        recovered = (await watched("health_changed")).health_changed
        assert (recovered.previous_health, recovered.health, recovered.reason) == (
            run_pb2.RUN_HEALTH_STALLED,
            run_pb2.RUN_HEALTH_HEALTHY,
            "the run started",
        )
        started = await get_run(stubs, run.run_id)
        assert (started.status, started.health) == (
            run_pb2.RUN_STATUS_RUNNING,
            run_pb2.RUN_HEALTH_HEALTHY,
        )
        assert started.start_time.ToDatetime(UTC) == clock.now
        assert started.current_step_id == "crawl"
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        assert (await get_run(stubs, run.run_id)).status == run_pb2.RUN_STATUS_SUCCEEDED
        watch.cancel()
        assert [c.health for c in await health_changes(stubs, run.run_id)] == [
            run_pb2.RUN_HEALTH_STALLED,
            run_pb2.RUN_HEALTH_HEALTHY,
        ]


async def test_a_run_never_started_of_a_workflow_with_history_stays_pending(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """With runs of its workflow done before, the stall check also wrote an estimate from
    their history, and that estimate started the run: RUNNING with a start time, pausable,
    and judged as a running run, while its reason said it never started (found in review)."""
    async with clocked_server(tmp_path, server_config, POLICY) as (stubs, clock):
        done = await create_run(stubs, "crawl", workflow="research")
        await append(
            stubs,
            done.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="crawl")),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="crawl")),
            ev.RunEvent(run_completed=ev.RunCompleted()),
        )
        idle = await create_run(stubs, "crawl", workflow="research")
        clock.move(START_WITHIN + 5)
        now = await stalled(stubs, idle.run_id)
        assert (now.status, now.HasField("start_time")) == (run_pb2.RUN_STATUS_PENDING, False)
        with pytest.raises(grpc.aio.AioRpcError) as paused:
            await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=idle.run_id))
        assert paused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_run_started_in_time_is_never_stalled_for_it(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Two runs created together: the one whose producer started it within the threshold
    stays HEALTHY past it; the one never started is STALLED in the same check."""
    async with clocked_server(tmp_path, server_config, POLICY) as (stubs, clock):
        started = await create_run(stubs, "a")
        forgotten = await create_run(stubs, "a")
        clock.move(START_WITHIN - 1)
        await append(stubs, started.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
        clock.move(START_WITHIN)  # past the threshold for both; the started one spoke 60 s ago

        await stalled(stubs, forgotten.run_id)
        run = await get_run(stubs, started.run_id)
        assert (run.status, run.health) == (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_HEALTH_HEALTHY)
        assert await health_changes(stubs, started.run_id) == []


async def test_a_run_cancelled_before_it_starts_is_not_stalled(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Cancelled while PENDING, it has ended: no check looks at it any more."""
    async with clocked_server(tmp_path, server_config, POLICY) as (stubs, clock):
        cancelled = await create_run(stubs)
        forgotten = await create_run(stubs)
        await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=cancelled.run_id, reason="typo"))
        clock.move(START_WITHIN * 2)
        await stalled(stubs, forgotten.run_id)
        run = await get_run(stubs, cancelled.run_id)
        assert run.status == run_pb2.RUN_STATUS_CANCELLED
        assert run.health != run_pb2.RUN_HEALTH_STALLED
        assert await health_changes(stubs, cancelled.run_id) == []


async def test_two_replicas_record_a_run_never_started_once(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """Both replicas check the same PENDING run in the shared store, at the same moment;
    one HealthChanged is written, and both answer STALLED."""
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    redis: RedisProcess = request.getfixturevalue("redis_server")
    url = redis_store_url(redis, tmp_path / "shared")
    clock = Clock()
    async with clocked_replicas(url, tmp_path, POLICY, clock) as ((a, stubs_a), (b, stubs_b)):
        run = await create_run(stubs_a, "a")
        clock.move(START_WITHIN + 1)
        assert a.runs is not None and b.runs is not None
        # Both checks at once, besides the replicas' own background ones: the race itself.
        await asyncio.gather(a.runs._stalls.check(), b.runs._stalls.check())
        for stubs in (stubs_a, stubs_b):
            assert (await stalled(stubs, run.run_id)).status == run_pb2.RUN_STATUS_PENDING
        await asyncio.gather(a.runs._stalls.check(), b.runs._stalls.check())
        changes = await health_changes(stubs_b, run.run_id)
        assert [(c.health, c.reason.split(" ago")[0]) for c in changes] == [
            (run_pb2.RUN_HEALTH_STALLED, "created 61s")
        ]


def test_a_stalled_run_that_goes_on_with_a_step_is_not_said_to_recover_from_a_failure() -> None:
    """A run STALLED (never started, or silent) whose producer speaks with a StepStarted:
    the HealthChanged says the step started, not "after the failure" there never was."""
    health, reason = insight.health_after(
        run_pb2.RUN_HEALTH_STALLED, [ev.RunEvent(step_started=ev.StepStarted(step_id="crawl"))]
    )
    assert (health, reason) == (run_pb2.RUN_HEALTH_HEALTHY, "step crawl started")


async def test_a_replica_whose_clock_runs_ahead_does_not_stall_the_others_runs(
    tmp_path: Path,
    store_kind: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replica whose clock ran 5 minutes ahead of the one a run was created on marked it
    STALLED at its first check ("created 5m ago and never started") a second after its
    creation, and with --abandon-after ended it that much early. Replicas on Redis compare
    times by Redis's clock, and the one that is off says so."""
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    redis: RedisProcess = request.getfixturevalue("redis_server")
    url = redis_store_url(redis, tmp_path / "shared")
    async with (
        serving_on(url, tmp_path / "a", insight=POLICY) as a,
        serving_on(url, tmp_path / "b", insight=POLICY) as b,
        grpc.aio.insecure_channel(a.target) as channel,
    ):
        await wall_clock_off(b, 300)
        stubs = Stubs.on(channel)
        run = await create_run(stubs, "a")
        await asyncio.sleep(3 * CHECK_EVERY)  # two checks or more on each replica
        assert (await get_run(stubs, run.run_id)).health != run_pb2.RUN_HEALTH_STALLED
        assert await health_changes(stubs, run.run_id) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "off the store's" in w] == [
        "this server's clock is +300.0s off the store's (Redis TIME); times are taken from "
        "the store's clock, but check this machine's time sync (NTP)"
    ]
