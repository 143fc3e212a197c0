"""An interaction tells where its stream stands (``on_link``), as a watch does, and the server
accepts a subscription with its response headers: a relay showing a human's decisions could
not tell runs with nothing to decide from a lost server, and an interaction back from an
outage on such runs gave up at its next loss at once (found in review, as for watches)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc
import pytest
import runstream
from runstream import DecisionPrompt, InteractionUpdate, LinkState, WatchLink
from runstream.v1 import decision_service_pb2, decision_service_pb2_grpc
from runstream_server.app import RunstreamServer

from tests.clients.support import collecting, eventually, link_states, restartable
from tests.conftest import ConfigFactory


def interacting(
    client: runstream.Client, run_id: str, links: list[WatchLink]
) -> contextlib.AbstractAsyncContextManager[list[InteractionUpdate]]:
    """Iterates an interaction with `run_id` in a task, its links into `links`; yields the
    updates it got."""

    async def follow(seen: list[InteractionUpdate]) -> None:
        async with client.interact([run_id], viewer="ana", on_link=links.append) as interaction:
            async for update in interaction:
                seen.append(update)

    return collecting(follow)


async def test_the_server_accepts_a_subscription_with_its_headers_before_any_prompt(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("quiet")
        await run.flush()
        async with grpc.aio.insecure_channel(server.target) as channel:
            call = decision_service_pb2_grpc.DecisionServiceStub(channel).Interact()
            subscribe = decision_service_pb2.InteractSubscribe(run_ids=[run.run_id])
            await call.write(decision_service_pb2.InteractRequest(subscribe=subscribe))
            await asyncio.wait_for(call.initial_metadata(), 5)  # no prompt will come
            assert not call.done()
            call.cancel()
        await run.close()


async def test_an_interaction_is_live_once_subscribed_though_nothing_is_asked(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("quiet")
        await run.flush()
        links: list[WatchLink] = []
        async with interacting(client, run.run_id, links) as seen:
            await eventually(lambda: LinkState.LIVE in link_states(links), within=5)
            assert seen == []
            asked = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="ship"))
            await eventually(lambda: len(seen) == 1)
            assert isinstance(seen[0], DecisionPrompt)
            await client.submit_decision(run.run_id, "ship", "yes")
            await asked
        await run.close()
    assert links == [WatchLink(LinkState.CONNECTING, 0), WatchLink(LinkState.LIVE, 0)]


async def test_an_interaction_the_server_refuses_is_never_live(server: RunstreamServer) -> None:
    async with runstream.connect(server.target) as client:
        links: list[WatchLink] = []
        with pytest.raises(runstream.NotFoundError):
            async with client.interact(["no-such-run"], on_link=links.append) as interaction:
                async for _ in interaction:
                    pass
    assert link_states(links) == [LinkState.CONNECTING]


async def test_an_interaction_back_from_an_outage_has_its_whole_reconnect_timeout_again(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Live again on runs with nothing to decide (no message for 2.5 s of a 2 s timeout),
    then lost once more: it reconnects, saying RECONNECTING, instead of giving up."""
    async with (
        restartable(server_config, tmp_path / "twice.db") as served,
        runstream.connect(served.server.target, reconnect_timeout=2) as client,
    ):
        run = await client.start_run("quiet")
        await run.flush()
        links: list[WatchLink] = []
        async with interacting(client, run.run_id, links) as seen:
            await eventually(lambda: link_states(links)[-1:] == [LinkState.LIVE])
            await served.lost_and_back(links, away=1.2)  # 1.2 s of its 2
            await asyncio.sleep(2.5)  # live, with nothing to send
            again = len(links)
            await served.lost_and_back(links)
            lost = next(link for link in links[again:] if link.state == LinkState.RECONNECTING)
            assert isinstance(lost.error, runstream.UnavailableError)
            assert lost.retry_in is not None and lost.retry_in > 0
            asked = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="s"))
            await eventually(lambda: any(isinstance(u, DecisionPrompt) for u in seen))
            await client.submit_decision(run.run_id, "s", "no")
            await asked
        await run.close()
