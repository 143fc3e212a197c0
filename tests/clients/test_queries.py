"""Snapshot queries through the SDK: get_run, list_runs (paged, filtered), list_steps, cancel."""

from __future__ import annotations

import pytest
import runstream
from runstream import Alert, Client, EventKind, RunStatus, StepSpec, StepStatus


async def test_get_run_returns_the_derived_snapshot(client: Client) -> None:
    run = await client.start_run(
        "campaign",
        steps=[StepSpec("a", "Step A", agent="Team A"), StepSpec("b", "Step B")],
        display_name="Spring campaign",
        labels={"team": "growth"},
    )
    async with run.step("a") as step:
        await step.progress(50, "drafting")
        await run.flush()
        snapshot = await client.get_run(run.run_id)
        assert snapshot.status == RunStatus.RUNNING
        assert snapshot.current_step_id == "a"
        assert snapshot.progress.total_steps == 2
        assert snapshot.progress.completed_steps == 0
        assert 0 < snapshot.progress.percent < 50
        assert snapshot.steps[0].status == StepStatus.RUNNING
        assert snapshot.steps[0].percent == 50
        assert snapshot.steps[0].start_time is not None
        assert snapshot.start_time is not None and snapshot.start_time.tzinfo is not None
        assert snapshot.end_time is None
    await run.complete("ok")
    await run.close()

    snapshot = await client.get_run(run.run_id)
    assert snapshot.run_id == run.run_id
    assert snapshot.workflow == "campaign"
    assert snapshot.display_name == "Spring campaign"
    assert snapshot.labels == {"team": "growth"}
    assert snapshot.status == RunStatus.SUCCEEDED
    assert snapshot.status.is_terminal
    assert snapshot.progress.percent == 100
    assert snapshot.end_time is not None and snapshot.create_time is not None
    assert snapshot.end_time >= snapshot.create_time
    assert snapshot.steps[0].duration is not None
    assert snapshot.last_seq == run.last_seq
    assert snapshot.raw.run_id == run.run_id  # the escape hatch


async def test_list_runs_paginates_over_several_pages(client: Client) -> None:
    created = []
    for i in range(7):
        run = await client.start_run("paging", display_name=f"run {i}")
        created.append(run.run_id)
        await run.close()

    page, token = await client.list_runs_page(page_size=3)
    assert len(page) == 3 and token
    listed = [r.run_id async for r in client.list_runs(page_size=3)]
    assert listed == list(reversed(created))  # most recently created first
    assert [r.run_id for r in page] == listed[:3]


async def test_list_runs_filters_by_status_workflow_and_label(client: Client) -> None:
    done = await client.start_run("etl", labels={"team": "growth"})
    await done.complete()
    await done.close()
    running = await client.start_run("etl", labels={"team": "data"})
    await running.flush()
    other = await client.start_run("campaign", labels={"team": "growth"})
    await other.flush()

    async def ids(filter: str) -> set[str]:
        return {r.run_id async for r in client.list_runs(filter=filter, page_size=2)}

    assert await ids("status = RUNNING") == {running.run_id, other.run_id}
    assert await ids("status = RUN_STATUS_SUCCEEDED") == {done.run_id}
    assert await ids('workflow = "etl"') == {done.run_id, running.run_id}
    assert await ids('labels.team = "growth"') == {done.run_id, other.run_id}
    assert await ids('workflow = "etl" AND labels.team = "growth"') == {done.run_id}
    with pytest.raises(runstream.InvalidArgumentError):
        await ids("colour = blue")
    await running.close()
    await other.close()


async def test_list_steps_in_plan_order_with_their_state(client: Client) -> None:
    plan = [StepSpec(f"s{i}", f"Step {i}") for i in range(5)]
    run = await client.start_run("steps", steps=plan)
    async with run.step("s0"):
        pass
    await run.skip_step("s1", "not needed")
    async with run.step("extra", name="Unplanned", description="added at run time"):
        pass
    await run.flush()

    steps = await client.list_steps(run.run_id)
    assert [s.step_id for s in steps] == ["s0", "s1", "s2", "s3", "s4", "extra"]
    assert [s.status for s in steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.SKIPPED,
        StepStatus.PENDING,
        StepStatus.PENDING,
        StepStatus.PENDING,
        StepStatus.SUCCEEDED,
    ]
    assert steps[1].skip_reason == "not needed"
    assert steps[5].name == "Unplanned"
    with pytest.raises(runstream.NotFoundError):
        await client.list_steps("missing")
    await run.close()


async def test_a_refusal_carries_its_reason_and_field_for_programs(client: Client) -> None:
    """Telling one refusal from another took matching its message's text."""
    with pytest.raises(runstream.NotFoundError) as missing:
        await client.get_run("missing")
    assert missing.value.details.reason == "RUN_NOT_FOUND"
    with pytest.raises(runstream.InvalidArgumentError) as malformed:
        await client.list_runs_page(filter="status = NOPE")
    assert malformed.value.details.reason == "INVALID_FIELD"
    [(field, problem)] = malformed.value.details.field_violations
    assert field == "filter" and "NOPE" in problem, malformed.value.details
    run = await client.start_run("campaign")
    await client.cancel_run(run.run_id, reason="budget")
    with pytest.raises(runstream.FailedPreconditionError) as ended:
        await client.pause_run(run.run_id)
    assert (ended.value.details.reason, dict(ended.value.details.metadata)) == ("RUN_ENDED", {})


async def test_cancel_run_through_the_sdk(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    cancelled = await client.cancel_run(run.run_id, reason="budget", cancelled_by="ops")
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.cancel_reason == "budget"
    assert (await client.get_run(run.run_id)).status == RunStatus.CANCELLED
    with pytest.raises(runstream.FailedPreconditionError):
        await client.cancel_run(run.run_id)
    await run.close()


async def run_with_alerts(client: Client) -> runstream.RunReporter:
    """A run of 8 alerts, 20 other events before each."""
    run = await client.start_run("alerts")
    for n in range(8):
        for tick in range(20):
            await run.custom("tick", {"n": tick})
        await run.alert(f"alert {n}", code=f"A{n}")
    await run.flush()
    return run


async def test_list_events_newest_first_reads_the_last_alerts_of_a_long_run(
    client: Client,
) -> None:
    """A dashboard wants a run's last 3 alerts, not its history from the start: newest
    first, filtered by kind, a page at a time or as an iterator it stops early."""
    run = await run_with_alerts(client)

    page, token = await client.list_events_page(
        run.run_id, kinds=[EventKind.ALERT], page_size=3, newest_first=True
    )
    assert [e.payload.message for e in page if isinstance(e.payload, Alert)] == [
        "alert 7",
        "alert 6",
        "alert 5",
    ]
    assert token
    rest, last = await client.list_events_page(
        run.run_id, kinds=[EventKind.ALERT], page_size=10, page_token=token, newest_first=True
    )
    assert [e.seq for e in rest] == sorted((e.seq for e in rest), reverse=True)
    assert len(rest) == 5 and rest[0].seq < page[-1].seq and last == ""
    with pytest.raises(runstream.InvalidArgumentError, match="page_token"):
        await client.list_events_page(run.run_id, kinds=[EventKind.ALERT], page_token=token)

    everything = [
        e.seq async for e in client.list_events(run.run_id, page_size=7, newest_first=True)
    ]
    assert everything == list(range(run.last_seq, 0, -1))
    oldest = [e.seq async for e in client.list_events(run.run_id, page_size=7)]
    assert oldest == everything[::-1]
    await run.close()


async def test_list_events_between_seqs_loads_the_alerts_before_the_ones_shown(
    client: Client,
) -> None:
    """A view showing a run's last 3 alerts loads the 3 before them in one call: newest
    first below the oldest seq it shows; after_seq and before_seq keep a window either way."""
    run = await run_with_alerts(client)
    shown, _ = await client.list_events_page(
        run.run_id, kinds=[EventKind.ALERT], page_size=3, newest_first=True
    )
    earlier, token = await client.list_events_page(
        run.run_id,
        kinds=[EventKind.ALERT],
        page_size=3,
        newest_first=True,
        before_seq=shown[-1].seq,
    )
    assert [e.payload.message for e in earlier if isinstance(e.payload, Alert)] == [
        "alert 4",
        "alert 3",
        "alert 2",
    ]
    assert token
    window = [e.seq async for e in client.list_events(run.run_id, after_seq=10, before_seq=15)]
    assert window == [11, 12, 13, 14]
    backwards = client.list_events(run.run_id, after_seq=10, before_seq=15, newest_first=True)
    assert [e.seq async for e in backwards] == [14, 13, 12, 11]
    for bad in ({"after_seq": -1}, {"before_seq": -2}, {"after_seq": 1.5}, {"before_seq": 2**62}):
        with pytest.raises(runstream.InvalidArgumentError, match=next(iter(bad))):
            await client.list_events_page(run.run_id, **bad)  # type: ignore[arg-type]
        with pytest.raises(runstream.InvalidArgumentError, match=next(iter(bad))):
            await anext(client.list_events(run.run_id, **bad))  # type: ignore[arg-type]
    await run.close()
