"""Closing a client under its watches and interactions: each raises FailedPreconditionError
("the Runstream client was closed"), as the README promises, whatever it was doing.

Found in review: a watch or interaction waiting to reconnect when its client closed went on
to its next attempt on the closed channel and raised grpc's own UsageError (an interaction:
"INTERNAL: interaction crashed"), as did one created before the close and iterated after;
an interaction whose client closed under its live stream ended its iteration silently, and
its answer() then waited forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import runstream
from runstream_server.app import RunstreamServer

from tests.clients.support import proxy_to, question
from tests.conftest import free_port


async def _outcome(iteration: AsyncIterator[Any], first: asyncio.Event) -> BaseException | str:
    """How iterating ends: its exception, or "ended"."""
    try:
        async for _ in iteration:
            first.set()
        return "ended"
    except Exception as exc:
        return exc


def _assert_closed(outcomes: dict[str, BaseException | str]) -> None:
    for name, outcome in outcomes.items():
        assert isinstance(outcome, runstream.FailedPreconditionError), (name, repr(outcome))
        assert "the Runstream client was closed" in str(outcome), (name, str(outcome))


async def test_watches_and_interactions_reconnecting_when_the_client_closes(
    server: RunstreamServer,
) -> None:
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as producer,
    ):
        run = await producer.start_run("closing")
        await producer.raw_report_service.AppendEvents(question(run.run_id, "q"))
        viewer = runstream.connect(proxy.target, reconnect_timeout=60)
        iterations: dict[str, Callable[[], AsyncIterator[Any]]] = {
            "watch": lambda: viewer.watch(run.run_id, heartbeat_interval=0.2),
            "watch_runs": lambda: viewer.watch_runs(heartbeat_interval=0.2),
            "interact": lambda: aiter(viewer.interact([run.run_id])),
        }
        opened = {name: asyncio.Event() for name in iterations}
        tasks = {
            name: asyncio.create_task(_outcome(iterate(), opened[name]))
            for name, iterate in iterations.items()
        }
        for event in opened.values():
            await asyncio.wait_for(event.wait(), 10)
        proxy.cut()  # each stream breaks, and its attempts to reconnect fail ...
        await asyncio.sleep(1.0)
        await viewer.close()  # ... until the client closes between two of them
        done, _ = await asyncio.wait(tasks.values(), timeout=10)
        assert len(done) == len(tasks)
        _assert_closed({name: task.result() for name, task in tasks.items()})


async def test_watches_and_interactions_made_before_the_client_closed(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("made-before")
        viewer = runstream.connect(server.target)
        made: dict[str, AsyncIterator[Any]] = {
            "watch": viewer.watch(run.run_id),
            "watch_runs": viewer.watch_runs(),
            "interact": aiter(viewer.interact([run.run_id])),
        }
        await viewer.close()
        never = asyncio.Event()
        _assert_closed({name: await _outcome(it, never) for name, it in made.items()})


async def test_an_interaction_whose_client_closes_under_it_raises_and_answers_refuse(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("closed-under")
        await producer.raw_report_service.AppendEvents(question(run.run_id, "q"))
        viewer = runstream.connect(server.target)
        interaction = viewer.interact([run.run_id], viewer="ana")
        async with interaction:
            prompt = await asyncio.wait_for(anext(aiter(interaction)), 10)
            assert isinstance(prompt, runstream.DecisionPrompt)
            await viewer.close()
            with pytest.raises(runstream.FailedPreconditionError, match="client was closed"):
                await asyncio.wait_for(anext(aiter(interaction)), 10)
            with pytest.raises(runstream.FailedPreconditionError, match="client was closed"):
                await asyncio.wait_for(interaction.answer(run.run_id, "q", "a"), 10)
        decision = await producer.get_decision(run.run_id, "q")
        assert decision.state == runstream.DecisionState.OPEN  # nothing was answered


async def test_a_run_starting_against_no_server_when_the_client_closes() -> None:
    """start_run retries CreateRun on its own while no server answers; closed in its
    backoff, it went on to the closed channel's missing stub and raised AttributeError, not
    an SDK error (found in review)."""
    client = runstream.connect(f"127.0.0.1:{free_port()}", reconnect_timeout=None)
    starting = asyncio.create_task(client.start_run("wf"))
    await asyncio.sleep(1)  # a few attempts refused, one backoff under way
    assert not starting.done()
    await client.close()
    with pytest.raises(runstream.FailedPreconditionError, match="closed"):
        await asyncio.wait_for(starting, 5)
