"""``Interaction.subscribe()`` adds runs for good: they are among ``run_ids`` and still
followed after the stream reconnects."""

from __future__ import annotations

import asyncio

from runstream import DecisionPrompt
from runstream_server.app import RunstreamServer

from tests.clients.support import question, viewer_behind_proxy


async def test_a_run_subscribed_later_is_still_followed_after_a_reconnect(
    server: RunstreamServer,
) -> None:
    async with viewer_behind_proxy(server) as (proxy, elsewhere, viewer):
        first = await elsewhere.start_run("followed")
        later = await elsewhere.start_run("followed")
        async with viewer.interact([first.run_id], viewer="ana") as interaction:
            await interaction.subscribe([later.run_id])
            assert interaction.run_ids == (first.run_id, later.run_id)
            proxy.cut()
            await asyncio.sleep(0.2)
            proxy.restore()
            await elsewhere.raw_report_service.AppendEvents(question(later.run_id, "after"))
            prompt = await asyncio.wait_for(anext(interaction), 10)
            assert isinstance(prompt, DecisionPrompt)
            assert (prompt.decision.run_id, prompt.decision.decision_id) == (later.run_id, "after")
        await first.close()
        await later.close()
