"""What an AG-UI frontend reads of a run through the bridge where no test looked (found by the
mutation audit mu68g): the percent of a run without a plan, with running steps and with an
item count past its total; a step skipped while running; a failed run's error code; a
question asked while paused; progress on a failed step; an empty final text delta; a step's
metrics, the producer's estimate and the plan's step names."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import runstream
from runstream.integrations.agui_bridge import AguiBridge

from tests.clients.support import until

from .sse import SseClient, read_all
from .test_agui import states


@pytest.fixture
async def bridge(client: runstream.Client) -> AsyncIterator[AguiBridge]:
    async with AguiBridge(client, port=0) as serving:
        yield serving


async def stream(bridge: AguiBridge, run_id: str) -> list[dict[str, Any]]:
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run_id}/events"), 30)
    return [json.loads(m.data) for m in messages]


def changes(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


async def test_the_steps_of_a_run_without_a_plan_do_not_move_its_percent(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The server counts a run that declared no steps by its items, else only at its end:
    the steps it starts as it goes are not a plan to count against."""
    run = await client.start_run("discovery")
    async with run:
        async with run.step("crawl") as step:
            await step.progress(50)
        await run.flush()
        middle = await client.get_run(run.run_id)
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    assert middle.progress.percent == 0.0
    assert changes([state["percent"] for state in states(messages)]) == [0.0, 100.0]


async def test_a_step_skipped_while_running_is_finished_there(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """AG-UI has one STEP_FINISHED per STEP_STARTED: a running step that is skipped ends
    there, and the next step becomes the current one alone."""
    run = await client.start_run("campaign", steps=["a", "b"])
    async with run:
        await run.start_step("a")
        await run.skip_step("a", "not needed")
        async with run.step("b"):
            pass
        await run.complete()
    events = await stream(bridge, run.run_id)
    steps = [
        (e["type"], e["stepName"]) for e in events if e["type"] in ("STEP_STARTED", "STEP_FINISHED")
    ]
    assert steps == [
        ("STEP_STARTED", "a"),
        ("STEP_FINISHED", "a"),
        ("STEP_STARTED", "b"),
        ("STEP_FINISHED", "b"),
    ]


async def test_a_failed_runs_error_carries_its_code(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    run = await client.start_run("campaign")
    async with run:
        await run.fail("model quota exhausted", code="quota")
    events = await stream(bridge, run.run_id)
    assert events[-1] == {
        "type": "RUN_ERROR",
        "timestamp": events[-1]["timestamp"],
        "message": "model quota exhausted",
        "code": "quota",
    }


async def test_a_question_asked_while_paused_leaves_the_run_paused(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """As the server folds it: a question makes a RUNNING run WAITING_FOR_INPUT, never a
    PAUSED one, and its answer leaves that run PAUSED until it is resumed."""
    run = await client.start_run("campaign", steps=["review"])

    async def status() -> str:
        return (await client.get_run(run.run_id)).status.name

    async with run:
        await run.start_step("review")
        await run.flush()
        await client.pause_run(run.run_id)
        asking = asyncio.create_task(run.ask("Publish?", ["yes", "no"], decision_id="go"))

        async def asked() -> bool:
            return bool(await client.list_decisions(run.run_id))

        await until(asked)
        paused = await status()
        await client.submit_decision(run.run_id, "go", "yes")
        assert (await asking).choice == "yes"
        answered = await status()
        await client.resume_run(run.run_id)
        await run.step("review").complete()
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    assert (paused, answered) == ("PAUSED", "PAUSED")
    statuses = changes([state["status"] for state in states(messages)])
    assert statuses == ["PENDING", "RUNNING", "PAUSED", "RUNNING", "SUCCEEDED"]


async def test_progress_on_a_failed_step_runs_it_again_without_its_error(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """Progress reported on a step that failed starts it again, as the server has it: its
    error goes."""
    run = await client.start_run("campaign", steps=["flaky"])
    async with run:
        await run.step("flaky").start()
        await run.step("flaky").fail("timeout talking to the model", code="timeout")
        await run.step("flaky").progress(30)
        await run.flush()
        stored = (await client.get_run(run.run_id)).steps[0]
        await run.step("flaky").complete()
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    flaky = [state["steps"]["flaky"] for state in states(messages)]
    assert (stored.status.name, stored.error) == ("RUNNING", None)
    assert {"name": "flaky", "status": "RUNNING", "percent": 30.0, "metrics": {}} in flaky


async def test_a_running_steps_own_percent_counts_in_the_runs(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """As the server has it: finished steps plus the running steps' own percent, over all."""
    run = await client.start_run("campaign", steps=["a", "b"])
    async with run:
        async with run.step("a") as step:
            await step.progress(50)
            await run.flush()
            middle = await client.get_run(run.run_id)
        async with run.step("b"):
            pass
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    assert middle.progress.percent == 25.0
    assert changes([state["percent"] for state in states(messages)]) == [0.0, 25.0, 50.0, 100.0]


async def test_a_message_closed_by_an_empty_final_delta_sends_no_empty_content(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """AG-UI's clients refuse a TEXT_MESSAGE_CONTENT with an empty delta ("Delta must not be
    an empty string"); a message that ends with an empty final delta (as the agent
    integrations close theirs) ends with TEXT_MESSAGE_END alone."""
    run = await client.start_run("campaign")
    async with run:
        await run.text("writer", "m0", "Launch faster")
        await run.text("writer", "m0", "", final=True)
        await run.complete()
    events = await stream(bridge, run.run_id)
    text = [(e["type"], e.get("delta")) for e in events if e["type"].startswith("TEXT_MESSAGE")]
    assert text == [
        ("TEXT_MESSAGE_START", None),
        ("TEXT_MESSAGE_CONTENT", "Launch faster"),
        ("TEXT_MESSAGE_END", None),
    ]


async def test_a_steps_metrics_and_the_producers_estimate_are_in_the_state(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """A step's metrics are the step's, not the run's; the estimate says when the run should
    end, as the server's does."""
    run = await client.start_run(f"estimated-{uuid.uuid4().hex}", steps=["copy"])
    async with run:
        async with run.step("copy") as step:
            await run.metrics({"headlines": 3}, step_id="copy")
            await step.progress(50, estimated_time_remaining=120)
            await run.flush()
            stored = (await client.get_run(run.run_id)).estimate
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    seen = states(messages)
    assert (seen[-1]["metrics"], seen[-1]["steps"]["copy"]["metrics"]) == ({}, {"headlines": 3})
    estimate = next(state["estimate"] for state in seen if state["estimate"] is not None)
    assert stored is not None and stored.end_time is not None
    assert estimate["remainingSeconds"] == pytest.approx(120, abs=2)
    assert estimate["endTime"] == stored.end_time.isoformat()


async def test_the_plans_step_names_and_an_item_count_past_its_total_read_as_the_servers(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The snapshot names each planned step as the plan does; a run that counts more items
    done than its total (a total that was a guess) is at 100%, as the server says, not 120%."""
    planned = await client.start_run("crawl", steps=[runstream.StepSpec("crawl", "Crawl sites")])
    async with planned:
        await planned.complete()
    seen = states(
        await asyncio.wait_for(read_all(bridge.port, f"/runs/{planned.run_id}/events"), 30)
    )
    assert seen[0]["steps"] == {
        "crawl": {"name": "Crawl sites", "status": "PENDING", "percent": 0.0, "metrics": {}}
    }
    counted = await client.start_run("discovery")
    async with counted:
        await counted.items(12, 10, unit="companies")
        await counted.flush()
        stored = await client.get_run(counted.run_id)
        await counted.complete()
    seen = states(
        await asyncio.wait_for(read_all(bridge.port, f"/runs/{counted.run_id}/events"), 30)
    )
    assert stored.progress.percent == 100.0
    assert changes([state["percent"] for state in seen]) == [0.0, 100.0]


async def test_a_full_bridge_still_answers_its_health_check_and_unknown_paths(
    client: runstream.Client,
) -> None:
    """Only streams take a place: a bridge serving all it may still says it is alive (a load
    balancer's health check) and says 404 to a wrong path, not 503."""
    run = await client.start_run("campaign")
    await run.flush()
    async with AguiBridge(client, port=0, max_streams=1) as full:
        held = SseClient(full.port)
        try:
            assert (await held.open(f"/runs/{run.run_id}/events")).status == 200
            assert await asyncio.wait_for(held.next(), 30) is not None
            for path, status in (("/healthz", 200), ("/nothing", 404)):
                asked = SseClient(full.port)
                try:
                    assert (await asked.open(path)).status == status, path
                finally:
                    await asked.close()
        finally:
            await held.close()
    async with run:
        await run.complete()


async def test_any_origin_may_read_when_allowed_and_a_percent_encoded_run_id_is_the_run(
    client: runstream.Client,
) -> None:
    """``origins=["*"]`` (``runstream agui --origin '*'``) lets a page of any site read the
    streams; a URL whose run id a client percent-encoded names the same run."""
    run = await client.start_run("campaign")
    async with run:
        await run.complete()
    encoded = "".join(f"%{ord(c):02X}" for c in run.run_id)
    async with AguiBridge(client, port=0, origins=["*"]) as bridge:
        events = [
            json.loads(m.data) for m in await read_all(bridge.port, f"/runs/{encoded}/events")
        ]
        asked = SseClient(bridge.port)
        try:
            answer = await asked.open("/healthz", headers={"Origin": "https://app.example"})
        finally:
            await asked.close()
    assert events[0]["runId"] == run.run_id and events[-1]["type"] == "RUN_FINISHED"
    assert answer.headers["access-control-allow-origin"] == "*"
    async with AguiBridge(client, port=0, origins=["https://app.example"]) as bridge:
        asked = SseClient(bridge.port)
        try:
            answer = await asked.open("/healthz", headers={"Origin": "https://app.example"})
        finally:
            await asked.close()
    # One origin allowed: caches must keep answers to other origins apart.
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert answer.headers["vary"] == "Origin"


async def test_resuming_one_past_the_runs_last_event_is_a_400(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """An id one past the run's last event (another run's, a stale one) would skip the
    run's next event unseen: it is refused as any id past the end is."""
    run = await client.start_run("campaign")
    async with run:
        await run.complete()
    last = (await client.get_run(run.run_id)).last_seq
    asked = SseClient(bridge.port)
    try:
        answer = await asked.open(f"/runs/{run.run_id}/events", last_event_id=str(last + 1))
    finally:
        await asked.close()
    assert answer.status == 400 and f"past the run's last event ({last})" in answer.body
