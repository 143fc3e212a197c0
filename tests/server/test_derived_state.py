"""The snapshot a watcher queries is exactly what the run's events say."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from runstream.v1 import run_pb2, run_service_pb2

from tests.conftest import ConfigFactory
from tests.server.support import append, create_run, ev, get_run, serving

pytestmark = pytest.mark.asyncio


async def test_new_run_is_pending_with_its_plan(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(
        stubs, "plan", "write", "review", display_name="Spring campaign", labels={"team": "growth"}
    )
    assert run.status == run_pb2.RUN_STATUS_PENDING
    assert run.last_seq == 1
    assert run.display_name == "Spring campaign"
    assert dict(run.labels) == {"team": "growth"}
    assert [s.step_id for s in run.steps] == ["plan", "write", "review"]
    assert {s.status for s in run.steps} == {run_pb2.STEP_STATUS_PENDING}
    assert (run.progress.completed_steps, run.progress.total_steps, run.progress.percent) == (
        0,
        3,
        0,
    )


async def test_progress_counts_the_running_steps_own_percent(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a", "b", "c", "d")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(run_started=ev.RunStarted()),
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="a", metrics={"variants": 3})),
        ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
        ev.RunEvent(
            step_progress=ev.StepProgress(
                step_id="b",
                percent=50,
                sub_step="drafting",
                detail="headline variants",
                tokens_processed=1500,
            )
        ),
    )
    snap = await get_run(stubs, run.run_id)
    assert snap.status == run_pb2.RUN_STATUS_RUNNING
    assert snap.HasField("start_time")
    # one step done and half of another, out of four: 37.5 %
    assert snap.progress.completed_steps == 1
    assert snap.progress.percent == pytest.approx(37.5)
    assert snap.current_step_id == "b"
    b = snap.steps[1]
    assert (b.status, b.percent, b.sub_step, b.detail, b.tokens_processed) == (
        run_pb2.STEP_STATUS_RUNNING,
        50,
        "drafting",
        "headline variants",
        1500,
    )
    assert snap.steps[0].status == run_pb2.STEP_STATUS_SUCCEEDED
    assert snap.steps[0].metrics["variants"] == 3
    assert snap.steps[0].HasField("duration")
    # Events 2-6 are the producer's; the server added seq 7, the 25% milestone they crossed.
    assert snap.last_seq == 7


async def test_active_agents_follow_agent_activity_and_steps(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "find")
    activity = ev.AgentActivity
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            agent_activity=activity(
                agent_id="bot-1",
                agent_name="OpportunityBot",
                agent_type="opportunity_bot",
                activity=ev.AGENT_ACTIVITY_TYPE_STARTED,
            )
        ),
        ev.RunEvent(
            agent_activity=activity(
                agent_id="bot-2",
                agent_name="EnrichmentAgent",
                activity=ev.AGENT_ACTIVITY_TYPE_STARTED,
            )
        ),
        ev.RunEvent(
            agent_activity=activity(
                agent_id="bot-1",
                activity=ev.AGENT_ACTIVITY_TYPE_PROGRESS,
                message="Found 5 new companies",
            )
        ),
    )
    snap = await get_run(stubs, run.run_id)
    agents = {a.agent_id: a for a in snap.active_agents}
    assert set(agents) == {"bot-1", "bot-2"}
    assert agents["bot-1"].name == "OpportunityBot"
    assert agents["bot-1"].type == "opportunity_bot"
    assert agents["bot-1"].message == "Found 5 new companies"

    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            agent_activity=activity(agent_id="bot-1", activity=ev.AGENT_ACTIVITY_TYPE_COMPLETED)
        ),
    )
    assert [a.agent_id for a in (await get_run(stubs, run.run_id)).active_agents] == ["bot-2"]

    # A step's agent is active while the step runs and leaves with it.
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="find")))
    assert "find-agent" in {a.agent_id for a in (await get_run(stubs, run.run_id)).active_agents}
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="find")))
    assert "find-agent" not in {
        a.agent_id for a in (await get_run(stubs, run.run_id)).active_agents
    }


async def test_an_agent_on_parallel_steps_stays_active_until_its_last_step_ends(stubs) -> None:  # type: ignore[no-untyped-def]
    """A team named in the plan on two parallel tracks: one track finishing does not make the
    team vanish from the run while it still works on the other."""
    plan = [
        run_pb2.StepSpec(step_id=f"copy-{lang}", agent="Copy Team", track=lang)
        for lang in ("en", "fr")
    ]
    request = run_service_pb2.CreateRunRequest(workflow="copy", steps=plan)
    run = (await stubs.runs.CreateRun(request)).run
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="copy-en")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="copy-fr")),
    )
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="copy-fr")))
    snap = await get_run(stubs, run.run_id)
    assert [(a.agent_id, a.step_id) for a in snap.active_agents] == [("Copy Team", "copy-en")]

    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="copy-en")))
    assert list((await get_run(stubs, run.run_id)).active_agents) == []


async def test_a_late_report_on_an_ended_step_does_not_make_its_agent_active(stubs) -> None:  # type: ignore[no-untyped-def]
    """A framework callback reporting after its step closed: the report is accepted and kept
    in the activity feed, but the run does not show the agent at work for the rest of it."""
    run = await create_run(stubs, "a", "b")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
    )
    late = ev.AgentActivity(
        agent_id="late",
        activity=ev.AGENT_ACTIVITY_TYPE_PROGRESS,
        step_id="a",
        message="wrapping up",
    )
    await append(stubs, run.run_id, ev.RunEvent(agent_activity=late))
    snap = await get_run(stubs, run.run_id)
    assert list(snap.active_agents) == []
    feed = await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))
    assert [e.agent_activity.message for e in feed.recent_activity] == ["wrapping up"]

    # On a step still running the same report makes the agent active, as before.
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="b")))
    late.step_id = "b"
    await append(stubs, run.run_id, ev.RunEvent(agent_activity=late))
    snap = await get_run(stubs, run.run_id)
    assert ("late", "b") in [(a.agent_id, a.step_id) for a in snap.active_agents]


async def test_completion_failure_and_health(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a", "b")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(
            error_recovery=ev.ErrorRecovery(
                error_message="API rate limit exceeded",
                can_continue=True,
                recovery_strategy="retry_with_backoff",
            )
        ),
    )
    assert (await get_run(stubs, run.run_id)).health == run_pb2.RUN_HEALTH_DEGRADED
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            step_completed=ev.StepCompleted(
                step_id="a",
                duration=duration_pb2.Duration(seconds=42),
                artifacts=[run_pb2.Artifact(name="persona.json", kind="persona")],
            )
        ),
        ev.RunEvent(step_skipped=ev.StepSkipped(step_id="b", reason="not needed")),
        ev.RunEvent(run_completed=ev.RunCompleted(summary="campaign ready")),
    )
    snap = await get_run(stubs, run.run_id)
    assert snap.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert snap.progress.percent == 100
    assert snap.progress.completed_steps == 2
    assert snap.result_summary == "campaign ready"
    assert snap.HasField("end_time")
    assert snap.steps[0].duration.seconds == 42
    assert snap.steps[1].skip_reason == "not needed"
    assert snap.artifacts_summary.total == 1
    assert snap.artifacts_summary.by_kind["persona"] == 1
    assert snap.current_step_id == ""
    assert list(snap.active_agents) == []

    failed = await create_run(stubs, "a")
    await append(
        stubs,
        failed.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(
            step_failed=ev.StepFailed(
                step_id="a",
                error=run_pb2.ErrorInfo(code="RATE_LIMITED", message="gave up after 5 retries"),
            )
        ),
        ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="step a failed"))),
    )
    snap = await get_run(stubs, failed.run_id)
    assert snap.status == run_pb2.RUN_STATUS_FAILED
    assert snap.health == run_pb2.RUN_HEALTH_FAILING
    assert snap.error.message == "step a failed"
    assert snap.steps[0].error.code == "RATE_LIMITED"


@pytest.mark.parametrize("ending", ["cancelled", "failed", "completed"])
async def test_a_step_still_running_when_the_run_ends_is_closed_with_it(stubs, ending) -> None:  # type: ignore[no-untyped-def]
    """Step a runs, b never started: a ends as the run did (succeeded, or failed naming why),
    in an event watchers see before the run's end; b stays pending."""
    run = await create_run(stubs, "a", "b")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    if ending == "cancelled":
        await stubs.runs.CancelRun(
            run_service_pb2.CancelRunRequest(run_id=run.run_id, reason="over budget")
        )
    elif ending == "failed":
        error = run_pb2.ErrorInfo(message="model quota exhausted")
        await append(stubs, run.run_id, ev.RunEvent(run_failed=ev.RunFailed(error=error)))
    else:
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    snap = await get_run(stubs, run.run_id)
    a, b = snap.steps
    assert b.status == run_pb2.STEP_STATUS_PENDING
    assert a.HasField("end_time")
    if ending == "completed":
        assert a.status == run_pb2.STEP_STATUS_SUCCEEDED
    else:
        assert a.status == run_pb2.STEP_STATUS_FAILED
        assert (a.error.code, a.error.message) == {
            "cancelled": ("RUN_CANCELLED", "the run was cancelled: over budget"),
            "failed": ("RUN_FAILED", "the run failed: model quota exhausted"),
        }[ending]
    events = (
        await stubs.runs.ListEvents(run_service_pb2.ListEventsRequest(run_id=run.run_id))
    ).events
    kinds = [e.WhichOneof("payload") for e in events]
    closed = "step_completed" if ending == "completed" else "step_failed"
    assert kinds.index(closed) < kinds.index(f"run_{ending}")


@pytest.mark.parametrize("ending", ["completed", "cancelled"])
async def test_an_agent_at_work_when_the_run_ends_is_not_shown_active_after(stubs, ending) -> None:  # type: ignore[no-untyped-def]
    """An agent that said it started and never said it was done (its process died, or the
    run was cancelled under it), on no step: the ended run shows nobody still at work."""
    run = await create_run(stubs)
    started = ev.AgentActivity(agent_id="bot-1", activity=ev.AGENT_ACTIVITY_TYPE_STARTED)
    await append(stubs, run.run_id, ev.RunEvent(agent_activity=started))
    assert [a.agent_id for a in (await get_run(stubs, run.run_id)).active_agents] == ["bot-1"]
    if ending == "cancelled":
        await stubs.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run.run_id))
        ended = run_pb2.RUN_STATUS_CANCELLED
    else:
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        ended = run_pb2.RUN_STATUS_SUCCEEDED
    snap = await get_run(stubs, run.run_id)
    assert snap.status == ended
    assert list(snap.active_agents) == []


async def test_a_run_without_a_plan_says_nothing_of_how_far_it_is_until_it_ends(stubs) -> None:  # type: ignore[no-untyped-def]
    """Steps known only as they start (an agent graph) count as done, not as a fraction of
    a whole: no "100 %" after the first node, no "25% and 50% and 75% complete" milestone
    (as a run without any steps, it has no progress milestones)."""
    run = await create_run(stubs)  # no steps declared
    assert run.progress.unplanned
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="research")),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="research")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="write")),
    )
    snap = await get_run(stubs, run.run_id)
    assert (snap.progress.completed_steps, snap.progress.total_steps) == (1, 2)
    assert snap.progress.percent == 0
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    events = (
        await stubs.runs.ListEvents(run_service_pb2.ListEventsRequest(run_id=run.run_id))
    ).events
    assert not [e.milestone.title for e in events if e.HasField("milestone")]
    assert (await get_run(stubs, run.run_id)).progress.percent == 100
    planned = await create_run(stubs, "a", "b")
    assert not planned.progress.unplanned


async def test_unplanned_step_is_added_and_failed_step_can_be_retried(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(
            step_failed=ev.StepFailed(step_id="a", error=run_pb2.ErrorInfo(message="boom"))
        ),
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_started=ev.StepStarted(step_id="extra", name="Extra QA", agent="qa")),
    )
    snap = await get_run(stubs, run.run_id)
    assert [s.step_id for s in snap.steps] == ["a", "extra"]
    assert snap.steps[0].attempts == 2
    assert snap.steps[0].status == run_pb2.STEP_STATUS_RUNNING
    assert not snap.steps[0].HasField("error")
    assert snap.steps[1].name == "Extra QA"
    assert snap.progress.total_steps == 2
    assert snap.current_step_id == "extra"


async def test_a_failed_step_then_skipped_lasted_until_the_skip(stubs) -> None:  # type: ignore[no-untyped-def]
    """A step fails, then the workflow gives up on it and skips it: it ended at the skip, and
    its duration runs from its start to there, not to the failure."""
    run = await create_run(stubs, "a")

    def at(seconds: int, event: ev.RunEvent) -> ev.RunEvent:
        event.event_time.FromSeconds(1_800_000_000 + seconds)
        return event

    boom = run_pb2.ErrorInfo(message="boom")
    await append(
        stubs,
        run.run_id,
        at(0, ev.RunEvent(step_started=ev.StepStarted(step_id="a"))),
        at(2, ev.RunEvent(step_failed=ev.StepFailed(step_id="a", error=boom))),
    )
    assert (await get_run(stubs, run.run_id)).steps[0].duration.seconds == 2
    await append(
        stubs,
        run.run_id,
        at(5, ev.RunEvent(step_skipped=ev.StepSkipped(step_id="a", reason="not needed"))),
    )
    [a] = (await get_run(stubs, run.run_id)).steps
    assert a.status == run_pb2.STEP_STATUS_SKIPPED
    assert a.end_time.seconds == 1_800_000_005
    assert a.duration == duration_pb2.Duration(seconds=5)


async def test_a_refused_batch_leaves_no_trace_of_the_step_it_started(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="extra")),
            ev.RunEvent(step_progress=ev.StepProgress(step_id="nowhere", percent=10)),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The step the refused batch started does not exist: a report on it is refused by name.
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await append(stubs, run.run_id, ev.RunEvent(step_progress=ev.StepProgress(step_id="extra")))
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].step_progress.step_id" in str(unknown.value.details())
    # Started again, it is added once, after the planned step.
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="extra")))
    snap = await get_run(stubs, run.run_id)
    assert [s.step_id for s in snap.steps] == ["a", "extra"]
    assert snap.current_step_id == "extra"


async def test_run_metrics_keep_the_latest_values(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"impressions": 10000, "clicks": 500})),
        ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"impressions": 10500})),
    )
    snap = await get_run(stubs, run.run_id)
    assert dict(snap.metrics) == {"impressions": 10500, "clicks": 500}


async def test_item_counts_show_the_stages_of_the_latest_report_only(stubs) -> None:  # type: ignore[no-untyped-def]
    """Each ItemProgress says where the items are now: a stage the latest report leaves out
    is over, and is not shown beside the current ones."""
    run = await create_run(stubs)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            item_progress=ev.ItemProgress(
                completed=2, total=10, unit="companies", by_stage={"found": 6, "scored": 2}
            )
        ),
        ev.RunEvent(item_progress=ev.ItemProgress(completed=7, total=10, by_stage={"scored": 7})),
    )
    items = (await get_run(stubs, run.run_id)).progress.items
    assert (items.completed, items.total, items.unit) == (7, 10, "companies")
    assert dict(items.by_stage) == {"scored": 7}


async def test_an_item_count_past_its_total_shows_the_run_at_most_complete(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer whose total was an underestimate (12 companies found of 10 expected) shows
    the run 100% complete, never 120%."""
    run = await create_run(stubs)
    await append(
        stubs, run.run_id, ev.RunEvent(item_progress=ev.ItemProgress(completed=5, total=10))
    )
    assert (await get_run(stubs, run.run_id)).progress.percent == 50
    await append(
        stubs, run.run_id, ev.RunEvent(item_progress=ev.ItemProgress(completed=12, total=10))
    )
    assert (await get_run(stubs, run.run_id)).progress.percent == 100


async def test_artifacts_are_counted_by_kind_across_steps(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a", "b")
    for step_id in ("a", "b"):
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id=step_id)),
            ev.RunEvent(
                step_completed=ev.StepCompleted(
                    step_id=step_id,
                    artifacts=[run_pb2.Artifact(name=f"{step_id}.json", kind="persona")],
                )
            ),
        )
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(artifact_produced=ev.ArtifactProduced(artifact=run_pb2.Artifact(name="x"))),
    )
    summary = (await get_run(stubs, run.run_id)).artifacts_summary
    assert summary.total == 3
    assert dict(summary.by_kind) == {"persona": 2, "other": 1}


async def test_a_run_created_without_a_display_name_shows_its_workflow(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, workflow="market-research")
    assert run.display_name == "market-research"
    assert (await get_run(stubs, run.run_id)).display_name == "market-research"


async def test_snapshot_survives_restart(server, stubs, tmp_path, server_config) -> None:  # type: ignore[no-untyped-def]
    import grpc
    from runstream.v1 import run_service_pb2_grpc
    from runstream_server.app import RunstreamServer

    run = await create_run(stubs, "a", "b")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=40)),
    )
    before = await get_run(stubs, run.run_id)
    await server.stop(grace=0.1)
    again = RunstreamServer(server_config(server.config.store_path))
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.target) as channel:
            stub = run_service_pb2_grpc.RunServiceStub(channel)
            after = (await stub.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    finally:
        await again.stop(grace=0.1)
    assert after == before


async def test_a_steps_planned_agent_reporting_under_its_own_id_is_one_agent(stubs) -> None:  # type: ignore[no-untyped-def]
    """The plan names a step's agent ("find-agent"); the agent reports under its own id with
    that name (how the reference systems' agents report: agent_id "agent-123", agent_name
    "OpportunityBot"). It was listed twice, and the planned entry stayed after the agent
    said it was done, until the step ended (found in review)."""
    run = await create_run(stubs, "find")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="find")))

    def report(activity: int) -> ev.RunEvent:
        reported = ev.AgentActivity(agent_id="agent-123", agent_name="find-agent", step_id="find")
        reported.activity = activity  # type: ignore[assignment]
        return ev.RunEvent(agent_activity=reported)

    await append(stubs, run.run_id, report(ev.AGENT_ACTIVITY_TYPE_STARTED))
    active = (await get_run(stubs, run.run_id)).active_agents
    assert [(a.agent_id, a.name, a.step_id) for a in active] == [
        ("agent-123", "find-agent", "find")
    ]
    await append(stubs, run.run_id, report(ev.AGENT_ACTIVITY_TYPE_COMPLETED))
    assert list((await get_run(stubs, run.run_id)).active_agents) == []  # the step still runs


async def test_an_agent_a_step_planned_by_id_is_listed_under_the_name_it_reports(stubs) -> None:  # type: ignore[no-untyped-def]
    """The plan names a step's agent by its id ("media_planner_agent"); the agent then
    reports under that id with its name ("Media Planner"): the run lists it by that name, and
    a later step of the same agent starting keeps it (found porting the campaign generator:
    every agent was listed by its id)."""
    created = await stubs.runs.CreateRun(
        run_service_pb2.CreateRunRequest(
            workflow="wf",
            steps=[
                run_pb2.StepSpec(step_id="plan", agent="media_planner_agent"),
                run_pb2.StepSpec(step_id="buy", agent="media_planner_agent"),
            ],
        )
    )
    run_id = created.run.run_id
    await append(stubs, run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="plan")))
    reported = ev.AgentActivity(
        agent_id="media_planner_agent",
        agent_name="Media Planner",
        agent_type="crew_agent",
        step_id="plan",
        activity=ev.AGENT_ACTIVITY_TYPE_PROGRESS,
        message="draft ready",
    )
    await append(stubs, run_id, ev.RunEvent(agent_activity=reported))
    listed = [(a.agent_id, a.name, a.message) for a in (await get_run(stubs, run_id)).active_agents]
    assert listed == [("media_planner_agent", "Media Planner", "draft ready")]
    await append(stubs, run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="buy")))
    names = [a.name for a in (await get_run(stubs, run_id)).active_agents]
    assert names == ["Media Planner"]


def artifact(artifact_id: str, kind: str, step_id: str = "", name: str = "") -> ev.RunEvent:
    produced = run_pb2.Artifact(
        artifact_id=artifact_id, name=name or artifact_id, kind=kind, step_id=step_id
    )
    return ev.RunEvent(artifact_produced=ev.ArtifactProduced(artifact=produced))


def artifacts_of(run: run_pb2.Run) -> tuple[int, dict[str, int], dict[str, list[str]]]:
    """The run's count of artifacts, by kind, and its steps' artifacts (id:name)."""
    steps = {s.step_id: [f"{a.artifact_id}:{a.name}" for a in s.artifacts] for s in run.steps}
    return run.artifacts_summary.total, dict(run.artifacts_summary.by_kind), steps


async def test_an_artifact_reported_again_under_its_id_replaces_it_also_after_a_restart(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Found in review: two artifacts of one id, which the contract calls unique within the
    run, were both kept and counted (total 3 for two artifacts)."""
    config = server_config(tmp_path / "a.db")
    async with serving(config) as (_, stubs):
        run = await create_run(stubs, "a", "b")
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
            artifact("page", "html", "a", "draft"),
            artifact("notes", "copy", "a"),
            artifact("page", "html", "a", "final"),  # a new version, in its place
            artifact("plan", "doc"),  # the run's own, of no step
            artifact("plan", "pdf"),
        )
        assert artifacts_of(await get_run(stubs, run.run_id)) == (
            3,
            {"html": 1, "copy": 1, "pdf": 1},
            {"a": ["page:final", "notes:notes"], "b": []},
        )

    async with serving(config) as (_, stubs):  # the run read again from its store
        await append(
            stubs,
            run.run_id,
            artifact("plan", "md"),
            ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
            artifact("page", "html", "b", "moved"),  # now step b's
            ev.RunEvent(
                step_completed=ev.StepCompleted(
                    step_id="b", artifacts=[run_pb2.Artifact(artifact_id="notes", name="n2")]
                )
            ),
        )
        assert artifacts_of(await get_run(stubs, run.run_id)) == (
            3,
            {"html": 1, "other": 1, "md": 1},
            {"a": [], "b": ["page:moved", "notes:n2"]},
        )
        listed = await stubs.runs.ListEvents(run_service_pb2.ListEventsRequest(run_id=run.run_id))
        kinds = [e.WhichOneof("payload") for e in listed.events]
        assert kinds.count("artifact_produced") == 7  # the log keeps every report
