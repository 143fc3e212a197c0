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
