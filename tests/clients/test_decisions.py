"""Humans in the loop through the SDK: ask(), SubmitDecision, Interact, against real servers.

What a user notices: the producer gets the answer (or the default at the deadline) however
and whenever it was given; two people answering at once cannot both win, and both learn who
did; a wrong answer gets a precise status; and the run's log tells the same story whichever
path the answer took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
import runstream
from runstream import (
    AbortedError,
    Client,
    Decision,
    DecisionClosed,
    DecisionOption,
    DecisionOutcome,
    DecisionPrompt,
    DecisionRequested,
    DecisionResolved,
    DecisionState,
    Event,
    EventKind,
    FailedPreconditionError,
    InvalidArgumentError,
    Milestone,
    MilestoneType,
    NotFoundError,
    RunReporter,
    RunStatus,
    StatusCode,
)
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer
from runstream_server.domain import state

from tests.clients.support import TcpProxy, question
from tests.conftest import ServerProcess

T = TypeVar("T")

PERSONAS: list[DecisionOption | str | tuple[str, ...]] = [
    DecisionOption("wanderer", "Weekend Wanderer", "Trail runners, 25-40"),
    DecisionOption("summiteer", "City Summiteer"),
    ("veteran", "Trail Veteran"),
]


async def log_of(client: Client, run_id: str) -> list[Event]:
    """The run's stored events, now (the run may still be going)."""
    return [event async for event in client.list_events(run_id)]


async def open_decision(client: Client, run_id: str, decision_id: str) -> Decision:
    """Waits until the producer's question is stored and open, and returns it."""
    found: list[Decision] = []

    async def probe() -> bool:
        decisions = await client.list_decisions(run_id, state=DecisionState.OPEN)
        found[:] = [d for d in decisions if d.decision_id == decision_id]
        return bool(found)

    for _ in range(2000):
        if await probe():
            return found[0]
        await asyncio.sleep(0.01)
    raise AssertionError(f"decision {decision_id!r} never opened")


def asking(run: RunReporter, **kwargs: Any) -> asyncio.Task[runstream.DecisionResult]:
    """ask() in the background, as a workflow blocked on a human would be."""
    options = kwargs.pop("options", PERSONAS)
    prompt = kwargs.pop("prompt", "Which audience persona should we prioritise?")
    return asyncio.create_task(run.ask(prompt, options, **kwargs))


async def until_reachable(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, retried while a restarted server is not reachable yet (unary calls fail
    fast while the channel waits out its reconnect backoff)."""
    for _ in range(200):
        try:
            return await call()
        except runstream.UnavailableError:
            await asyncio.sleep(0.1)
    return await call()


async def test_a_context_reads_in_the_same_order_for_everyone(client: Client) -> None:
    """A context is a Struct, a map, whose keys came out in an order of the process's own:
    two people answering the same question saw its facts in different orders (found in
    review). The SDK gives them sorted."""
    run = await client.start_run("campaign")
    keys = [f"k{n}" for n in (7, 3, 5, 0, 6, 1, 4, 2)]
    waiting = asyncio.create_task(
        run.ask("Which one?", ["a", "b"], decision_id="d", context={k: k.upper() for k in keys})
    )
    shown = await open_decision(client, run.run_id, "d")
    assert list(shown.context) == sorted(keys)
    await client.submit_decision(run.run_id, "d", "a")
    await asyncio.wait_for(waiting, 20)


async def test_ask_returns_the_answer_a_viewer_submitted(client: Client) -> None:
    run = await client.start_run("campaign", steps=["persona", "copy"])
    waiting = asking(
        run,
        decision_id="persona",
        default="wanderer",
        timeout=timedelta(minutes=10),
        can_skip=True,
        context={"segments": 2, "source": "survey"},
        decision_type="persona_choice",
        affects_workflow=True,
    )
    shown = await open_decision(client, run.run_id, "persona")
    assert shown.prompt == "Which audience persona should we prioritise?"
    assert shown.options == (
        DecisionOption("wanderer", "Weekend Wanderer", "Trail runners, 25-40"),
        DecisionOption("summiteer", "City Summiteer", ""),
        DecisionOption("veteran", "Trail Veteran", ""),
    )
    assert shown.default_option == "wanderer"
    assert shown.can_skip and shown.affects_workflow
    assert shown.context == {"segments": 2, "source": "survey"}
    assert shown.decision_type == "persona_choice"
    assert shown.timeout == timedelta(minutes=10)
    assert shown.deadline is not None and shown.create_time is not None
    assert shown.deadline - shown.create_time >= timedelta(minutes=9)
    details = await client.get_run_details(run.run_id)
    assert details.run.status == RunStatus.WAITING_FOR_INPUT
    assert [d.decision_id for d in details.open_decisions] == ["persona"]
    assert not waiting.done()

    closed = await client.submit_decision(run.run_id, "persona", "summiteer", answered_by="ana")
    assert closed.state == DecisionState.RESOLVED
    assert (closed.outcome, closed.choice, closed.answered_by) == (
        DecisionOutcome.ANSWERED,
        "summiteer",
        "ana",
    )

    result = await asyncio.wait_for(waiting, 20)
    assert result.outcome == DecisionOutcome.ANSWERED
    assert result.choice == "summiteer"
    assert result.answered_by == "ana"
    assert result.decision.resolved_seq > result.decision.requested_seq > 0
    after = await client.get_run_details(run.run_id)
    assert after.run.status == RunStatus.RUNNING
    assert after.open_decisions == ()
    # The question and its answer are events of the run, for every watcher and replay.
    events = await log_of(client, run.run_id)
    requested = [e for e in events if e.kind == EventKind.DECISION_REQUESTED]
    resolved = [e for e in events if e.kind == EventKind.DECISION_RESOLVED]
    assert [e.seq for e in requested] == [result.decision.requested_seq]
    assert [e.seq for e in resolved] == [result.decision.resolved_seq]
    assert resolved[0].payload == DecisionResolved(
        "persona", DecisionOutcome.ANSWERED, "summiteer", "ana"
    )
    assert (await client.list_decisions(run.run_id, state=DecisionState.RESOLVED))[0] == closed
    await run.complete()
    await run.close()


async def test_two_viewers_answer_at_once_and_exactly_one_wins(client: Client) -> None:
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")

    async with client.interact([run.run_id], viewer="bo") as interaction:
        # The interaction first shows the open prompt, with everything needed to answer it.
        first = await asyncio.wait_for(anext(interaction), 20)
        assert isinstance(first, DecisionPrompt)
        assert first.decision.decision_id == "persona"
        assert len(first.decision.options) == 3

        outcomes = await asyncio.gather(
            interaction.answer(run.run_id, "persona", "veteran"),
            client.submit_decision(run.run_id, "persona", "summiteer", answered_by="ana"),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, Decision)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        winner = winners[0]
        loser = losers[0]
        # The loser learns who won and with what, from the error itself.
        assert isinstance(loser, AbortedError), loser
        assert loser.code == StatusCode.ABORTED
        assert repr(winner.choice) in loser.message
        assert winner.answered_by in loser.message
        assert winner.answered_by in ("bo", "ana")  # the stream's viewer names its answers
        # The interacting viewer is told about the closure whoever won.
        closed = await asyncio.wait_for(_next_closed(interaction), 20)
        assert (closed.choice, closed.answered_by) == (winner.choice, winner.answered_by)

    result = await asyncio.wait_for(waiting, 20)
    assert (result.choice, result.answered_by) == (winner.choice, winner.answered_by)
    events = await log_of(client, run.run_id)
    resolved = [e.payload for e in events if e.kind == EventKind.DECISION_RESOLVED]
    assert resolved == [
        DecisionResolved("persona", DecisionOutcome.ANSWERED, winner.choice, winner.answered_by)
    ]
    await run.complete()
    await run.close()


async def test_two_interacting_viewers_race_and_both_see_the_winner(client: Client) -> None:
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")
    async with (
        client.interact([run.run_id], viewer="ana") as ana,
        client.interact([run.run_id], viewer="bo") as bo,
    ):
        # Each has the prompt on screen before answering, as a person would: an interaction
        # yields closures only of prompts it yielded, and one whose subscription reached the
        # server after the other's answer closed the decision never had the prompt (a CI run
        # timed out waiting for such a closure).
        for viewer in (ana, bo):
            prompt = await asyncio.wait_for(anext(viewer), 20)
            assert isinstance(prompt, DecisionPrompt) and prompt.decision.decision_id == "persona"
        outcomes = await asyncio.gather(
            ana.answer(run.run_id, "persona", "wanderer"),
            bo.answer(run.run_id, "persona", "veteran"),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, Decision)]
        assert len(winners) == 1, outcomes
        assert sum(isinstance(o, AbortedError) for o in outcomes) == 1, outcomes
        winner = winners[0]
        for viewer in (ana, bo):
            closed = await asyncio.wait_for(_next_closed(viewer), 20)
            assert (closed.choice, closed.answered_by) == (winner.choice, winner.answered_by)
    result = await asyncio.wait_for(waiting, 20)
    assert result.choice == winner.choice
    await run.complete()
    await run.close()


async def _next_closed(interaction: runstream.Interaction) -> Decision:
    async for update in interaction:
        if isinstance(update, DecisionClosed):
            return update.decision
    raise AssertionError("the interaction ended without a closure")


async def test_a_prompt_nobody_answers_resolves_to_its_default_at_the_deadline(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    result = await asyncio.wait_for(
        run.ask("Which persona?", PERSONAS, default="summiteer", timeout=0.3), 20
    )
    assert result.outcome == DecisionOutcome.DEFAULTED
    assert result.choice == "summiteer"
    assert result.answered_by == ""

    no_default = await asyncio.wait_for(run.ask("Go on?", ["yes", "no"], timeout=0.3), 20)
    assert no_default.outcome == DecisionOutcome.TIMED_OUT
    assert no_default.choice is None

    # An answer after the deadline is refused, naming how the decision closed.
    with pytest.raises(AbortedError, match="DEFAULTED") as late:
        await client.submit_decision(run.run_id, result.decision_id, "veteran")
    assert "summiteer" in late.value.message
    await run.complete()
    await run.close()
    events = await log_of(client, run.run_id)
    resolved = [e.payload for e in events if e.kind == EventKind.DECISION_RESOLVED]
    assert resolved == [
        DecisionResolved(result.decision_id, DecisionOutcome.DEFAULTED, "summiteer", ""),
        DecisionResolved(no_default.decision_id, DecisionOutcome.TIMED_OUT, "", ""),
    ]


async def test_skipping_a_skippable_decision(client: Client) -> None:
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="optional", can_skip=True, default="wanderer", timeout=600)
    await open_decision(client, run.run_id, "optional")
    skipped = await client.submit_decision(run.run_id, "optional", skip=True, answered_by="ana")
    assert skipped.outcome == DecisionOutcome.SKIPPED
    result = await asyncio.wait_for(waiting, 20)
    assert (result.outcome, result.choice, result.answered_by) == (
        DecisionOutcome.SKIPPED,
        None,
        "ana",
    )
    await run.complete()
    await run.close()


async def test_each_wrong_answer_gets_its_precise_status(client: Client) -> None:
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")

    with pytest.raises(InvalidArgumentError, match="choice") as not_an_option:
        await client.submit_decision(run.run_id, "persona", "nobody")
    assert "'nobody'" in not_an_option.value.message
    with pytest.raises(InvalidArgumentError, match="skip"):
        await client.submit_decision(run.run_id, "persona", skip=True)
    with pytest.raises(InvalidArgumentError):
        await client.submit_decision(run.run_id, "persona")  # neither a choice nor a skip
    with pytest.raises(NotFoundError, match="no-such-decision"):
        await client.submit_decision(run.run_id, "no-such-decision", "wanderer")
    with pytest.raises(NotFoundError):
        await client.submit_decision("no-such-run", "persona", "wanderer")
    with pytest.raises(NotFoundError):
        await client.get_decision(run.run_id, "no-such-decision")
    assert not waiting.done()  # none of that closed the decision

    first = await client.submit_decision(run.run_id, "persona", "veteran", answered_by="ana")
    # The same answer again is idempotent: the same decision, not an error.
    again = await client.submit_decision(run.run_id, "persona", "veteran", answered_by="ana")
    assert again == first
    with pytest.raises(AbortedError) as other:
        await client.submit_decision(run.run_id, "persona", "wanderer", answered_by="bo")
    assert "'veteran'" in other.value.message and "ana" in other.value.message
    assert (await asyncio.wait_for(waiting, 20)).choice == "veteran"

    # A finished run takes no answers at all.
    late = asking(run, decision_id="late")
    await open_decision(client, run.run_id, "late")
    await client.cancel_run(run.run_id, reason="done here")
    with pytest.raises(runstream.RunCancelledError):
        await asyncio.wait_for(late, 20)
    with pytest.raises(FailedPreconditionError) as finished:
        await client.submit_decision(run.run_id, "late", "wanderer")
    assert finished.value.code == StatusCode.FAILED_PRECONDITION
    cancelled = await client.get_decision(run.run_id, "late")
    assert cancelled.outcome == DecisionOutcome.CANCELLED
    await run.close()


async def test_the_interact_stream_reports_rejections_and_stays_open(client: Client) -> None:
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")
    async with client.interact([run.run_id], viewer="ana") as interaction:
        with pytest.raises(InvalidArgumentError, match="choice"):
            await interaction.answer(run.run_id, "persona", "nobody")
        with pytest.raises(InvalidArgumentError, match="skip"):
            await interaction.answer(run.run_id, "persona", skip=True)
        with pytest.raises(NotFoundError):
            await interaction.answer(run.run_id, "no-such-decision", "wanderer")
        decision = await interaction.answer(run.run_id, "persona", "summiteer")
        assert decision.answered_by == "ana"  # the viewer, since the answer named nobody
        assert await interaction.answer(run.run_id, "persona", "summiteer") == decision
        with pytest.raises(AbortedError, match="summiteer"):
            await interaction.answer(run.run_id, "persona", "veteran", answered_by="bo")
        # Every answer's result is also an update of the stream, in order.
        results = []
        async for update in interaction:
            if isinstance(update, runstream.AnswerResult):
                results.append(update)
            if len(results) == 6:
                break
        assert [r.code for r in results] == [
            StatusCode.INVALID_ARGUMENT,
            StatusCode.INVALID_ARGUMENT,
            StatusCode.NOT_FOUND,
            StatusCode.OK,
            StatusCode.OK,
            StatusCode.ABORTED,
        ]
        assert [r.answer_id for r in results] == [1, 2, 3, 4, 5, 6]
        assert results[3].accepted and not results[5].accepted
    assert (await asyncio.wait_for(waiting, 20)).choice == "summiteer"
    await run.complete()
    await run.close()


async def test_an_interaction_gets_open_prompts_then_new_ones_and_closures(
    client: Client,
) -> None:
    one = await client.start_run("campaign")
    two = await client.start_run("campaign")
    early = asking(one, decision_id="early")
    await open_decision(client, one.run_id, "early")
    updates: list[runstream.InteractionUpdate] = []
    async with client.interact([one.run_id], viewer="ana") as interaction:
        updates.append(await asyncio.wait_for(anext(interaction), 20))
        await interaction.subscribe([two.run_id])
        later = asking(two, decision_id="later", default="wanderer", timeout=0.5)
        while len(updates) < 3:
            updates.append(await asyncio.wait_for(anext(interaction), 20))
        await client.submit_decision(one.run_id, "early", "veteran")
        updates.append(await asyncio.wait_for(anext(interaction), 20))
    assert [(type(u).__name__, u.decision.run_id, u.decision.decision_id) for u in updates] == [  # type: ignore[union-attr]
        ("DecisionPrompt", one.run_id, "early"),
        ("DecisionPrompt", two.run_id, "later"),
        ("DecisionClosed", two.run_id, "later"),  # by its deadline
        ("DecisionClosed", one.run_id, "early"),
    ]
    assert isinstance(updates[2], DecisionClosed)
    assert updates[2].decision.outcome == DecisionOutcome.DEFAULTED
    assert (await asyncio.wait_for(later, 20)).outcome == DecisionOutcome.DEFAULTED
    assert (await asyncio.wait_for(early, 20)).choice == "veteran"
    for run in (one, two):
        await run.complete()
        await run.close()


async def test_interacting_with_an_unknown_run_ends_with_not_found(client: Client) -> None:
    async with client.interact(["no-such-run"]) as interaction:
        with pytest.raises(NotFoundError):
            async for _ in interaction:
                pass
        with pytest.raises(NotFoundError):
            await interaction.answer("no-such-run", "d", "x")


async def test_subscribing_to_an_unknown_run_is_refused_and_the_interaction_goes_on(
    client: Client,
) -> None:
    """The server ends an Interact stream that subscribes to an unknown run: subscribe()
    returned, and the interaction then died for every run it followed, its next answer
    refused naming the unknown run (found in review)."""
    run = await client.start_run("campaign")
    waiting = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")
    async with client.interact([run.run_id], viewer="ana") as interaction:
        assert isinstance(await asyncio.wait_for(anext(interaction), 20), DecisionPrompt)
        with pytest.raises(NotFoundError, match="does-not-exist"):
            await interaction.subscribe([run.run_id, "does-not-exist"])
        decision = await asyncio.wait_for(interaction.answer(run.run_id, "persona", "veteran"), 20)
        assert decision.choice == "veteran"
        closed = await asyncio.wait_for(anext(interaction), 20)
        assert isinstance(closed, DecisionClosed)
    assert (await asyncio.wait_for(waiting, 20)).choice == "veteran"
    await run.complete()
    await run.close()


async def test_the_unary_and_the_bidirectional_path_write_the_same_log(client: Client) -> None:
    async def play(answer: Any) -> list[tuple[EventKind, Any]]:
        run = await client.start_run("campaign", steps=["persona"])
        async with run:
            async with run.step("persona"):
                waiting = asking(run, decision_id="persona", default="wanderer", timeout=600)
                await open_decision(client, run.run_id, "persona")
                await answer(run.run_id)
                result = await asyncio.wait_for(waiting, 20)
                assert (result.choice, result.answered_by) == ("veteran", "ana")
            await run.complete("ok")
        events = await log_of(client, run.run_id)
        # The second run has history, so the server adds estimates the first cannot have, and
        # a "faster than usual" milestone when it happens to finish sooner than the first.
        return [
            (e.kind, _comparable(e.payload))
            for e in events
            if e.kind not in INSIGHT and not _is_speed_milestone(e.payload)
        ]

    async def unary(run_id: str) -> None:
        await client.submit_decision(run_id, "persona", "veteran", answered_by="ana")

    async def bidirectional(run_id: str) -> None:
        async with client.interact([run_id], viewer="ana") as interaction:
            await interaction.answer(run_id, "persona", "veteran")

    unary_log = await play(unary)
    bidi_log = await play(bidirectional)
    assert unary_log == bidi_log
    decision_events = [p for k, p in unary_log if k == EventKind.DECISION_RESOLVED]
    assert decision_events == [
        DecisionResolved("persona", DecisionOutcome.ANSWERED, "veteran", "ana")
    ]


INSIGHT = {EventKind.ESTIMATE_UPDATED, EventKind.HEALTH_CHANGED}


def _is_speed_milestone(payload: Any) -> bool:
    return isinstance(payload, Milestone) and payload.type == MilestoneType.SPEED


def _comparable(payload: Any) -> Any:
    """A payload without what differs between any two runs (times, generated ids)."""
    if isinstance(payload, DecisionRequested):
        return (payload.decision_id, payload.prompt, payload.options, payload.default_option)
    if isinstance(payload, runstream.StepCompleted):
        return (payload.step_id, payload.summary)
    return payload


async def test_questions_the_server_would_refuse_are_refused_before_sending(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    bad_questions: list[tuple[str, list[Any], dict[str, Any]]] = [
        ("Which?", [], {}),
        ("Which?", ["a", "a"], {}),
        ("Which?", ["a", ""], {}),
        ("Which?", ["a", "b"], {"default": "c" * 257}),
        ("Which?", ["a", "b"], {"timeout": 0}),
        ("Which?", ["a", "b"], {"timeout": float("nan")}),
        ("Which?", ["a", "b"], {"timeout": float("inf")}),
        ("Which?", ["a", "b"], {"timeout": timedelta(days=365 * 200)}),
        ("", ["a", "b"], {}),
        ("Which?", ["a", "b"], {"context": {"asked": object()}}),
        ("Which?", ["a", "b"], {"context": {"scores": [0.5, float("nan")]}}),
    ]
    for prompt, options, kwargs in bad_questions:
        with pytest.raises(InvalidArgumentError) as info:
            await run.ask(prompt, options, **kwargs)
        # The message names the argument at fault (context's said "data:"), or the part of
        # it ("options[1].value:").
        argument = "prompt" if not prompt else next(iter(kwargs), "options")
        assert info.value.message.startswith((f"{argument}:", f"{argument}[")), info.value.message
    with pytest.raises(InvalidArgumentError, match="options: 'yes' is one string"):
        await run.ask("Proceed?", "yes", default="yes")  # was: options "y", "e" and "s"
    result = await asyncio.wait_for(
        run.ask("Which?", ["a", "b"], default="b", timeout=0.2, decision_id="q"), 20
    )
    assert result.choice == "b"
    with pytest.raises(InvalidArgumentError, match="already asked"):
        await run.ask("Again?", ["a"], decision_id="q")
    await run.complete()  # the reporter never failed
    await run.close()


async def test_a_default_none_of_the_options_comes_back_at_the_deadline(client: Client) -> None:
    """ask(files, default="analyze_all") raised InvalidArgumentError before sending: the
    agentic manager's fallback, which no person picks, could not be asked for at all."""
    run = await client.start_run("analyst")
    files = ["file1.pdf", "file2.xlsx"]
    waiting = asking(run, options=files, default="analyze_all", timeout=1, decision_id="files")
    shown = await open_decision(client, run.run_id, "files")
    assert (shown.default_option, [o.value for o in shown.options]) == (
        "analyze_all",
        ["file1.pdf", "file2.xlsx"],
    )
    result = await asyncio.wait_for(waiting, 20)
    assert (result.outcome, result.choice) == (DecisionOutcome.DEFAULTED, "analyze_all")


async def test_a_timeout_longer_than_the_server_takes_is_refused_naming_the_argument(
    client: Client,
) -> None:
    """The SDK took up to 100 years, the server 366 days: ask(timeout=400 days) was sent,
    refused by the server (costing the report stream) and raised an error naming
    ``events[0].decision_requested.timeout`` instead of ask()'s ``timeout``."""
    run = await client.start_run("campaign")
    with pytest.raises(InvalidArgumentError) as info:
        await run.ask("Which?", ["a", "b"], timeout=timedelta(days=400))
    assert info.value.message.startswith("timeout: must be positive and at most 366 days")
    longest = asking(run, options=["a", "b"], timeout=timedelta(days=366), decision_id="q")
    await open_decision(client, run.run_id, "q")  # the server takes the SDK's longest
    await client.submit_decision(run.run_id, "q", "b")
    assert (await asyncio.wait_for(longest, 20)).choice == "b"
    await run.complete()
    await run.close()


async def test_an_ask_its_caller_cancelled_can_be_awaited_again_by_its_id(client: Client) -> None:
    """A producer whose wait_for around ask() gave up could never learn the answer: asking
    again with the id was refused as already asked, and the question stayed open."""
    run = await client.start_run("campaign")
    first = asking(run, decision_id="persona")
    await open_decision(client, run.run_id, "persona")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await open_decision(client, run.run_id, "persona")).is_open  # viewers still see it
    await client.submit_decision(run.run_id, "persona", "veteran", answered_by="ana")
    result = await asking(run, decision_id="persona")
    assert (result.choice, result.answered_by) == ("veteran", "ana")

    again = asking(run, decision_id="later")
    await open_decision(client, run.run_id, "later")
    again.cancel()
    with pytest.raises(asyncio.CancelledError):
        await again
    waiting = asking(run, decision_id="later")  # asked again before anyone answers
    await client.submit_decision(run.run_id, "later", "summiteer")
    assert (await waiting).choice == "summiteer"
    requested = [
        e for e in await log_of(client, run.run_id) if e.kind == EventKind.DECISION_REQUESTED
    ]
    assert len(requested) == 2  # each question asked once
    await run.complete()
    await run.close()


async def test_another_question_under_the_id_of_one_asked_is_refused_not_answered(
    client: Client,
) -> None:
    """Asking again under the id of a question already sent waits for that question's answer:
    a different question there got the other's answer (found in review: "Delete the
    database?" [no, yes] returned "eu", the answer to "Deploy to which region?")."""
    run = await client.start_run("deploy")
    first = asking(run, prompt="Deploy to which region?", options=["eu", "us"], decision_id="q")
    await open_decision(client, run.run_id, "q")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(runstream.FailedPreconditionError, match="'Deploy to which region\\?'"):
        await run.ask("Delete the database?", ["no", "yes"], decision_id="q")
    await client.submit_decision(run.run_id, "q", "eu")
    same = await asking(
        run, prompt="Deploy to which region?", options=["eu", "us"], decision_id="q"
    )
    assert same.choice == "eu"  # the same question still waits for its own answer

    second = asking(run, prompt="Deploy to which region?", options=["eu", "us"], decision_id="q2")
    await open_decision(client, run.run_id, "q2")
    await run.close()
    with pytest.raises(runstream.RunstreamError):
        await second  # its reporter closed
    async with runstream.connect(client.target) as restarted:
        attached = await restarted.attach_run(run.run_id)
        async with attached:
            with pytest.raises(runstream.FailedPreconditionError, match="another question"):
                await attached.ask("Delete the database?", ["no", "yes"], decision_id="q2")
            await client.submit_decision(run.run_id, "q2", "us")
            resumed = await attached.ask("Deploy to which region?", ["eu", "us"], decision_id="q2")
            assert resumed.choice == "us"
            await attached.complete()


async def test_a_producer_cut_off_while_waiting_gets_the_answer_after_reconnecting(
    server: RunstreamServer,
) -> None:
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        async with (
            runstream.connect(proxy.target) as producer_side,
            runstream.connect(server.target) as viewer,
        ):
            run = await producer_side.start_run("campaign")
            waiting = asking(run, decision_id="persona")
            await open_decision(viewer, run.run_id, "persona")
            await run.flush()
            proxy.cut()  # the producer's stream breaks and it cannot reconnect
            # Answered while the producer is away: only a read after reconnecting can tell it.
            await viewer.submit_decision(run.run_id, "persona", "veteran", answered_by="ana")
            await asyncio.sleep(0.3)
            assert not waiting.done()
            proxy.restore()
            result = await asyncio.wait_for(waiting, 30)
            assert (result.outcome, result.choice, result.answered_by) == (
                DecisionOutcome.ANSWERED,
                "veteran",
                "ana",
            )
            await run.complete()
            await run.close()
    finally:
        await proxy.close()


async def test_a_default_applied_while_the_producer_was_cut_off_reaches_it(
    server: RunstreamServer,
) -> None:
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        async with (
            runstream.connect(proxy.target) as producer_side,
            runstream.connect(server.target) as viewer,
        ):
            run = await producer_side.start_run("campaign")
            waiting = asking(run, decision_id="persona", default="summiteer", timeout=0.5)
            await open_decision(viewer, run.run_id, "persona")
            proxy.cut()
            closed = await _wait_resolved(viewer, run.run_id, "persona")
            assert closed.outcome == DecisionOutcome.DEFAULTED
            proxy.restore()
            result = await asyncio.wait_for(waiting, 30)
            assert (result.outcome, result.choice) == (DecisionOutcome.DEFAULTED, "summiteer")
            await run.complete()
            await run.close()
    finally:
        await proxy.close()


async def _wait_resolved(client: Client, run_id: str, decision_id: str) -> Decision:
    for _ in range(3000):
        decision = await client.get_decision(run_id, decision_id)
        if not decision.is_open:
            return decision
        await asyncio.sleep(0.01)
    raise AssertionError(f"decision {decision_id!r} never closed")


@pytest.mark.slow
async def test_a_deadline_that_passes_while_the_server_is_down_fires_once_after_restart(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign")
        waiting = asking(run, decision_id="persona", default="wanderer", timeout=1.5)
        decision = await open_decision(client, run.run_id, "persona")
        assert decision.deadline is not None
        server_process.kill()
        await asyncio.sleep(2.0)  # the deadline passes while nothing is running
        await asyncio.to_thread(server_process.start)
        result = await asyncio.wait_for(waiting, 30)
        assert (result.outcome, result.choice) == (DecisionOutcome.DEFAULTED, "wanderer")

        # Once more down and up: the deadline is not applied a second time.
        await run.flush()
        server_process.kill()
        await asyncio.to_thread(server_process.start)
        await run.complete()
        await run.close()
        events = await until_reachable(lambda: log_of(client, run.run_id))
    resolved = [e.payload for e in events if e.kind == EventKind.DECISION_RESOLVED]
    assert resolved == [
        DecisionResolved("persona", DecisionOutcome.DEFAULTED, "wanderer", ""),
    ]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


@pytest.mark.slow
async def test_an_answer_given_while_the_producer_reconnects_after_a_restart_reaches_it(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign")
        waiting = asking(run, decision_id="persona")
        await open_decision(client, run.run_id, "persona")
        server_process.kill()
        # Long enough for the producer's reconnect backoff to grow, so the answer below
        # most likely lands before it is back (either way it must get the answer).
        await asyncio.sleep(2.5)
        await asyncio.to_thread(server_process.start)
        answered = await until_reachable(
            lambda: client.submit_decision(run.run_id, "persona", "veteran", answered_by="ana")
        )
        result = await asyncio.wait_for(waiting, 30)
        assert result.choice == answered.choice == "veteran"
        await run.complete()
        await run.close()


async def test_an_interaction_rides_through_a_broken_connection(server: RunstreamServer) -> None:
    proxy = TcpProxy(server.port)
    await proxy.start()
    try:
        async with (
            runstream.connect(server.target) as producer_side,
            runstream.connect(proxy.target) as viewer,
        ):
            run = await producer_side.start_run("campaign")
            waiting = asking(run, decision_id="persona")
            async with viewer.interact([run.run_id], viewer="ana") as interaction:
                first = await asyncio.wait_for(anext(interaction), 20)
                assert isinstance(first, DecisionPrompt)
                proxy.cut()
                # Answered while the stream is down: the interaction resends it once back.
                answering = asyncio.create_task(
                    interaction.answer(run.run_id, "persona", "veteran")
                )
                await asyncio.sleep(0.3)
                assert not answering.done()
                proxy.restore()
                decision = await asyncio.wait_for(answering, 30)
                assert (decision.choice, decision.answered_by) == ("veteran", "ana")
                # After reconnecting, the open prompt was offered again before it closed.
                kinds: list[str] = []
                try:
                    async with asyncio.timeout(20):  # it hung once, to pytest's 300 s
                        async for update in interaction:
                            kinds.append(type(update).__name__)
                            if isinstance(update, DecisionClosed):
                                break
                except TimeoutError:
                    raise AssertionError(f"no DecisionClosed in 20 s, only {kinds}") from None
                assert "DecisionClosed" in kinds
            result = await asyncio.wait_for(waiting, 20)
            assert result.choice == "veteran"
            await run.complete()
            await run.close()
    finally:
        await proxy.close()


# --- a producer that replays under the key_prefix of an earlier process --------------------


async def restarted(client: Client, run: RunReporter) -> RunReporter:
    """The producer process "restarts": its reporter closes with the run still going, and a
    new one attaches with the same key_prefix to replay the workflow from its start."""
    await run.close()
    return await client.attach_run(run.run_id, key_prefix=run.key_prefix)


async def answered_once(
    client: Client, key_prefix: str
) -> tuple[RunReporter, runstream.DecisionResult]:
    """A run whose producer asked a question (no decision_id: a random one, different in
    every process) that ana answered "veteran"."""
    run = await client.start_run("campaign", key_prefix=key_prefix)
    first = asking(run)
    [shown] = await wait_for_open(client, run.run_id)
    await client.submit_decision(run.run_id, shown.decision_id, "veteran", answered_by="ana")
    return run, await asyncio.wait_for(first, 20)


async def test_a_replayed_ask_without_its_id_gets_the_answer_given_before(
    client: Client,
) -> None:
    run, answered = await answered_once(client, "replay")
    again = await restarted(client, run)
    replayed = await asyncio.wait_for(asking(again), 20)  # hung forever before
    assert (replayed.decision_id, replayed.choice, replayed.answered_by) == (
        answered.decision_id,
        "veteran",
        "ana",
    )
    # The replay asked nothing new: one question, one answer in the run's log.
    assert [d.decision_id for d in await client.list_decisions(run.run_id)] == [
        answered.decision_id
    ]
    await again.complete()
    await again.close()
    kinds = [e.kind for e in await log_of(client, run.run_id)]
    assert kinds.count(EventKind.DECISION_REQUESTED) == 1
    assert kinds.count(EventKind.DECISION_RESOLVED) == 1


async def test_a_replayed_ask_waits_for_the_answer_to_the_question_still_open(
    client: Client,
) -> None:
    run = await client.start_run("campaign", key_prefix="replay-open")
    first = asking(run)
    [shown] = await wait_for_open(client, run.run_id)
    first.cancel()  # the process dies while waiting for a human
    with pytest.raises(asyncio.CancelledError):
        await first

    again = await restarted(client, run)
    replayed = asking(again)
    await asyncio.sleep(0.3)
    assert not replayed.done()
    await client.submit_decision(run.run_id, shown.decision_id, "wanderer", answered_by="bo")
    result = await asyncio.wait_for(replayed, 20)
    assert (result.decision_id, result.choice, result.answered_by) == (
        shown.decision_id,
        "wanderer",
        "bo",
    )
    assert len(await client.list_decisions(run.run_id)) == 1
    await again.close()


async def test_a_replay_that_asks_something_else_under_a_stored_key_is_refused(
    client: Client,
) -> None:
    run, answered = await answered_once(client, "replay-differs")
    again = await restarted(client, run)
    with pytest.raises(FailedPreconditionError) as refused:
        await asyncio.wait_for(again.ask("Ship it?", ["yes", "no"]), 20)
    assert answered.decision_id in str(refused.value)
    assert "replay-differs:1" in str(refused.value)
    assert len(await client.list_decisions(run.run_id)) == 1
    # The refusal is the question's alone: the reporter goes on.
    await again.complete()
    await again.close()
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def test_a_replayed_ask_where_the_first_process_reported_something_else_is_refused(
    client: Client,
) -> None:
    run = await client.start_run("campaign", key_prefix="replay-metric")
    await run.metrics({"companies_found": 3})
    await run.flush()

    again = await restarted(client, run)
    with pytest.raises(FailedPreconditionError, match="not a decision"):
        await asyncio.wait_for(asking(again), 20)
    assert await client.list_decisions(run.run_id) == []
    await again.close()


async def test_a_process_that_attaches_under_an_earlier_key_prefix_without_replaying_is_told(
    client: Client,
) -> None:
    """README's "continue a run" with the first process's key_prefix and no replay: the new
    process's first event reuses the key of the first process's first event. Its complete()
    was answered as a duplicate of that event, and the run stayed RUNNING with nothing said."""
    run = await client.start_run("campaign", key_prefix="continued")
    await run.metrics({"companies_found": 3})
    await run.flush()

    again = await restarted(client, run)
    held = r"'continued:1' already holds event 3 .* a metrics_update, not a run_completed"
    with pytest.raises(FailedPreconditionError, match=held):
        await asyncio.wait_for(again.complete(), 20)
    assert (await client.get_run(run.run_id)).status == RunStatus.RUNNING
    await again.close()
    # Attached with a fresh key_prefix, the same process finishes the run.
    fresh = await client.attach_run(run.run_id)
    await fresh.complete()
    await fresh.close()
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def wait_for_open(client: Client, run_id: str) -> list[Decision]:
    """The run's open decisions, once there is one."""
    for _ in range(2000):
        found = await client.list_decisions(run_id, state=DecisionState.OPEN)
        if found:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError("no decision opened")


async def test_a_question_another_reporter_asked_and_got_answered_is_answered_not_refused(
    client: Client,
) -> None:
    """Two agents of a team attach to one run and reach the same checkpoint. The second,
    attached before the first asked, asked once the answer was in: ask() returned the answer,
    yet its question was sent too, refused as a second decision 'approve', and complete()
    raised that refusal after the run's end was stored (found in review)."""
    first = await client.start_run("shared-question")
    await first.flush()
    second = await client.attach_run(first.run_id)
    await second.metrics({"agents": 2})
    await second.flush()  # its report stream is open and hears the run's decisions
    asking = asyncio.create_task(first.ask("Approve?", ["yes", "no"], decision_id="approve"))
    await open_decision(client, first.run_id, "approve")
    await client.submit_decision(first.run_id, "approve", "yes", answered_by="alice")
    assert (await asyncio.wait_for(asking, 20)).choice == "yes"
    await second.metrics({"agents": 2})
    await second.flush()  # the closed decision, pushed before this ack, is heard

    with pytest.raises(FailedPreconditionError, match="as another question"):
        await second.ask("Ship it?", ["yes", "no"], decision_id="approve")
    again = await asyncio.wait_for(second.ask("Approve?", ["yes", "no"], decision_id="approve"), 20)
    assert (again.choice, again.answered_by) == ("yes", "alice")
    await asyncio.wait_for(second.complete("done"), 20)  # raised the refusal
    await second.close()
    await first.close()
    kinds = [event.kind for event in await log_of(client, first.run_id)]
    assert kinds.count(runstream.EventKind.DECISION_REQUESTED) == 1
    assert (await client.get_run(first.run_id)).status == RunStatus.SUCCEEDED


async def test_the_same_question_another_reporter_asked_and_is_open_waits_for_its_answer(
    client: Client,
) -> None:
    """Two agents attached to one run reach the same checkpoint while its question is open:
    the second, attached before the first asked, was refused ("already has a decision"),
    every time it asked, where one attached after it was asked waits for the answer (found
    in review)."""
    first = await client.start_run("shared-question")
    await first.flush()
    second = await client.attach_run(first.run_id)
    asking = asyncio.create_task(first.ask("Approve?", ["yes", "no"], decision_id="approve"))
    await open_decision(client, first.run_id, "approve")
    waiting = asyncio.create_task(second.ask("Approve?", ["yes", "no"], decision_id="approve"))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # waits, not refused
    await client.submit_decision(first.run_id, "approve", "yes", answered_by="alice")
    assert (await asyncio.wait_for(asking, 20)).choice == "yes"
    again = await asyncio.wait_for(waiting, 20)
    assert (again.choice, again.answered_by) == ("yes", "alice")
    await asyncio.wait_for(second.complete("done"), 20)  # no refusal left over
    await second.close()
    await first.close()
    kinds = [event.kind for event in await log_of(client, first.run_id)]
    assert kinds.count(runstream.EventKind.DECISION_REQUESTED) == 1
    assert (await client.get_run(first.run_id)).status == RunStatus.SUCCEEDED


async def test_a_question_past_the_runs_limit_of_open_decisions_raises_resource_exhausted(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ask() raises the server's refusal as the SDK's error, with its reason, rather than
    waiting for an answer to a question that was never stored."""
    monkeypatch.setattr(state, "MAX_OPEN_DECISIONS", 1)
    run = await client.start_run("campaign")
    first = asking(run, decision_id="first")
    await open_decision(client, run.run_id, "first")
    with pytest.raises(runstream.ResourceExhaustedError) as info:
        await asyncio.wait_for(run.ask("And this?", ["a", "b"], decision_id="second"), 20)
    assert info.value.details.reason == "DECISION_LIMIT"
    assert "has 1 open decisions, the most a run may have open" in str(info.value)
    await client.submit_decision(run.run_id, "first", "veteran")
    assert (await asyncio.wait_for(first, 20)).choice == "veteran"


async def test_run_details_hold_every_open_decision_also_past_get_runs_budget(
    client: Client,
) -> None:
    """Found in review: GetRun holds the open decisions its 512 KiB budget has room for, and
    get_run_details (so `runstream get` and the live view) showed 2 of a run's 3."""
    run = await client.start_run("wf")
    await run.flush()
    for decision_id in ("q0", "q1", "q2"):
        await client.raw_report_service.AppendEvents(question(run.run_id, decision_id, large=True))
    got = await client.raw_run_service.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))
    assert (len(got.open_decisions), got.open_decisions_left_out) == (2, 1)
    details = await client.get_run_details(run.run_id)
    assert [d.decision_id for d in details.open_decisions] == ["q0", "q1", "q2"]
    assert len(details.open_decisions[2].options) == 100
    await client.submit_decision(run.run_id, "q0", "a")
    details = await client.get_run_details(run.run_id)
    assert [d.decision_id for d in details.open_decisions] == ["q1", "q2"]
    await run.close()
