"""DecisionService.Interact as a viewer's stream lives on: subscriptions that come after an
answer or more than once, and a viewer that fell so far behind that its backlog was dropped
for a resync."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc
from runstream_server.api import decision_service
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import DecisionFeed
from runstream_server.errors import NotFound

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, ev

STEP = 5.0
"""The most a test waits for one message of the stream."""


def ask(decision_id: str = "persona", prompt: str = "Who first?") -> ev.RunEvent:
    options = [ev.DecisionOption(value=v, label=v.title()) for v in ("hikers", "runners")]
    question = ev.DecisionRequested(decision_id=decision_id, prompt=prompt, options=options)
    return ev.RunEvent(decision_requested=question)


def answer(answer_id: int, run_id: str, decision_id: str = "persona") -> ds.InteractRequest:
    decision = ds.SubmitDecisionRequest(run_id=run_id, decision_id=decision_id, choice="hikers")
    return ds.InteractRequest(answer=ds.InteractAnswer(answer_id=answer_id, decision=decision))


def subscribe(*run_ids: str, viewer: str = "") -> ds.InteractRequest:
    return ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=run_ids, viewer=viewer))


class Viewer:
    """An Interact stream whose requests the test sends one at a time."""

    def __init__(self, stubs: Stubs) -> None:
        self._outgoing: asyncio.Queue[ds.InteractRequest] = asyncio.Queue()
        decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
        self.stream = decisions.Interact(self._requests())

    async def _requests(self) -> AsyncIterator[ds.InteractRequest]:
        while True:
            yield await self._outgoing.get()

    async def send(self, request: ds.InteractRequest) -> None:
        await self._outgoing.put(request)

    async def next(self) -> ds.InteractResponse:
        return await asyncio.wait_for(anext(aiter(self.stream)), STEP)


async def test_a_subscription_after_an_answer_still_brings_its_prompts(stubs: Stubs) -> None:
    """A viewer that answers before it subscribes (a resend after a reconnect) got its
    result, then a subscription whose headers gRPC refused to send a second time: the
    stream broke instead of prompting."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask("first"), ask("second"))
    viewer = Viewer(stubs)
    await viewer.send(answer(1, run.run_id, "first"))
    result = (await viewer.next()).answer_result
    assert (result.answer_id, result.code, result.decision.choice) == (1, 0, "hikers")
    await viewer.send(subscribe(run.run_id))
    assert (await viewer.next()).prompt.decision_id == "second"
    await append(stubs, run.run_id, ask("third"))
    assert (await viewer.next()).prompt.decision_id == "third"
    viewer.stream.cancel()


async def test_a_later_subscription_without_a_viewer_keeps_the_one_named_before(
    stubs: Stubs,
) -> None:
    """The viewer a stream named answers all its answers, whatever its later subscriptions
    leave out (one per run the dashboard opens)."""
    first, second = await create_run(stubs), await create_run(stubs)
    await append(stubs, second.run_id, ask())
    viewer = Viewer(stubs)
    await viewer.send(subscribe(first.run_id, viewer="dana"))
    await viewer.send(subscribe(second.run_id))
    assert (await viewer.next()).prompt.run_id == second.run_id
    await viewer.send(answer(1, second.run_id))
    seen = [await viewer.next() for _ in range(2)]
    assert [[f.name for f, _ in r.ListFields()] for r in seen] == [["closed"], ["answer_result"]]
    assert seen[0].closed.answered_by == "dana"
    assert seen[1].answer_result.decision.answered_by == "dana"
    viewer.stream.cancel()


@contextlib.asynccontextmanager
async def fallen_behind(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch, *run_ids: str
) -> AsyncIterator[grpc.aio.StreamStreamCall[ds.InteractRequest, ds.InteractResponse]]:
    """An Interact call following `run_ids` (two runs) that stopped reading while questions
    came: its connection, outbox and feed filled, and the feed's backlog was dropped for one
    resync, which comes once it reads again. (The queues are made small here; see
    test_interact_bounds for their real sizes.)"""
    monkeypatch.setattr(decision_service, "OUTBOX_SIZE", 1)
    monkeypatch.setattr(decision_service, "DecisionFeed", functools.partial(DecisionFeed, limit=4))
    first, second = run_ids
    # Its own connection, whose window stays at 64 KiB (no BDP probing): 90 prompts of 8 KB
    # are ten times what it holds.
    async with grpc.aio.insecure_channel(
        server.target, options=[("grpc.http2.bdp_probe", 0)]
    ) as channel:
        call = decision_service_pb2_grpc.DecisionServiceStub(channel).Interact()
        await call.write(subscribe(first, second))
        await call.initial_metadata()
        for start in range(0, 90, 10):
            questions = (
                ask(f"a{i}", prompt=f"{i}: " + "x" * 8000) for i in range(start, start + 10)
            )
            await append(stubs, first, *questions)
        await append(stubs, second, ask("b0"))
        feeds = server.runs._links.feeds(second) if server.runs else set()
        assert [feed._resync_pending for feed in feeds] == [True]  # the backlog was dropped
        try:
            yield call
        finally:
            call.cancel()


async def test_a_viewer_that_fell_behind_gets_every_followed_runs_state_then_live_prompts(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer of two runs stops reading while questions come, and its backlog is dropped.
    Reading again, it gets the open decisions of both runs, the one asked while it was
    dropping included, and from then on each new question as it is asked."""
    first, second = await create_run(stubs), await create_run(stubs)
    async with fallen_behind(server, stubs, monkeypatch, first.run_id, second.run_id) as call:
        open_now = {(first.run_id, f"a{i}") for i in range(90)} | {(second.run_id, "b0")}
        prompted: list[tuple[str, str]] = []
        while set(prompted) != open_now:
            response = await asyncio.wait_for(call.read(), STEP)
            prompted.append((response.prompt.run_id, response.prompt.decision_id))
        assert len(prompted) == len(open_now)  # each once
        await append(stubs, second.run_id, ask("b1"))
        response = await asyncio.wait_for(call.read(), STEP)
        assert (response.prompt.run_id, response.prompt.decision_id) == (second.run_id, "b1")


async def test_a_resync_that_cannot_read_a_run_ends_the_call_with_its_status(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A viewer that fell behind follows a run the server can no longer read when it
    resyncs (NOT_FOUND, as the ledger answers once the store lost the run): the call ends
    with that status naming the run, so the client subscribes again. Found in review: the
    task forwarding prompts died, and the call stayed open and silent for ever."""
    first, second = await create_run(stubs), await create_run(stubs)
    async with fallen_behind(server, stubs, monkeypatch, first.run_id, second.run_id) as call:
        assert server.runs is not None
        open_decisions = server.runs.open_decisions

        async def lost(run_id: str) -> list[Any]:
            if run_id == second.run_id:
                raise NotFound(f"run {run_id!r} not found")
            return await open_decisions(run_id)

        monkeypatch.setattr(server.runs, "open_decisions", lost)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while True:  # the prompts already on their way, then the end
                await asyncio.wait_for(call.read(), STEP)
        assert ended.value.code() == grpc.StatusCode.NOT_FOUND
        assert ended.value.details() == f"run {second.run_id!r} not found"
