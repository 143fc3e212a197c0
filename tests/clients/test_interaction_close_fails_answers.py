"""An answer still waiting for its result when the interaction closes raises, rather than
waiting for good: ``aclose()`` fails the pending answers (FailedPreconditionError)."""

from __future__ import annotations

import asyncio

import pytest
from runstream import DecisionPrompt, FailedPreconditionError
from runstream_server.app import RunstreamServer

from tests.clients.support import question, viewer_behind_proxy


async def test_closing_an_interaction_fails_an_answer_still_waiting(
    server: RunstreamServer,
) -> None:
    async with viewer_behind_proxy(server) as (proxy, elsewhere, viewer):
        run = await elsewhere.start_run("closing")
        await elsewhere.raw_report_service.AppendEvents(question(run.run_id, "ship"))
        interaction = viewer.interact([run.run_id], viewer="ana")
        prompt = await asyncio.wait_for(anext(interaction), 10)
        assert isinstance(prompt, DecisionPrompt)
        proxy.cut()  # the answer cannot get its result
        answering = asyncio.create_task(interaction.answer(run.run_id, "ship", "a"))
        await asyncio.sleep(0.2)
        assert not answering.done()
        await interaction.aclose()
        with pytest.raises(FailedPreconditionError, match="the interaction is closed"):
            await asyncio.wait_for(answering, 5)
        proxy.restore()
        assert (await elsewhere.get_decision(run.run_id, "ship")).is_open
        await run.close()
