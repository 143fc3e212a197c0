"""The SDK reports what watchers are shown: item counts, the producer's own estimate, and the
seed fields (the workflow graph, sub-step details, the step of an alert or a recovery, metric
units, an alert's action), and reads them back typed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import runstream
from runstream import (
    AlertAction,
    AlertActionType,
    Client,
    EstimateSource,
    EventKind,
    ItemCounts,
    StepSpec,
    SubStepDetails,
    _event_builders,
)


async def test_the_sdk_reports_items_estimates_and_seed_fields(client: Client) -> None:
    run = await client.start_run(
        "crawl",
        steps=[
            StepSpec("fetch", "Fetch", phase="Collect", track="web"),
            StepSpec("rank", "Rank", depends_on=("fetch",), phase="Judge"),
        ],
    )
    done_by = datetime(2030, 1, 1, tzinfo=UTC)
    async with run.step("fetch") as step:
        await step.progress(
            30,
            "fetching",
            details=SubStepDetails("executing_agent_logic", "o3", done_by),
            estimated_time_remaining=90,
        )
        await run.metrics({"ctr": 4.5}, units={"ctr": "%"})
        await run.metrics({"ctr": 5.0})
        await run.alert(
            "CPC above target",
            step_id="fetch",
            suggested_action="Pause Campaign",
            action=AlertActionType.PAUSE_RUN,
        )
        await run.error_recovery("HTTP 429", step_id="fetch", recovery_strategy="backoff")
        await run.items(3, 10, unit="pages", by_stage={"fetched": 3})
        await run.flush()
        snap = await client.get_run(run.run_id)
        assert snap.estimate is not None and snap.estimate.remaining is not None
        assert snap.estimate.source is EstimateSource.PRODUCER
        assert 60 < snap.estimate.remaining.total_seconds() <= 90
        assert snap.progress.items == ItemCounts(3, 10, "pages", {"fetched": 3})
        fetch, rank = snap.steps
        assert fetch.sub_step_details == SubStepDetails("executing_agent_logic", "o3", done_by)
        assert (fetch.phase, fetch.track, rank.depends_on) == ("Collect", "web", ("fetch",))
        assert snap.metric_units == {"ctr": "%"}
        assert snap.metric_changes == {"ctr": 0.5}
    await run.complete()
    await run.close()
    events = [event async for event in client.list_events(run.run_id)]
    [alert] = [e.payload for e in events if e.kind is EventKind.ALERT]
    assert isinstance(alert, runstream.Alert)
    assert alert.action == AlertAction(AlertActionType.PAUSE_RUN, "Pause Campaign")
    assert alert.step_id == "fetch"
    [recovery] = [e.payload for e in events if e.kind is EventKind.ERROR_RECOVERY]
    assert isinstance(recovery, runstream.ErrorRecovery) and recovery.step_id == "fetch"
    [items] = [e.payload for e in events if e.kind is EventKind.ITEM_PROGRESS]
    assert isinstance(items, runstream.ItemProgress) and items.by_stage == {"fetched": 3}
    updates = [e.payload for e in events if e.kind is EventKind.METRICS_UPDATE]
    assert [u.changes for u in updates if isinstance(u, runstream.MetricsUpdate)] == [
        {},
        {"ctr": 0.5},
    ]


async def test_an_event_says_when_the_server_received_it_beside_when_it_happened(
    client: Client,
) -> None:
    """A producer whose clock is 10 minutes behind: its event keeps the producer's time, and
    says when the server took it in, by the server's clock (what health and retention count
    from), which the SDK's Event did not carry."""
    run = await client.start_run("skewed")
    behind = _event_builders.HAPPENED_NS.set(time.time_ns() - 600 * 10**9)
    try:
        await run.custom("checkpoint")
    finally:
        _event_builders.HAPPENED_NS.reset(behind)
    await run.complete()
    await run.close()
    [event] = [e async for e in client.watch(run.run_id) if e.kind is EventKind.CUSTOM]
    assert event.receive_time is not None
    assert event.receive_time - event.event_time > timedelta(seconds=590)
    assert abs(event.receive_time - datetime.now(UTC)) < timedelta(seconds=60)
