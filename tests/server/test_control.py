"""Pause and resume: visible in status and events, pushed to producers, precise errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.support import append, create_run, custom, ev, watch_all


async def test_pause_and_resume_reach_the_producer_and_the_log(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    outgoing: asyncio.Queue[rp.ReportRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outgoing.get()

    stream = stubs.report.Report(requests())
    await outgoing.put(rp.ReportRequest(run_id=run.run_id))
    assert (await anext(aiter(stream))).ack.last_seq == 2  # attached
    paused = await stubs.runs.PauseRun(
        rs.PauseRunRequest(run_id=run.run_id, reason="review", requested_by="ops")
    )
    assert paused.run.status == run_pb2.RUN_STATUS_PAUSED
    control = (await anext(aiter(stream))).control
    assert (control.action, control.status) == (rp.CONTROL_ACTION_PAUSE, run_pb2.RUN_STATUS_PAUSED)
    # The producer finishes what it was doing; the run stays paused.
    await outgoing.put(rp.ReportRequest(batch_id=1, events=[custom(1)]))
    assert (await anext(aiter(stream))).ack.batch_id == 1
    assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run.status == (
        run_pb2.RUN_STATUS_PAUSED
    )
    # A producer that (re)attaches to a paused run learns it at once.
    late = stubs.report.Report(iter([rp.ReportRequest(run_id=run.run_id)]))
    first_two = [await anext(aiter(late)) for _ in range(2)]
    assert rp.CONTROL_ACTION_PAUSE in [r.control.action for r in first_two]
    late.cancel()

    resumed = await stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=run.run_id))
    assert resumed.run.status == run_pb2.RUN_STATUS_RUNNING
    assert (await anext(aiter(stream))).control.action == rp.CONTROL_ACTION_RESUME
    stream.cancel()
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    changes = [
        e.run_status_changed
        for r in await watch_all(stubs, run.run_id)
        for e in r.events
        if e.HasField("run_status_changed")
    ]
    assert [(c.previous_status, c.status) for c in changes] == [
        (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_PAUSED),
        (run_pb2.RUN_STATUS_PAUSED, run_pb2.RUN_STATUS_RUNNING),
    ]
    assert changes[0].reason == "paused by ops: review"


async def test_resume_returns_to_waiting_while_a_decision_is_open(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(
            decision_requested=ev.DecisionRequested(
                decision_id="d", prompt="?", options=[ev.DecisionOption(value="y")]
            )
        ),
    )
    await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id))
    resumed = await stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=run.run_id))
    assert resumed.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT


async def test_control_of_runs_in_the_wrong_state_fails_precondition(stubs) -> None:  # type: ignore[no-untyped-def]
    pending = await create_run(stubs)
    for call in (
        stubs.runs.PauseRun(rs.PauseRunRequest(run_id=pending.run_id)),
        stubs.runs.ResumeRun(rs.ResumeRunRequest(run_id=pending.run_id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "PENDING" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.PauseRun(rs.PauseRunRequest(run_id="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
