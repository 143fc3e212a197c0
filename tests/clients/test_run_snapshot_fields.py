"""Fields of a run's snapshot that the SDK reads from GetRun and no other test looks at."""

from __future__ import annotations

from runstream import ActivityType, Client


async def test_get_run_lists_the_agents_at_work_with_what_they_said(client: Client) -> None:
    run = await client.start_run("campaign", steps=["copy"])
    await run.start_step("copy")
    await run.activity(
        "w1",
        ActivityType.STARTED,
        "drafting the headline",
        agent_name="writer",
        agent_type="llm",
        step_id="copy",
    )
    await run.flush()
    (agent,) = (await client.get_run(run.run_id)).active_agents
    assert (agent.agent_id, agent.name, agent.type, agent.step_id, agent.message) == (
        "w1",
        "writer",
        "llm",
        "copy",
        "drafting the headline",
    )
    assert agent.start_time is not None


async def test_get_run_counts_the_runs_artifacts_by_kind(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.artifact("index.html", kind="html", uri="file:///tmp/index.html")
    await run.artifact("persona.json", kind="json", uri="file:///tmp/persona.json")
    await run.artifact("brief.json", kind="json", uri="file:///tmp/brief.json")
    await run.flush()
    summary = (await client.get_run(run.run_id)).artifacts_summary
    assert (summary.total, summary.by_kind) == (3, {"html": 1, "json": 2})


async def test_get_run_reads_each_steps_progress_outcome_and_artifacts(client: Client) -> None:
    run = await client.start_run("campaign", steps=["draft", "check"])
    draft = run.step("draft")
    await draft.start()
    await draft.progress(40.0, "headline", detail="3 of 8 variants", tokens_processed=1200)
    await run.artifact("draft.md", kind="markdown", uri="file:///tmp/draft.md", step_id="draft")
    check = run.step("check")
    await check.start()
    await check.fail("tone is off", code="TONE")
    await run.flush()
    steps = {s.step_id: s for s in (await client.get_run(run.run_id)).steps}
    going, failed = steps["draft"], steps["check"]
    assert (going.sub_step, going.detail, going.tokens_processed) == (
        "headline",
        "3 of 8 variants",
        1200,
    )
    assert [a.name for a in going.artifacts] == ["draft.md"]
    assert going.error is None
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("TONE", "tone is off")
    await draft.complete("8 variants written")
    await run.complete("campaign ready", result={"variants": 8})
    await run.close()
    done = await client.get_run(run.run_id)
    assert done.steps[0].summary == "8 variants written"
    assert (done.result_summary, done.result) == ("campaign ready", {"variants": 8})


async def test_a_run_that_planned_no_steps_says_so(client: Client) -> None:
    planned = await client.start_run("campaign", steps=["draft"])
    unplanned = await client.start_run("campaign")
    await planned.flush()
    await unplanned.flush()
    assert not (await client.get_run(planned.run_id)).progress.unplanned
    assert (await client.get_run(unplanned.run_id)).progress.unplanned


async def test_get_run_says_why_a_run_failed_and_nothing_for_one_that_did_not(
    client: Client,
) -> None:
    failing = await client.start_run("campaign")
    await failing.fail("quota exceeded", code="QUOTA")
    await failing.close()
    error = (await client.get_run(failing.run_id)).error
    assert error is not None and (error.code, error.message) == ("QUOTA", "quota exceeded")
    succeeding = await client.start_run("campaign")
    await succeeding.complete()
    await succeeding.close()
    assert (await client.get_run(succeeding.run_id)).error is None
