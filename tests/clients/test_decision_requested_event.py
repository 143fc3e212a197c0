"""A question's DecisionRequested event, as a watcher reads it from the run's log: a question
asked without a timeout has no timeout and no deadline (None), not a zero span and 1970."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from runstream import Client, DecisionRequested, EventKind

from tests.clients.test_decisions import log_of, open_decision


async def test_a_question_without_a_timeout_reads_with_no_timeout_and_no_deadline(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    for decision_id, timeout in (("open-ended", None), ("timed", timedelta(minutes=5))):
        waiting = asyncio.create_task(
            run.ask("Go on?", ["yes", "no"], timeout=timeout, decision_id=decision_id)
        )
        await open_decision(client, run.run_id, decision_id)
        await client.submit_decision(run.run_id, decision_id, "yes")
        await asyncio.wait_for(waiting, 20)
    events = await log_of(client, run.run_id)
    asked = [e.payload for e in events if e.kind == EventKind.DECISION_REQUESTED]
    open_ended, timed = asked
    assert isinstance(open_ended, DecisionRequested) and isinstance(timed, DecisionRequested)
    assert (open_ended.timeout, open_ended.deadline) == (None, None)
    assert timed.timeout == timedelta(minutes=5) and timed.deadline is not None
    await run.close()
