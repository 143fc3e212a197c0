"""Asking again under a decision_id the run already knows, through ``RunReporter.ask()``.

What a user notices: asking again waits for that question's answer only while there is one to
wait for (a question it sent and gave up on, or one asked before ``attach_run``), and only
for the same question; an answer given while the producer was cut off still reaches it; and a
replay that waits for an earlier answer keeps the keys of the events after it in line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import runstream
from runstream import (
    Client,
    EventKind,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    RunStatus,
)
from runstream_server.app import RunstreamServer
from runstream_server.domain import state

from tests.clients.support import proxy_to
from tests.clients.test_decisions import log_of, open_decision


async def _given_up(run: runstream.RunReporter, decision_id: str, client: Client) -> None:
    """Asks, waits until the question is stored, then cancels the ask() (a wait_for that
    timed out)."""
    first = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id=decision_id))
    await open_decision(client, run.run_id, decision_id)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


async def _answered(
    run: runstream.RunReporter,
    client: Client,
    decision_id: str,
    choice: str,
    prompt: str = "Ship it?",
) -> runstream.DecisionResult:
    """Asks, waits until the question is stored, answers it with ``choice`` through
    ``client``, and returns what ask() returned."""
    waiting = asyncio.create_task(run.ask(prompt, ["yes", "no"], decision_id=decision_id))
    await open_decision(client, run.run_id, decision_id)
    await client.submit_decision(run.run_id, decision_id, choice)
    return await asyncio.wait_for(waiting, 20)


async def test_a_question_answered_after_it_was_asked_again_cannot_be_asked_a_third_time(
    client: Client,
) -> None:
    run = await client.start_run("deploy")
    await _given_up(run, "ship", client)
    await client.submit_decision(run.run_id, "ship", "yes")
    again = await asyncio.wait_for(run.ask("Ship it?", ["yes", "no"], decision_id="ship"), 20)
    assert again.choice == "yes"
    with pytest.raises(InvalidArgumentError, match="'ship' was already asked"):
        await run.ask("Ship it?", ["yes", "no"], decision_id="ship")
    await run.complete()
    await run.close()


async def test_a_question_cancelled_before_it_was_sent_can_be_asked_again(
    server: RunstreamServer,
) -> None:
    """Cancelled while the reporter's buffer was full, the question never left: asking it
    again is a first asking, not a second one."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target) as producer_side,
        runstream.connect(server.target) as viewer,
    ):
        run = await producer_side.start_run("deploy", max_buffered=1)
        await run.flush()
        proxy.cut()
        await run.metrics({"builds": 1})  # unacknowledged: the buffer is full
        held = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="ship"))
        await asyncio.sleep(0.2)
        assert not held.done()
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        proxy.restore()
        assert (await _answered(run, viewer, "ship", "no")).choice == "no"
        await run.complete()
        await run.close()


async def test_an_answer_given_while_cut_off_reaches_a_question_asked_again_after(
    server: RunstreamServer,
) -> None:
    """Nobody awaited the question when its answer came (the ask() was given up) and the
    stream was broken: asking again after the reporter reconnected reads the answer."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target) as producer_side,
        runstream.connect(server.target) as viewer,
    ):
        run = await producer_side.start_run("deploy")
        await _given_up(run, "ship", viewer)
        await run.flush()
        proxy.cut()
        await viewer.submit_decision(run.run_id, "ship", "yes", answered_by="ana")
        proxy.restore()
        await run.metrics({"builds": 1})
        await asyncio.wait_for(run.flush(), 30)  # reconnected
        again = await asyncio.wait_for(run.ask("Ship it?", ["yes", "no"], decision_id="ship"), 10)
        assert (again.choice, again.answered_by) == ("yes", "ana")
        await run.complete()
        await run.close()


async def test_a_replay_past_an_answered_question_keeps_the_keys_of_what_follows(
    client: Client,
) -> None:
    """A restarted producer replays under its key_prefix: the question asked before
    attach_run is answered from the run, and the events after it are known as stored."""
    run = await client.start_run("deploy", key_prefix="replay-keys")
    await _answered(run, client, "ship", "yes")
    await run.metrics({"builds": 1})
    await run.flush()
    await run.close()

    again = await client.attach_run(run.run_id, key_prefix="replay-keys")
    replayed = await asyncio.wait_for(again.ask("Ship it?", ["yes", "no"], decision_id="ship"), 20)
    assert replayed.choice == "yes"
    await again.metrics({"builds": 1})  # the same event again: stored once
    await asyncio.wait_for(again.complete(), 20)
    await again.close()
    kinds = [event.kind for event in await log_of(client, run.run_id)]
    assert kinds.count(EventKind.METRICS_UPDATE) == 1
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def test_a_closed_reporter_refuses_a_question_asked_before_attach_run(
    client: Client,
) -> None:
    run = await client.start_run("deploy")
    await _answered(run, client, "ship", "yes")
    await run.close()
    again = await client.attach_run(run.run_id)
    await again.close()
    with pytest.raises(FailedPreconditionError, match="is closed"):
        await again.ask("Ship it?", ["yes", "no"], decision_id="ship")


async def test_another_question_under_the_id_another_reporter_has_open_is_refused(
    client: Client,
) -> None:
    """Two agents attached to one run: the second asks something else under the id of the
    first's open question. It is refused, not given the first question's answer."""
    first = await client.start_run("shared-question")
    await first.flush()
    second = await client.attach_run(first.run_id)
    asking = asyncio.create_task(first.ask("Approve?", ["yes", "no"], decision_id="approve"))
    await open_decision(client, first.run_id, "approve")
    with pytest.raises(InvalidArgumentError, match="already has a decision"):
        await asyncio.wait_for(second.ask("Ship it?", ["yes", "no"], decision_id="approve"), 20)
    await client.submit_decision(first.run_id, "approve", "yes")
    assert (await asyncio.wait_for(asking, 20)).choice == "yes"
    await second.close()
    await first.close()


@pytest.mark.parametrize(
    ("changed", "said"),
    [
        ({"prompt": "Ship it now?"}, "its prompt was 'Ship it?', not 'Ship it now?'"),
        ({"options": ["no", "yes"]}, "its options were ['yes', 'no'], not ['no', 'yes']"),
        ({"default": "no"}, "its default was '', not 'no'"),
        ({"decision_type": "release"}, "its type was 'deploy', not 'release'"),
    ],
    ids=["prompt", "options", "default", "decision_type"],
)
async def test_asking_again_with_one_thing_changed_is_another_question(
    client: Client, changed: dict[str, Any], said: str
) -> None:
    """The question asked again must be the same one: its prompt, options, default and
    type (its answer would not be this question's answer). The refusal says which differs:
    it named the prompt, the same one when the options' order or the default changed."""
    asked: dict[str, Any] = {"prompt": "Ship it?", "options": ["yes", "no"], "default": ""}
    asked["decision_type"] = "deploy"
    run = await client.start_run("deploy")
    first = asyncio.create_task(run.ask(**asked, decision_id="ship"))
    await open_decision(client, run.run_id, "ship")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(FailedPreconditionError, match="as another question") as refused:
        await asyncio.wait_for(run.ask(**(asked | changed), decision_id="ship"), 5)
    assert f"as another question ({said});" in refused.value.message
    await run.close()


async def test_a_question_the_server_refused_can_be_asked_again(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused (nothing of it stored), the question may be asked again under its id."""
    monkeypatch.setattr(state, "MAX_OPEN_DECISIONS", 1)
    run = await client.start_run("deploy")
    first = asyncio.create_task(run.ask("Build?", ["yes", "no"], decision_id="build"))
    await open_decision(client, run.run_id, "build")
    with pytest.raises(ResourceExhaustedError):
        await asyncio.wait_for(run.ask("Ship it?", ["yes", "no"], decision_id="ship"), 20)
    await client.submit_decision(run.run_id, "build", "yes")
    await asyncio.wait_for(first, 20)
    assert (await _answered(run, client, "ship", "no")).choice == "no"
    await run.close()


async def test_a_question_refused_after_its_ask_was_given_up_can_be_asked_again(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ask() was cancelled while the stream was cut off, and the server refused the
    question when it arrived: asking again sends it, rather than waiting for a question
    that was never stored."""
    monkeypatch.setattr(state, "MAX_OPEN_DECISIONS", 1)
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target) as producer_side,
        runstream.connect(server.target) as viewer,
    ):
        run = await producer_side.start_run("deploy")
        first = asyncio.create_task(run.ask("Build?", ["yes", "no"], decision_id="build"))
        await open_decision(viewer, run.run_id, "build")
        await run.flush()
        proxy.cut()
        given_up = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="ship"))
        await asyncio.sleep(0.2)
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        proxy.restore()
        with pytest.raises(ResourceExhaustedError):
            await asyncio.wait_for(run.flush(), 30)
        await viewer.submit_decision(run.run_id, "build", "yes")
        await asyncio.wait_for(first, 20)
        assert (await _answered(run, viewer, "ship", "no")).choice == "no"
        await run.close()


async def test_a_decision_answered_after_attach_run_is_no_longer_among_its_open_ones(
    client: Client,
) -> None:
    run = await client.start_run("deploy")
    asking = asyncio.create_task(run.ask("Ship it?", ["yes", "no"], decision_id="ship"))
    await open_decision(client, run.run_id, "ship")
    again = await client.attach_run(run.run_id)
    assert [d.decision_id for d in again.open_decisions] == ["ship"]
    await client.submit_decision(run.run_id, "ship", "yes")
    await asyncio.wait_for(asking, 20)
    await again.metrics({"builds": 1})
    await again.flush()  # the closed decision, pushed before this ack, is heard
    assert again.open_decisions == ()
    await again.close()
    await run.close()
