"""A resync (the caller fell more than ``max_updates`` behind) yields the prompts the caller
has not seen, and not again one it was shown that is still open."""

from __future__ import annotations

import asyncio

import runstream
from runstream import AnswerResult, InteractionUpdate
from runstream_server.app import RunstreamServer

from tests.clients.test_interaction_bounds import questions, shown_d0_then_overflowed


async def test_a_resync_does_not_show_again_a_prompt_still_open(server: RunstreamServer) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("bounded")
        async with client.interact([run.run_id], max_updates=2) as interaction:
            await shown_d0_then_overflowed(client, run.run_id, interaction)
            # Its result comes after the prompts and d1's closure: all of them reach the
            # interaction before the caller reads again.
            await interaction.answer(run.run_id, "d1", "a")
            updates: list[InteractionUpdate] = []
            while not updates or not isinstance(updates[-1], AnswerResult):
                updates.append(await asyncio.wait_for(anext(interaction), 10))
            told = [(type(u).__name__, u.decision and u.decision.decision_id) for u in updates]
            assert told == [
                ("DecisionPrompt", "d2"),
                ("DecisionPrompt", "d3"),
                ("DecisionPrompt", "d4"),
                ("DecisionPrompt", "d5"),
                ("AnswerResult", "d1"),
            ]
        await run.close()


async def test_a_max_updates_below_one_still_yields_each_answer_result(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("bounded")
        async with client.interact([run.run_id], max_updates=0) as interaction:
            await client.raw_report_service.AppendEvents(questions(run.run_id, range(1)))
            await interaction.answer(run.run_id, "d0", "a")
            updates: list[InteractionUpdate] = []
            while not updates or not isinstance(updates[-1], AnswerResult):
                updates.append(await asyncio.wait_for(anext(interaction), 5))
            assert isinstance(updates[-1], AnswerResult) and updates[-1].accepted
        await run.close()
