"""A run says why its health is what it is: ``Run.health_reason``.

A client reading a run (GetRun, ListRuns, WatchRuns, a WatchRun snapshot) saw "FAILING" or
"DEGRADED" and had to find the run's last HealthChanged event to learn why. The run now
carries that event's reason beside its health, on every store, after a restart and on every
replica; a return to HEALTHY clears it (the log keeps the recovery's reason).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import Retention

from tests.conftest import ConfigFactory, RedisProcess, redis_store_url, serving_on
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run

# What a run says of its health: the commit path changes nothing here.
STORES = BOTH_STORES

FAILED = "step research failed: rate limited by the search API"


async def fail_research(stubs: Stubs, run_id: str) -> None:
    """The producer starts step research, which fails: the run turns FAILING, saying why."""
    error = run_pb2.ErrorInfo(code="RATE_LIMITED", message="rate limited by the search API")
    await append(
        stubs,
        run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="research")),
        ev.RunEvent(step_failed=ev.StepFailed(step_id="research", error=error)),
    )


async def listed(stubs: Stubs, run_id: str) -> run_pb2.Run:
    response = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=100))
    [run] = [run for run in response.runs if run.run_id == run_id]
    return run


async def snapshot(stubs: Stubs, run_id: str) -> run_pb2.Run:
    """The snapshot a WatchRun opens with."""
    watch = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run_id, include_snapshot=True))
    try:
        async with asyncio.timeout(15):
            async for response in watch:
                if response.HasField("snapshot"):
                    return response.snapshot
    finally:
        watch.cancel()
    raise AssertionError("the watch ended without a snapshot")


async def reasons(stubs: Stubs, run_id: str) -> list[tuple[int, str]]:
    """The run's health and its reason as GetRun, ListRuns and a WatchRun snapshot give them."""
    return [
        (run.health, run.health_reason)
        for run in (
            await get_run(stubs, run_id),
            await listed(stubs, run_id),
            await snapshot(stubs, run_id),
        )
    ]


@contextlib.asynccontextmanager
async def restarted_on_its_store(
    server: RunstreamServer, server_config: ConfigFactory
) -> AsyncIterator[Stubs]:
    """`server` stopped and another started on its store: stubs of the new one."""
    await server.stop(grace=0.1)
    again = RunstreamServer(server_config(server.config.store_path))
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.target) as channel:
            yield Stubs.on(channel)
    finally:
        await again.stop(grace=0.1)


async def test_every_read_of_a_run_says_why_its_health_changed_even_after_a_restart(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    run = await create_run(stubs, "research", "write")
    await fail_research(stubs, run.run_id)
    assert await reasons(stubs, run.run_id) == [(run_pb2.RUN_HEALTH_FAILING, FAILED)] * 3

    async with restarted_on_its_store(server, server_config) as restarted:
        assert await reasons(restarted, run.run_id) == [(run_pb2.RUN_HEALTH_FAILING, FAILED)] * 3

        # The retry: no longer failing, not yet healthy, and the run says so.
        await append(
            restarted, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="research"))
        )
        assert (
            await reasons(restarted, run.run_id)
            == [(run_pb2.RUN_HEALTH_DEGRADED, "step research retried (attempt 2)")] * 3
        )

        # Healthy again: nothing to explain on the run; the log keeps why it recovered.
        await append(
            restarted,
            run.run_id,
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="research")),
        )
        assert await reasons(restarted, run.run_id) == [(run_pb2.RUN_HEALTH_HEALTHY, "")] * 3
        changes = await restarted.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, filter="kind = HEALTH_CHANGED")
        )
        assert [e.health_changed.reason for e in changes.events][-1] == "step research completed"


async def test_a_failed_step_the_producer_skips_no_longer_keeps_the_run_failing(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    # Found in review: the run stayed FAILING "step research failed" at 75 % with no failed
    # step in its list, and the skipped step kept the failure's error.
    run = await create_run(stubs, "research", "write")
    await fail_research(stubs, run.run_id)
    skip = ev.StepSkipped(step_id="research", reason="gave up: search API down")
    await append(stubs, run.run_id, ev.RunEvent(step_skipped=skip))
    skipped = (run_pb2.RUN_HEALTH_DEGRADED, f"{FAILED}; the step was skipped")
    assert await reasons(stubs, run.run_id) == [skipped] * 3
    [step] = [s for s in (await get_run(stubs, run.run_id)).steps if s.step_id == "research"]
    assert step.status == run_pb2.STEP_STATUS_SKIPPED
    assert not step.HasField("error")  # Step.error: set only when the step FAILED
    took = step.end_time.ToNanoseconds() - step.start_time.ToNanoseconds()
    assert step.duration.ToNanoseconds() == took  # it ended at the skip, not the failure

    async with restarted_on_its_store(server, server_config) as restarted:
        # The troubles rebuilt from the log know of the skip: going on with another step
        # leaves the reason as it was (a FAILING step would now be "gone past").
        await append(
            restarted, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="write"))
        )
        assert await reasons(restarted, run.run_id) == [skipped] * 3


async def test_a_trouble_on_a_step_skipped_later_stays_on_it_after_a_restart(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    """A high alert on a running step is that step's trouble, and a skipped step never
    completes: the run stays DEGRADED. Rebuilt from the log after a restart (or by another
    replica), the alert was filed with the steps as the last event left them (the step
    already skipped: the run's trouble), and the next step's completion made the run HEALTHY
    there, with one more HealthChanged than the server that never restarted wrote."""
    run = await create_run(stubs, "draft", "review")
    hot = ev.Alert(message="hot", severity=run_pb2.SEVERITY_HIGH, step_id="draft")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="draft")),
        ev.RunEvent(alert=hot),
        ev.RunEvent(step_skipped=ev.StepSkipped(step_id="draft", reason="not needed")),
    )
    degraded = (run_pb2.RUN_HEALTH_DEGRADED, "alert: hot")
    assert await reasons(stubs, run.run_id) == [degraded] * 3
    async with restarted_on_its_store(server, server_config) as restarted:
        await append(
            restarted,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="review")),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="review")),
        )
        assert await reasons(restarted, run.run_id) == [degraded] * 3
        changes = await restarted.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, filter="kind = HEALTH_CHANGED")
        )
        assert [e.health_changed.health for e in changes.events] == [run_pb2.RUN_HEALTH_DEGRADED]


async def test_a_watcher_of_the_run_list_sees_the_reason(stubs: Stubs) -> None:
    run = await create_run(stubs, "research", workflow="reasons")
    watch = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter='workflow = "reasons"'))
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="research")),
        ev.RunEvent(
            error_recovery=ev.ErrorRecovery(
                step_id="research", error_message="timeout, retrying", can_continue=True
            )
        ),
    )
    try:
        async with asyncio.timeout(15):
            async for response in watch:
                degraded = [r for r in response.runs if r.health == run_pb2.RUN_HEALTH_DEGRADED]
                if degraded:
                    assert degraded[0].health_reason == "recovering: timeout, retrying"
                    return
    finally:
        watch.cancel()
    raise AssertionError("the watch ended before the run was DEGRADED")


async def test_another_replica_reads_the_reason_a_replica_recorded(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    redis: RedisProcess = request.getfixturevalue("redis_server")
    url = redis_store_url(redis, tmp_path / "shared")
    async with (
        serving_on(url, tmp_path / "a") as a,
        serving_on(url, tmp_path / "b") as b,
        grpc.aio.insecure_channel(a.target) as on_a,
        grpc.aio.insecure_channel(b.target) as on_b,
    ):
        stubs_a, stubs_b = Stubs.on(on_a), Stubs.on(on_b)
        run = await create_run(stubs_a, "research")
        assert (await get_run(stubs_b, run.run_id)).health_reason == ""  # b has it loaded too
        await fail_research(stubs_a, run.run_id)
        assert await reasons(stubs_b, run.run_id) == [(run_pb2.RUN_HEALTH_FAILING, FAILED)] * 3


async def test_a_failed_run_says_why_after_retention_purged_its_log(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The HealthChanged that said why went with the log; the run still says it."""
    server = RunstreamServer(
        server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            old, new = await create_run(stubs, "research"), await create_run(stubs)
            await append(
                stubs,
                old.run_id,
                ev.RunEvent(step_started=ev.StepStarted(step_id="research")),
                ev.RunEvent(
                    run_failed=ev.RunFailed(
                        error=run_pb2.ErrorInfo(code="BUDGET", message="budget exhausted")
                    )
                ),
            )
            await append(stubs, new.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
            assert server.runs is not None
            assert await server.runs.apply_retention() == [old.run_id]
            with pytest.raises(grpc.aio.AioRpcError) as purged:
                await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id))
            assert purged.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            run = await get_run(stubs, old.run_id)
            assert (run.health, run.health_reason) == (
                run_pb2.RUN_HEALTH_FAILING,
                "budget exhausted",
            )
    finally:
        await server.stop(grace=0.1)


async def health(stubs: Stubs, run_id: str) -> tuple[int, str]:
    run = await get_run(stubs, run_id)
    return run.health, run.health_reason


async def test_only_the_troubled_steps_completion_makes_the_run_healthy(stubs: Stubs) -> None:
    """Steps a and b run side by side and b is in trouble: a finishing does not cure b."""
    run = await create_run(stubs, "a", "b")
    backing_off = ev.ErrorRecovery(
        step_id="b", error_message="rate limited, backing off", can_continue=True
    )
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(error_recovery=backing_off),
    )
    degraded = (run_pb2.RUN_HEALTH_DEGRADED, "recovering: rate limited, backing off")
    assert await health(stubs, run.run_id) == degraded
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    assert await health(stubs, run.run_id) == degraded
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="b")))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")


async def test_a_failed_step_keeps_the_run_degraded_until_a_retry_of_it_completes(
    stubs: Stubs,
) -> None:
    run = await create_run(stubs, "a", "b", "c")
    boom = run_pb2.ErrorInfo(message="boom")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(step_failed=ev.StepFailed(step_id="b", error=boom)),
    )
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_FAILING, "step b failed: boom")

    # The run goes on past the failure: no longer failing, and it says why it is degraded.
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    went_on = (run_pb2.RUN_HEALTH_DEGRADED, "step b failed: boom; the run went on with step a")
    assert await health(stubs, run.run_id) == went_on
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="c")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="c")),
    )
    assert await health(stubs, run.run_id) == went_on  # b failed and was never retried

    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="b")))
    assert await health(stubs, run.run_id) == went_on  # retried, not yet done
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="b")))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")


async def test_after_a_failing_step_recovers_the_reason_says_why_the_run_is_still_degraded(
    stubs: Stubs,
) -> None:
    run = await create_run(stubs, "b", "c")
    hot = ev.Alert(step_id="b", severity=run_pb2.SEVERITY_HIGH, message="hot")
    down = ev.ErrorRecovery(step_id="c", error_message="model API down", can_continue=False)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(alert=hot),
        ev.RunEvent(step_started=ev.StepStarted(step_id="c")),
        ev.RunEvent(error_recovery=down),
    )
    assert await health(stubs, run.run_id) == (
        run_pb2.RUN_HEALTH_FAILING,
        "recovering: model API down",
    )
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="c")))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "alert: hot")


async def test_the_reason_follows_the_troubles_when_the_health_stays_the_same(
    stubs: Stubs,
) -> None:
    """Two troubles of one level: the one that ended is no longer given as the reason (the
    reason moved only with the level, and said "alert: hot" after a's alert was over)."""
    run = await create_run(stubs, "a", "b")
    hot = ev.Alert(step_id="a", severity=run_pb2.SEVERITY_HIGH, message="hot")
    flaky = ev.ErrorRecovery(step_id="b", error_message="flaky", can_continue=True)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(alert=hot),
    )
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "alert: hot")
    await append(stubs, run.run_id, ev.RunEvent(error_recovery=flaky))
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "recovering: flaky")
    # And a step failing again in a later batch says so (it kept the first failure's words).
    for attempt in range(2):
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
            ev.RunEvent(
                step_failed=ev.StepFailed(
                    step_id="b", error=run_pb2.ErrorInfo(message=f"boom{attempt}")
                )
            ),
        )
        assert await health(stubs, run.run_id) == (
            run_pb2.RUN_HEALTH_FAILING,
            f"step b failed: boom{attempt}",
        )


async def test_the_reason_is_the_newest_of_the_troubles_of_the_runs_level(stubs: Stubs) -> None:
    """Two steps in trouble of one level: the run says why by the newer trouble."""
    run = await create_run(stubs, "a", "b")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(alert=ev.Alert(step_id="a", severity=run_pb2.SEVERITY_HIGH, message="hot")),
    )
    flaky = ev.ErrorRecovery(step_id="b", error_message="flaky", can_continue=True)
    await append(stubs, run.run_id, ev.RunEvent(error_recovery=flaky))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "recovering: flaky")


async def test_a_lesser_trouble_of_the_run_leaves_it_failing(stubs: Stubs) -> None:
    """An error the run cannot go on from makes it FAILING; a high alert on the run after it
    does not make it merely DEGRADED."""
    run = await create_run(stubs, "a")
    fatal = ev.ErrorRecovery(error_message="credentials revoked", can_continue=False)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(error_recovery=fatal),
    )
    failing = (run_pb2.RUN_HEALTH_FAILING, "recovering: credentials revoked")
    assert await health(stubs, run.run_id) == failing
    alert = ev.Alert(severity=run_pb2.SEVERITY_HIGH, message="slow responses")
    await append(stubs, run.run_id, ev.RunEvent(alert=alert))
    assert await health(stubs, run.run_id) == failing


async def test_a_stall_does_not_wipe_the_trouble_a_run_had_before_it(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Three troubled runs fall silent and are STALLED; when their producers speak again
    (after a restart of the server, too) each is back to what it was, reason and all."""
    config = server_config(tmp_path / "s.db", insight=InsightPolicy(stall_after=0.4, stall_min=0.4))
    boom = run_pb2.ErrorInfo(message="boom")
    troubles = {
        (run_pb2.RUN_HEALTH_DEGRADED, "step a failed: boom; the run went on with step b"): [
            ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
            ev.RunEvent(step_failed=ev.StepFailed(step_id="a", error=boom)),
            ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ],
        (run_pb2.RUN_HEALTH_DEGRADED, "alert: budget nearly spent"): [
            ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
            ev.RunEvent(
                alert=ev.Alert(severity=run_pb2.SEVERITY_CRITICAL, message="budget nearly spent")
            ),
        ],
        (run_pb2.RUN_HEALTH_FAILING, "recovering: model API down"): [
            ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
            ev.RunEvent(
                error_recovery=ev.ErrorRecovery(
                    step_id="a", error_message="model API down", can_continue=False
                )
            ),
        ],
    }
    runs: dict[str, tuple[int, str]] = {}
    server = RunstreamServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            for before, events in troubles.items():
                run = await create_run(stubs, "a", "b")
                await append(stubs, run.run_id, *events)
                assert await health(stubs, run.run_id) == before
                runs[run.run_id] = before
            for run_id in runs:
                for _ in range(200):
                    if (await get_run(stubs, run_id)).health == run_pb2.RUN_HEALTH_STALLED:
                        break
                    await asyncio.sleep(0.05)
                assert (await get_run(stubs, run_id)).health == run_pb2.RUN_HEALTH_STALLED
    finally:
        await server.stop(grace=0.1)

    again = RunstreamServer(config)
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.target) as channel:
            stubs = Stubs.on(channel)
            for run_id, before in runs.items():
                spoke = ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"tokens": 10}))
                await append(stubs, run_id, spoke)
                assert await health(stubs, run_id) == before
    finally:
        await again.stop(grace=0.1)


async def test_a_run_cancelled_while_stalled_is_no_longer_stalled(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """STALLED says the producer fell silent; a run cancelled then kept it for ever (found
    in review). It ends with the health its troubles give, and says why."""
    config = server_config(tmp_path / "s.db", insight=InsightPolicy(stall_after=0.4, stall_min=0.4))
    server = RunstreamServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            quiet = await create_run(stubs, "a")
            troubled = await create_run(stubs, "a")
            await append(stubs, quiet.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
            await append(
                stubs,
                troubled.run_id,
                ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
                ev.RunEvent(
                    alert=ev.Alert(step_id="a", severity=run_pb2.SEVERITY_HIGH, message="hot")
                ),
            )
            for run in (quiet, troubled):
                for _ in range(200):
                    if (await get_run(stubs, run.run_id)).health == run_pb2.RUN_HEALTH_STALLED:
                        break
                    await asyncio.sleep(0.05)
                assert (await get_run(stubs, run.run_id)).health == run_pb2.RUN_HEALTH_STALLED
                await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="stop"))
            assert await health(stubs, quiet.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")
            assert await health(stubs, troubled.run_id) == (
                run_pb2.RUN_HEALTH_DEGRADED,
                "alert: hot",
            )
    finally:
        await server.stop(grace=0.1)
