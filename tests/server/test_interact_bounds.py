"""An Interact viewer that stops reading costs the server a bounded backlog, and when it
reads again it gets exactly the open decisions of its runs and the closure of every prompt
it was shown.

Issue 8, item 8: the Interact outbox and DecisionFeed.updates grew without bound for a viewer
that did not read. Now the outbox holds OUTBOX_SIZE messages and the feed DecisionFeed.limit
updates; past that the feed's backlog is replaced by one resync from the current state.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from runstream.v1 import decision_pb2, decision_service_pb2, decision_service_pb2_grpc
from runstream.v1 import event_pb2 as ev
from runstream_server.app import RunstreamServer
from runstream_server.domain import state

from tests.server.conftest import Stubs
from tests.server.support import append, create_run

DECISIONS = 3000
ANSWERED = 400  # the first ones; their prompts reach the viewer before it stops reading


def question(i: int) -> ev.RunEvent:
    return ev.RunEvent(
        decision_requested=ev.DecisionRequested(
            decision_id=f"d{i}",
            prompt=f"question {i}: which one?",
            options=[ev.DecisionOption(value="a"), ev.DecisionOption(value="b")],
        )
    )


async def test_a_viewer_that_stops_reading_gets_a_bounded_backlog_then_the_exact_state(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.runs is not None
    # 3,000 prompts fill the viewer's connection; one run may hold 100 open (a viewer of 30
    # runs gets as many), so the run's decision caps are lifted here, not the feed's bound.
    monkeypatch.setattr(state, "MAX_OPEN_DECISIONS", 2 * DECISIONS)
    monkeypatch.setattr(state, "MAX_RUN_DECISIONS", 2 * DECISIONS)
    monkeypatch.setattr(state, "MAX_DECISION_BYTES", 64 * 1024 * 1024)
    run = await create_run(stubs, "a")
    decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
    # The viewer has its own connection, so only its stream stops being read, and its window
    # does not grow (no BDP probing): the server's queues fill as for a slow viewer.
    async with grpc.aio.insecure_channel(
        server.target, options=[("grpc.http2.bdp_probe", 0)]
    ) as viewer_channel:
        viewer = decision_service_pb2_grpc.DecisionServiceStub(viewer_channel)
        call = viewer.Interact()
        await call.write(
            decision_service_pb2.InteractRequest(
                subscribe=decision_service_pb2.InteractSubscribe(run_ids=[run.run_id])
            )
        )
        received: list[decision_service_pb2.InteractResponse] = []
        for start in range(0, ANSWERED, 200):
            await append(stubs, run.run_id, *(question(i) for i in range(start, start + 200)))
        while len(received) < ANSWERED:  # the viewer reads these prompts, then stops reading
            received.append(await asyncio.wait_for(call.read(), 30))

        for start in range(ANSWERED, DECISIONS, 500):
            await append(stubs, run.run_id, *(question(i) for i in range(start, start + 500)))
        for i in range(ANSWERED):
            await decisions.SubmitDecision(
                decision_service_pb2.SubmitDecisionRequest(
                    run_id=run.run_id, decision_id=f"d{i}", choice="b", answered_by="ana"
                )
            )
        feeds = server.runs._links.feeds(run.run_id)
        assert len(feeds) == 1
        feed = next(iter(feeds))
        assert feed.updates.qsize() <= feed.limit + 1  # bounded, however much happened

        # Reading again: the viewer converges on the run's open decisions.
        open_now = {f"d{i}" for i in range(ANSWERED, DECISIONS)}
        view: dict[str, str] = {}  # decision id -> "prompt" or "closed"
        prompts: list[str] = []
        for response in received:
            view[response.prompt.decision_id] = "prompt"
            prompts.append(response.prompt.decision_id)
        while {d for d, what in view.items() if what == "prompt"} != open_now:
            response = await asyncio.wait_for(call.read(), 30)
            received.append(response)
            if response.HasField("prompt"):
                prompts.append(response.prompt.decision_id)
                view[response.prompt.decision_id] = "prompt"
            else:
                closed = response.closed
                assert view.get(closed.decision_id) == "prompt"  # only prompts it was shown
                assert closed.state == decision_pb2.DECISION_STATE_RESOLVED
                assert closed.choice == "b"
                view[closed.decision_id] = "closed"
        call.cancel()

    assert len(prompts) == len(set(prompts)) == DECISIONS  # each prompt once
    assert {d for d, what in view.items() if what == "closed"} == {f"d{i}" for i in range(ANSWERED)}
    # The backlog was dropped for a resync: fewer messages than updates happened (3000
    # prompts and 400 closures, each sent at most once).
    assert len(received) == DECISIONS + ANSWERED
