"""What a watcher trusts: an ETA that stands still while the run waits, never overdue at
"0 s", the producer's own estimate until history exists; health that recovers on success;
milestones that read right; item progress for runs without steps; the seed fields."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev

# What watchers read: the commit path changes nothing here.
STORES = BOTH_STORES


def at(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def timed(event: ev.RunEvent, moment: datetime) -> ev.RunEvent:
    event.event_time.CopyFrom(at(moment))
    return event


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


async def snapshot(stubs: Stubs, run_id: str) -> run_pb2.Run:
    return (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run_id))).run


async def history_run(stubs: Stubs, workflow: str, *steps: str, took: float = 5.0) -> None:
    """One finished run of `workflow` whose steps each took `took` seconds, in the past."""
    run = await create_run(stubs, *steps, workflow=workflow)
    moment = datetime.now(UTC) - timedelta(seconds=took * len(steps) + 60)
    for step in steps:
        await append(
            stubs,
            run.run_id,
            timed(ev.RunEvent(step_started=ev.StepStarted(step_id=step)), moment),
        )
        moment += timedelta(seconds=took)
        await append(
            stubs,
            run.run_id,
            timed(ev.RunEvent(step_completed=ev.StepCompleted(step_id=step)), moment),
        )
    await append(stubs, run.run_id, timed(ev.RunEvent(run_completed=ev.RunCompleted()), moment))


def ask(decision_id: str = "d1") -> ev.RunEvent:
    return ev.RunEvent(
        decision_requested=ev.DecisionRequested(
            decision_id=decision_id, prompt="Which?", options=[ev.DecisionOption(value="x")]
        )
    )


async def logged(stubs: Stubs, run_id: str, kinds: str = "") -> list[ev.RunEvent]:
    """The run's stored events (ListEvents, every page), for runs still going."""
    events: list[ev.RunEvent] = []
    token = ""
    while True:
        page = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run_id, filter=kinds, page_token=token)
        )
        events += page.events
        token = page.next_page_token
        if not token:
            return events


def left(run: run_pb2.Run) -> float:
    return run.estimate.remaining.ToNanoseconds() / 1e9


# --- the ETA ---------------------------------------------------------------------------------


async def test_eta_stands_still_while_the_run_waits_or_is_paused(stubs: Stubs) -> None:
    await history_run(stubs, "eta-hold", "a", "b", "c", took=30)
    run = await create_run(stubs, "a", "b", "c", workflow="eta-hold")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    assert (await snapshot(stubs, run.run_id)).estimate.source == run_pb2.ESTIMATE_SOURCE_HISTORY

    await append(stubs, run.run_id, ask())
    waiting = await snapshot(stubs, run.run_id)
    assert waiting.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT
    assert waiting.estimate.held
    await asyncio.sleep(0.3)
    later = await snapshot(stubs, run.run_id)
    assert left(later) == left(waiting)  # not counted down while a human decides
    # ...and the end moves with the clock: remaining from the moment of reading.
    assert later.estimate.end_time.ToNanoseconds() > waiting.estimate.end_time.ToNanoseconds()

    await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id))
    paused = await snapshot(stubs, run.run_id)
    assert paused.status == run_pb2.RUN_STATUS_PAUSED and paused.estimate.held
    assert left(paused) == left(waiting)

    # Paused with nothing open: resumed, it counts down again from where it stood.
    other = await create_run(stubs, "a", "b", "c", workflow="eta-hold")
    await append(stubs, other.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=other.run_id))
    held = await snapshot(stubs, other.run_id)
    assert held.estimate.held
    await asyncio.sleep(0.3)
    assert left(await snapshot(stubs, other.run_id)) == left(held)
    await stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=other.run_id))
    await asyncio.sleep(0.3)
    going = await snapshot(stubs, other.run_id)
    assert not going.estimate.held
    assert left(going) < left(held)
    assert left(held) - left(going) < 5  # the pause did not eat into it
    updates = [
        e.estimate_updated.estimate.held
        for e in await logged(stubs, other.run_id, "kind = ESTIMATE_UPDATED")
    ]
    assert updates[-2:] == [True, False]  # every watcher hears it stop and go on


async def test_an_overdue_estimate_never_says_zero_nor_leaves_its_range(stubs: Stubs) -> None:
    await history_run(stubs, "eta-late", "a", "b", took=2)
    run = await create_run(stubs, "a", "b", workflow="eta-late")
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    await append(
        stubs,
        run.run_id,
        timed(ev.RunEvent(step_started=ev.StepStarted(step_id="a")), long_ago),
        timed(ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=99)), long_ago),
    )
    late = await snapshot(stubs, run.run_id)
    assert late.status == run_pb2.RUN_STATUS_RUNNING
    estimate = late.estimate
    assert estimate.remaining.ToNanoseconds() >= 1_000_000_000  # "~1 s", never "~0 ms"
    low, high = estimate.remaining_low.ToNanoseconds(), estimate.remaining_high.ToNanoseconds()
    assert low <= estimate.remaining.ToNanoseconds() <= high


async def test_a_run_whose_history_took_no_time_is_never_estimated_at_zero(
    stubs: Stubs,
) -> None:
    """History of steps that took microseconds: the running run, and the same run held
    while it waits for an answer, say about a second left, not "0 s"."""
    await history_run(stubs, "eta-instant", "a", "b", took=0.000_001)
    run = await create_run(stubs, "a", "b", workflow="eta-instant")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    running = (await snapshot(stubs, run.run_id)).estimate
    asked = ev.DecisionRequested(
        decision_id="d", prompt="Go on?", options=[ev.DecisionOption(value="yes")]
    )
    await append(stubs, run.run_id, ev.RunEvent(decision_requested=asked))
    held = await snapshot(stubs, run.run_id)
    assert held.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT and held.estimate.held
    for estimate in (running, held.estimate):
        assert estimate.remaining.ToNanoseconds() >= 1_000_000_000
        low, high = estimate.remaining_low.ToNanoseconds(), estimate.remaining_high.ToNanoseconds()
        assert low <= estimate.remaining.ToNanoseconds() <= high


async def test_the_producers_estimate_shows_until_history_wins(stubs: Stubs) -> None:
    run = await create_run(stubs, "write", workflow="stories")
    said = ev.StepProgress(step_id="write", percent=10, estimated_time_remaining=seconds(120))
    await append(stubs, run.run_id, ev.RunEvent(step_progress=said))
    shown = (await snapshot(stubs, run.run_id)).estimate
    assert shown.source == run_pb2.ESTIMATE_SOURCE_PRODUCER
    assert 100 < shown.remaining.ToNanoseconds() / 1e9 <= 120
    # Events without a figure keep the producer's estimate rather than dropping it.
    await append(stubs, run.run_id, ev.RunEvent(step_progress=ev.StepProgress(step_id="write")))
    assert (await snapshot(stubs, run.run_id)).estimate.source == run_pb2.ESTIMATE_SOURCE_PRODUCER

    await history_run(stubs, "stories-2", "write", took=40)
    learned = await create_run(stubs, "write", workflow="stories-2")
    await append(stubs, learned.run_id, ev.RunEvent(step_progress=said))
    wins = (await snapshot(stubs, learned.run_id)).estimate
    assert wins.source == run_pb2.ESTIMATE_SOURCE_HISTORY and wins.history_runs == 1
    assert wins.remaining.ToNanoseconds() / 1e9 < 60  # the 40 s history, not the 120 s said


async def test_a_negative_producer_estimate_is_refused_by_name(stubs: Stubs) -> None:
    run = await create_run(stubs, "write")
    bad = ev.StepProgress(step_id="write", estimated_time_remaining=seconds(-3))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await append(stubs, run.run_id, ev.RunEvent(step_progress=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "step_progress.estimated_time_remaining" in (err.value.details() or "")


# --- health ----------------------------------------------------------------------------------


async def health_changes(stubs: Stubs, run_id: str) -> list[Any]:
    return [e.health_changed for e in await logged(stubs, run_id, "kind = HEALTH_CHANGED")]


async def test_a_run_that_succeeds_after_a_recovery_and_a_pause_is_healthy(stubs: Stubs) -> None:
    run = await create_run(stubs, "a")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(
            error_recovery=ev.ErrorRecovery(
                error_message="rate limited", step_id="a", can_continue=True
            )
        ),
    )
    await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id))
    await stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=run.run_id))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    final = await snapshot(stubs, run.run_id)
    assert final.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert final.health == run_pb2.RUN_HEALTH_HEALTHY
    last = (await health_changes(stubs, run.run_id))[-1]
    assert (last.previous_health, last.health) == (
        run_pb2.RUN_HEALTH_DEGRADED,
        run_pb2.RUN_HEALTH_HEALTHY,
    )
    assert last.reason == "the run succeeded"


async def test_a_retry_is_named_only_when_the_same_step_starts_again(stubs: Stubs) -> None:
    failure = run_pb2.ErrorInfo(message="boom")
    moved_on = await create_run(stubs, "a", "b")
    await append(
        stubs,
        moved_on.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_failed=ev.StepFailed(step_id="a", error=failure)),
    )
    await append(stubs, moved_on.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="b")))
    await append(stubs, moved_on.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    reasons = [c.reason for c in await health_changes(stubs, moved_on.run_id)]
    assert "step a failed: boom; the run went on with step b" in reasons
    assert not any("retried" in r for r in reasons)

    retried = await create_run(stubs, "a")
    await append(
        stubs,
        retried.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_failed=ev.StepFailed(step_id="a", error=failure)),
    )
    await append(stubs, retried.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    reasons = [c.reason for c in await health_changes(stubs, retried.run_id)]
    assert reasons[-1] == "step a retried (attempt 2)"


# --- milestones ------------------------------------------------------------------------------


async def milestones(stubs: Stubs, run_id: str) -> list[ev.Milestone]:
    return [e.milestone for e in await logged(stubs, run_id, "kind = MILESTONE")]


async def test_progress_milestones_read_right(stubs: Stubs) -> None:
    run = await create_run(stubs, "a", "b", "c", "d")
    # The first step all but done: 25 %, and no "0 of 4 steps done" beside it.
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=100)),
    )
    [first] = await milestones(stubs, run.run_id)
    assert first.title == "25% complete"
    assert first.description == "A under way"
    # One event crossing 25 % and 50 % (a step of two): one message naming both.
    two = await create_run(stubs, "a", "b")
    await append(
        stubs,
        two.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
    )
    [both] = await milestones(stubs, two.run_id)
    assert (both.title, both.milestone_id) == ("25% and 50% complete", "progress-50")
    assert both.description == "1 of 2 steps done"
    # The last step at 100 % but still running: 75 %, and not "100% complete" yet.
    await append(
        stubs,
        two.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(step_progress=ev.StepProgress(step_id="b", percent=100)),
    )
    assert (await snapshot(stubs, two.run_id)).progress.percent == 100
    await append(stubs, two.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="b")))
    fired = await milestones(stubs, two.run_id)
    assert [m.title for m in fired] == ["25% and 50% complete", "75% complete"]
    assert fired[1].description == "1 of 2 steps done, B under way"
    await append(stubs, two.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    fired = await milestones(stubs, two.run_id)
    assert [m.milestone_id for m in fired] == ["progress-50", "progress-75", "progress-100"]
    assert (fired[-1].title, fired[-1].description) == ("100% complete", "all 2 steps done")


async def test_a_run_that_ends_with_a_step_never_run_says_how_many_were_done(
    stubs: Stubs,
) -> None:
    """It said "all 3 steps done" beside a progress of 2 of 3 (found in review)."""
    run = await create_run(stubs, "a", "b", "c")
    for step in ("a", "b"):
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id=step)),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id=step)),
        )
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    last = (await milestones(stubs, run.run_id))[-1]
    assert (last.title, last.description) == ("100% complete", "2 of 3 steps done")
    progress = (await snapshot(stubs, run.run_id)).progress
    assert (progress.completed_steps, progress.total_steps) == (2, 3)


async def test_a_run_that_ends_while_its_last_step_runs_counts_that_step_done(
    stubs: Stubs,
) -> None:
    """The server completes the running step, then says 100 %: it said "0 of 1 steps done"
    beside a snapshot of 1 of 1 (found in review)."""
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    last = (await milestones(stubs, run.run_id))[-1]
    assert (last.title, last.description) == ("100% complete", "its one step done")
    progress = (await snapshot(stubs, run.run_id)).progress
    assert (progress.completed_steps, progress.total_steps) == (1, 1)


# --- item progress ---------------------------------------------------------------------------


def items(completed: int, total: int, **stages: int) -> ev.RunEvent:
    return ev.RunEvent(
        item_progress=ev.ItemProgress(
            completed=completed, total=total, unit="companies", by_stage=stages
        )
    )


async def test_item_progress_drives_percent_and_milestones_of_a_run_without_steps(
    stubs: Stubs,
) -> None:
    run = await create_run(stubs, workflow="discovery")
    await append(stubs, run.run_id, items(3, 25, found=3))
    assert (await snapshot(stubs, run.run_id)).progress.percent == 12
    await append(stubs, run.run_id, items(15, 25, found=15, enriched=9))
    snap = await snapshot(stubs, run.run_id)
    assert snap.progress.percent == 60
    assert (snap.progress.items.completed, snap.progress.items.total) == (15, 25)
    assert snap.progress.items.unit == "companies"
    assert dict(snap.progress.items.by_stage) == {"found": 15, "enriched": 9}
    [crossed] = await milestones(stubs, run.run_id)
    assert crossed.title == "25% and 50% complete"
    assert crossed.description == "15 of 25 companies"
    await append(stubs, run.run_id, items(25, 25, found=25))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    assert [m.title for m in await milestones(stubs, run.run_id)] == [
        "25% and 50% complete",
        "75% complete",
        "100% complete",
    ]


async def test_item_runs_learn_an_eta_from_their_history(stubs: Stubs) -> None:
    done = await create_run(stubs, workflow="crawl")
    start = datetime.now(UTC) - timedelta(minutes=30)
    await append(stubs, done.run_id, timed(items(0, 10), start))
    await append(stubs, done.run_id, timed(items(10, 10), start + timedelta(seconds=100)))
    await append(
        stubs,
        done.run_id,
        timed(ev.RunEvent(run_completed=ev.RunCompleted()), start + timedelta(seconds=100)),
    )
    run = await create_run(stubs, workflow="crawl")
    now = datetime.now(UTC)
    await append(stubs, run.run_id, timed(items(0, 10), now - timedelta(seconds=50)))
    await append(stubs, run.run_id, timed(items(5, 10), now))
    estimate = (await snapshot(stubs, run.run_id)).estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_HISTORY
    assert 30 < estimate.remaining.ToNanoseconds() / 1e9 <= 60  # about 50 s left


async def test_negative_item_counts_are_refused_by_name(stubs: Stubs) -> None:
    run = await create_run(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await append(stubs, run.run_id, items(-1, 10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "item_progress.completed" in (err.value.details() or "")
    assert (await snapshot(stubs, run.run_id)).last_seq == 1  # nothing half-applied


# --- seed fields -----------------------------------------------------------------------------


async def test_seed_fields_have_a_typed_home(stubs: Stubs) -> None:
    run = (
        await stubs.runs.CreateRun(
            rs.CreateRunRequest(
                workflow="campaign",
                steps=[
                    run_pb2.StepSpec(step_id="strategy", phase="Plan"),
                    run_pb2.StepSpec(
                        step_id="copy", depends_on=["strategy"], track="creative", phase="Make"
                    ),
                    run_pb2.StepSpec(
                        step_id="media", depends_on=["strategy"], track="media", phase="Make"
                    ),
                ],
            )
        )
    ).run
    assert [(s.step_id, list(s.depends_on), s.track, s.phase) for s in run.steps] == [
        ("strategy", [], "", "Plan"),
        ("copy", ["strategy"], "creative", "Make"),
        ("media", ["strategy"], "media", "Make"),
    ]
    details = run_pb2.SubStepDetails(operation="executing_agent_logic", model="o3")
    details.estimated_completion_time.CopyFrom(at(datetime(2030, 1, 1, tzinfo=UTC)))
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            step_progress=ev.StepProgress(step_id="copy", percent=40, sub_step_details=details)
        ),
        ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"impressions": 10000, "ctr": 4.5})),
        ev.RunEvent(
            metrics_update=ev.MetricsUpdate(
                values={"impressions": 10500, "ctr": 5.0}, units={"ctr": "%"}
            )
        ),
        ev.RunEvent(
            alert=ev.Alert(
                message="CPC above threshold",
                step_id="media",
                suggested_action="Pause Campaign",
                action=ev.AlertAction(type=ev.ALERT_ACTION_TYPE_PAUSE_RUN, label="Pause Campaign"),
            )
        ),
        ev.RunEvent(error_recovery=ev.ErrorRecovery(error_message="timeout", step_id="copy")),
    )
    snap = await snapshot(stubs, run.run_id)
    copy = snap.steps[1]
    assert copy.sub_step_details.model == "o3"
    assert copy.sub_step_details.operation == "executing_agent_logic"
    assert dict(snap.metric_units) == {"ctr": "%"}
    assert dict(snap.metric_changes) == {"impressions": 500, "ctr": 0.5}
    events = await logged(stubs, run.run_id)
    updates = [e.metrics_update for e in events if e.HasField("metrics_update")]
    assert dict(updates[0].changes) == {}  # a first value has no change
    assert dict(updates[1].changes) == {"impressions": 500, "ctr": 0.5}  # stored for replay
    [alert] = [e.alert for e in events if e.HasField("alert")]
    assert (alert.step_id, alert.action.type) == ("media", ev.ALERT_ACTION_TYPE_PAUSE_RUN)
    [recovery] = [e.error_recovery for e in events if e.HasField("error_recovery")]
    assert recovery.step_id == "copy"

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await append(stubs, run.run_id, ev.RunEvent(alert=ev.Alert(message="x", step_id="nope")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "alert.step_id" in (err.value.details() or "")
    forged = ev.MetricsUpdate(values={"a": 1}, changes={"a": 1})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await append(stubs, run.run_id, ev.RunEvent(metrics_update=forged))
    assert "metrics_update.changes" in (err.value.details() or "")
