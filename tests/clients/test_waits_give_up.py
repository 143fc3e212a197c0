"""Calls that wait on a reporter's stream give up with UnavailableError once the server has
been out of reach longer than the client's reconnect timeout, as watchers do.

Found in review: the reporter counted an outage only while events waited to be sent, so
attach_run() (the server gone between its GetRun and the stream attaching), an ask() whose
question was already stored, and wait_if_paused() on a paused run waited forever for a
server that was gone. The reporter itself goes on reconnecting: it has nothing to give up.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import runstream
from runstream._connection import UNARY_RETRY_FOR
from runstream_server.app import RunstreamServer

from tests.clients.support import eventually, proxy_to, until

GIVE_UP = 1.0  # the reconnect timeout of these clients, in seconds


async def test_attach_run_gives_up_when_the_server_goes_between_its_read_and_the_stream(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as first,
        runstream.connect(proxy.target, reconnect_timeout=GIVE_UP) as producer,
    ):
        run = await first.start_run("attach")
        await run.flush()
        get_run = producer.get_run

        async def read_then_lose_the_server(run_id: str) -> runstream.Run:
            found = await get_run(run_id)
            proxy.cut()
            return found

        monkeypatch.setattr(producer, "get_run", read_then_lose_the_server)
        began = time.monotonic()
        with pytest.raises(runstream.UnavailableError, match="no server could serve it"):
            await asyncio.wait_for(producer.attach_run(run.run_id), 15)
        assert time.monotonic() - began >= GIVE_UP


async def test_ask_gives_up_when_the_server_stays_away_after_storing_the_question(
    server: RunstreamServer,
) -> None:
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as viewer,
        runstream.connect(proxy.target, reconnect_timeout=GIVE_UP) as producer,
    ):
        run = await producer.start_run("ask")
        asking = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="ship"))

        async def stored() -> bool:
            return bool(await viewer.list_decisions(run.run_id))

        await until(stored)  # stored and acknowledged: nothing waits to be sent
        await run.flush()
        proxy.cut()
        began = time.monotonic()
        with pytest.raises(runstream.UnavailableError, match="no server could serve it"):
            await asyncio.wait_for(asking, 15)
        assert time.monotonic() - began >= GIVE_UP
        proxy.restore()
        await run.close()  # the reporter reconnected meanwhile: closing it works


async def test_wait_if_paused_gives_up_when_the_server_stays_away(
    server: RunstreamServer,
) -> None:
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as operator,
        runstream.connect(proxy.target, reconnect_timeout=GIVE_UP) as producer,
    ):
        run = await producer.start_run("paused")
        await run.flush()
        await operator.pause_run(run.run_id)
        await eventually(lambda: run.paused)
        proxy.cut()
        with pytest.raises(runstream.UnavailableError, match="no server could serve it"):
            await asyncio.wait_for(run.wait_if_paused(), 15)
        proxy.restore()
        await operator.resume_run(run.run_id)
        await eventually(lambda: not run.paused)  # the reporter reconnects, hears of it
        await run.wait_if_paused()
        await run.close()


async def test_a_read_gives_up_within_a_reconnect_timeout_shorter_than_its_retries(
    server: RunstreamServer,
) -> None:
    """A read retries a server out of reach for 5 s (UNARY_RETRY_FOR) at most, and at most
    the client's reconnect timeout: a client that asked to give up after 1 s got its
    UnavailableError after the whole 5 s (mutation audit mu67s, N03)."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=GIVE_UP) as client,
    ):
        run = await client.start_run("wf")
        proxy.cut()
        began = time.monotonic()
        with pytest.raises(runstream.UnavailableError):
            await client.get_run(run.run_id)
        assert time.monotonic() - began < UNARY_RETRY_FOR - 1
