"""Run insight: ETA learned from history, health and stalls, milestones, many-run watching,
presence, history listing and retention."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from runstream.v1 import report_service_pb2_grpc, run_pb2, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import Retention

from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import (
    Clock,
    append,
    clocked_server,
    create_run,
    custom,
    ev,
    on_clock,
    until_health,
    watch_all,
)

# A seeded simulated workflow: six steps with typical durations (seconds) and +-25% noise.
STEPS = {"intake": 30, "research": 240, "draft": 180, "review": 90, "polish": 60, "ship": 20}


def at(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def timed(event: ev.RunEvent, moment: datetime) -> ev.RunEvent:
    event.event_time.CopyFrom(at(moment))
    return event


def left_of(estimate: run_pb2.Estimate) -> float:
    """The seconds an estimate read just now says are left (counted down to the read)."""
    return estimate.remaining.ToNanoseconds() / 1e9


@pytest.fixture
async def insight_server(
    tmp_path: Path, server_config: ConfigFactory
) -> AsyncIterator[tuple[RunstreamServer, Stubs]]:
    config = server_config(
        tmp_path / "i.db",
        insight=InsightPolicy(stall_after=0.4, stall_min=0.4),
        retention=Retention(runs=1, interval=3600),
    )
    server = RunstreamServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield (
                server,
                Stubs(
                    channel,
                    run_service_pb2_grpc.RunServiceStub(channel),
                    report_service_pb2_grpc.ReportServiceStub(channel),
                ),
            )
    finally:
        await server.stop(grace=0.1)


async def simulate(
    stubs: Stubs,
    rng: random.Random,
    start: datetime,
    checkpoints: list[tuple[float, float]] | None = None,
    pace: float = 1.0,
) -> datetime:
    """Runs the workflow on a simulated clock (`pace` times slower than usual); records
    (estimated, true) remaining seconds."""
    durations = {s: d * pace * rng.uniform(0.75, 1.25) for s, d in STEPS.items()}
    run = await create_run(stubs, *STEPS, workflow="research-report")
    now = start
    await append(stubs, run.run_id, timed(ev.RunEvent(run_started=ev.RunStarted()), now))
    for i, (step, took) in enumerate(durations.items()):
        await append(
            stubs, run.run_id, timed(ev.RunEvent(step_started=ev.StepStarted(step_id=step)), now)
        )
        await append(
            stubs,
            run.run_id,
            timed(
                ev.RunEvent(step_progress=ev.StepProgress(step_id=step, percent=50)),
                now + timedelta(seconds=took / 2),
            ),
        )
        if checkpoints is not None:
            true_left = took / 2 + sum(list(durations.values())[i + 1 :])
            est = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
            # Counted down by the server's clock since the batch arrived: a moment ago.
            checkpoints.append((left_of(est), true_left))
        now += timedelta(seconds=took)
        await append(
            stubs,
            run.run_id,
            timed(ev.RunEvent(step_completed=ev.StepCompleted(step_id=step)), now),
        )
    await append(stubs, run.run_id, timed(ev.RunEvent(run_completed=ev.RunCompleted()), now))
    return now


async def test_eta_from_history_lands_near_the_true_remaining_time(insight_server, capsys) -> None:  # type: ignore[no-untyped-def]
    _, stubs = insight_server
    rng = random.Random(7)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    first = await create_run(stubs, *STEPS, workflow="research-report")
    await append(stubs, first.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="intake")))
    snap = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=first.run_id))).run
    assert not snap.HasField("estimate")  # no history: unknown, not a guess
    for _ in range(4):
        clock = await simulate(stubs, rng, clock + timedelta(hours=1))
    points: list[tuple[float, float]] = []
    await simulate(stubs, rng, clock + timedelta(hours=1), points)
    errors = [abs(est - true) / true for est, true in points]
    print(
        f"\nETA relative error at mid-step checkpoints: mean {statistics.mean(errors):.1%}, "
        f"max {max(errors):.1%} ({len(points)} checkpoints, 4 runs of history, +-25% noise)"
    )
    assert all(est >= 0 for est, _ in points)
    assert statistics.mean(errors) < 0.25
    assert max(errors) < 0.6


async def newsletter(stubs: Stubs, start: datetime, took: dict[str, float | None]) -> datetime:
    """One succeeded run of the "newsletter" workflow from `start`: each step of `took`
    takes its seconds, or is skipped (None)."""
    run = await create_run(stubs, *took, workflow="newsletter")
    now = start
    await append(stubs, run.run_id, timed(ev.RunEvent(run_started=ev.RunStarted()), now))
    for step, seconds in took.items():
        if seconds is None:
            skipped = ev.RunEvent(step_skipped=ev.StepSkipped(step_id=step, reason="optional"))
            await append(stubs, run.run_id, timed(skipped, now))
            continue
        began = ev.RunEvent(step_started=ev.StepStarted(step_id=step))
        now += timedelta(seconds=seconds)
        done = ev.RunEvent(step_completed=ev.StepCompleted(step_id=step))
        await append(stubs, run.run_id, timed(began, now - timedelta(seconds=seconds)))
        await append(stubs, run.run_id, timed(done, now))
    await append(stubs, run.run_id, timed(ev.RunEvent(run_completed=ev.RunCompleted()), now))
    return now


async def test_an_estimate_learns_only_from_the_newest_runs_of_its_workflow(stubs) -> None:  # type: ignore[no-untyped-def]
    # Found in review: a server that had learned a step from a run older than the newest
    # 20 kept its samples, so an optional step taken long ago was estimated at 600 s until
    # a restart (which reads the newest 20 runs) made it 18 s.
    clock = await newsletter(
        stubs, datetime(2026, 1, 1, tzinfo=UTC), {"write": 10, "translate": 600, "send": 10}
    )
    for _ in range(20):
        clock = await newsletter(
            stubs, clock + timedelta(hours=1), {"write": 10, "translate": None, "send": 10}
        )
    run = await create_run(stubs, "write", "translate", "send", workflow="newsletter")
    now = clock + timedelta(hours=1)
    for event in (
        ev.RunEvent(step_started=ev.StepStarted(step_id="write")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="write")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="translate")),
    ):
        now += timedelta(seconds=10) if event.HasField("step_completed") else timedelta(0)
        await append(stubs, run.run_id, timed(event, now))
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
    assert estimate.history_runs == 20
    # None of the newest 20 runs took the step: it borrows the other steps' 10 s.
    assert 15 <= left_of(estimate) <= 25


async def test_a_run_three_times_slower_than_its_history_is_estimated_at_its_own_pace(
    insight_server,  # type: ignore[no-untyped-def]
) -> None:
    """The pace the estimate scales the steps left by was held to 0.5-2x: a run three times
    slower than its history was estimated about 60 % short to its last step, inside a narrow
    range that never held the truth (found in review)."""
    _, stubs = insight_server
    rng = random.Random(11)
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(4):
        clock = await simulate(stubs, rng, clock + timedelta(hours=1))
    points: list[tuple[float, float]] = []
    await simulate(stubs, rng, clock + timedelta(hours=1), points, pace=3.0)
    later = points[2:-1]  # once it finished a few steps, before the last (no steps left)
    errors = [abs(est - true) / true for est, true in later]
    assert statistics.mean(errors) < 0.25, later


async def test_a_silent_producer_is_stalled_then_healthy_when_it_speaks(insight_server) -> None:  # type: ignore[no-untyped-def]
    _, stubs = insight_server
    run = await create_run(stubs, "slow")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="slow")))

    async def health() -> int:
        return (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.health

    for _ in range(100):
        if await health() == run_pb2.RUN_HEALTH_STALLED:
            break
        await asyncio.sleep(0.05)
    assert await health() == run_pb2.RUN_HEALTH_STALLED
    await append(
        stubs, run.run_id, ev.RunEvent(step_progress=ev.StepProgress(step_id="slow", percent=10))
    )
    assert await health() == run_pb2.RUN_HEALTH_HEALTHY
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    changes = [
        e.health_changed
        for r in await watch_all(stubs, run.run_id)
        for e in r.events
        if e.HasField("health_changed")
    ]
    assert [(c.previous_health, c.health) for c in changes][:2] == [
        (run_pb2.RUN_HEALTH_HEALTHY, run_pb2.RUN_HEALTH_STALLED),
        (run_pb2.RUN_HEALTH_STALLED, run_pb2.RUN_HEALTH_HEALTHY),
    ]
    assert "no report for" in changes[0].reason


async def test_problems_degrade_health_and_finished_steps_restore_it(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a", "b")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(
            error_recovery=ev.ErrorRecovery(error_message="rate limited", can_continue=True)
        ),
    )
    get = rs.GetRunRequest(run_id=run.run_id)
    assert (await stubs.runs.GetRun(get)).run.health == run_pb2.RUN_HEALTH_DEGRADED
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    assert (await stubs.runs.GetRun(get)).run.health == run_pb2.RUN_HEALTH_HEALTHY


async def test_a_trouble_that_opens_and_closes_in_one_batch_is_said_both_ways(stubs) -> None:  # type: ignore[no-untyped-def]
    """Health was judged once per producer batch: a recovery and its step's completion sent
    together (the SDK batches what is queued while an ack is out) gave no HealthChanged at
    all, where the same events in two batches gave DEGRADED and back (found in review)."""
    run = await create_run(stubs, "a", "b")
    recovering = ev.ErrorRecovery(error_message="rate limited", can_continue=True, step_id="a")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(error_recovery=recovering),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
    )
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    said = [(e.WhichOneof("payload"), e.health_changed.health) for e in listed.events]
    degraded = said.index(("health_changed", run_pb2.RUN_HEALTH_DEGRADED))
    assert said[degraded - 1][0] == "error_recovery"  # right after what moved it
    assert said[degraded + 1 :][:2] == [
        ("step_completed", 0),
        ("health_changed", run_pb2.RUN_HEALTH_HEALTHY),
    ]


async def test_milestones_fire_once_each_in_order_and_survive_replay(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    path = tmp_path / "m.db"
    server = RunstreamServer(server_config(path))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs(
                channel,
                run_service_pb2_grpc.RunServiceStub(channel),
                report_service_pb2_grpc.ReportServiceStub(channel),
            )
            run = (
                await stubs.runs.CreateRun(
                    rs.CreateRunRequest(
                        workflow="discovery",
                        steps=[run_pb2.StepSpec(step_id=s) for s in "abcd"],
                        targets=[
                            run_pb2.Target(
                                metric="companies_found", value=50, title="Find 50 companies"
                            ),
                            run_pb2.Target(
                                metric="avg_quality", value=4.0, kind=run_pb2.TARGET_KIND_QUALITY
                            ),
                        ],
                    )
                )
            ).run
            for step in "abcd":
                await append(
                    stubs,
                    run.run_id,
                    ev.RunEvent(step_started=ev.StepStarted(step_id=step)),
                    ev.RunEvent(step_completed=ev.StepCompleted(step_id=step)),
                )
                found = {"a": 10, "b": 30, "c": 55, "d": 60}[step]
                await append(
                    stubs,
                    run.run_id,
                    ev.RunEvent(
                        metrics_update=ev.MetricsUpdate(
                            values={
                                "companies_found": found,
                                "avg_quality": 3.5 + 0.2 * "abcd".index(step),
                            }
                        )
                    ),
                )
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
            first = [
                e.milestone.milestone_id
                for r in await watch_all(stubs, run.run_id)
                for e in r.events
                if e.HasField("milestone")
            ]
            # In the order they happened: 55 companies came with step c, quality 4.1 with d;
            # 100 % only once the run succeeded, not when its last step ended.
            assert first == [
                "progress-25",
                "progress-50",
                "progress-75",
                "target-companies_found",
                "quality-avg_quality",
                "progress-100",
            ]
    finally:
        await server.stop(grace=0.1)
    again = RunstreamServer(server_config(path))
    await again.start()
    try:
        assert again.runs is not None
        events, _ = await again.runs.list_events(
            run.run_id, filter_text="kind = MILESTONE", page_size=100, page_token=""
        )
        assert [e.milestone.milestone_id for e in events] == first
        titles = {e.milestone.milestone_id: e.milestone for e in events}
        assert titles["target-companies_found"].type == ev.MILESTONE_TYPE_TARGET_REACHED
        assert titles["target-companies_found"].description == "Find 50 companies"
        assert titles["quality-avg_quality"].type == ev.MILESTONE_TYPE_QUALITY
    finally:
        await again.stop(grace=0.1)


async def test_watch_runs_follows_matching_runs_and_new_ones(stubs) -> None:  # type: ignore[no-untyped-def]
    a = await create_run(stubs, "x", workflow="team-a")
    await create_run(stubs, "x", workflow="team-b")
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter='workflow = "team-a"'))
    initial = await anext(aiter(stream))
    assert [r.run_id for r in initial.runs] == [a.run_id]
    assert all(len(r.steps) == 0 for r in initial.runs)
    assert (await anext(aiter(stream))).initial_state_complete
    b = await create_run(stubs, "x", workflow="team-a")
    assert [r.run_id for r in (await anext(aiter(stream))).runs] == [b.run_id]
    await append(
        stubs,
        a.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="x")),
        ev.RunEvent(step_progress=ev.StepProgress(step_id="x", percent=50)),
    )
    update = (await anext(aiter(stream))).runs
    assert [(r.run_id, r.status, r.progress.percent) for r in update][-1] == (
        a.run_id,
        run_pb2.RUN_STATUS_RUNNING,
        50,
    )
    # Presence: a watcher joining run b shows in its viewer count.
    watch = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=b.run_id))
    await anext(aiter(watch))
    seen = (await anext(aiter(stream))).runs
    assert [(r.run_id, r.viewer_count) for r in seen] == [(b.run_id, 1)]
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=b.run_id))).run.viewer_count == 1
    watch.cancel()
    stream.cancel()


async def test_list_events_pages_and_filters_by_kind(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(
        stubs,
        run.run_id,
        *[custom(n) for n in range(1, 26)],
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
    )
    seqs, token = [], ""
    while True:
        page = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, page_size=10, page_token=token)
        )
        seqs += [e.seq for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seqs == list(range(1, 28))
    only = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, filter="kind = step_started OR kind = RUN_CREATED")
    )
    assert [e.WhichOneof("payload") for e in only.events] == ["run_created", "step_started"]
    for bad in ["kind = dancing", 'kind = "ALERT', 'kind = ALERT"']:  # quotes come in pairs
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, filter=bad))
        assert (info.value.code(), info.value.details().split(":")[0]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter",
        ), bad


async def test_recent_activity_keeps_the_last_fifty(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    activity = [
        ev.RunEvent(
            agent_activity=ev.AgentActivity(
                agent_id="bot", activity=ev.AGENT_ACTIVITY_TYPE_PROGRESS, message=f"found {n}"
            )
        )
        for n in range(60)
    ]
    await append(stubs, run.run_id, *activity)
    feed = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).recent_activity
    assert [e.agent_activity.message for e in feed] == [f"found {n}" for n in range(10, 60)]


async def test_resuming_into_purged_history_is_a_precise_error(insight_server) -> None:  # type: ignore[no-untyped-def]
    server, stubs = insight_server
    old = await create_run(stubs)
    await append(stubs, old.run_id, custom(1), ev.RunEvent(run_completed=ev.RunCompleted()))
    new = await create_run(stubs)
    await append(stubs, new.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    assert await server.runs.apply_retention() == [old.run_id]  # keeps the newest ended run
    snap = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=old.run_id))).run
    assert snap.purged_seq == snap.last_seq == 3
    for request in (
        rs.WatchRunRequest(run_id=old.run_id, after_seq=1),
        rs.WatchRunRequest(run_id=old.run_id),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stubs.runs.WatchRun(request):
                pass
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "removed by the retention policy" in info.value.details()
    # The state is still there, and resuming at the end is not an error.
    latest = await watch_all(stubs, old.run_id, include_snapshot=True)
    assert latest[0].snapshot.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert await watch_all(stubs, old.run_id, after_seq=3) == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        len(
            [
                e
                async for r in stubs.runs.WatchRun(rs.WatchRunRequest(run_id=new.run_id))
                for e in r.events
            ]
        )
        == 2
    )


async def test_a_producers_estimate_counts_down_to_the_last_event_of_its_batch(stubs) -> None:  # type: ignore[no-untyped-def]
    """The producer said 60 s left, then reported on for 20 s (by its clock) in the same
    batch: 40 s are left, not 60."""
    run = await create_run(stubs, "a", workflow="no-history-yet")
    said_at = datetime.now(UTC) - timedelta(seconds=20)
    progress = ev.StepProgress(step_id="a", percent=10)
    progress.estimated_time_remaining.FromSeconds(60)
    await append(
        stubs,
        run.run_id,
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), said_at),
        timed(ev.RunEvent(step_progress=progress), said_at),
        timed(custom(1), said_at + timedelta(seconds=20)),
    )
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_PRODUCER
    assert left_of(estimate) == pytest.approx(40, abs=1)


async def test_an_ended_run_has_no_estimate_left(stubs) -> None:  # type: ignore[no-untyped-def]
    """A run that ended kept the estimate it had last (seconds 'remaining', an end time)."""
    run = await create_run(stubs, "a", workflow="ends")
    progress = ev.StepProgress(step_id="a", percent=40)
    progress.estimated_time_remaining.FromSeconds(90)
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await append(stubs, run.run_id, ev.RunEvent(step_progress=progress))
    running = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert running.estimate.remaining.seconds > 80  # the producer's, while it runs
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    ended = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    listed = (await stubs.runs.ListRuns(rs.ListRunsRequest())).runs
    assert ended.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert not ended.HasField("estimate")
    assert [r.HasField("estimate") for r in listed if r.run_id == run.run_id] == [False]


async def test_an_estimate_of_events_timed_at_the_end_of_9999_ends_by_the_servers_clock(
    stubs,  # type: ignore[no-untyped-def]
) -> None:
    """Event times may lie up to 9999-12-31T23:59:59Z; an estimate made as of such a time,
    the producer's or a learned one, overflowed the date: INTERNAL, nothing stored. Its end
    is counted from the server's clock (it was the last time there is)."""
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    for learned in (False, True):  # the first run gives the second its history
        run = await create_run(stubs, "a", workflow="late")
        progress = ev.StepProgress(step_id="a", percent=40)
        progress.estimated_time_remaining.FromSeconds(90)
        started = timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), last)
        await append(stubs, run.run_id, started, timed(ev.RunEvent(step_progress=progress), last))
        running = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
        assert running.estimate.source == (
            run_pb2.ESTIMATE_SOURCE_HISTORY if learned else run_pb2.ESTIMATE_SOURCE_PRODUCER
        )
        ends_in = running.estimate.end_time.ToDatetime(UTC) - datetime.now(UTC)
        assert timedelta(0) < ends_in <= timedelta(seconds=90)
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))


async def test_an_estimate_ends_by_the_servers_clock_whatever_the_producers(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer 10 minutes behind made its run overdue from its first event (the end time
    10 minutes past, counted down by the server's clock to "about a second"), and one 10
    minutes ahead had 20 s left with its end 10 minutes away, which the CLI and the
    dashboard count down to ("~10m 20s left"). The time left is judged by the producer's
    clock (how long its steps have run), the end from when the server received the batch:
    its own figure (no history yet) and a learned one alike."""
    now = datetime.now(UTC)
    past = await create_run(stubs, "a", workflow="skewed")
    await append(
        stubs,
        past.run_id,
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), now - timedelta(hours=1)),
        timed(
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
            now - timedelta(hours=1) + timedelta(seconds=40),
        ),
        timed(
            ev.RunEvent(run_completed=ev.RunCompleted()),
            now - timedelta(hours=1) + timedelta(seconds=40),
        ),
    )
    for workflow, source in (
        ("skewed-new", run_pb2.ESTIMATE_SOURCE_PRODUCER),
        ("skewed", run_pb2.ESTIMATE_SOURCE_HISTORY),  # a takes 40 s
    ):
        for skew in (-600, 0, 600):
            run = await create_run(stubs, "a", workflow=workflow)
            mine = datetime.now(UTC) + timedelta(seconds=skew)  # the producer's clock
            progress = ev.StepProgress(step_id="a", percent=50)
            progress.estimated_time_remaining.FromSeconds(20)
            await append(
                stubs,
                run.run_id,
                timed(
                    ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
                    mine - timedelta(seconds=20),
                ),
                timed(ev.RunEvent(step_progress=progress), mine),
            )
            estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
            assert estimate.source == source
            ends_in = (estimate.end_time.ToDatetime(UTC) - datetime.now(UTC)).total_seconds()
            assert (left_of(estimate), ends_in) == (
                pytest.approx(20, abs=2),
                pytest.approx(20, abs=2),
            ), (workflow, skew)


async def test_a_run_timed_at_the_end_of_9999_pauses_resumes_and_reads_every_time(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer whose clock says 9999-12-31T23:59:59Z, with an estimate of an hour. Moving
    that estimate to the server's now worked in float seconds (some 10^11 of them), whose
    rounding overflowed the date about every other call: PauseRun, ResumeRun, GetRun and
    ListRuns answered INTERNAL (a pause was committed all the same), and a reader's count
    down stretched the hour to the 7,973 years left until then."""
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    run = await create_run(stubs, "a", workflow="clock-ahead")
    progress = ev.StepProgress(step_id="a", percent=1)
    progress.estimated_time_remaining.FromSeconds(3600)
    await append(stubs, run.run_id, timed(ev.RunEvent(step_progress=progress), last))
    wanted = rs.GetRunRequest(run_id=run.run_id)
    for _ in range(12):
        await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id))
        paused = (await stubs.runs.GetRun(wanted)).run
        assert paused.status == run_pb2.RUN_STATUS_PAUSED and paused.estimate.held
        await stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=run.run_id))
        running = (await stubs.runs.GetRun(wanted)).run
        listed = (await stubs.runs.ListRuns(rs.ListRunsRequest())).runs
        for seen in (paused, running, *[r for r in listed if r.run_id == run.run_id]):
            assert 0 < seen.estimate.remaining.seconds <= 3600
            assert seen.estimate.end_time.seconds <= at(last).seconds


async def test_a_run_past_its_estimate_says_about_a_second_without_flooding_its_log(
    stubs,  # type: ignore[no-untyped-def]
) -> None:
    """The workflow's one past run took 1 s; the next reports 50 events a second for 20 s.
    Overdue, its estimate says about a second and is not stored again with every event."""
    began = datetime.now(UTC) - timedelta(hours=1)
    past = await create_run(stubs, workflow="overdue")
    await append(
        stubs,
        past.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), began),
        timed(ev.RunEvent(run_completed=ev.RunCompleted()), began + timedelta(seconds=1)),
    )
    run = await create_run(stubs, workflow="overdue")
    start = began + timedelta(minutes=1)
    await append(stubs, run.run_id, timed(ev.RunEvent(run_started=ev.RunStarted()), start))
    for n in range(1, 1001):
        await append(stubs, run.run_id, timed(custom(n), start + timedelta(seconds=n / 50)))
    page = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, filter="kind = ESTIMATE_UPDATED", page_size=100)
    )
    assert len(page.events) <= 3
    said = [e.estimate_updated.estimate.remaining.ToNanoseconds() / 1e9 for e in page.events]
    assert all(left >= 1.0 for left in said)  # never "0.1 s left"
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
    assert 1.0 <= estimate.remaining.ToNanoseconds() / 1e9 < 2.0  # about a second, not zero


async def test_the_eta_of_parallel_tracks_is_their_longest_chain_not_their_sum(stubs) -> None:  # type: ignore[no-untyped-def]
    """research then write on one track, design beside them on another, launch after both:
    50 s into a run with research and design half done, what is left is research's 50 s,
    write's 40 s and launch's 20 s (design's 50 s runs beside them), not every step added up."""
    plan = [
        run_pb2.StepSpec(step_id="research", track="text"),
        run_pb2.StepSpec(step_id="design", track="visuals"),
        run_pb2.StepSpec(step_id="write", track="text"),
        run_pb2.StepSpec(step_id="launch", depends_on=["write", "design"]),
    ]

    async def started(start: datetime) -> str:
        run = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="launch", steps=plan))).run
        await append(
            stubs,
            run.run_id,
            timed(ev.RunEvent(run_started=ev.RunStarted()), start),
            timed(ev.RunEvent(step_started=ev.StepStarted(step_id="research")), start),
            timed(ev.RunEvent(step_started=ev.StepStarted(step_id="design")), start),
        )
        return run.run_id

    def step(step_id: str, begin: float, end: float, start: datetime) -> list[ev.RunEvent]:
        return [
            timed(
                ev.RunEvent(step_started=ev.StepStarted(step_id=step_id)),
                start + timedelta(seconds=begin),
            ),
            timed(
                ev.RunEvent(step_completed=ev.StepCompleted(step_id=step_id)),
                start + timedelta(seconds=end),
            ),
        ]

    clock = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(3):  # history: every run took 160 s
        run_id = await started(clock)
        done = [
            timed(
                ev.RunEvent(step_completed=ev.StepCompleted(step_id=step_id)),
                clock + timedelta(seconds=100),
            )
            for step_id in ("research", "design")
        ]
        ended = timed(ev.RunEvent(run_completed=ev.RunCompleted()), clock + timedelta(seconds=160))
        await append(
            stubs,
            run_id,
            *done,
            *step("write", 100, 140, clock),
            *step("launch", 140, 160, clock),
            ended,
        )
        clock += timedelta(hours=1)

    run_id = await started(clock)
    halfway = clock + timedelta(seconds=50)
    await append(
        stubs,
        run_id,
        *(
            timed(ev.RunEvent(step_progress=ev.StepProgress(step_id=s, percent=50)), halfway)
            for s in ("research", "design")
        ),
    )
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run_id))).run.estimate
    assert estimate.history_runs == 3
    assert left_of(estimate) == pytest.approx(110, abs=1)  # the sum would say 160


async def test_a_run_found_stalled_gets_its_estimate_made_again_from_the_steps_left(
    insight_server,  # type: ignore[no-untyped-def]
) -> None:
    """An estimate is made at the producer's events and counted down between them: a
    producer silent past it left "about a second" on screen, next to "Stalled", with most
    of the plan still to run (found in review). The stall makes it again."""
    _, stubs = insight_server
    usual = {"a": 0.1, "b": 2.0, "c": 2.0, "d": 2.0}
    start = datetime.now(UTC) - timedelta(minutes=10)
    for _ in range(3):  # the workflow's history: a takes 0.1 s, b to d 2 s each
        run = await create_run(stubs, *usual, workflow="late")
        moment = start
        for step, took in usual.items():
            started = ev.RunEvent(step_started=ev.StepStarted(step_id=step))
            await append(stubs, run.run_id, timed(started, moment))
            moment += timedelta(seconds=took)
            done = ev.RunEvent(step_completed=ev.StepCompleted(step_id=step))
            await append(stubs, run.run_id, timed(done, moment))
        await append(stubs, run.run_id, timed(ev.RunEvent(run_completed=ev.RunCompleted()), moment))
        start = moment + timedelta(seconds=1)
    run = await create_run(stubs, *usual, workflow="late")
    # Its producer started a 10 s ago and went silent: past the 6.1 s estimate made then.
    ago = datetime.now(UTC) - timedelta(seconds=10)
    await append(
        stubs, run.run_id, timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), ago)
    )
    get = rs.GetRunRequest(run_id=run.run_id)
    for _ in range(100):
        snapshot = (await stubs.runs.GetRun(get)).run
        if snapshot.health == run_pb2.RUN_HEALTH_STALLED:
            break
        await asyncio.sleep(0.05)
    assert snapshot.health == run_pb2.RUN_HEALTH_STALLED
    remaining = snapshot.estimate.remaining.ToNanoseconds() / 1e9
    assert 5.0 <= remaining <= 6.5, snapshot.estimate  # b, c and d: about 6 s, not 1 s


async def test_an_estimate_from_one_past_run_says_it_is_less_sure_than_one_from_five(
    stubs: Stubs,
) -> None:
    """Confidence grows with the runs the estimate learned from, up to five: runs that each
    took 10 s say a fifth of what their spread allows per run (0.5 while fewer than three
    runs tell the spread, then 1)."""
    clock = Clock(datetime.now(UTC))
    confidences = []
    for _ in range(5):
        run = await create_run(stubs, "a", workflow="sure")
        await append(
            stubs,
            run.run_id,
            timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), clock.now),
        )
        clock.move(10)
        done = ev.RunEvent(step_completed=ev.StepCompleted(step_id="a"))
        await append(
            stubs,
            run.run_id,
            timed(done, clock.now),
            timed(ev.RunEvent(run_completed=ev.RunCompleted()), clock.now),
        )
        fresh = await create_run(stubs, "a", workflow="sure")
        await append(stubs, fresh.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
        estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=fresh.run_id))).run.estimate
        confidences.append((estimate.history_runs, estimate.confidence))
        await append(stubs, fresh.run_id, ev.RunEvent(run_cancelled=ev.RunCancelled()))
    assert confidences == [
        (1, pytest.approx(0.1)),
        (2, pytest.approx(0.2)),
        (3, pytest.approx(0.6)),
        (4, pytest.approx(0.8)),
        (5, pytest.approx(1.0)),
    ]


async def test_a_stall_makes_the_estimate_again_where_the_count_down_would_say_40_s(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """On the test's clock: a takes 10 s and b 100 s, so a run starting a is 110 s from its
    end. Its producer goes silent for 70 s, past a's 30 s threshold: counted down, the
    estimate made at a's start would say 40 s; made again at the stall it says b's 100 s
    and the second a's overdue remainder takes."""
    policy = InsightPolicy(stall_min=30.0, stall_factor=3.0, check_every=0.05)
    async with clocked_server(tmp_path, server_config, policy) as (stubs, clock):
        for _ in range(3):  # the history: a takes 10 s, b 100 s
            run = await create_run(stubs, "a", "b", workflow="long")
            for step, took in (("a", 10), ("b", 100)):
                await append(
                    stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id=step))
                )
                clock.move(took)
                done = ev.RunEvent(step_completed=ev.StepCompleted(step_id=step))
                await append(stubs, run.run_id, done)
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        run = await create_run(stubs, "a", "b", workflow="long")
        await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
        made = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
        assert left_of(made) == pytest.approx(110, abs=1)
        clock.move(70)
        stalled = await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
        assert left_of(stalled.estimate) == pytest.approx(101, abs=2)


async def gapped(
    stubs: Stubs, start: datetime, steps: int, *, stop_at: int | None = None
) -> tuple[run_pb2.Run, datetime]:
    """A run of the "manager" workflow from `start`: each of `steps` steps takes 10 s, after
    10 s outside any step (the manager thinking, routing, writing). With `stop_at`, the run
    stops as that step starts; returns (run, now)."""
    names = [f"s{i}" for i in range(steps)]
    run = await create_run(stubs, *names, workflow="manager")
    now = start
    await append(stubs, run.run_id, timed(ev.RunEvent(run_started=ev.RunStarted()), now))
    for i, step in enumerate(names):
        now += timedelta(seconds=10)
        began = ev.RunEvent(step_started=ev.StepStarted(step_id=step))
        await append(stubs, run.run_id, timed(began, now))
        if i == stop_at:
            return run, now
        now += timedelta(seconds=10)
        done = ev.RunEvent(step_completed=ev.StepCompleted(step_id=step))
        await append(stubs, run.run_id, timed(done, now))
    await append(stubs, run.run_id, timed(ev.RunEvent(run_completed=ev.RunCompleted()), now))
    return run, now


async def test_the_eta_counts_the_time_runs_spend_between_their_steps(stubs) -> None:  # type: ignore[no-untyped-def]
    """A workflow that spends as long between its steps as in them was estimated from its
    steps' durations alone: half the time left, and "about a second" with half the run to
    go (found in review)."""
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(3):
        _, clock = await gapped(stubs, clock + timedelta(hours=1), 8)
    run, _ = await gapped(stubs, clock + timedelta(hours=1), 8, stop_at=2)
    estimate = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.estimate
    left = left_of(estimate)
    true_left = 10 + 5 * 20  # step s2 itself, then five steps each with the time before it
    assert abs(left - true_left) / true_left < 0.2, left


async def test_an_estimate_follows_the_clock_between_events_that_move_none_of_its_inputs(
    server,  # type: ignore[no-untyped-def]
    stubs,
) -> None:
    """A batch of events that cannot move the estimate (custom ones here) makes it again
    only every ESTIMATE_EVERY (0.5) seconds of the batches' time, where a run reporting a
    hundred events a second made it again for each: what only the clock moves is still
    told as it goes (a step at 10 % for 30 s of an expected 10), and a step's end at once.
    The server's clock keeps to the producer's, as the 30 s pass in a moment here."""
    began = datetime.now(UTC) - timedelta(hours=2)
    await newsletter(stubs, began, {"a": 10.0})
    run = await create_run(stubs, "a", workflow="newsletter")
    start = began + timedelta(hours=1)
    clock = Clock(start)
    on_clock(server, clock)
    step = ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=10))
    await append(
        stubs,
        run.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), start),
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), start),
        timed(step, start),
    )
    for n in range(1, 301):  # 30 s of custom events, ten a second
        clock.now = start + timedelta(seconds=n / 10)
        await append(stubs, run.run_id, timed(custom(n), clock.now))
    page = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, filter="kind = ESTIMATE_UPDATED", page_size=200)
    )
    # As of when each was made (its end time less its remaining time), by the batches' time.
    told = [
        e.estimate_updated.estimate.end_time.ToDatetime(UTC)
        - e.estimate_updated.estimate.remaining.ToTimedelta()
        - start
        for e in page.events
    ]
    assert told[-1] > timedelta(seconds=29), told  # told along the way, to the end
    moved = told[1:]  # after the one made as the step started
    assert len(moved) >= 10, told
    assert all(b - a >= timedelta(seconds=0.5) for a, b in pairwise(moved)), told
    clock.now = start + timedelta(seconds=30.05)
    done = timed(ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")), clock.now)
    await append(stubs, run.run_id, done, timed(custom(301), start + timedelta(seconds=30.06)))
    page = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, filter="kind = ESTIMATE_UPDATED", page_size=200)
    )
    assert len(page.events) == len(told) + 1  # an input: made again 0.05 s after the last


async def test_a_run_is_estimated_as_soon_as_its_workflow_has_history(
    stubs,  # type: ignore[no-untyped-def]
) -> None:
    """Found in review: a batch of custom events 0.3 s after the last estimate skipped the
    first one the workflow's new history allowed, and a quiet run then said "unknown"."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    run = await create_run(stubs, "a", workflow="first-of-its-kind")
    await append(
        stubs,
        run.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), start),
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), start),
    )
    await append(stubs, run.run_id, timed(custom(1), start + timedelta(seconds=60)))
    get = rs.GetRunRequest(run_id=run.run_id)
    assert not (await stubs.runs.GetRun(get)).run.HasField("estimate")  # no history yet
    past = await create_run(stubs, "a", workflow="first-of-its-kind")
    await append(
        stubs,
        past.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), start - timedelta(hours=2)),
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), start - timedelta(hours=2)),
        timed(ev.RunEvent(run_completed=ev.RunCompleted()), start - timedelta(hours=1)),
    )
    await append(stubs, run.run_id, timed(custom(2), start + timedelta(seconds=60.3)))
    assert (await stubs.runs.GetRun(get)).run.HasField("estimate")
