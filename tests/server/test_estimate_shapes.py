"""What is left of a run as its estimate from history says it: the steps of a track one
after another, tracks side by side; a run without steps by its item counts; each step by
the median of the durations its past runs completed it in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run
from tests.server.test_insight import left_of, newsletter, timed

# What the estimate says: the commit path changes nothing here.
STORES = BOTH_STORES

PLAN = [
    run_pb2.StepSpec(step_id="a", track="text"),
    run_pb2.StepSpec(step_id="b", track="text"),
    run_pb2.StepSpec(step_id="c", track="visuals"),
]


async def test_tracks_run_side_by_side_and_their_steps_one_after_another(stubs: Stubs) -> None:
    """History: a 30 s then b 40 s on one track, c 50 s beside them; the run took 70 s. A
    run just started has 70 s left: not 120 (every step added up), nor 50 (the longest)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    past = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="tracks", steps=PLAN))).run

    def at(seconds: float, event: ev.RunEvent) -> ev.RunEvent:
        return timed(event, start + timedelta(seconds=seconds))

    def began(step_id: str) -> ev.RunEvent:
        return ev.RunEvent(step_started=ev.StepStarted(step_id=step_id))

    def done(step_id: str) -> ev.RunEvent:
        return ev.RunEvent(step_completed=ev.StepCompleted(step_id=step_id))

    await append(
        stubs,
        past.run_id,
        at(0, ev.RunEvent(run_started=ev.RunStarted())),
        at(0, began("a")),
        at(0, began("c")),
        at(30, done("a")),
        at(30, began("b")),
        at(50, done("c")),
        at(70, done("b")),
        at(70, ev.RunEvent(run_completed=ev.RunCompleted())),
    )

    run = (await stubs.runs.CreateRun(rs.CreateRunRequest(workflow="tracks", steps=PLAN))).run
    begun = timed(ev.RunEvent(run_started=ev.RunStarted()), datetime.now(UTC))
    await append(stubs, run.run_id, begun)
    assert left_of((await get_run(stubs, run.run_id)).estimate) == pytest.approx(70, abs=2)


async def test_a_run_without_steps_is_estimated_by_its_item_counts(stubs: Stubs) -> None:
    """History: a run of 100 s. 50 s in with 80 of 100 items done, the plan says 50 s left
    and the items 12.5 s: the estimate says their mean, about 31 s."""
    start = datetime.now(UTC) - timedelta(hours=1)
    past = await create_run(stubs, workflow="items")
    await append(
        stubs,
        past.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), start),
        timed(ev.RunEvent(run_completed=ev.RunCompleted()), start + timedelta(seconds=100)),
    )
    run = await create_run(stubs, workflow="items")
    now = datetime.now(UTC)
    items = ev.RunEvent(item_progress=ev.ItemProgress(completed=80, total=100))
    await append(
        stubs,
        run.run_id,
        timed(ev.RunEvent(run_started=ev.RunStarted()), now - timedelta(seconds=50)),
        timed(items, now),
    )
    assert left_of((await get_run(stubs, run.run_id)).estimate) == pytest.approx(31.25, abs=2)


async def test_one_slow_past_run_does_not_skew_the_estimate(stubs: Stubs) -> None:
    """Step a took 100 s, 100 s and 1,000 s: it is expected to take 100 s (the median), not
    400 s (the mean)."""
    start = datetime.now(UTC) - timedelta(hours=3)
    for took in (100.0, 100.0, 1000.0):
        start = await newsletter(stubs, start, {"a": took}) + timedelta(minutes=1)
    run = await create_run(stubs, "a", workflow="newsletter")
    began = timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), datetime.now(UTC))
    await append(stubs, run.run_id, began)
    assert left_of((await get_run(stubs, run.run_id)).estimate) == pytest.approx(100, abs=3)


async def test_a_step_skipped_part_way_teaches_nothing_of_its_duration(stubs: Stubs) -> None:
    """The past run did a in 100 s and gave b up 5 s in: b is expected to take what the
    workflow's other steps take (100 s), not 5 s."""
    start = datetime.now(UTC) - timedelta(hours=1)
    past = await create_run(stubs, "a", "b", workflow="skips")

    def at(seconds: float, event: ev.RunEvent) -> ev.RunEvent:
        return timed(event, start + timedelta(seconds=seconds))

    skip = ev.RunEvent(step_skipped=ev.StepSkipped(step_id="b", reason="not needed"))
    await append(
        stubs,
        past.run_id,
        at(0, ev.RunEvent(run_started=ev.RunStarted())),
        at(0, ev.RunEvent(step_started=ev.StepStarted(step_id="a"))),
        at(100, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a"))),
        at(100, ev.RunEvent(step_started=ev.StepStarted(step_id="b"))),
        at(105, skip),
        at(105, ev.RunEvent(run_completed=ev.RunCompleted())),
    )
    run = await create_run(stubs, "a", "b", workflow="skips")
    began = timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), datetime.now(UTC))
    await append(stubs, run.run_id, began)
    # 100 s each, and 5 % more for the time the past run spent outside its timed steps.
    assert left_of((await get_run(stubs, run.run_id)).estimate) == pytest.approx(210, abs=3)
