"""The SDK's producer side against a real server: what a reporter writes is what watchers read."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
import traceback
from datetime import timedelta

import pytest
import runstream
from runstream import (
    ActivityType,
    AgentActivity,
    Alert,
    Artifact,
    ArtifactProduced,
    Client,
    Custom,
    ErrorRecovery,
    Event,
    EventKind,
    FailedPreconditionError,
    InvalidArgumentError,
    MetricsUpdate,
    Milestone,
    MilestoneType,
    ModelAllocation,
    ResourceExhaustedError,
    RunCancelledError,
    RunCompleted,
    RunFailed,
    RunStarted,
    RunStatus,
    RunstreamError,
    Severity,
    StatusCode,
    StepCompleted,
    StepFailed,
    StepProgress,
    StepSkipped,
    StepSpec,
    StepStarted,
    StepStatus,
    TextDelta,
    Thinking,
    WorkflowStateChange,
)
from runstream_server.app import RunstreamServer

from tests.clients.support import eventually, producer_events, proxy_to, until

PLAN = [
    StepSpec("strategy", "Strategy Team", description="Positioning", agent="Strategy Team"),
    StepSpec("copy", "Copy Team", agent="Copy Team"),
    StepSpec("web", "Web Developer"),
]


async def events_of(client: Client, run_id: str, **kwargs: object) -> list[Event]:
    """The run's whole log; the run must have ended (the watch stream then ends)."""

    async def collect() -> list[Event]:
        return [event async for event in client.watch(run_id, **kwargs)]  # type: ignore[arg-type]

    return await asyncio.wait_for(collect(), 20)


async def test_run_with_steps_is_reported_in_order(client: Client) -> None:
    run = await client.start_run("campaign", steps=PLAN, labels={"team": "growth"})
    async with run:
        async with run.step("strategy") as step:
            await step.progress(50, "drafting", detail="positioning", tokens_processed=1500)
            step.set_summary("3 positioning options")
        async with run.step("copy") as step:
            await step.progress(100, "done")
        await run.skip_step("web", reason="not needed")
        await run.complete("campaign ready", result={"variants": 12})

    everything = await events_of(client, run.run_id)
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    # The server adds its own insight (progress milestones); what the producer reported
    # comes in the order reported.
    events = producer_events(everything)
    assert [e.kind for e in events] == [
        EventKind.RUN_CREATED,
        EventKind.RUN_STARTED,
        EventKind.STEP_STARTED,
        EventKind.STEP_PROGRESS,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_STARTED,
        EventKind.STEP_PROGRESS,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_SKIPPED,
        EventKind.RUN_COMPLETED,
    ]
    assert all(e.run_id == run.run_id for e in events)
    assert all(e.event_time.tzinfo is not None for e in events)
    assert events[2].payload == StepStarted("strategy", "", "", "")
    assert events[3].payload == StepProgress("strategy", 50.0, "drafting", "positioning", 1500)
    completed = events[4].payload
    assert isinstance(completed, StepCompleted)
    assert completed.summary == "3 positioning options"
    assert events[8].payload == StepSkipped("web", "not needed")
    assert events[9].payload == RunCompleted("campaign ready", {"variants": 12})
    # Every event the SDK reported carries its own idempotency key.
    keys = [e.idempotency_key for e in events[1:]]
    assert all(keys) and len(set(keys)) == len(keys)

    snapshot = await client.get_run(run.run_id)
    assert snapshot.status == RunStatus.SUCCEEDED
    assert snapshot.labels == {"team": "growth"}
    assert [s.status for s in snapshot.steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.SUCCEEDED,
        StepStatus.SKIPPED,
    ]
    assert snapshot.result_summary == "campaign ready"
    assert snapshot.result == {"variants": 12}
    assert snapshot.progress.percent == 100.0


async def test_a_run_starts_after_it_was_created(client: Client) -> None:
    """RunStarted was stamped before CreateRun was sent: every run the SDK started had a
    start_time a few ms before its create_time (a negative time in the queue), and its
    seq 2 an earlier time than seq 1."""
    for _ in range(5):
        run = await client.start_run("timing", steps=["a"])
        async with run:
            await run.complete()
        snapshot = await client.get_run(run.run_id)
        assert snapshot.create_time is not None and snapshot.start_time is not None
        assert snapshot.start_time >= snapshot.create_time
        created, started = (await events_of(client, run.run_id))[:2]
        assert (created.kind, started.kind) == (EventKind.RUN_CREATED, EventKind.RUN_STARTED)
        assert started.event_time >= created.event_time


async def test_step_that_raises_is_reported_failed_and_the_error_propagates(
    client: Client,
) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    with pytest.raises(ValueError, match="model timed out"):
        async with run.step("strategy"):
            raise ValueError("model timed out")
    await run.flush()

    steps = await client.list_steps(run.run_id)
    strategy = next(s for s in steps if s.step_id == "strategy")
    assert strategy.status == StepStatus.FAILED
    assert strategy.error is not None
    assert "model timed out" in strategy.error.message
    assert strategy.error.code == "ValueError"

    # A failed step may be retried.
    async with run.step("strategy"):
        pass
    await run.complete()
    await run.close()
    events = await events_of(client, run.run_id)
    failed = [e.payload for e in events if e.kind == EventKind.STEP_FAILED]
    assert len(failed) == 1
    assert isinstance(failed[0], StepFailed) and failed[0].step_id == "strategy"
    assert (await client.get_run(run.run_id)).steps[0].attempts == 2


async def test_exception_escaping_the_run_block_reports_the_run_failed(client: Client) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    with pytest.raises(RuntimeError, match="budget exhausted"):
        async with run, run.step("strategy"):
            raise RuntimeError("budget exhausted")

    snapshot = await client.get_run(run.run_id)
    assert snapshot.status == RunStatus.FAILED
    assert snapshot.error is not None and "budget exhausted" in snapshot.error.message
    assert snapshot.error.code == "RuntimeError"
    events = await events_of(client, run.run_id)
    assert events[-1].kind == EventKind.RUN_FAILED
    assert isinstance(events[-1].payload, RunFailed)


async def test_every_helper_produces_its_typed_event(client: Client) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    async with run.step("strategy") as step:
        await step.artifact("persona.json", kind="persona", size_bytes=42, metadata={"v": 1})
        await step.metrics({"variants": 12})
    await run.activity(
        "opp-1",
        ActivityType.STARTED,
        "Found 5 new companies",
        agent_name="OpportunityBot",
        agent_type="opportunity_bot",
        data={"items_created": 5},
        step_id="copy",
    )
    await run.thinking(
        "Three files, one query",
        thinking_type="route_planning",
        stage="Intent Classification",
        factors=("file_types", "user_query"),
        confidence=0.75,
        reasoning_depth="deep",
    )
    await run.model_allocation(
        "writer",
        "o3",
        tier="high",
        reasoning="long context",
        complexity="high",
        context_window=200_000,
        expected_cost_usd=0.25,
        factors=("length",),
        performance_expectation="exceptional_reasoning",
    )
    await run.model_allocation("cheap", "mini")
    await run.text("writer", "m1", "Hello, ")
    await run.text("writer", "m1", "world", final=True, step_id="copy")
    await run.metrics({"impressions": 10500, "ctr": 0.05})
    await run.milestone(
        "Target Reached!",
        type=MilestoneType.TARGET_REACHED,
        description="50 companies",
        data={"items_created": 50},
    )
    await run.alert(
        "CPC above threshold",
        severity=Severity.HIGH,
        suggested_action="Pause Campaign",
        code="CPC_THRESHOLD",
        data={"cpc": 2.5},
    )
    await run.error_recovery(
        "API rate limit exceeded",
        severity=Severity.MEDIUM,
        recovery_strategy="retry_with_backoff",
        can_continue=True,
        affected_agents=("writer",),
        user_action_required=False,
        attempt=2,
    )
    await run.artifact("index.html", kind="html", uri="file:///tmp/index.html", size_bytes=9)
    await run.workflow_state(
        "phase_transition",
        current_stage="copy",
        stages=("strategy", "copy", "web"),
        completion_percentage=40.0,
        active_agents=("writer",),
        pipeline_status={"files_processed": True},
    )
    await run.custom("campaign.tick", {"n": 3, "nested": {"ok": True, "list": [1, "a", None]}})
    await run.complete()
    await run.close()

    events = producer_events(await events_of(client, run.run_id))
    payloads = [e.payload for e in events]
    assert payloads[1] == RunStarted("")
    artifact = payloads[3]
    assert isinstance(artifact, ArtifactProduced)
    assert artifact.artifact.name == "persona.json"
    assert artifact.artifact.kind == "persona"
    assert artifact.artifact.step_id == "strategy"
    assert artifact.artifact.size_bytes == 42
    assert artifact.artifact.metadata == {"v": 1}
    assert payloads[4] == MetricsUpdate({"variants": 12.0}, "strategy")
    step_completed = payloads[5]
    assert isinstance(step_completed, StepCompleted)
    assert step_completed.metrics == {"variants": 12.0}
    assert payloads[6:] == [
        AgentActivity(
            "opp-1",
            "OpportunityBot",
            "opportunity_bot",
            ActivityType.STARTED,
            "Found 5 new companies",
            {"items_created": 5},
            "copy",
        ),
        Thinking(
            "route_planning",
            "Intent Classification",
            "Three files, one query",
            ("file_types", "user_query"),
            0.75,
            "deep",
            "",
        ),
        ModelAllocation(
            "writer",
            "o3",
            "high",
            "long context",
            "high",
            200_000,
            0.25,
            ("length",),
            "exceptional_reasoning",
        ),
        ModelAllocation("cheap", "mini", "", "", "", 0, None, (), ""),
        TextDelta("writer", "m1", "Hello, ", False, ""),
        TextDelta("writer", "m1", "world", True, "copy"),
        MetricsUpdate({"impressions": 10500.0, "ctr": 0.05}, ""),
        Milestone(
            MilestoneType.TARGET_REACHED, "Target Reached!", "50 companies", {"items_created": 50}
        ),
        Alert(
            Severity.HIGH, "CPC above threshold", "Pause Campaign", "CPC_THRESHOLD", {"cpc": 2.5}
        ),
        ErrorRecovery(
            "API rate limit exceeded",
            Severity.MEDIUM,
            "retry_with_backoff",
            True,
            ("writer",),
            False,
            2,
        ),
        ArtifactProduced(
            Artifact(
                artifact_id=artifact_id_of(payloads[16]),
                name="index.html",
                kind="html",
                uri="file:///tmp/index.html",
                size_bytes=9,
                step_id="",
                metadata={},
            )
        ),
        WorkflowStateChange(
            "phase_transition",
            "copy",
            ("strategy", "copy", "web"),
            40.0,
            ("writer",),
            {"files_processed": True},
        ),
        Custom("campaign.tick", {"n": 3, "nested": {"ok": True, "list": [1, "a", None]}}),
        RunCompleted("", {}),
    ]
    # Kind filters are applied by the server; the SDK yields only the wanted kinds.
    texts = await events_of(client, run.run_id, kinds=[EventKind.TEXT_DELTA])
    assert [e.payload for e in texts] == payloads[10:12]


def artifact_id_of(payload: object) -> str:
    assert isinstance(payload, ArtifactProduced)
    return payload.artifact.artifact_id


async def test_an_event_built_from_the_protos_is_reported_like_the_others(client: Client) -> None:
    """report_event(): the way to report a kind the SDK has no call for (a newer contract's),
    under the reporter's keys, with refusals raised as the other calls' are."""
    from runstream.v1 import event_pb2

    run = await client.start_run("campaign", steps=PLAN)
    alert = event_pb2.RunEvent(
        alert=event_pb2.Alert(message="budget at 90%", severity=3), idempotency_key="mine"
    )
    await run.report_event(alert)
    assert alert.idempotency_key == "mine"  # the caller's message is left as it is
    for bad, named in (
        ("alert", "event: must be a runstream.v1 RunEvent"),
        (event_pb2.RunEvent(), "event.payload: exactly one event kind must be set"),
        (event_pb2.RunEvent(run_completed=event_pb2.RunCompleted()), "event.run_completed"),
    ):
        with pytest.raises(InvalidArgumentError, match=named):
            await run.report_event(bad)  # type: ignore[arg-type]
    # A kind of a newer contract (field 48) goes to the server, which says what it is.
    newer = event_pb2.RunEvent()
    newer.MergeFromString(bytes([0x82, 0x03, 2, 0x0A, 0]))
    await run.report_event(newer)
    with pytest.raises(InvalidArgumentError, match="does not know \\(field 48\\)"):
        await run.flush()
    await run.complete()
    await run.close()
    stored = producer_events(await events_of(client, run.run_id))
    assert [e.kind for e in stored[1:]] == [
        EventKind.RUN_STARTED,
        EventKind.ALERT,
        EventKind.RUN_COMPLETED,
    ]
    assert isinstance(stored[2].payload, Alert)
    assert (stored[2].payload.message, stored[2].payload.severity) == (
        "budget at 90%",
        Severity.MEDIUM,
    )
    assert stored[2].idempotency_key.startswith(run.key_prefix)


async def test_text_longer_than_one_event_takes_goes_as_several_deltas(client: Client) -> None:
    """A 150,000-character answer (one big LLM chunk): the server takes at most 65,536 per
    delta, and refused the whole batch with the events before it, so the run stayed PENDING."""
    answer = "".join(chr(ord("a") + i % 26) for i in range(150_000))
    run = await client.start_run("long-text", steps=["write"])
    async with run:
        async with run.step("write"):
            await run.text("writer", "m1", answer, final=True, step_id="write")
        await run.complete()
    deltas = [
        e.payload for e in await events_of(client, run.run_id) if e.kind == EventKind.TEXT_DELTA
    ]
    assert "".join(d.delta for d in deltas) == answer  # type: ignore[union-attr]
    assert [len(d.delta) for d in deltas] == [65_536, 65_536, 18_928]  # type: ignore[union-attr]
    assert [d.final for d in deltas] == [False, False, True]  # type: ignore[union-attr]
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def test_text_of_wide_characters_goes_in_deltas_an_event_can_take(client: Client) -> None:
    """65,536 emoji are 262,144 bytes: the server refused such a delta as an event over its
    256 KiB, so the SDK's split of long text failed for text of four-byte characters."""
    answer = "\N{GRINNING FACE}" * 70_000 + "done"
    run = await client.start_run("wide-text")
    async with run:
        await run.text("writer", "m1", answer, final=True)
        await run.complete()
    deltas = [
        e.payload for e in await events_of(client, run.run_id) if e.kind == EventKind.TEXT_DELTA
    ]
    assert "".join(d.delta for d in deltas) == answer  # type: ignore[union-attr]
    assert [len(d.delta) for d in deltas] == [49_152, 16_384, 4_468]  # type: ignore[union-attr]
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def test_flush_makes_every_reported_event_durable(client: Client) -> None:
    run = await client.start_run("bulk")
    for i in range(1200):
        await run.custom("tick", {"i": i})
    await run.flush()
    assert run.events_acknowledged == run.events_reported == 1201
    snapshot = await client.get_run(run.run_id)
    assert snapshot.last_seq == run.last_seq == 1202  # RunCreated + RunStarted + 1200
    assert snapshot.status == RunStatus.RUNNING
    await run.close()


async def test_backpressure_delays_reporting_but_never_drops(client: Client) -> None:
    run = await client.start_run("bulk", max_buffered=7)
    for i in range(300):
        await run.custom("tick", {"i": i})
        assert run.events_reported - run.events_acknowledged <= 7
    await run.complete()
    await run.close()
    events = await events_of(client, run.run_id, kinds=[EventKind.CUSTOM])
    assert [e.payload.data["i"] for e in events if isinstance(e.payload, Custom)] == list(
        range(300)
    )


async def test_backpressure_also_holds_the_bytes_of_large_events(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the outbox counted events whatever their size, so with the server out
    of reach a producer reporting large tool outputs grew to gigabytes before it waited."""
    monkeypatch.setattr("runstream._report_gate.MAX_BUFFERED_BYTES", 1 << 20)  # 1 MiB here
    blob = "x" * 100_000
    async with proxy_to(server.port) as proxy, runstream.connect(proxy.target) as client:
        run = await client.start_run("bulk")
        await run.flush()
        proxy.cut()
        queued = 0
        while queued < 30:  # 3 MB in all: the reporter holds about 1 MiB of it
            try:
                await asyncio.wait_for(run.custom("output", {"text": blob}), 1.0)
            except TimeoutError:
                break
            queued += 1
        assert 10 <= queued <= 11, queued  # ~100 KB each: the eleventh passes the budget
        proxy.restore()
        await run.custom("after", {"text": "the outage"})  # waited for the acks, then went
        await run.complete()
        await run.close()
        stored = await events_of(client, run.run_id, kinds=[EventKind.CUSTOM])
    assert [e.payload.type for e in stored if isinstance(e.payload, Custom)] == [
        "output"
    ] * queued + ["after"]


async def test_a_call_held_by_backpressure_raises_when_the_run_ends_meanwhile(
    server: RunstreamServer, client: Client
) -> None:
    """A reporting call waiting for room in a full outbox checks the reporter again when it
    wakes: the run cancelled meanwhile, it raises RunCancelledError, where it would go on
    waiting for room that never comes (mutation audit mu67s, G02)."""
    async with proxy_to(server.port) as proxy, runstream.connect(proxy.target) as producer:
        run = await producer.start_run("bulk", max_buffered=2)
        await run.flush()
        proxy.stall()  # nothing the producer sends reaches the server, nor any answer back
        await run.custom("tick", {"i": 1})
        await run.custom("tick", {"i": 2})
        held = asyncio.create_task(run.custom("tick", {"i": 3}))
        await asyncio.sleep(0.2)
        assert not held.done()  # two unacknowledged: no room
        await client.cancel_run(run.run_id, reason="stop")
        proxy.flow()  # the two arrive after the cancel, refused: the reporter fails
        with pytest.raises(RunCancelledError):
            await asyncio.wait_for(held, 10)
        assert run.events_acknowledged < run.events_reported


async def test_a_reporter_closing_with_events_pending_reconnects_at_its_backoffs_pace(
    server: RunstreamServer,
) -> None:
    """close() waits for the events still unacknowledged, reconnecting while the server is
    out of reach at the backoff's pace, not in a loop that tries again at once and keeps a
    core busy until the reconnect timeout (mutation audit mu67s, S17)."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=3) as producer,
    ):
        run = await producer.start_run("bulk")
        await run.flush()
        proxy.cut()  # every connection refused from now on
        await run.custom("tick", {"i": 1})
        cpu = time.process_time()
        with pytest.raises(runstream.UnavailableError):
            await run.close()  # gives up after the reconnect timeout, 3 s
        # A second of this process's CPU in those 3 s: a loop (about 3 s), not its backoff
        # (some 0.05 s: the server in this process has nothing to do).
        assert time.process_time() - cpu < 1.0


async def test_batches_in_flight_when_the_connection_breaks_go_again_in_their_order(
    server: RunstreamServer,
) -> None:
    """Two batches sent and not acknowledged when the connection breaks (the server frozen,
    then cut off) go again on the next stream in the order they were reported, before what
    was still queued: a resend that put the later batch in front stored the events out of
    order, each acknowledged."""
    async with proxy_to(server.port) as proxy, runstream.connect(proxy.target) as client:
        run = await client.start_run("ordered")
        await run.flush()
        proxy.stall()
        for name in ("first", "second", "third"):  # a batch each, two of them in flight
            await run.custom(name, {})
            await asyncio.sleep(0.1)
        proxy.cut()
        proxy.restore()
        proxy.flow()
        await run.complete()
        await run.close()
        stored = await events_of(client, run.run_id, kinds=[EventKind.CUSTOM])
    assert [e.payload.type for e in stored if isinstance(e.payload, Custom)] == [
        "first",
        "second",
        "third",
    ]


async def test_events_queued_while_the_server_is_frozen_go_in_messages_it_accepts(
    server: RunstreamServer,
) -> None:
    """Large events queued while the server does not answer leave in messages of about
    1 MiB, not in one batch of them all: 30 events of 200 KB in one message are past the
    server's 4 MiB message limit, and the reporter failed with every event undelivered."""
    blob = "x" * 200_000
    async with proxy_to(server.port) as proxy, runstream.connect(proxy.target) as client:
        run = await client.start_run("bulk")
        await run.flush()
        proxy.stall()
        for _ in range(30):
            await run.custom("output", {"text": blob})
        proxy.flow()
        await run.complete()
        await run.close()
        stored = await events_of(client, run.run_id, kinds=[EventKind.CUSTOM])
    assert len(stored) == 30


async def test_cancel_run_makes_the_next_reporting_call_raise(client: Client) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    # Either the cancel control already arrived (the call raises at once) or the server
    # refuses the batch because the run ended; both surface as RunCancelledError, which
    # leaves the step block without reporting anything more.
    with pytest.raises(RunCancelledError) as raised:
        async with run.step("strategy") as step:
            await step.progress(10)
            await run.flush()
            cancelled = await client.cancel_run(
                run.run_id, reason="wrong audience", cancelled_by="ana"
            )
            assert cancelled.status == RunStatus.CANCELLED
            assert cancelled.cancel_reason == "wrong audience"
            await step.progress(20)
            await run.flush()
    assert raised.value.code == StatusCode.FAILED_PRECONDITION
    assert isinstance(raised.value, FailedPreconditionError)
    assert run.cancelled
    assert run.cancel_reason == "wrong audience"
    with pytest.raises(RunCancelledError):
        await run.metrics({"x": 1})
    await run.close()  # Closing a cancelled run's reporter is not an error.

    events = await events_of(client, run.run_id)
    assert events[-1].kind == EventKind.RUN_CANCELLED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_a_cancel_without_a_reason_is_logged_without_one(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """``runstream cancel RUN`` with no ``--reason``: the producer's log line ended in ": "."""
    caplog.set_level(logging.INFO, logger="runstream")
    run = await client.start_run("campaign")
    await run.flush()
    await client.cancel_run(run.run_id)
    await until(lambda: _cancelled(run))
    await run.close()
    said = [r.getMessage() for r in caplog.records if "was cancelled" in r.getMessage()]
    assert said == [f"run {run.run_id} was cancelled"]


async def _cancelled(run: runstream.RunReporter) -> bool:
    return run.cancelled


async def test_cancel_control_reaches_an_idle_reporter(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    await client.cancel_run(run.run_id, reason="stop")
    await eventually(lambda: run.cancelled)
    with pytest.raises(RunCancelledError, match="stop"):
        await run.custom("late")
    await run.close()


async def test_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(runstream.NotFoundError) as raised:
        await client.get_run("no-such-run")
    assert raised.value.code == StatusCode.NOT_FOUND
    assert isinstance(raised.value, RunstreamError)
    assert isinstance(raised.value.__cause__, Exception)  # the original AioRpcError
    with pytest.raises(runstream.NotFoundError):
        await events_of(client, "no-such-run")
    with pytest.raises(runstream.NotFoundError):
        await client.cancel_run("no-such-run")


async def test_bad_input_is_invalid_argument_naming_the_field(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="workflow"):
        await client.start_run("")
    with pytest.raises(InvalidArgumentError, match="step_id"):
        await client.start_run("campaign", steps=[StepSpec("not a valid id!")])


async def test_kinds_that_are_no_event_kind_are_invalid_argument_naming_them(
    client: Client,
) -> None:
    """The CLI's "milestone" given to watch() or list_events() failed with ValueError
    "invalid literal for int() with base 10: 'milestone'" from inside the SDK."""
    run = await client.start_run("campaign")
    await run.complete()
    for kinds, said in [
        (["milestone"], "kinds: 'milestone' is not an EventKind (EventKind.MILESTONE)"),
        ([EventKind.MILESTONE, 99], "kinds: 99 is not an EventKind"),
        ("milestone", "kinds: must be a list of EventKind, not 'milestone'"),
    ]:
        with pytest.raises(InvalidArgumentError) as watching:
            await events_of(client, run.run_id, kinds=kinds)
        with pytest.raises(InvalidArgumentError) as listing:
            [event async for event in client.list_events(run.run_id, kinds=kinds)]  # type: ignore[arg-type]
        assert watching.value.message == listing.value.message == said


async def test_a_refused_event_is_raised_by_flush_and_the_events_around_it_are_stored(
    client: Client,
) -> None:
    # A long linger puts everything up to each flush in one batch with the refused events.
    run = await client.start_run("campaign", steps=PLAN, linger=30)
    async with run.step("strategy"):
        pass
    await run.step("strategy").complete()  # completed twice
    await run.custom("after-1")
    await run.start_step("strategy")  # started again, though it finished
    # Over the server's 256 KiB per event (its setting, so not checked by the SDK).
    await run.custom("too-big", {"blob": "x" * 300_000})
    await run.custom("after-2")
    refusals: list[RunstreamError] = []
    for _ in range(3):  # each refusal is raised once, by a flush; the reporter goes on
        with pytest.raises(RunstreamError) as raised:
            await run.flush()
        refusals.append(raised.value)
    await run.flush()
    # The server checks every event's fields and size before it applies any of them. Each
    # refusal names the call that reported the event, then gives the server's reason.
    assert [(type(e), e.message.split(": events[")[0]) for e in refusals] == [
        (ResourceExhaustedError, "run.custom()"),
        (FailedPreconditionError, "step.complete() of step 'strategy'"),
        (FailedPreconditionError, "step.start() of step 'strategy'"),
    ]
    assert [e.message.partition("]")[2] for e in refusals[1:]] == [
        ".step_completed: step 'strategy' already SUCCEEDED",
        ".step_started: step 'strategy' already SUCCEEDED",
    ]
    assert "event is 300" in refusals[0].message
    assert (run.events_reported, run.events_acknowledged) == (8, 5)
    await run.custom("later")
    async with run.step("copy"):
        pass
    await run.complete()
    await run.close()

    stored = producer_events(await events_of(client, run.run_id))
    assert [(e.kind, getattr(e.payload, "type", "")) for e in stored[1:]] == [
        (EventKind.RUN_STARTED, ""),
        (EventKind.STEP_STARTED, ""),
        (EventKind.STEP_COMPLETED, ""),
        (EventKind.CUSTOM, "after-1"),
        (EventKind.CUSTOM, "after-2"),
        (EventKind.CUSTOM, "later"),
        (EventKind.STEP_STARTED, ""),
        (EventKind.STEP_COMPLETED, ""),
        (EventKind.RUN_COMPLETED, ""),
    ]
    assert len({e.idempotency_key for e in stored[1:]}) == 9
    finished = await client.get_run(run.run_id)
    assert finished.status == RunStatus.SUCCEEDED
    assert [s.attempts for s in finished.steps[:2]] == [1, 1]


async def test_a_refused_event_is_raised_by_complete_which_still_ends_the_run(
    client: Client,
) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    with pytest.raises(InvalidArgumentError, match="has no step 'nope'"):
        async with run:
            await run.step("nope").progress(10)
            await run.custom("after")
            await run.complete()
    stored = producer_events(await events_of(client, run.run_id))
    assert [e.kind for e in stored[-2:]] == [EventKind.CUSTOM, EventKind.RUN_COMPLETED]


async def test_a_refused_question_is_raised_by_ask_and_the_run_goes_on(client: Client) -> None:
    run = await client.start_run("campaign")
    async with run:
        # Context over the server's 256 KiB per event (its setting: only it can refuse that).
        with pytest.raises(
            ResourceExhaustedError,
            match=r"RESOURCE_EXHAUSTED: run\.ask\(\): events\[\d+\]: event is",
        ):
            await run.ask("Which one?", ["a", "b"], context={"blob": "x" * 300_000})
        await run.custom("after")
        await run.complete()
    stored = producer_events(await events_of(client, run.run_id))
    assert [e.kind for e in stored[-2:]] == [EventKind.CUSTOM, EventKind.RUN_COMPLETED]
    assert await client.list_decisions(run.run_id) == []


async def test_reporting_after_complete_is_refused_locally(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.complete()
    with pytest.raises(FailedPreconditionError):
        await run.custom("late")
    await run.close()
    with pytest.raises(FailedPreconditionError):
        await run.custom("closed")


async def test_a_run_reported_ended_closes_its_report_stream_without_close(
    client: Client,
) -> None:
    """Found in review: a producer that ends its runs with complete() or fail() and never
    calls close() kept a Report stream open per run, on the server (counted against a
    producer's open streams) and in the client (three tasks per run)."""
    for end in ("complete", "fail", "complete"):
        run = await client.start_run("campaign")
        await run.custom("work")
        await (run.complete() if end == "complete" else run.fail("it broke"))
        await run.flush()
    await until(lambda: _report_streams(client), within=10)
    with pytest.raises(FailedPreconditionError):
        await run.custom("late")


@pytest.mark.parametrize("call", ["flush", "close", "wait_if_paused"])
async def test_waiting_on_a_reporter_from_another_event_loop_is_refused(
    client: Client, call: str
) -> None:
    """``flush()`` and ``close()`` awaited in another loop (a worker thread's asyncio.run())
    hung, or under a timeout returned as if all were delivered, and that close() closed the
    reporter under its owner (found in review), where every reporting call is refused."""
    run = await client.start_run("campaign")
    await run.custom("work")

    async def in_another_loop() -> str:
        with pytest.raises(FailedPreconditionError) as raised:
            await asyncio.wait_for(getattr(run, call)(), 10)
        return raised.value.message

    said = await asyncio.to_thread(asyncio.run, in_another_loop())
    assert "was started in another event loop" in said
    await run.custom("from its own loop")  # still open
    await run.complete()
    assert (await client.get_run(run.run_id)).status.name == "SUCCEEDED"


async def _report_streams(client: Client) -> bool:
    return (await client.get_stats()).producers == 0


async def test_reporting_from_another_event_loop_is_refused_not_lost(client: Client) -> None:
    """Found in review: a reporting call made in another loop (a second asyncio.run() of a
    plain script, a worker thread's) returned as if queued, and its event was never sent."""
    run = await client.start_run("campaign")

    async def in_another_loop() -> str:
        with pytest.raises(FailedPreconditionError) as raised:
            await run.custom("from elsewhere")
        return raised.value.message

    said = await asyncio.to_thread(asyncio.run, in_another_loop())
    assert "was started in another event loop" in said
    await run.custom("from its own loop")
    await run.complete()
    stored = producer_events(await events_of(client, run.run_id))
    assert [e.kind for e in stored[-2:]] == [EventKind.CUSTOM, EventKind.RUN_COMPLETED]
    assert sum(e.kind == EventKind.CUSTOM for e in stored) == 1


async def test_closing_a_client_closes_its_reporters_at_once(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: with the server frozen, the client's close() closed its reporters one
    after another, each waiting its grace for the server: 50 s for ten reporters."""
    monkeypatch.setattr("runstream._stream_ownership.CLOSE_GRACE", 2.0)
    async with proxy_to(server.port) as proxy:
        client = runstream.connect(proxy.target)
        for _ in range(4):
            run = await client.start_run("campaign")
            await run.flush()
        proxy.stall()
        started = time.monotonic()
        await client.close()
        took = time.monotonic() - started
        proxy.flow()
    assert took < 6.0, f"closing 4 reporters took {took:.1f} s (a grace of 2 s each)"


async def test_explicit_run_id_that_exists_is_already_exists(client: Client) -> None:
    run = await client.start_run("campaign", run_id="fixed-id-1")
    assert run.run_id == "fixed-id-1"
    with pytest.raises(runstream.AlreadyExistsError):
        await client.start_run("campaign", run_id="fixed-id-1")
    await run.close()


async def test_watch_resumes_after_a_given_seq_and_rejects_a_cursor_past_the_head(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    for i in range(10):
        await run.custom("tick", {"i": i})
    await run.complete()
    await run.close()
    tail = await events_of(client, run.run_id, after_seq=5)
    assert [e.seq for e in tail] == list(range(6, 14))
    with pytest.raises(runstream.OutOfRangeError):
        await events_of(client, run.run_id, after_seq=100)


async def test_watch_with_heartbeats_follows_a_live_run(client: Client) -> None:
    run = await client.start_run("campaign")
    seen: list[Event] = []

    async def watch() -> None:
        async for event in client.watch(run.run_id, heartbeat_interval=timedelta(seconds=0.1)):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    for i in range(5):
        await run.custom("tick", {"i": i})
        await run.flush()
        await asyncio.sleep(0.15)  # idle long enough for a heartbeat between events
    await run.complete()
    await run.close()
    await asyncio.wait_for(watcher, 20)
    assert [e.seq for e in seen] == list(range(1, 9))
    assert seen[-1].kind == EventKind.RUN_COMPLETED


async def test_data_that_is_not_json_like_is_refused_before_sending(client: Client) -> None:
    run = await client.start_run("campaign")
    with pytest.raises(InvalidArgumentError, match="'when'"):
        await run.custom("tick", {"ok": 1, "when": object()})
    await run.custom("tick", {"ok": 1})  # the reporter is still usable
    await run.complete()
    await run.close()
    assert (await client.get_run(run.run_id)).last_seq == 4


@pytest.mark.parametrize("value", ["525", None, float("nan"), object()])
async def test_a_metric_that_is_no_number_is_refused_before_sending(
    client: Client, value: object
) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    async with run:
        with pytest.raises(InvalidArgumentError, match=r"values\['clicks'\]: must be a finite"):
            await run.metrics({"impressions": 10500, "clicks": value})  # type: ignore[dict-item]
        async with run.step("strategy") as step:
            with pytest.raises(InvalidArgumentError, match=r"values\['score'\]"):
                await step.metrics({"score": value})  # type: ignore[dict-item]
            await step.metrics({"score": 4})
        await run.metrics({"clicks": 525})
        await run.complete()
    with pytest.raises(InvalidArgumentError, match=r"targets\[0\]\.value"):
        await client.start_run("campaign", targets=[runstream.Target("ctr", value)])  # type: ignore[arg-type]
    stored = await client.get_run(run.run_id)
    assert stored.status == RunStatus.SUCCEEDED
    assert stored.metrics == {"clicks": 525.0}
    assert stored.steps[0].metrics == {"score": 4.0}


async def test_a_client_used_in_another_event_loop_says_so_and_goes_on_in_its_own(
    client: Client,
) -> None:
    """A client made once and used by two asyncio.run() calls: the second raised
    RuntimeError "Event loop is closed" from inside gRPC, with a RuntimeWarning about a
    coroutine never awaited."""
    run = await client.start_run("campaign")  # opens the channel in this loop

    async def in_another_loop() -> str:
        with pytest.raises(FailedPreconditionError) as raised:
            await client.get_run(run.run_id)
        return raised.value.message

    said = await asyncio.to_thread(asyncio.run, in_another_loop())
    assert said.startswith("the Runstream client was opened in another event loop")
    assert (await client.get_run(run.run_id)).run_id == run.run_id
    await run.close()


async def test_a_closed_client_raises_a_runstream_error(server: RunstreamServer) -> None:
    """Everything the SDK raises is a RunstreamError: a call on a closed client too."""
    client = runstream.connect(server.target)
    await client.get_run((await client.start_run("before-close")).run_id)
    await client.close()
    for call in (client.get_run("any"), client.start_run("after-close")):
        with pytest.raises(runstream.FailedPreconditionError, match="client is closed"):
            await call


async def test_closing_the_client_under_a_watch_ends_it_with_a_runstream_error(
    server: RunstreamServer,
) -> None:
    """Another part of the program closes the shared client while a task reads a watch:
    the task gets FailedPreconditionError, and does not look cancelled (nobody cancelled it)."""
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("closed-under-watch")
        await run.flush()
        client = runstream.connect(server.target)
        seen = asyncio.Event()

        async def watcher() -> None:
            async for _ in client.watch(run.run_id):
                seen.set()

        task = asyncio.create_task(watcher())
        await asyncio.wait_for(seen.wait(), 10)
        await client.close()
        with pytest.raises(runstream.FailedPreconditionError, match="client was closed"):
            await asyncio.wait_for(task, 10)
        assert not task.cancelled()
        await run.complete()


async def test_a_producer_cancelled_while_the_server_is_unreachable_stops_without_delivering(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C with the server out of reach: the run's end was given its grace, then close()
    waited for the undelivered events for the whole reconnect timeout (60 s by default), so
    the program did not stop. The task must end well within that timeout (here 30 s, with a
    grace of 0.5 s), without a server to deliver to."""
    monkeypatch.setattr("runstream._run_end.CLOSE_GRACE", 0.5)
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=30) as client,
    ):
        run = await client.start_run("interrupted")
        await run.flush()
        reporting = asyncio.Event()

        async def workflow() -> None:
            async with run:
                await run.text("writer", "m1", "never delivered")
                reporting.set()
                await asyncio.Event().wait()

        proxy.cut()
        task = asyncio.create_task(workflow())
        await reporting.wait()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=15)
        assert task in done and task.cancelled()
        with pytest.raises(runstream.FailedPreconditionError):
            await run.text("writer", "m1", "after the end")
    # The text, and the run's end: RunCancelled.
    assert "2 reported events were not delivered" in caplog.text


async def test_a_failed_reporter_raises_at_every_call_with_a_traceback_of_that_call_only(
    server: RunstreamServer,
) -> None:
    """A workflow that goes on after its reporter gave up (one call per LLM token) meets the
    failure at every call. Each raise must not add its frames to the ones before it: a
    traceback of hundreds of thousands of frames, and the memory they held, was the result."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=0.2) as client,
    ):
        run = await client.start_run("abandoned")
        await run.flush()
        proxy.cut()
        await run.text("writer", "m1", "never delivered")
        with pytest.raises(runstream.UnavailableError) as gave_up:
            await asyncio.wait_for(run.flush(), 20)
        raised: list[runstream.UnavailableError] = []
        for _ in range(2000):
            with pytest.raises(runstream.UnavailableError) as token_call:
                await run.text("writer", "m1", "token")
            raised.append(token_call.value)
        with pytest.raises(runstream.UnavailableError) as closing:
            await run.close()
    for error in (raised[-1], closing.value):
        assert len(traceback.extract_tb(error.__traceback__)) < 50
        # What a caller catches is the reporter's failure all the same.
        assert error.code == StatusCode.UNAVAILABLE
        assert error.message == gave_up.value.message
        assert error.__cause__ is gave_up.value.__cause__ is not None
    assert len(traceback.extract_tb(raised[0].__traceback__)) < 50


async def test_a_workflow_that_fails_with_the_server_gone_logs_one_warning_for_one_cause(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: an exception leaving `async with run:` with the server out of reach
    logged the same cause three times as WARNING ("reporter stopped", "could not report how
    the run ended", "closing the reporter failed")."""
    caplog.set_level(logging.DEBUG, logger="runstream")
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=1) as client,
    ):
        run = await client.start_run("doomed")
        await run.flush()
        proxy.cut()
        with pytest.raises(ValueError, match="the model gave up"):
            async with run:
                await run.custom("last words")
                raise ValueError("the model gave up")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and run.run_id in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "stopped" in warnings[0], warnings


async def test_a_producer_cancelled_twice_while_the_server_is_unreachable_stops_at_once(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C, and Ctrl-C again while the run's end waits its grace (asyncio.run cancels every
    task on the second): the second cut that wait, the reporter stayed open, and closing the
    client started its stream again and waited the whole reconnect timeout (66 s in review;
    here for ever). Now a second cancel ends the reporter at once, saying what was lost."""
    async with proxy_to(server.port) as proxy:
        reporting = asyncio.Event()

        async def main() -> None:
            async with runstream.connect(proxy.target, reconnect_timeout=None) as client:
                run = await client.start_run("interrupted-twice")
                await run.flush()
                proxy.cut()
                async with run:
                    await run.text("writer", "m1", "never delivered")
                    reporting.set()
                    await asyncio.Event().wait()

        task = asyncio.create_task(main())
        await reporting.wait()
        task.cancel()
        await asyncio.sleep(0.3)  # the run's end waits its grace (5 s)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=15)
        assert task in done and task.cancelled()
    assert "2 reported events were not delivered" in caplog.text
    assert "cancelled again" in caplog.text


@pytest.mark.parametrize(
    ("stop", "status", "said"),
    [
        (KeyboardInterrupt(), "CANCELLED", "producer interrupted (KeyboardInterrupt)"),
        (SystemExit(0), "CANCELLED", "producer exited (SystemExit: 0)"),
        (SystemExit(), "CANCELLED", "producer exited (SystemExit)"),  # sys.exit()
        (SystemExit("cannot go on"), "FAILED", "SystemExit: cannot go on"),
    ],
    ids=["ctrl-c", "exit-0", "exit", "exit-with-error"],
)
async def test_a_producer_interrupted_or_exiting_in_its_run_block_ends_the_run_as_stopped(
    client: Client, stop: BaseException, status: str, said: str
) -> None:
    """KeyboardInterrupt raised in the block (Ctrl-C under ``loop.run_until_complete``, as
    IPython runs code) and ``sys.exit(0)`` reported the run FAILED "KeyboardInterrupt" and
    "SystemExit: 0" (found in review), where a Ctrl-C under asyncio.run reports it cancelled.
    An exit with an error still fails it."""
    run = await client.start_run("stopped")
    with pytest.raises(type(stop)):
        async with run:
            await run.flush()
            raise stop
    final = await client.get_run(run.run_id)
    events = [e async for e in client.list_events(run.run_id)]
    assert final.status.name == status
    ending = events[-1].payload
    if status == "CANCELLED":
        assert isinstance(ending, runstream.RunCancelled)
        assert (ending.reason, ending.cancelled_by) == (said, "producer")
    else:
        assert isinstance(ending, runstream.RunFailed)
        assert ending.error.message == said


SIGTERM_PRODUCER = """
import asyncio, signal, sys
import runstream

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    async with runstream.connect(sys.argv[1]) as client:
        run = await client.start_run("stopped-by-sigterm")
        print(run.run_id, flush=True)
        try:
            async with run:
                n = 0
                while True:
                    await run.metrics({"n": n})
                    n += 1
                    if n % 200 == 0:
                        await asyncio.sleep(0.001)
        finally:
            print(run.events_reported, flush=True)

asyncio.run(main())
"""


async def test_the_readmes_sigterm_handler_ends_a_producer_as_ctrl_c_does(
    client: Client, server: RunstreamServer
) -> None:
    """The README's one line for SIGTERM (what ``docker stop`` and Kubernetes send): the
    run ends CANCELLED with every event the producer reported stored, where Python's default
    ends the process at once, the queued events lost and the run left RUNNING (found in
    review: 8,500 of 29,000 lost)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SIGTERM_PRODUCER, server.target,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        run_id = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        await until(lambda: _has_events(client, run_id, 500))
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    reported = int(out.decode().split()[-1])
    final = await client.get_run(run_id)
    events = [e async for e in client.list_events(run_id)]
    assert final.status.name == "CANCELLED"
    assert events[-1].kind == EventKind.RUN_CANCELLED
    # RunCreated, the server's; then all the producer reported: RunStarted, the metrics and
    # the run's end.
    assert len(events) == 1 + reported
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def _has_events(client: Client, run_id: str, count: int) -> bool:
    return (await client.get_run(run_id)).last_seq >= count


async def test_a_client_closed_under_an_open_run_block_reports_the_run_cancelled(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A web app's shutdown: the client (opened in the app's lifespan) closes while a
    background task still reports inside ``async with run:``. The run stayed RUNNING with
    nobody left to end it, silently, and the task met "the reporter ... is closed" (found in
    review). Now the run is reported cancelled, a warning says why, and the task is told the
    client was closed."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("web-app")
        working = asyncio.Event()

        async def background() -> None:
            async with run:
                for i in range(1000):
                    await run.metrics({"i": i})
                    working.set()
                    await asyncio.sleep(0.01)
                await run.complete()

        task = asyncio.create_task(background())
        await working.wait()
    # RunCancelledError when its run's CANCEL came first, cancelling it as an operator's does.
    with pytest.raises(FailedPreconditionError, match=r"the (Runstream )?client was closed"):
        await asyncio.wait_for(task, 10)
    async with runstream.connect(server.target) as other:
        final = await other.get_run(run.run_id)
        ending = [e async for e in other.list_events(run.run_id)][-1].payload
    assert final.status.name == "CANCELLED"
    assert isinstance(ending, runstream.RunCancelled)
    assert (ending.reason, ending.cancelled_by) == ("the client was closed", "producer")
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [
        f"run {run.run_id} reported cancelled: its client was closed while a task still "
        "reported in its block (async with run:); close the client after that task"
    ]
