"""Tenants and "who did it", straight to a real server with tokens the test signs.

Tenant acme's run is invisible to tenant globex: NOT_FOUND on every run-scoped RPC (the
same answer as for a run that does not exist), absent from ListRuns and WatchRuns; an admin
sees every tenant. With auth on, the actor recorded is the token's subject, whatever the
request body claims.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from runstream._auth import auth_interceptors
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc, report_service_pb2_grpc, run_service_pb2_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.identity import Keys
from tests.server.support import custom, ev, specs

OPTIONS = [ev.DecisionOption(value=v) for v in ("a", "b")]


class Caller:
    """Generated stubs on a channel that sends one token on every call."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, interceptors=auth_interceptors(token))
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.report = report_service_pb2_grpc.ReportServiceStub(self.channel)
        self.decisions = decision_service_pb2_grpc.DecisionServiceStub(self.channel)


@pytest.fixture
async def callers(secured: RunstreamServer, keys: Keys) -> AsyncIterator[dict[str, Caller]]:
    everyone = {
        "producer": Caller(secured.target, keys.token(["producer"], sub="bot")),
        "operator": Caller(secured.target, keys.token(["operator"], sub="alice")),
        "intruder": Caller(
            secured.target, keys.token(["operator", "producer"], sub="mallory", tenant="globex")
        ),
        "admin": Caller(secured.target, keys.token(["admin"], sub="root", tenant="ops")),
    }
    try:
        yield everyone
    finally:
        for caller in everyone.values():
            await caller.channel.close()


async def acme_run(producer: Caller) -> str:
    """An acme run with two events and an open decision 'd1'."""
    run = (await producer.runs.CreateRun(rs.CreateRunRequest(workflow="wf", steps=specs("s1")))).run
    ask = ev.RunEvent(
        decision_requested=ev.DecisionRequested(decision_id="d1", prompt="?", options=OPTIONS)
    )
    await producer.report.AppendEvents(
        rp.AppendEventsRequest(run_id=run.run_id, events=[custom(1), ask])
    )
    return run.run_id


async def first(stream: Any) -> Any:
    async for item in stream:
        return item
    return None


async def interact(caller: Caller, run_id: str) -> Any:
    async def requests() -> AsyncIterator[ds.InteractRequest]:
        yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run_id]))

    return await first(caller.decisions.Interact(requests()))


async def report(caller: Caller, run_id: str) -> Any:
    async def requests() -> AsyncIterator[rp.ReportRequest]:
        yield rp.ReportRequest(run_id=run_id, batch_id=1, events=[custom(9)])

    return await first(caller.report.Report(requests()))


RUN_SCOPED: dict[str, Callable[[Caller, str], Awaitable[Any]]] = {
    "GetRun": lambda c, r: c.runs.GetRun(rs.GetRunRequest(run_id=r)),
    "ListSteps": lambda c, r: c.runs.ListSteps(rs.ListStepsRequest(run_id=r)),
    "ListEvents": lambda c, r: c.runs.ListEvents(rs.ListEventsRequest(run_id=r)),
    "WatchRun": lambda c, r: first(c.runs.WatchRun(rs.WatchRunRequest(run_id=r))),
    "WatchRun after_seq": lambda c, r: first(
        c.runs.WatchRun(rs.WatchRunRequest(run_id=r, after_seq=2))
    ),
    "WatchRun after_seq beyond the head": lambda c, r: first(
        c.runs.WatchRun(rs.WatchRunRequest(run_id=r, after_seq=99))
    ),
    "WatchRun with snapshot": lambda c, r: first(
        c.runs.WatchRun(rs.WatchRunRequest(run_id=r, include_snapshot=True))
    ),
    "CancelRun": lambda c, r: c.runs.CancelRun(rs.CancelRunRequest(run_id=r)),
    "PauseRun": lambda c, r: c.runs.PauseRun(rs.PauseRunRequest(run_id=r)),
    "ResumeRun": lambda c, r: c.runs.ResumeRun(rs.ResumeRunRequest(run_id=r)),
    "AppendEvents": lambda c, r: c.report.AppendEvents(
        rp.AppendEventsRequest(run_id=r, events=[custom(7)])
    ),
    "Report": report,
    "SubmitDecision": lambda c, r: c.decisions.SubmitDecision(
        ds.SubmitDecisionRequest(run_id=r, decision_id="d1", choice="a")
    ),
    "GetDecision": lambda c, r: c.decisions.GetDecision(
        ds.GetDecisionRequest(run_id=r, decision_id="d1")
    ),
    "ListDecisions": lambda c, r: c.decisions.ListDecisions(ds.ListDecisionsRequest(run_id=r)),
    "Interact": interact,
}


async def status(work: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    try:
        await work
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_another_tenants_run_is_not_found_on_every_run_scoped_rpc(
    callers: dict[str, Caller],
) -> None:
    run_id = await acme_run(callers["producer"])
    missing = "0" * 32  # a run that exists nowhere: the intruder must get the same answer
    for name, rpc in RUN_SCOPED.items():
        code, details = await status(rpc(callers["intruder"], run_id))
        assert code == grpc.StatusCode.NOT_FOUND, (name, code, details)
        assert details == f"run {run_id!r} not found", (name, details)
        assert await status(rpc(callers["intruder"], missing)) == (
            grpc.StatusCode.NOT_FOUND,
            f"run {missing!r} not found",
        ), name
    # Nothing the intruder tried changed the run: two events, decision open, still running.
    operator = callers["operator"]
    got = await operator.runs.GetRun(rs.GetRunRequest(run_id=run_id))
    assert got.run.last_seq == 3  # created, custom, decision requested
    assert [d.decision_id for d in got.open_decisions] == ["d1"]


async def test_the_owning_tenant_and_admin_reach_the_run(callers: dict[str, Caller]) -> None:
    run_id = await acme_run(callers["producer"])
    for who in ("operator", "admin"):
        got = await callers[who].runs.GetRun(rs.GetRunRequest(run_id=run_id))
        assert got.run.tenant == "acme"
        assert got.run.created_by == "bot"
        watched = await first(callers[who].runs.WatchRun(rs.WatchRunRequest(run_id=run_id)))
        assert [e.seq for e in watched.events][:1] == [1]


async def test_lists_and_streams_show_only_the_callers_tenant(
    callers: dict[str, Caller],
) -> None:
    acme = await acme_run(callers["producer"])
    globex = (
        await callers["intruder"].runs.CreateRun(rs.CreateRunRequest(workflow="wf"))
    ).run.run_id

    async def listed(who: str) -> set[str]:
        response = await callers[who].runs.ListRuns(rs.ListRunsRequest())
        return {r.run_id for r in response.runs}

    async def watched(who: str) -> set[str]:
        seen: set[str] = set()
        async for response in callers[who].runs.WatchRuns(rs.WatchRunsRequest()):
            seen |= {r.run_id for r in response.runs}
            if response.initial_state_complete:
                return seen
        return seen

    assert await listed("operator") == {acme}
    assert await listed("intruder") == {globex}
    assert await listed("admin") == {acme, globex}
    assert await watched("operator") == {acme}
    assert await watched("intruder") == {globex}
    assert await watched("admin") == {acme, globex}


async def test_live_run_changes_reach_only_the_runs_tenant(callers: dict[str, Caller]) -> None:
    stream = callers["intruder"].runs.WatchRuns(rs.WatchRunsRequest())
    async for response in stream:
        if response.initial_state_complete:
            break
    acme = await acme_run(callers["producer"])
    mine = (await callers["intruder"].runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id
    seen: list[str] = []
    async for response in stream:
        seen += [r.run_id for r in response.runs]
        if mine in seen:
            break
    stream.cancel()
    assert acme not in seen


async def test_who_did_it_comes_from_the_token_not_the_request(
    callers: dict[str, Caller],
) -> None:
    run_id = await acme_run(callers["producer"])
    operator = callers["operator"]
    decision = (
        await operator.decisions.SubmitDecision(
            ds.SubmitDecisionRequest(run_id=run_id, decision_id="d1", choice="a", answered_by="bob")
        )
    ).decision
    assert decision.answered_by == "alice"
    paused = await operator.runs.PauseRun(rs.PauseRunRequest(run_id=run_id, requested_by="bob"))
    resumed = await operator.runs.ResumeRun(rs.ResumeRunRequest(run_id=run_id, requested_by="bob"))
    cancelled = await operator.runs.CancelRun(
        rs.CancelRunRequest(run_id=run_id, cancelled_by="bob", reason="done")
    )
    assert cancelled.run.status != paused.run.status != resumed.run.status
    events = (await operator.runs.ListEvents(rs.ListEventsRequest(run_id=run_id))).events
    changes = [e.run_status_changed for e in events if e.HasField("run_status_changed")]
    assert [c.changed_by for c in changes] == ["alice", "alice"]
    assert all("bob" not in c.reason for c in changes)
    [cancel] = [e.run_cancelled for e in events if e.HasField("run_cancelled")]
    assert cancel.cancelled_by == "alice"
    [created] = [e.run_created for e in events if e.HasField("run_created")]
    assert (created.tenant, created.created_by) == ("acme", "bot")


async def test_a_producer_that_cancels_its_run_is_named_by_its_token(
    callers: dict[str, Caller],
) -> None:
    run_id = await acme_run(callers["producer"])
    cancel = ev.RunEvent(run_cancelled=ev.RunCancelled(reason="over budget", cancelled_by="ceo"))
    await callers["producer"].report.AppendEvents(
        rp.AppendEventsRequest(run_id=run_id, events=[cancel])
    )
    events = (await callers["operator"].runs.ListEvents(rs.ListEventsRequest(run_id=run_id))).events
    [cancelled] = [e.run_cancelled for e in events if e.HasField("run_cancelled")]
    assert (cancelled.cancelled_by, cancelled.reason) == ("bot", "over budget")


async def test_estimates_learn_only_from_the_runs_own_tenant(
    callers: dict[str, Caller],
) -> None:
    """Step durations are learnt per tenant: another tenant's runs of a workflow with the same
    name neither feed nor reveal anything through the ETA."""

    async def run_once(caller: Caller, complete: bool) -> rs.GetRunResponse:
        created = await caller.runs.CreateRun(
            rs.CreateRunRequest(workflow="shared-name", steps=specs("s1"))
        )
        run_id = created.run.run_id
        started = ev.RunEvent(step_started=ev.StepStarted(step_id="s1"))
        started.idempotency_key = "start"
        await caller.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=[started]))
        if complete:
            done = ev.RunEvent(step_completed=ev.StepCompleted(step_id="s1"))
            done.idempotency_key = "done"
            end = ev.RunEvent(run_completed=ev.RunCompleted(summary="ok"))
            end.idempotency_key = "end"
            await caller.report.AppendEvents(
                rp.AppendEventsRequest(run_id=run_id, events=[done, end])
            )
        return await callers["admin"].runs.GetRun(rs.GetRunRequest(run_id=run_id))

    await run_once(callers["producer"], complete=True)  # acme learns the workflow
    acme = await run_once(callers["producer"], complete=False)
    globex = await run_once(callers["intruder"], complete=False)
    assert acme.run.estimate.history_runs == 1
    assert not globex.run.HasField("estimate")  # nothing learnt from acme's run
