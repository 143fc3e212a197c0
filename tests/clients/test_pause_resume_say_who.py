"""``pause_run()`` and ``resume_run()`` tell the run who paused or resumed it and why: the
run's RunStatusChanged events, which watchers and the dashboard show, carry both."""

from __future__ import annotations

from runstream import Client, EventKind, RunStatusChanged

from tests.clients.test_decisions import log_of


async def test_a_pause_and_a_resume_are_recorded_with_who_and_why(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    await client.pause_run(run.run_id, reason="lunch", requested_by="ana")
    await client.resume_run(run.run_id, reason="back", requested_by="bo")
    changes = [
        e.payload
        for e in await log_of(client, run.run_id)
        if e.kind == EventKind.RUN_STATUS_CHANGED
    ]
    told = [(c.changed_by, c.reason) for c in changes if isinstance(c, RunStatusChanged)][-2:]
    assert [by for by, _ in told] == ["ana", "bo"]
    assert "lunch" in told[0][1] and "back" in told[1][1]
    await run.close()
