"""What ``list_decisions`` and ``get_run_details`` give a viewer of a run with both open and
answered questions (and when each was answered), and that each decision call works as a client's
first call."""

from __future__ import annotations

import runstream
from runstream import Client, DecisionState
from runstream_server.app import RunstreamServer

from tests.clients.support import question


async def test_list_decisions_keeps_the_state_asked_for(client: Client) -> None:
    """OPEN lists the questions still waiting, RESOLVED the answered ones; no state (or
    UNSPECIFIED, the enum's zero) lists every one in the order asked."""
    run = await client.start_run("campaign")
    for decision_id in ("first", "second", "third"):
        await client.raw_report_service.AppendEvents(question(run.run_id, decision_id))
    await client.submit_decision(run.run_id, "second", "b", answered_by="ana")

    def ids(decisions: list[runstream.Decision]) -> list[str]:
        return [d.decision_id for d in decisions]

    assert ids(await client.list_decisions(run.run_id, state=DecisionState.OPEN)) == [
        "first",
        "third",
    ]
    assert ids(await client.list_decisions(run.run_id, state=DecisionState.RESOLVED)) == ["second"]
    (answered,) = await client.list_decisions(run.run_id, state=DecisionState.RESOLVED)
    assert answered.create_time is not None and answered.resolve_time is not None
    assert answered.resolve_time >= answered.create_time
    assert (await client.get_decision(run.run_id, "first")).resolve_time is None
    every = ["first", "second", "third"]
    assert ids(await client.list_decisions(run.run_id)) == every
    assert ids(await client.list_decisions(run.run_id, state=DecisionState.UNSPECIFIED)) == every


async def test_decision_calls_work_as_a_clients_first_call(
    client: Client, server: RunstreamServer
) -> None:
    """A client made with ``connect()`` and not entered with ``async with`` connects on its
    first call, whichever it is: a viewer's tool may only ever answer or list decisions."""
    run = await client.start_run("campaign")
    await client.raw_report_service.AppendEvents(question(run.run_id, "q"))
    for call in ("list", "get", "submit"):
        viewer = runstream.connect(server.target)
        try:
            if call == "list":
                assert [d.decision_id for d in await viewer.list_decisions(run.run_id)] == ["q"]
            elif call == "get":
                assert (await viewer.get_decision(run.run_id, "q")).prompt == "question q"
            else:
                answered = await viewer.submit_decision(run.run_id, "q", "a", answered_by="bo")
                assert (answered.state, answered.choice) == (DecisionState.RESOLVED, "a")
        finally:
            await viewer.close()


async def test_run_details_past_get_runs_budget_hold_only_the_open_decisions(
    client: Client,
) -> None:
    """When GetRun had no room for every open decision, get_run_details lists the rest: the
    open ones, not a question already answered."""
    run = await client.start_run("wf")
    await client.raw_report_service.AppendEvents(question(run.run_id, "answered"))
    await client.submit_decision(run.run_id, "answered", "a")
    for decision_id in ("q0", "q1", "q2"):
        await client.raw_report_service.AppendEvents(question(run.run_id, decision_id, large=True))
    details = await client.get_run_details(run.run_id)
    assert [d.decision_id for d in details.open_decisions] == ["q0", "q1", "q2"]
