"""An Interaction that reconnects tells its caller about the decisions closed while it was away.

The server sends a subscriber only the decisions still open, never the closures it missed;
an Interaction that yielded a prompt, lost its connection, and came back after someone else
answered kept that prompt open for good (a UI kept an answered question on screen). One that
gives up (the reconnect timeout passed) raises why at every later call.
"""

from __future__ import annotations

import asyncio
import traceback

import pytest
import runstream
from runstream import DecisionClosed, DecisionPrompt, DecisionState, InteractionUpdate
from runstream_server.app import RunstreamServer

from tests.clients.support import proxy_to, question, viewer_behind_proxy


async def test_a_decision_answered_while_the_interaction_reconnects_is_reported_closed(
    server: RunstreamServer,
) -> None:
    async with viewer_behind_proxy(server) as (proxy, elsewhere, viewer):
        run = await elsewhere.start_run("reconnect")
        for decision_id in ("gone", "kept"):
            await elsewhere.raw_report_service.AppendEvents(question(run.run_id, decision_id))
        updates: list[InteractionUpdate] = []

        async def next_update() -> InteractionUpdate:
            updates.append(await asyncio.wait_for(anext(interaction), 10))
            return updates[-1]

        def seen(
            kind: type[DecisionPrompt | DecisionClosed], decision_id: str
        ) -> list[InteractionUpdate]:
            return [
                u for u in updates if isinstance(u, kind) and u.decision.decision_id == decision_id
            ]

        async with viewer.interact([run.run_id], viewer="ana") as interaction:
            while len(updates) < 2:
                await next_update()
            assert {type(u) for u in updates} == {DecisionPrompt}

            proxy.cut()  # the viewer's connection drops, and stays down ...
            await elsewhere.submit_decision(run.run_id, "gone", "b", answered_by="bo")
            proxy.restore()  # ... until after someone else answered

            closed = await next_update()
            assert isinstance(closed, DecisionClosed)
            assert closed.decision.decision_id == "gone"
            assert closed.decision.state == DecisionState.RESOLVED
            assert (closed.decision.choice, closed.decision.answered_by) == ("b", "bo")

            # It goes on as a live view: no prompt again, no second closure.
            await elsewhere.raw_report_service.AppendEvents(question(run.run_id, "new"))
            await elsewhere.submit_decision(run.run_id, "new", "a", answered_by="bo")
            while not seen(DecisionClosed, "new"):
                await next_update()
            await interaction.answer(run.run_id, "kept", "a")
            while not seen(DecisionClosed, "kept"):
                await next_update()
            for decision_id in ("gone", "kept", "new"):
                assert len(seen(DecisionPrompt, decision_id)) == 1, updates
                assert len(seen(DecisionClosed, decision_id)) == 1, updates
        await run.close()


async def test_an_interaction_that_gave_up_raises_at_every_call_with_a_traceback_of_its_own(
    server: RunstreamServer,
) -> None:
    """Each raise of the stored failure must not add its frames to the ones before it."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=0.2) as viewer,
    ):
        proxy.cut()  # the server stays out of reach for longer than the reconnect timeout
        async with viewer.interact(["unreachable"], viewer="ana") as interaction:
            with pytest.raises(runstream.UnavailableError) as gave_up:
                await asyncio.wait_for(anext(interaction), 20)
            raised: list[runstream.RunstreamError] = []
            for call in range(2000):
                with pytest.raises(runstream.UnavailableError) as later:
                    if call % 2:
                        await interaction.answer("unreachable", "asked", "a")
                    else:
                        await anext(interaction)
                raised.append(later.value)
    for error in raised[-2:]:
        assert len(traceback.extract_tb(error.__traceback__)) < 50
        assert error.message == gave_up.value.message
        assert error.__cause__ is gave_up.value.__cause__ is not None
