"""Run control through the SDK: cancel and pause reach a running producer, visibly.

An operator's CancelRun stops the workflow at once (its task is cancelled, the block raises
RunCancelledError); PauseRun holds it at its next step boundary until ResumeRun; both show in
the run's status and events. A producer whose own task is cancelled reports the run
cancelled, not failed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import runstream
from runstream import (
    Client,
    EventKind,
    FailedPreconditionError,
    RunCancelled,
    RunCancelledError,
    RunHealth,
    RunStatus,
    RunStatusChanged,
    StepStatus,
)
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.insight import InsightPolicy

from tests.clients.support import TcpProxy, eventually, until
from tests.server.support import Clock, on_clock


async def log_of(client: Client, run_id: str) -> list[runstream.Event]:
    return [event async for event in client.list_events(run_id)]


async def step_status(client: Client, run_id: str, step_id: str) -> StepStatus:
    run = await client.get_run(run_id)
    return next(step.status for step in run.steps if step.step_id == step_id)


async def test_cancel_stops_a_workflow_in_the_middle_of_a_long_await(client: Client) -> None:
    run = await client.start_run("campaign", steps=["research", "write"])
    in_step = asyncio.Event()
    reached_after_sleep = False

    async def workflow() -> None:
        nonlocal reached_after_sleep
        async with run, run.step("research"):
            in_step.set()
            await asyncio.sleep(3600)  # an LLM call that would take forever
            reached_after_sleep = True

    task = asyncio.create_task(workflow())
    await asyncio.wait_for(in_step.wait(), 20)
    await run.flush()
    cancelled = await client.cancel_run(run.run_id, reason="wrong brief", cancelled_by="ana")
    assert cancelled.status == RunStatus.CANCELLED

    # The block turns the SDK's own task cancellation into what it means.
    with pytest.raises(RunCancelledError, match="wrong brief") as raised:
        await asyncio.wait_for(task, 20)
    assert not isinstance(raised.value, asyncio.CancelledError)
    assert not reached_after_sleep
    assert run.cancelled and run.cancel_reason == "wrong brief"
    assert not task.cancelled()  # the task ended with the error, not as cancelled

    events = await log_of(client, run.run_id)
    assert events[-1].payload == RunCancelled("wrong brief", "ana")
    # Nothing was reported after the cancellation; the interrupted step was closed by the
    # server, just before the run's end, as failed by the cancellation.
    [failed] = [e for e in events if e.kind == EventKind.STEP_FAILED]
    assert failed.seq == events[-1].seq - 1
    assert (failed.payload.step_id, failed.payload.error.code) == ("research", "RUN_CANCELLED")


async def test_without_cancel_task_the_next_report_call_raises(client: Client) -> None:
    run = await client.start_run("campaign", steps=["research"], cancel_task=False)
    assert not run.cancel_task
    proceed = asyncio.Event()
    in_step = asyncio.Event()

    async def workflow() -> str:
        async with run, run.step("research") as step:
            in_step.set()
            await proceed.wait()  # not interrupted: cancel_task is off
            await step.progress(50)
        return "unreachable"

    task = asyncio.create_task(workflow())
    await asyncio.wait_for(in_step.wait(), 20)
    await run.flush()
    await client.cancel_run(run.run_id, reason="stop")
    await eventually(lambda: run.cancelled)
    await asyncio.sleep(0.2)  # where a cancel of the task would have landed
    assert not task.done()
    proceed.set()
    with pytest.raises(RunCancelledError, match="stop"):
        await asyncio.wait_for(task, 20)


async def test_a_block_entered_on_a_run_cancelled_already_raises_at_its_first_report(
    client: Client,
) -> None:
    run = await client.start_run("campaign", steps=["research"])
    await run.flush()  # the producer's stream is up: the cancel reaches it
    await client.cancel_run(run.run_id, reason="wrong brief")
    await eventually(lambda: run.cancelled)
    before_report = []

    async def workflow() -> None:
        async with run:
            await asyncio.sleep(0.05)  # not cancelled on entry: its code runs to the report
            before_report.append("ran")
            await run.start_step("research")

    with pytest.raises(RunCancelledError, match="wrong brief"):
        await asyncio.wait_for(workflow(), 20)
    assert before_report == ["ran"]


async def test_a_pending_ask_raises_when_the_run_is_cancelled(client: Client) -> None:
    run = await client.start_run("campaign", cancel_task=False)
    waiting = asyncio.create_task(run.ask("Which?", ["a", "b"], decision_id="q"))
    await eventually(lambda: run.events_acknowledged >= 2)
    await client.cancel_run(run.run_id, reason="no time")
    with pytest.raises(RunCancelledError, match="no time"):
        await asyncio.wait_for(waiting, 20)
    decision = await client.get_decision(run.run_id, "q")
    assert decision.outcome == runstream.DecisionOutcome.CANCELLED
    await run.close()


async def test_a_pending_ask_says_the_run_ended_when_another_producer_fails_it(
    client: Client,
) -> None:
    """Nobody cancelled the run: the ask says it ended, not that it "was cancelled"."""
    run = await client.start_run("campaign", cancel_task=False)
    waiting = asyncio.create_task(run.ask("Which?", ["a", "b"], decision_id="q"))
    await eventually(lambda: run.events_acknowledged >= 2)
    other = await client.attach_run(run.run_id, key_prefix="other-worker")
    await other.fail("the worker crashed")
    await other.close()
    with pytest.raises(FailedPreconditionError, match="ended while decision 'q' was open") as e:
        await asyncio.wait_for(waiting, 20)
    assert not isinstance(e.value, RunCancelledError)
    assert (await client.get_run(run.run_id)).status == RunStatus.FAILED
    await run.close()


@pytest.mark.parametrize("waiting", ["in a step", "for an answer"])
async def test_cancelling_the_producers_own_task_reports_the_run_cancelled(
    client: Client, caplog: pytest.LogCaptureFixture, waiting: str
) -> None:
    run = await client.start_run("campaign", steps=["research"])
    in_step = asyncio.Event()

    async def workflow() -> None:
        async with run, run.step("research"):
            in_step.set()
            if waiting == "in a step":
                await asyncio.sleep(3600)
            else:
                await run.ask("Go on?", ["yes", "no"])

    task = asyncio.create_task(workflow())
    await asyncio.wait_for(in_step.wait(), 20)
    task.cancel()  # Ctrl-C, a shutdown, an outer timeout: the producer stops itself
    with pytest.raises(asyncio.CancelledError):
        await task

    snapshot = await client.get_run(run.run_id)
    assert snapshot.status == RunStatus.CANCELLED
    assert snapshot.error is None  # not a failure
    events = await log_of(client, run.run_id)
    assert events[-1].payload == RunCancelled("producer task cancelled", "producer")
    assert not [e for e in events if e.kind == EventKind.RUN_FAILED]
    # The producer stopped itself: nothing to warn about ("could not report how it ended").
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    [step] = snapshot.steps  # closed by the server with the run, not reported as a failure
    assert (step.status, step.error and step.error.code) == (StepStatus.FAILED, "RUN_CANCELLED")


async def test_an_outer_timeout_around_the_run_still_raises_timeout(client: Client) -> None:
    run = await client.start_run("campaign")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3), run:
            await asyncio.sleep(3600)
    assert (await client.get_run(run.run_id)).status == RunStatus.CANCELLED


async def test_pause_holds_the_producer_at_the_next_step_and_resume_lets_it_go_on(
    client: Client,
) -> None:
    run = await client.start_run("campaign", steps=["research", "write"])
    finish_research = asyncio.Event()
    at_boundary = asyncio.Event()

    async def workflow() -> None:
        async with run:
            async with run.step("research"):
                await finish_research.wait()
            at_boundary.set()
            async with run.step("write") as step:
                await step.progress(100)
            await run.complete("done")

    task = asyncio.create_task(workflow())
    await eventually(lambda: run.events_acknowledged >= 2)
    paused = await client.pause_run(run.run_id, reason="checking the brief", requested_by="ana")
    assert paused.status == RunStatus.PAUSED
    await eventually(lambda: run.paused)

    # The running step is not interrupted; the producer holds before the next one.
    finish_research.set()
    await asyncio.wait_for(at_boundary.wait(), 20)
    await run.flush()
    await asyncio.sleep(0.3)  # room for a wrongly unheld producer to start "write"
    assert await step_status(client, run.run_id, "research") == StepStatus.SUCCEEDED
    assert await step_status(client, run.run_id, "write") == StepStatus.PENDING
    assert (await client.get_run(run.run_id)).status == RunStatus.PAUSED
    assert not task.done()

    with pytest.raises(FailedPreconditionError):
        await client.pause_run(run.run_id)  # already paused

    resumed = await client.resume_run(run.run_id, reason="brief ok", requested_by="ana")
    assert resumed.status == RunStatus.RUNNING
    await asyncio.wait_for(task, 20)
    assert not run.paused
    final = await client.get_run(run.run_id)
    assert final.status == RunStatus.SUCCEEDED

    events = await log_of(client, run.run_id)
    changes = [e.payload for e in events if isinstance(e.payload, RunStatusChanged)]
    assert [(c.previous_status, c.status) for c in changes] == [
        (RunStatus.RUNNING, RunStatus.PAUSED),
        (RunStatus.PAUSED, RunStatus.RUNNING),
    ]
    assert "checking the brief" in changes[0].reason
    kinds = [e.kind for e in events]
    # The producer's "write" step came after the resume, not while paused.
    resume_at = max(i for i, e in enumerate(events) if isinstance(e.payload, RunStatusChanged))
    write_started = next(
        i
        for i, e in enumerate(events)
        if e.kind == EventKind.STEP_STARTED and getattr(e.payload, "step_id", "") == "write"
    )
    assert write_started > resume_at
    assert kinds[-1] == EventKind.RUN_COMPLETED
    # It started when the pause ended: its time was taken before the wait, so the step
    # lasted the pause (found in review), and the server learns estimates from durations.
    assert events[write_started].event_time >= events[resume_at].event_time


async def test_wait_if_paused_is_a_boundary_the_workflow_chooses(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.wait_if_paused()  # not paused: returns at once
    await run.flush()
    await client.pause_run(run.run_id)
    await eventually(lambda: run.paused)
    holding = asyncio.create_task(run.wait_if_paused())
    await asyncio.sleep(0.2)
    assert not holding.done()
    await client.resume_run(run.run_id)
    await asyncio.wait_for(holding, 20)
    # Cancelling a paused run releases a held producer with RunCancelledError.
    await client.pause_run(run.run_id)
    await eventually(lambda: run.paused)
    holding = asyncio.create_task(run.wait_if_paused())
    await client.cancel_run(run.run_id, reason="abandoned")
    with pytest.raises(RunCancelledError, match="abandoned"):
        await asyncio.wait_for(holding, 20)
    await run.close()


async def test_pause_and_resume_refuse_runs_in_the_wrong_state(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    with pytest.raises(FailedPreconditionError):
        await client.resume_run(run.run_id)  # not paused
    await run.complete()
    await run.close()
    with pytest.raises(FailedPreconditionError):
        await client.pause_run(run.run_id)  # already ended
    with pytest.raises(runstream.NotFoundError):
        await client.pause_run("no-such-run")


async def test_a_producer_that_reconnects_learns_of_a_pause_and_of_a_resume_it_missed(
    server: RunstreamServer,
) -> None:
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        async with (
            runstream.connect(proxy.target) as producer_side,
            runstream.connect(server.target) as operator,
        ):
            run = await producer_side.start_run("campaign")
            await run.flush()

            proxy.cut()
            await operator.pause_run(run.run_id, reason="while you were away")
            proxy.restore()
            # On attaching to a paused run the server sends PAUSE.
            await eventually(lambda: run.paused)

            proxy.cut()
            await operator.resume_run(run.run_id)
            await asyncio.sleep(0.2)
            assert run.paused  # it cannot know yet
            proxy.restore()
            # No RESUME is replayed on attach: the reporter re-reads the run instead.
            await asyncio.wait_for(run.wait_if_paused(), 30)
            assert not run.paused
            await run.complete()
            await run.close()
    finally:
        await proxy.close()


async def test_a_run_the_server_ends_as_abandoned_stops_its_slow_producer_saying_so(
    tmp_path: Path,
) -> None:
    """`serve --abandon-after`: a producer silent in a long await is taken for gone. Its
    task is cancelled as by a cancel, and the error says the server ended the run, not that
    an operator cancelled it."""
    clock = Clock(datetime.now(UTC))  # the SDK stamps events with the time it reads
    policy = InsightPolicy(stall_after=60, start_within=60, abandon_after=3600)
    server = RunstreamServer(ServerConfig("127.0.0.1:0", tmp_path / "a.db", insight=policy))
    await server.start()
    on_clock(server, clock)
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("campaign", steps=["research"])
            in_step = asyncio.Event()

            async def workflow() -> None:
                async with run, run.step("research"):
                    in_step.set()
                    await asyncio.sleep(3600)  # an LLM call that never answers

            async def stalled() -> bool:
                return (await client.get_run(run.run_id)).health == RunHealth.STALLED

            task = asyncio.create_task(workflow())
            await asyncio.wait_for(in_step.wait(), 20)
            await run.flush()
            clock.move(61)
            await until(stalled)
            clock.move(3601)
            with pytest.raises(RunCancelledError) as raised:
                await asyncio.wait_for(task, 20)
    finally:
        await server.stop(grace=0.1)
    assert raised.value.by_server
    assert (
        f"run {run.run_id!r} was ended by the server: abandoned: STALLED and silent for 1h"
        in str(raised.value)
    )
