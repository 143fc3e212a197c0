"""An Interaction whose caller answers but never iterates keeps a bounded queue, and when the
caller does iterate it gets exactly the decisions still open, each prompt once.

Issue 8, item 8: the SDK's Interaction queued every prompt, closure and answer result for
iteration, so a caller that only called answer() made the queue grow without end.
"""

from __future__ import annotations

import asyncio
import contextlib

import runstream
from runstream import DecisionClosed, DecisionPrompt, InteractionUpdate
from runstream.v1 import event_pb2 as ev
from runstream.v1 import report_service_pb2
from runstream_server.app import RunstreamServer

ASKED = 60
ANSWERED = 45
MAX_UPDATES = 10


async def shown_d0_then_overflowed(
    client: runstream.Client, run_id: str, interaction: runstream.Interaction
) -> None:
    """Asks d0 and takes its prompt off `interaction` (of max_updates=2), then asks d1-d5,
    more than its queue holds, so the next read resyncs."""
    report = client.raw_report_service
    await report.AppendEvents(questions(run_id, range(1)))
    shown = await asyncio.wait_for(anext(interaction), 10)
    assert isinstance(shown, DecisionPrompt) and shown.decision.decision_id == "d0"
    await report.AppendEvents(questions(run_id, range(1, 6)))  # 5 > max_updates


def questions(run_id: str, ids: range = range(ASKED)) -> report_service_pb2.AppendEventsRequest:
    return report_service_pb2.AppendEventsRequest(
        run_id=run_id,
        events=[
            ev.RunEvent(
                decision_requested=ev.DecisionRequested(
                    decision_id=f"d{i}",
                    prompt=f"question {i}",
                    options=[ev.DecisionOption(value="a"), ev.DecisionOption(value="b")],
                )
            )
            for i in ids
        ],
    )


async def test_answering_without_iterating_keeps_the_queue_bounded(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("bounded")
        async with client.interact([run.run_id], max_updates=MAX_UPDATES) as interaction:
            await client.raw_report_service.AppendEvents(questions(run.run_id))
            for i in range(ANSWERED):
                decision = await interaction.answer(run.run_id, f"d{i}", "a")
                assert decision.choice == "a"
            # 60 prompts, 45 closures and 45 answer results arrived; at most MAX_UPDATES wait.
            assert len(interaction._updates) <= MAX_UPDATES

            still_open = {f"d{i}" for i in range(ANSWERED, ASKED)}
            prompted: list[str] = []
            while set(prompted) != still_open:
                update = await asyncio.wait_for(anext(interaction), 10)
                assert not isinstance(update, DecisionClosed)  # it was shown none of them
                if isinstance(update, DecisionPrompt):
                    prompted.append(update.decision.decision_id)
            assert sorted(prompted) == sorted(still_open)  # each once, and only open ones

            # From here on it is an ordinary live view: a closure of a prompt it was shown.
            await client.submit_decision(run.run_id, f"d{ANSWERED}", "b", answered_by="ana")
            while True:
                update = await asyncio.wait_for(anext(interaction), 10)
                if isinstance(update, DecisionClosed):
                    break
            assert update.decision.decision_id == f"d{ANSWERED}"
            assert update.decision.choice == "b"
        await run.close()


async def test_a_prompt_shown_before_the_queue_overflowed_still_gets_its_closure(
    server: RunstreamServer,
) -> None:
    """The caller was shown d0, then fell behind: more prompts overflowed its queue, which a
    resync replaced. d0 is answered elsewhere before the caller reads again: the resync tells
    it d0 closed (else a UI keeps offering a closed decision, and answering it fails)."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("bounded")
        async with client.interact([run.run_id], max_updates=2) as interaction:
            await shown_d0_then_overflowed(client, run.run_id, interaction)
            # Each answer's result comes after what the stream sent before it: the prompts,
            # then d0's closure, reach the interaction before the caller reads again.
            await interaction.answer(run.run_id, "d1", "a")
            await client.submit_decision(run.run_id, "d0", "b", answered_by="ana")
            await interaction.answer(run.run_id, "d2", "a")

            updates: list[InteractionUpdate] = []
            with contextlib.suppress(TimeoutError):  # the list then says what went missing
                while len(updates) < 6:
                    updates.append(await asyncio.wait_for(anext(interaction), 5))
            told = [(type(u).__name__, u.decision and u.decision.decision_id) for u in updates]
            assert told == [
                ("DecisionClosed", "d0"),
                ("DecisionPrompt", "d3"),
                ("DecisionPrompt", "d4"),
                ("DecisionPrompt", "d5"),
                ("AnswerResult", "d1"),
                ("AnswerResult", "d2"),
            ]
            closed = updates[0].decision
            assert closed is not None and (closed.choice, closed.answered_by) == ("b", "ana")
        await run.close()
