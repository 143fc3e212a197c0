"""Where run insight draws its lines: a target reached exactly, a run faster or slower than
its workflow's history, a step silent past the stall threshold its history sets.

Each line is checked on both of its sides. History is built from earlier runs of the same
workflow whose producer dated its events, so no test waits for real time to pass; the stall
test runs the server on the test's clock (as test_abandoned does).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, clocked_server, create_run, ev, get_run, until_health

# Milestones are judged as a batch is folded and stalls by the background check: the commit
# path changes neither.
STORES = BOTH_STORES

TEN = timedelta(seconds=10)


def dated(event: ev.RunEvent, moment: datetime) -> ev.RunEvent:
    event.event_time.FromDatetime(moment)
    return event


async def milestones(stubs: Stubs, run_id: str) -> list[ev.Milestone]:
    listed = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run_id, filter="kind = MILESTONE", page_size=100)
    )
    return [e.milestone for e in listed.events]


async def test_a_target_met_exactly_fires_its_milestone_once_and_one_just_short_of_it_none(
    stubs: Stubs,
) -> None:
    """A target is a value to reach, at least: 10 companies found of a target of 10, or
    quality 0.9 of a threshold of 0.9, meets it."""
    run = (
        await stubs.runs.CreateRun(
            rs.CreateRunRequest(
                workflow="discovery",
                targets=[
                    run_pb2.Target(metric="companies_found", value=10, title="Find 10"),
                    run_pb2.Target(metric="quality", value=0.9, kind=run_pb2.TARGET_KIND_QUALITY),
                ],
            )
        )
    ).run

    async def report(companies: float, quality: float) -> list[tuple[int, str]]:
        update = ev.MetricsUpdate(values={"companies_found": companies, "quality": quality})
        await append(stubs, run.run_id, ev.RunEvent(metrics_update=update))
        return [(m.type, m.title) for m in await milestones(stubs, run.run_id)]

    assert await report(9, 0.89) == []  # just short of both
    met = [
        (ev.MILESTONE_TYPE_TARGET_REACHED, "Target reached!"),
        (ev.MILESTONE_TYPE_QUALITY, "Quality threshold met"),
    ]
    assert await report(10, 0.9) == met  # exactly on both
    assert await report(12, 0.95) == met  # past them: not again


async def test_a_run_well_under_its_workflows_usual_time_is_faster_than_expected_and_a_slow_one_not(
    stubs: Stubs,
) -> None:
    """Two earlier runs took 100 s each; one that takes 10 s is told "Faster than expected"
    as it completes, one that takes 200 s (or 85 s, under usual but not well under) is not."""
    clock = datetime(2026, 1, 1, tzinfo=UTC)

    async def run_taking(seconds: float, workflow: str = "report") -> list[ev.Milestone]:
        nonlocal clock
        clock += timedelta(hours=1)
        run = await create_run(stubs, "work", workflow=workflow)
        began = ev.RunEvent(step_started=ev.StepStarted(step_id="work"))
        done = ev.RunEvent(step_completed=ev.StepCompleted(step_id="work"))
        end = clock + timedelta(seconds=seconds)
        await append(
            stubs,
            run.run_id,
            dated(ev.RunEvent(run_started=ev.RunStarted()), clock),
            dated(began, clock),
            dated(done, end),
            dated(ev.RunEvent(run_completed=ev.RunCompleted()), end),
        )
        return [m for m in await milestones(stubs, run.run_id) if m.milestone_id == "speed"]

    assert await run_taking(100) == []  # no history yet: nothing to be faster than
    await run_taking(100)
    [fast] = await run_taking(10)
    assert (fast.type, fast.title, fast.description) == (
        ev.MILESTONE_TYPE_SPEED,
        "Faster than expected",
        "Finished in 10s, 90% faster than the usual 100s",
    )
    assert await run_taking(200) == []
    assert await run_taking(85) == []
    # Durations as a person reads them, a quick workflow's too: it said "Finished in 0s, 35%
    # faster than the usual 0s" (found in review), and an hour as "3600s".
    for workflow, usual, took, said in [
        ("quick", 0.2, 0.05, "Finished in 0.05s, 75% faster than the usual 0.2s"),
        ("nightly", 7200, 1800, "Finished in 30m, 75% faster than the usual 2h"),
    ]:
        await run_taking(usual, workflow)
        await run_taking(usual, workflow)
        [fast] = await run_taking(took, workflow)
        assert fast.description == said


async def test_a_step_is_stalled_after_its_usual_time_times_the_stall_factor_not_its_usual_time(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """History says step s takes 10 s, so with the stall factor 3 its run is STALLED only
    after 30 s of silence: at 15 s it is still HEALTHY, while a step with no history, held
    to stall_after (12 s), is STALLED by then (so the checks did look at both)."""
    check_every = 0.02
    policy = InsightPolicy(stall_after=12, stall_min=1, stall_factor=3, check_every=check_every)
    async with clocked_server(tmp_path, server_config, policy) as (stubs, clock):
        for _ in range(2):  # the history, dated an hour back: s took 10 s both times
            past = await create_run(stubs, "s", workflow="crawl")
            began = clock.now - timedelta(hours=1)
            await append(
                stubs,
                past.run_id,
                dated(ev.RunEvent(step_started=ev.StepStarted(step_id="s")), began),
                dated(ev.RunEvent(step_completed=ev.StepCompleted(step_id="s")), began + TEN),
                dated(ev.RunEvent(run_completed=ev.RunCompleted()), began + TEN),
            )
        learnt = await create_run(stubs, "s", workflow="crawl")
        unknown = await create_run(stubs, "x", workflow="never-run-before")
        for run_id, step in ((learnt.run_id, "s"), (unknown.run_id, "x")):
            await append(stubs, run_id, ev.RunEvent(step_started=ev.StepStarted(step_id=step)))

        clock.move(15)  # past s's usual 10 s, short of 3 x 10 s
        stalled = await until_health(stubs, unknown.run_id, run_pb2.RUN_HEALTH_STALLED)
        assert stalled.health_reason == "x: no report for 15s (expected within 12s)"
        await asyncio.sleep(5 * check_every)  # passes after the one that found x silent
        assert (await get_run(stubs, learnt.run_id)).health == run_pb2.RUN_HEALTH_HEALTHY

        clock.move(16)  # 31 s
        stalled = await until_health(stubs, learnt.run_id, run_pb2.RUN_HEALTH_STALLED)
        assert stalled.health_reason == "s: no report for 31s (expected within 30s)"
