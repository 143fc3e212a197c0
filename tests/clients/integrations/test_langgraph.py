"""A real LangGraph graph reported through RunstreamCallbackHandler to a real server.

The graph has three nodes: ``research`` asks a fake chat model (langchain-core's
GenericFakeChatModel, no network), which answers with a tool call; ``tools`` runs it
(LangGraph's ToolNode); ``write`` stops at ``interrupt()`` to ask which tone to take, then
streams the model's text token by token. The interrupt is answered by a viewer through
DecisionService, and the graph finishes with that answer. Smaller graphs show what a watcher
sees of a failing node, tool or model call, of a plain (non-chat) LLM, and of retries: a
RunnableRetry's, a node's retry policy's and a model call's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
import runstream
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    FakeListChatModelError,
    GenericFakeChatModel,
)
from langchain_core.language_models.llms import LLM, create_base_retry_decorator
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import ToolException, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from runstream import ActivityType, DecisionPrompt, EventKind
from runstream.integrations._run_calls import StepRoom
from runstream.integrations.langchain import RunstreamCallbackHandler
from runstream_server.app import RunstreamServer
from tenacity import wait_fixed

from tests.clients.support import eventually, proxy_to, step_changes, step_durations, until

SUMMARY = "Runstream watches agent runs live"


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    tone: str
    summary: str


@tool
def search(query: str) -> str:
    """Searches the web."""
    return f"3 results for {query}"


def build_graph() -> Any:
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[{"name": "search", "args": {"query": "runstream"}, "id": "c1"}],
                ),
                SUMMARY,
            ]
        )
    )

    async def research(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def write(state: State) -> State:
        tone = interrupt(
            {
                "question": "Which tone should the summary take?",
                "options": ["formal", "playful"],
                "default": "formal",
                "context": {"audience": "developers"},
            }
        )
        text = ""
        async for chunk in model.astream(state["messages"]):
            text += str(chunk.content)
        return {"tone": tone, "summary": text}

    graph = StateGraph(State)
    graph.add_node("research", research)
    graph.add_node("tools", ToolNode([search]))
    graph.add_node("write", write)
    graph.add_edge(START, "research")
    graph.add_edge("research", "tools")
    graph.add_edge("tools", "write")
    graph.add_edge("write", END)
    return graph.compile(checkpointer=InMemorySaver())


def linear_graph(*nodes: Callable[[State], Awaitable[State]]) -> Any:
    """A graph that runs ``nodes`` one after another, each named after its function."""
    graph = StateGraph(State)
    previous = START
    for node in nodes:
        graph.add_node(node.__name__, node)
        graph.add_edge(previous, node.__name__)
        previous = node.__name__
    graph.add_edge(previous, END)
    return graph


async def answer_questions(
    client: runstream.Client,
    run_id: str,
    choose: Callable[[runstream.Decision], str],
    count: int = 1,
) -> None:
    """Answers the run's next `count` questions as a viewer, each with `choose(decision)`."""
    async with client.interact([run_id], viewer="ana") as interaction:
        async for update in interaction:
            if isinstance(update, DecisionPrompt):
                decision = update.decision
                await interaction.answer(run_id, decision.decision_id, choose(decision))
                count -= 1
                if count == 0:
                    return


async def answer_first_question(client: runstream.Client, run_id: str, choice: str) -> None:
    await answer_questions(client, run_id, lambda decision: choice)


async def test_a_langgraph_run_streams_steps_text_tools_and_asks_at_its_interrupt(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-summary")
        watched = asyncio.create_task(_collect(client, run.run_id))
        answering = asyncio.create_task(answer_first_question(client, run.run_id, "playful"))
        async with run:
            handler = RunstreamCallbackHandler(run)
            result = await handler.run_graph(
                build_graph(),
                {"messages": [HumanMessage("Summarise Runstream")]},
                config={"configurable": {"thread_id": "t1"}},
            )
            await run.complete(summary=result["summary"])
        await asyncio.wait_for(answering, 30)
        events = await asyncio.wait_for(watched, 30)
        steps = await client.list_steps(run.run_id)

    # The graph finished with the human's answer.
    assert result["tone"] == "playful"
    assert result["summary"] == SUMMARY

    # The nodes are the run's steps, in order, each started and completed once.
    step_events = [
        (e.kind, e.payload.step_id)  # type: ignore[union-attr]
        for e in events
        if e.kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED, EventKind.STEP_FAILED)
    ]
    assert step_events == [
        (kind, node)
        for node in ("research", "tools", "write")
        for kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED)
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [
        ("research", "SUCCEEDED"),
        ("tools", "SUCCEEDED"),
        ("write", "SUCCEEDED"),
    ]

    # The interrupt was a decision of the run, answered by ana, while "write" was running.
    kinds = [e.kind for e in events]
    requested = kinds.index(EventKind.DECISION_REQUESTED)
    resolved = kinds.index(EventKind.DECISION_RESOLVED)
    write_started = step_events.index((EventKind.STEP_STARTED, "write"))
    assert events[requested].payload.prompt == "Which tone should the summary take?"  # type: ignore[union-attr]
    assert [o.value for o in events[requested].payload.options] == ["formal", "playful"]  # type: ignore[union-attr]
    assert events[requested].payload.context["audience"] == "developers"  # type: ignore[union-attr]
    assert events[resolved].payload.choice == "playful"  # type: ignore[union-attr]
    assert events[resolved].payload.answered_by == "ana"  # type: ignore[union-attr]
    started_write_at = next(
        i
        for i, e in enumerate(events)
        if e.kind == EventKind.STEP_STARTED and e.payload.step_id == "write"  # type: ignore[union-attr]
    )
    assert started_write_at < requested < resolved < kinds.index(EventKind.RUN_COMPLETED)
    assert write_started == 4

    # The streamed text, token by token, is the model's output, as the "write" agent's.
    texts = [e.payload for e in events if e.kind == EventKind.TEXT_DELTA]
    assert {t.agent_id for t in texts} == {"write"}  # type: ignore[union-attr]
    assert "".join(t.delta for t in texts) == SUMMARY  # type: ignore[union-attr]
    assert len(texts) > 2 and texts[-1].final  # type: ignore[union-attr]
    assert {t.step_id for t in texts} == {"write"}  # type: ignore[union-attr]

    # The tool call is agent activity of the "tools" node, with its input and output.
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    assert [(a.agent_id, a.activity, a.data["tool"]) for a in activity] == [  # type: ignore[union-attr]
        ("tools", ActivityType.STARTED, "search"),
        ("tools", ActivityType.COMPLETED, "search"),
    ]
    assert json.loads(activity[0].data["input"]) == {"query": "runstream"}  # type: ignore[union-attr]
    assert activity[1].data["output"] == "3 results for runstream"  # type: ignore[union-attr]

    # The model of each agent that called one is a model allocation.
    allocations = {
        (e.payload.agent_id, e.payload.model)  # type: ignore[union-attr]
        for e in events
        if e.kind == EventKind.MODEL_ALLOCATION
    }
    assert allocations == {
        ("research", "GenericFakeChatModel"),
        ("write", "GenericFakeChatModel"),
    }


async def test_a_failing_node_fails_its_step_with_the_error(server: RunstreamServer) -> None:
    def explode(state: State) -> State:
        raise ValueError("the source is unreachable")

    graph = StateGraph(State)
    graph.add_node("fetch", explode)
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", END)
    compiled = graph.compile()

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-failing")
        handler = RunstreamCallbackHandler(run)
        with pytest.raises(ValueError, match="unreachable"):
            async with run:
                await compiled.ainvoke({"messages": []}, {"callbacks": [handler]})
        steps = await client.list_steps(run.run_id)
        final = await client.get_run(run.run_id)

    assert [(s.step_id, s.status.name) for s in steps] == [("fetch", "FAILED")]
    assert steps[0].error is not None
    assert steps[0].error.message == "ValueError: the source is unreachable"
    assert final.status.name == "FAILED"


def _flaky(failures: int, result: Callable[[str], str] = str) -> Callable[[str], str]:
    """A function whose first ``failures`` calls time out; then it returns ``result(text)``."""
    attempts = 0

    def flaky(text: str) -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= failures:
            raise ConnectionError(f"attempt {attempts} timed out")
        return result(text)

    return flaky


async def test_a_plain_langchain_chain_is_one_step_with_its_retries(
    server: RunstreamServer,
) -> None:
    chain = (
        RunnableLambda(_flaky(2, str.upper))
        .with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
        .with_config(run_name="shout")
    )

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langchain-plain")
        async with run:
            handler = RunstreamCallbackHandler(run, agent="shouter")
            assert await chain.ainvoke("hello", {"callbacks": [handler]}) == "HELLO"
            await handler.flush()
            await run.complete()
        events = [e async for e in client.list_events(run.run_id)]

    recoveries = [e.payload for e in events if e.kind == EventKind.ERROR_RECOVERY]
    assert [(r.attempt, r.error_message) for r in recoveries] == [  # type: ignore[union-attr]
        (1, "ConnectionError: attempt 1 timed out"),
        (2, "ConnectionError: attempt 2 timed out"),
    ]
    chain_step = next(e.payload.step_id for e in events if e.kind == EventKind.STEP_STARTED)  # type: ignore[union-attr]
    assert {r.step_id for r in recoveries} == {chain_step}  # type: ignore[union-attr]
    step_events = [
        (e.kind.name, e.payload.step_id)  # type: ignore[union-attr]
        for e in events
        if e.kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED)
    ]
    assert step_events == [("STEP_STARTED", "shout"), ("STEP_COMPLETED", "shout")]
    # The handler's agent is the step's, as its model and text events have it (the step
    # started with none; found in review).
    started = next(e.payload for e in events if e.kind == EventKind.STEP_STARTED)
    assert started.agent == "shouter"  # type: ignore[union-attr]


async def test_a_retrying_chain_inside_a_node_recovers_in_the_nodes_step(
    server: RunstreamServer,
) -> None:
    fetching = RunnableLambda(_flaky(1)).with_retry(
        stop_after_attempt=3, wait_exponential_jitter=False
    )

    async def fetch(state: State) -> State:
        return {"summary": await fetching.ainvoke("fetched")}

    result, events, steps = await _run_graph(server, _chain(("fetch", fetch)))

    assert result["summary"] == "fetched"
    recoveries = [e.payload for e in events if e.kind == EventKind.ERROR_RECOVERY]
    assert [(r.attempt, r.step_id, r.affected_agents, r.error_message) for r in recoveries] == [  # type: ignore[union-attr]
        (1, "fetch", ("fetch",), "ConnectionError: attempt 1 timed out")
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [("fetch", "SUCCEEDED")]


async def test_a_model_retried_by_with_retry_names_the_error_of_its_failed_attempt(
    server: RunstreamServer,
) -> None:
    """A failed model call ends in on_llm_error, not on_chain_error: its retry said only
    "the previous attempt failed" (found in review), a chain's named its error."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class FlakyModel(FakeListChatModel):
        calls: int = 0

        def _call(self, *args: Any, **kwargs: Any) -> str:
            self.calls += 1
            if self.calls == 1:
                raise ValueError("the model hiccuped")
            return super()._call(*args, **kwargs)

    model = FlakyModel(responses=["fine"]).with_retry(
        stop_after_attempt=2, wait_exponential_jitter=False
    )

    async def write(state: State) -> State:
        return {"summary": str((await model.ainvoke("hi")).content)}

    result, events, steps = await _run_graph(server, _chain(("write", write)))

    assert result["summary"] == "fine"
    recoveries = [e.payload for e in events if e.kind == EventKind.ERROR_RECOVERY]
    assert [(r.attempt, r.step_id, r.error_message) for r in recoveries] == [  # type: ignore[union-attr]
        (1, "write", "ValueError: the model hiccuped")
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [("write", "SUCCEEDED")]


async def _collect(client: runstream.Client, run_id: str) -> list[runstream.Event]:
    return [event async for event in client.watch(run_id)]


async def test_a_node_retried_by_its_retry_policy_recovers_in_the_same_step(
    server: RunstreamServer,
) -> None:
    from langgraph.types import RetryPolicy

    calls = 0

    async def fetch(state: State) -> State:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("the source timed out")
        return {"summary": "fetched"}

    graph = StateGraph(State)
    graph.add_node("fetch", fetch, retry_policy=RetryPolicy(initial_interval=0.01, jitter=False))
    graph.add_edge(START, "fetch")
    graph.add_edge("fetch", END)

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-retry")
        async with run:
            handler = RunstreamCallbackHandler(run)
            result = await handler.run_graph(graph.compile(), {"messages": []})
            await run.complete()
        events = [e async for e in client.list_events(run.run_id)]
        steps = await client.list_steps(run.run_id)

    assert result["summary"] == "fetched"
    story = [
        (
            e.kind.name,
            getattr(e.payload, "attempt", None)
            if e.kind is EventKind.ERROR_RECOVERY
            else getattr(e.payload, "step_id", None),
        )
        for e in events
        if e.kind
        in (
            EventKind.STEP_STARTED,
            EventKind.STEP_FAILED,
            EventKind.STEP_COMPLETED,
            EventKind.ERROR_RECOVERY,
        )
    ]
    assert story == [
        ("STEP_STARTED", "fetch"),
        ("STEP_FAILED", "fetch"),
        ("ERROR_RECOVERY", 1),
        ("STEP_STARTED", "fetch"),
        ("STEP_FAILED", "fetch"),
        ("ERROR_RECOVERY", 2),
        ("STEP_STARTED", "fetch"),
        ("STEP_COMPLETED", "fetch"),
    ]
    recovery = next(e.payload for e in events if e.kind == EventKind.ERROR_RECOVERY)
    assert recovery.error_message == "ConnectionError: the source timed out"  # type: ignore[union-attr]
    assert recovery.affected_agents == ("fetch",)  # type: ignore[union-attr]
    assert recovery.step_id == "fetch"  # type: ignore[union-attr]
    assert [(s.step_id, s.status.name, s.attempts) for s in steps] == [("fetch", "SUCCEEDED", 3)]


async def test_parallel_copies_of_a_node_each_report_into_their_own_step(
    server: RunstreamServer,
) -> None:
    """Three ``worker`` copies at once (a Send fan-out), each streaming a model's text: each
    copy's text belongs to its own step, not to the copy that started last."""
    from langgraph.types import Send

    class Fan(TypedDict, total=False):
        topics: list[str]
        drafts: Annotated[list[str], lambda a, b: a + b]

    async def worker(state: dict[str, str]) -> Fan:
        model = GenericFakeChatModel(messages=iter([f"draft about {state['topic']} ends"]))
        text = ""
        async for chunk in model.astream([HumanMessage(state["topic"])]):
            text += str(chunk.content)
            await asyncio.sleep(0.01)  # the copies' tokens interleave
        return {"drafts": [text]}

    graph = StateGraph(Fan)
    graph.add_node("worker", worker)
    graph.add_conditional_edges(
        START, lambda state: [Send("worker", {"topic": t}) for t in state["topics"]], ["worker"]
    )
    graph.add_edge("worker", END)
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-fan-out")
        async with run:
            handler = RunstreamCallbackHandler(run)
            await handler.run_graph(graph.compile(), {"topics": ["ants", "bees", "cats"]})
            await run.complete()
        events = [e async for e in client.list_events(run.run_id)]

    started = {
        e.payload.step_id: e.seq  # type: ignore[union-attr]
        for e in events
        if e.kind == EventKind.STEP_STARTED
    }
    texts: dict[str, tuple[set[str], str]] = {}
    for delta in _texts(events):
        steps, text = texts.get(delta.message_id, (set(), ""))
        texts[delta.message_id] = (steps | {delta.step_id}, text + delta.delta)
    by_step = {next(iter(steps)): text.split()[2] for steps, text in texts.values()}
    assert all(len(steps) == 1 for steps, _ in texts.values())
    assert sorted(by_step) == sorted(started) == ["worker", "worker-2", "worker-3"]
    assert sorted(by_step.values()) == ["ants", "bees", "cats"]


async def test_each_turn_of_a_chat_with_a_new_handler_is_a_new_step(
    server: RunstreamServer,
) -> None:
    """A chat app: one run per conversation, the graph invoked once per turn, a new handler
    each turn. The node that ran last turn is a new step, so the run completes, and the
    tokens its model says it used add up in the run's metrics over every turn (the model's
    ``usage_metadata`` was not reported; found in review)."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-chat")
        async with run:
            for turn in range(3):
                usage = UsageMetadata(
                    input_tokens=100, output_tokens=10 + turn, total_tokens=110 + turn
                )
                reply = AIMessage(content=f"answer {turn}", usage_metadata=usage)
                model = GenericFakeChatModel(messages=iter([reply]))

                async def respond(state: State, model: Any = model) -> State:
                    return {"summary": str((await model.ainvoke("question")).content)}

                handler = RunstreamCallbackHandler(run)
                graph = _chain(("respond", respond))
                if turn == 0:
                    result = await handler.run_graph(graph, {})
                else:
                    result = await graph.ainvoke({}, {"callbacks": [handler]})
                    await handler.flush()
                assert result["summary"] == f"answer {turn}"
            await run.complete()
        final = await client.get_run(run.run_id)
        events = [e async for e in client.list_events(run.run_id)]

    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.name, s.status.name) for s in final.steps] == [
        ("respond", "respond", "SUCCEEDED"),
        ("respond-2", "respond", "SUCCEEDED"),
        ("respond-3", "respond", "SUCCEEDED"),
    ]
    assert [(t.step_id, t.delta) for t in _texts(events)] == [
        ("respond", "answer 0"),
        ("respond-2", "answer 1"),
        ("respond-3", "answer 2"),
    ]
    assert final.metrics == {
        "input_tokens": 300.0,
        "output_tokens": 33.0,
        "total_tokens": 333.0,
        "model_calls": 3.0,
    }


@pytest.mark.parametrize("through", ["run_graph", "callbacks"])
async def test_a_node_named_like_another_nodes_rerun_gets_a_step_of_its_own(
    server: RunstreamServer, through: str
) -> None:
    """``draft`` runs twice and the next node is named ``draft-2``. run_graph knows the
    graph's nodes: ``draft-2`` keeps its name and draft's rerun skips it. Through plain
    callbacks the nodes are known only as they run: the ids differ, and stay unique."""

    class Drafts(TypedDict, total=False):
        drafts: int

    graph = StateGraph(Drafts)
    graph.add_node("draft", lambda state: {"drafts": state.get("drafts", 0) + 1})
    graph.add_node("draft-2", lambda state: {})
    graph.add_edge(START, "draft")
    graph.add_conditional_edges(
        "draft", lambda state: "draft" if state["drafts"] < 2 else "draft-2", ["draft", "draft-2"]
    )
    graph.add_edge("draft-2", END)
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-names")
        async with run:
            handler = RunstreamCallbackHandler(run)
            if through == "run_graph":
                await handler.run_graph(graph.compile(), {})
            else:
                await graph.compile().ainvoke({}, {"callbacks": [handler]})
                await handler.flush()
            await run.complete()
        final = await client.get_run(run.run_id)

    assert final.status.name == "SUCCEEDED"
    expected = ["draft-3", "draft-2"] if through == "run_graph" else ["draft-2", "draft-2-2"]
    assert [(s.step_id, s.name, s.status.name) for s in final.steps] == [
        ("draft", "draft", "SUCCEEDED"),
        (expected[0], "draft", "SUCCEEDED"),
        (expected[1], "draft-2", "SUCCEEDED"),
    ]


async def test_a_run_cancelled_mid_node_raises_and_warns_of_nothing(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelling is an expected end: the graph stops with RunCancelledError, and the
    reports the cancel cut short are no warning ("reporting to Runstream failed")."""
    working = asyncio.Event()

    async def slow(state: State) -> State:
        working.set()
        await asyncio.sleep(30)
        return {"summary": "never"}

    caplog.set_level(logging.INFO, logger="runstream")
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-cancel")
        handler = RunstreamCallbackHandler(run)

        async def cancel_when_working() -> None:
            await working.wait()
            await handler.flush()
            await client.cancel_run(run.run_id, reason="stop now")

        cancelling = asyncio.create_task(cancel_when_working())
        with pytest.raises(runstream.RunCancelledError, match="stop now"):
            async with run:
                await handler.run_graph(_chain(("slow", slow), ("after", slow)), {})
        await cancelling
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_producer_stopped_mid_node_cancels_the_run_and_fails_no_step_itself(
    server: RunstreamServer,
) -> None:
    """Ctrl-C (the producer's task cancelled) while a node works: the run is cancelled, and
    the node's step ends as an operator's cancel ends it, not as a failure of the node."""
    working = asyncio.Event()

    async def slow(state: State) -> State:
        working.set()
        await asyncio.sleep(30)
        return {}

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-ctrl-c")

        async def produce() -> None:
            async with run:
                handler = RunstreamCallbackHandler(run)
                await handler.run_graph(_chain(("quick", lambda state: {}), ("slow", slow)), {})

        producing = asyncio.create_task(produce())
        await working.wait()
        producing.cancel()
        await asyncio.gather(producing, return_exceptions=True)
        final = await client.get_run(run.run_id)
        events = [e async for e in client.list_events(run.run_id)]

    assert final.status.name == "CANCELLED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("quick", "SUCCEEDED"),
        ("slow", "FAILED"),
    ]
    error = final.steps[1].error
    assert error is not None
    assert (error.code, error.message) == (
        "RUN_CANCELLED",
        "the run was cancelled: producer task cancelled",
    )
    # The producer reported no failure of its own: the run ended cancelled, nothing failed.
    failed = [e for e in events if e.kind == EventKind.STEP_FAILED]
    assert [e.payload.error.code for e in failed] == ["RUN_CANCELLED"]  # type: ignore[union-attr]
    assert final.health.name != "FAILING"


async def test_a_graph_cancelled_mid_node_fails_its_step_as_cancelled_and_the_run_goes_on(
    server: RunstreamServer,
) -> None:
    """The task running a graph is cancelled while a node works (a user's stop button, a
    timeout), and the producer goes on with the run: the node did not finish, so a watcher
    sees its step fail as cancelled, not complete, and the next graph's step completes, and
    so does the run."""
    working = asyncio.Event()

    async def slow(state: State) -> State:
        working.set()
        await asyncio.sleep(30)
        return {}

    async def after(state: State) -> State:
        return {"summary": "done"}

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-cancelled-node")
        watched = asyncio.create_task(_collect(client, run.run_id))
        async with run:
            handler = RunstreamCallbackHandler(run)
            graph = _chain(("quick", lambda state: {}), ("slow", slow))
            graphing = asyncio.create_task(graph.ainvoke({}, config={"callbacks": [handler]}))
            await working.wait()
            graphing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await graphing
            await _chain(("after", after)).ainvoke({}, config={"callbacks": [handler]})
            await handler.flush()
            await run.complete()
        events = await asyncio.wait_for(watched, 30)
        final = await client.get_run(run.run_id)

    steps = step_changes(events)
    assert steps == [
        ("STEP_STARTED", "quick"),
        ("STEP_COMPLETED", "quick"),
        ("STEP_STARTED", "slow"),
        ("STEP_FAILED", "slow"),
        ("STEP_STARTED", "after"),
        ("STEP_COMPLETED", "after"),
    ]
    failed = next(e.payload for e in events if e.kind == EventKind.STEP_FAILED)
    assert (failed.error.code, failed.error.message) == (  # type: ignore[union-attr]
        "cancelled",
        "cancelled before it finished",
    )
    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("quick", "SUCCEEDED"),
        ("slow", "FAILED"),
        ("after", "SUCCEEDED"),
    ]


async def test_a_paused_run_holds_the_graph_at_its_next_node(server: RunstreamServer) -> None:
    gate = asyncio.Event()
    entered: list[str] = []

    async def first(state: State) -> State:
        entered.append("first")
        await gate.wait()
        return {}

    async def second(state: State) -> State:
        entered.append("second")
        return {"summary": "done"}

    graph = linear_graph(first, second)

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-pause")
        seen: list[runstream.Event] = []

        async def follow() -> None:
            async for event in client.watch(run.run_id):
                seen.append(event)

        following = asyncio.create_task(follow())
        async with run:
            handler = RunstreamCallbackHandler(run)
            graph_run = asyncio.create_task(handler.run_graph(graph.compile(), {"messages": []}))
            await eventually(lambda: entered == ["first"])
            await client.pause_run(run.run_id, reason="hold on")
            await eventually(lambda: run.paused)
            gate.set()
            # The first node finishes; the graph then waits at the second node's start.
            await eventually(
                lambda: any(
                    e.kind == EventKind.STEP_COMPLETED and e.payload.step_id == "first"  # type: ignore[union-attr]
                    for e in seen
                )
            )
            await asyncio.sleep(0.2)
            assert entered == ["first"]
            await client.resume_run(run.run_id)
            result = await asyncio.wait_for(graph_run, 30)
            await run.complete()
        await asyncio.wait_for(following, 30)
    assert entered == ["first", "second"]
    assert result["summary"] == "done"


async def test_a_graph_goes_on_while_the_server_is_out_of_reach_and_its_buffer_full(
    server: RunstreamServer,
) -> None:
    """The reporter buffers at most two events and the server is out of reach: the graph's
    nodes run all the same (only a pause holds a node's start), and once the server is back
    every step is reported."""
    ran: list[str] = []

    def records(name: str) -> Callable[[State], State]:
        def node(state: State) -> State:
            ran.append(name)
            return {}

        return node

    graph = _chain(*((name, records(name)) for name in ("n0", "n1", "n2")))
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=None) as producer,
        runstream.connect(server.target) as client,
    ):
        run = await producer.start_run("langgraph-offline", max_buffered=2)
        async with run:
            await run.flush()
            proxy.cut()
            handler = RunstreamCallbackHandler(run)
            graph_run = asyncio.create_task(graph.ainvoke({}, {"callbacks": [handler]}))
            try:
                await eventually(lambda: graph_run.done(), within=10)
                assert ran == ["n0", "n1", "n2"]
                assert await client.list_steps(run.run_id) == []  # nothing reached the server
            finally:
                proxy.restore()
            await graph_run
            await handler.flush()
            await run.complete()
        final = await client.get_run(run.run_id)

    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("n0", "SUCCEEDED"),
        ("n1", "SUCCEEDED"),
        ("n2", "SUCCEEDED"),
    ]


async def test_two_interrupts_at_once_are_two_questions_each_answer_to_its_node(
    server: RunstreamServer,
) -> None:
    class Votes(TypedDict, total=False):
        legal: str
        brand: str

    def reviewer(field: str) -> Any:
        def review(state: Votes) -> Votes:
            return {field: interrupt({"question": f"{field} review?", "options": ["ok", "no"]})}

        return review

    graph = StateGraph(Votes)
    graph.add_node("legal", reviewer("legal"))
    graph.add_node("brand", reviewer("brand"))
    graph.add_edge(START, "legal")
    graph.add_edge(START, "brand")
    graph.add_edge("legal", END)
    graph.add_edge("brand", END)

    async def answer_both(client: runstream.Client, run_id: str) -> None:
        """Both questions are open at once (a human sees both), then both are answered."""
        answers = {"legal review?": "no", "brand review?": "ok"}
        asked: list[runstream.Decision] = []
        async with client.interact([run_id], viewer="ana") as interaction:
            async for update in interaction:
                if isinstance(update, DecisionPrompt):
                    asked.append(update.decision)
                    if len(asked) == len(answers):
                        break
            for decision in asked:
                await interaction.answer(run_id, decision.decision_id, answers[decision.prompt])

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-parallel-reviews")
        answering = asyncio.create_task(answer_both(client, run.run_id))
        async with run:
            handler = RunstreamCallbackHandler(run)
            result = await asyncio.wait_for(
                handler.run_graph(
                    graph.compile(checkpointer=InMemorySaver()),
                    {},
                    config={"configurable": {"thread_id": "reviews"}},
                ),
                30,
            )
            await run.complete()
        await asyncio.wait_for(answering, 30)
        decisions = await client.list_decisions(run.run_id)
        steps = await client.list_steps(run.run_id)

    assert result == {"legal": "no", "brand": "ok"}
    assert sorted((d.prompt, d.choice) for d in decisions) == [
        ("brand review?", "ok"),
        ("legal review?", "no"),
    ]
    assert sorted((s.step_id, s.status.name) for s in steps) == [
        ("brand", "SUCCEEDED"),
        ("legal", "SUCCEEDED"),
    ]


class Pick(TypedDict, total=False):
    picked: Any


def _asking(question: Any) -> Any:
    """A one-node graph whose node resumes with the answer to `question` and keeps it."""

    def ask(state: Pick) -> Pick:
        return {"picked": interrupt(question)}

    graph = StateGraph(Pick)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile(checkpointer=InMemorySaver())


async def _answered(
    server: RunstreamServer, question: Any, choice: str | None
) -> tuple[Any, list[runstream.Step], list[runstream.Decision]]:
    """Runs `_asking(question)` on a new run, a viewer answering `choice` (None: skipping,
    "": nobody answers); returns the graph's output, the run's steps and decisions."""

    async def answer(client: runstream.Client, run_id: str) -> None:
        async with client.interact([run_id], viewer="ana") as interaction:
            async for update in interaction:
                if isinstance(update, DecisionPrompt):
                    decision_id = update.decision.decision_id
                    if choice is None:
                        await interaction.answer(run_id, decision_id, skip=True)
                    else:
                        await interaction.answer(run_id, decision_id, choice)
                    return

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-question")
        answering = asyncio.create_task(answer(client, run.run_id)) if choice != "" else None
        async with run:
            handler = RunstreamCallbackHandler(run)
            config = {"configurable": {"thread_id": "question"}}
            result = await handler.run_graph(_asking(question), {}, config=config)
            await run.complete()
        if answering is not None:
            await asyncio.wait_for(answering, 30)
        return result, await client.list_steps(run.run_id), await client.list_decisions(run.run_id)


@pytest.mark.parametrize("ending", ["skipped", "timed-out"])
async def test_a_question_skipped_or_timed_out_resumes_the_graph_with_none(
    server: RunstreamServer, ending: str
) -> None:
    question: dict[str, Any] = {"question": "Publish now?", "options": ["yes", "no"]}
    if ending == "skipped":
        question["can_skip"] = True
    else:
        question["timeout"] = 0.5
    result, steps, decisions = await _answered(
        server, question, None if ending == "skipped" else ""
    )
    assert result == {"picked": None}
    assert [(s.step_id, s.status.name) for s in steps] == [("ask", "SUCCEEDED")]
    assert [d.outcome.name for d in decisions] == [
        "SKIPPED" if ending == "skipped" else "TIMED_OUT"
    ]


@pytest.mark.parametrize(
    ("question", "choice", "picked", "outcome"),
    [
        ({"question": "Go?", "timeout": timedelta(seconds=0.3)}, "", None, "TIMED_OUT"),
        ({"question": "Go?", "timeout": 0}, "", None, "TIMED_OUT"),
        ({"question": "Go?", "timeout": -5, "default": "approve"}, "", "approve", "DEFAULTED"),
        ({"question": "Go?", "timeout": 10**9}, "approve", "approve", "ANSWERED"),
        ({"question": "Go?", "default": "maybe"}, "reject", "reject", "ANSWERED"),
        ({"question": "Go?", "options": [1, 2], "default": 0, "timeout": -5}, "", 0, "DEFAULTED"),
        ({"question": "Go?", "options": "publish"}, "publish", "publish", "ANSWERED"),
        (
            {"question": "Which?", "options": [{"label": "A"}, {"label": "B"}]},
            "option-2",
            {"label": "B"},
            "ANSWERED",
        ),
    ],
    ids=["timedelta", "zero", "negative", "past-366-days", "default-no-option",
         "default-fallback", "options-str", "options-without-value"],
)  # fmt: skip
async def test_interrupt_fields_langgraph_takes_are_fitted_not_refused(
    server: RunstreamServer,
    question: dict[str, Any],
    choice: str,
    picked: Any,
    outcome: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A timeout of 0, a negative one, one past 366 days or a timedelta, and a default none
    of the options are: LangGraph takes them, and the question refused them, failing the node
    and the run unasked. Options given as a string were asked letter by letter, option
    mappings without a value all resumed the graph with "" (found in review). A default none
    of the options was left out, so the graph resumed with None at the deadline."""
    result, steps, decisions = await _answered(server, question, choice)
    assert result == {"picked": picked}
    assert [(s.step_id, s.status.name) for s in steps] == [("ask", "SUCCEEDED")]
    assert [d.outcome.name for d in decisions] == [outcome]
    if question.get("options") == "publish":
        assert [o.value for o in decisions[0].options] == ["publish"]
    # What was fitted is said in the user's terms: it read "timeout of 1e+09s is asked as
    # 3.16224e+07s" (found in review).
    fitted = {10**9: "of 1e+09 s is past 366 days: it waits 366 days",
              -5: "of -5 s closes its question at once"}  # fmt: skip
    if (said := fitted.get(question.get("timeout"))) is not None:
        assert f"an interrupt's timeout {said}" in caplog.messages


@pytest.mark.parametrize("question", [None, {}, ""], ids=["none", "empty-mapping", "empty-text"])
async def test_an_interrupt_that_asks_nothing_says_the_graph_is_waiting_for_input(
    server: RunstreamServer, question: Any
) -> None:
    """``interrupt(None)`` asked the person "None", while ``interrupt({})`` and
    ``interrupt("")`` said the graph was waiting (found in review)."""
    result, _, decisions = await _answered(server, question, "approve")
    assert result == {"picked": "approve"}
    assert [(d.prompt, [o.value for o in d.options]) for d in decisions] == [
        ("The graph is waiting for input", ["approve", "reject"])
    ]


async def test_options_that_are_not_text_resume_the_graph_with_the_option_itself(
    server: RunstreamServer,
) -> None:
    question = {"question": "How many drafts?", "options": [1, 2, 3], "default": 2}
    result, _, decisions = await _answered(server, question, "3")
    assert result == {"picked": 3}
    assert [(d.choice, d.default_option) for d in decisions] == [("3", "2")]


async def test_what_else_an_interrupt_carries_is_the_questions_context(
    server: RunstreamServer,
) -> None:
    """LangGraph's documented interrupts, {"question": ..., "tool_call": ...} and
    {"text_to_revise": ...}, reached the human as a bare prompt: every key the handler did
    not know was dropped, and with it what there was to review (found in review)."""
    call = {"name": "book_meeting", "args": {"when": "Tuesday 10:00"}}
    question = {
        "question": "Is this correct?",
        "tool_call": call,
        "text_to_revise": "Dear team, ...",
        "context": {"requested_by": "ana"},
    }
    result, _, decisions = await _answered(server, question, "approve")
    assert result == {"picked": "approve"}
    [decision] = decisions
    assert decision.prompt == "Is this correct?"
    shown = {key: decision.context[key] for key in decision.context if key != "interrupt_id"}
    assert shown == {
        "requested_by": "ana",
        "text_to_revise": "Dear team, ...",
        "tool_call": call,
        "step_id": "ask",  # the handler's own
    }


@tool
def book_meeting(when: str) -> str:
    """Books a meeting once a human approved it."""
    if interrupt({"question": f"Book the meeting on {when}?"}) != "approve":
        return "not booked"
    return f"booked for {when}"


async def test_a_tool_waiting_for_an_answer_has_not_failed(server: RunstreamServer) -> None:
    """interrupt() inside a tool (LangGraph's "approve before the tool acts") showed as
    "book_meeting failed" with LangGraph's GraphInterrupt as the error, while the tool only
    waited for the human (found in review)."""
    tool_call = {"name": "book_meeting", "args": {"when": "Tuesday"}, "id": "c1"}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=[tool_call])]))

    async def plan(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("tools", ToolNode([book_meeting]))
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "tools")
    graph.add_edge("tools", END)
    compiled = graph.compile(checkpointer=InMemorySaver())

    async def approve(client: runstream.Client, run_id: str) -> None:
        async with client.interact([run_id], viewer="ana") as interaction:
            async for update in interaction:
                if isinstance(update, DecisionPrompt):
                    await interaction.answer(run_id, update.decision.decision_id, "approve")
                    return

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-tool-approval")
        approving = asyncio.create_task(approve(client, run.run_id))
        async with run:
            handler = RunstreamCallbackHandler(run)
            config = {"configurable": {"thread_id": "tool-approval"}}
            result = await handler.run_graph(compiled, {"messages": []}, config=config)
            await run.complete()
        await asyncio.wait_for(approving, 30)
        events = [e async for e in client.watch(run.run_id)]
        steps = await client.list_steps(run.run_id)
    assert result["messages"][-1].content == "booked for Tuesday"
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    said = [(a.activity, a.message) for a in activity]  # type: ignore[union-attr]
    assert (ActivityType.FAILED, "book_meeting failed") not in said, said
    assert (ActivityType.PROGRESS, "book_meeting waits for input") in said, said
    assert said[-1] == (ActivityType.COMPLETED, "book_meeting done"), said
    assert [(s.step_id, s.status.name) for s in steps] == [
        ("plan", "SUCCEEDED"),
        ("tools", "SUCCEEDED"),
    ]


async def test_an_interrupt_a_question_cannot_hold_as_given_is_asked_fitted(
    server: RunstreamServer,
) -> None:
    """A long prompt, options that are model-written text (a line break, past 256
    characters) and a datetime in the context: LangGraph takes them, and the question the
    SDK would make of them was refused, failing the node and the run unasked (found in
    review). Asked fitted, the answer resumes the graph with the option as given."""
    headline = "Launch week:\nthree ideas"
    long_option = "x" * 300
    at = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    question = {
        "question": "Approve this draft?\n\n" + "draft " * 4000,
        "options": ["publish", headline, long_option],
        "default": headline,
        "context": {"at": at, "sizes": (1, 2.5), "nested": {"when": at}},
    }
    result, steps, decisions = await _answered(server, question, "option-2")

    assert result == {"picked": headline}
    assert [(s.step_id, s.status.name) for s in steps] == [("ask", "SUCCEEDED")]
    [decision] = decisions
    assert len(decision.prompt) == 16_384 and decision.prompt.endswith("\u2026")
    assert decision.prompt.startswith("Approve this draft?\n\ndraft draft")
    assert [(o.value, o.label) for o in decision.options] == [
        ("publish", ""),
        ("option-2", "Launch week: three ideas"),
        ("option-3", "x" * 255 + "\u2026"),
    ]
    assert decision.options[1].description == headline
    assert decision.options[2].description == long_option
    assert decision.default_option == "option-2"
    assert decision.context["at"] == str(at)
    assert decision.context["sizes"] == [1, 2.5]
    assert decision.context["nested"] == {"when": str(at)}


async def test_interrupt_options_a_question_cannot_hold_twice_or_at_all_are_fitted(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two options asked with one text (``1`` and ``"1"``), a description past 4,096
    characters and options past the 100th failed the question, and the run (found in
    review): the second text is asked as option-N, the description cut, the rest left out
    with a WARNING."""
    options: list[Any] = [1, "1", {"value": "a", "description": "d" * 5000}]
    options += [f"o{i}" for i in range(150)]
    with caplog.at_level(logging.WARNING, logger="runstream.integrations"):
        result, _, decisions = await _answered(
            server, {"question": "Pick", "options": options, "default": "1"}, "option-2"
        )

    assert result == {"picked": "1"}  # the string, as the interrupt gave it
    [decision] = decisions
    assert len(decision.options) == 100
    assert [(o.value, o.label) for o in decision.options[:3]] == [
        ("1", ""),
        ("option-2", "1"),
        ("a", ""),
    ]
    assert len(decision.options[2].description) == 4096
    assert decision.default_option == "1"  # the first option with that text
    assert "offers 153 options; a question holds 100" in caplog.text


async def test_a_graph_without_a_checkpointer_stopped_by_an_interrupt_fails_the_run(
    server: RunstreamServer,
) -> None:
    """LangGraph stops at the interrupt and returns it: run_graph returned that as the
    graph's output, asked nothing, and the run succeeded with the nodes after it never run
    (found in review). It says what is missing instead."""

    def ask(state: Pick) -> Pick:
        return {"picked": interrupt("Publish?")}

    graph = StateGraph(Pick)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-no-checkpointer")
        with pytest.raises(ValueError, match="no checkpointer to resume it from"):
            async with run:
                await RunstreamCallbackHandler(run).run_graph(graph.compile(), {})
                await run.complete()
        final = await client.get_run(run.run_id)
        decisions = await client.list_decisions(run.run_id)
    assert final.status.name == "FAILED"
    assert decisions == []


async def test_a_producer_that_restarts_waits_for_the_question_its_graph_asked_before(
    server: RunstreamServer,
) -> None:
    """The graph's checkpoints outlive the producer (a durable checkpointer; here one
    InMemorySaver for both): the new producer attaches, runs the graph on, meets the same
    interrupt and waits for the question already open instead of asking it twice."""
    graph = _asking({"question": "Publish now?", "options": ["yes", "no"]})
    config = {"configurable": {"thread_id": "restart"}}
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-restart")
        first = asyncio.create_task(RunstreamCallbackHandler(run).run_graph(graph, {}, config))

        async def asked() -> list[runstream.Decision]:
            return [d for d in await client.list_decisions(run.run_id) if d.is_open]

        async def any_asked() -> bool:
            return bool(await asked())

        await until(any_asked)
        first.cancel()  # the producer dies while it waits for the answer
        await asyncio.gather(first, return_exceptions=True)
        await run.close()
        attached = await client.attach_run(run.run_id)
        async with attached:
            again = asyncio.create_task(
                RunstreamCallbackHandler(attached).run_graph(graph, None, config)
            )
            await asyncio.sleep(0.5)  # time enough to ask a second question, if it would
            [open_question] = await asked()
            await client.submit_decision(run.run_id, open_question.decision_id, "no")
            result = await asyncio.wait_for(again, 30)
            await attached.complete()
        decisions = await client.list_decisions(run.run_id)
    assert result == {"picked": "no"}
    assert [(d.choice, d.decision_id.startswith("interrupt-")) for d in decisions] == [("no", True)]


@pytest.mark.parametrize("prefix", ["producer-1", None], ids=["same-keys", "new-keys"])
@pytest.mark.parametrize("at_restart", ["open", "answered"])
async def test_a_producer_restarted_without_checkpoints_meets_its_question_again(
    server: RunstreamServer, at_restart: str, prefix: str | None
) -> None:
    """The checkpoints died with the producer (an InMemorySaver each), and the new producer
    attaches (with the same key_prefix, or a new one) and runs the graph from its start.
    LangGraph gives the interrupt a new id; it is the same question all the same: the new
    producer waits for the one asked before (still open, or already answered) instead of
    asking it again. The node it left running goes on as the same attempt of its step: with
    new keys it was started again (attempt 2; found in review)."""
    finishing = asyncio.Event()

    def build() -> Any:
        model = GenericFakeChatModel(messages=iter(["one two three"]))

        async def first(state: State) -> State:
            return {"summary": str((await model.ainvoke("plan")).content)}

        def ask(state: State) -> State:
            return {"tone": interrupt({"question": "Go on?", "options": ["yes", "no"]})}

        async def last(state: State) -> State:
            finishing.set()
            if not restarted:
                await asyncio.sleep(30)  # the producer dies here
            return {"summary": "done"}

        graph = StateGraph(State)
        for name, node in (("first", first), ("ask", ask), ("last", last)):
            graph.add_node(name, node)
        graph.add_edge(START, "first")
        graph.add_edge("first", "ask")
        graph.add_edge("ask", "last")
        graph.add_edge("last", END)
        return graph.compile(checkpointer=InMemorySaver())

    restarted = False
    config = {"configurable": {"thread_id": "restart"}}
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-restart-fresh", key_prefix="producer-1")

        async def asked() -> list[runstream.Decision]:
            return await client.list_decisions(run.run_id)

        async def any_asked() -> bool:
            return bool(await asked())

        async def first_producer() -> Any:
            # Its handler lives in the task that dies, as a producer's does: a handler whose
            # own task lives on would report the node the cancel cut off as cancelled.
            return await RunstreamCallbackHandler(run).run_graph(build(), {}, config)

        first = asyncio.create_task(first_producer())
        await until(any_asked)
        if at_restart == "answered":
            [question] = await asked()
            await client.submit_decision(run.run_id, question.decision_id, "no")
            await finishing.wait()
        first.cancel()  # the producer dies
        await asyncio.gather(first, return_exceptions=True)
        await run.close()

        restarted = True
        attached = await client.attach_run(run.run_id, key_prefix=prefix)
        async with attached:
            again = asyncio.create_task(
                RunstreamCallbackHandler(attached).run_graph(build(), {}, config)
            )
            if at_restart == "open":
                await asyncio.sleep(0.5)  # time enough to ask a second question, if it would
                [open_question] = [d for d in await asked() if d.is_open]
                await client.submit_decision(run.run_id, open_question.decision_id, "no")
            result = await asyncio.wait_for(again, 10)
            await attached.complete()
        decisions = await client.list_decisions(run.run_id)
        final = await client.get_run(run.run_id)

    assert result["tone"] == "no"
    assert [(d.prompt, d.choice, d.context["step_id"]) for d in decisions] == [
        ("Go on?", "no", "ask")
    ]
    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name, s.attempts) for s in final.steps] == [
        (step_id, "SUCCEEDED", 1) for step_id in ("first", "ask", "last")
    ]


async def test_a_node_that_asks_the_same_question_twice_asks_two_questions(
    server: RunstreamServer,
) -> None:
    def confirm(state: Pick) -> Pick:
        question = {"question": "Sure?", "options": ["yes", "no"]}
        return {"picked": [interrupt(question), interrupt(question)]}

    graph = StateGraph(Pick)
    graph.add_node("confirm", confirm)
    graph.add_edge(START, "confirm")
    graph.add_edge("confirm", END)

    choices = iter(["yes", "no"])
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-twice")
        answering = asyncio.create_task(
            answer_questions(client, run.run_id, lambda decision: next(choices), 2)
        )
        async with run:
            handler = RunstreamCallbackHandler(run)
            config = {"configurable": {"thread_id": "twice"}}
            compiled = graph.compile(checkpointer=InMemorySaver())
            result = await asyncio.wait_for(handler.run_graph(compiled, {}, config), 10)
            await run.complete()
        await asyncio.wait_for(answering, 10)
        decisions = await client.list_decisions(run.run_id)

    assert result == {"picked": ["yes", "no"]}
    assert [(d.prompt, d.choice) for d in decisions] == [("Sure?", "yes"), ("Sure?", "no")]
    assert len({d.decision_id for d in decisions}) == 2


async def test_a_graph_run_again_from_its_start_does_not_start_its_finished_steps_again(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The graph's checkpoints died with the producer (an InMemorySaver each): the new
    producer attaches and runs the graph from its start, LangGraph replays the nodes that
    finished, and only the node that never ran becomes a new step."""
    caplog.set_level(logging.INFO, logger="runstream")

    def writes(name: str) -> Callable[[State], State]:
        return lambda state: {"summary": name}

    nodes = [("plan", writes("plan")), ("draft", writes("draft")), ("publish", writes("done"))]
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-replay")
        handler = RunstreamCallbackHandler(run)
        await _chain(*nodes[:2]).ainvoke({"messages": []}, {"callbacks": [handler]})
        await handler.flush()
        await run.close()  # the producer dies after two nodes, its run still running
        attached = await client.attach_run(run.run_id)
        async with attached:
            handler = RunstreamCallbackHandler(attached)
            result = await _chain(*nodes).ainvoke({"messages": []}, {"callbacks": [handler]})
            await handler.flush()
            await attached.complete()
        events = [e async for e in client.list_events(run.run_id)]
        final = await client.get_run(run.run_id)

    assert result["summary"] == "done"
    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name, s.attempts) for s in final.steps] == [
        ("plan", "SUCCEEDED", 1),
        ("draft", "SUCCEEDED", 1),
        ("publish", "SUCCEEDED", 1),
    ]
    started = [e.payload.step_id for e in events if e.kind == EventKind.STEP_STARTED]
    assert started == ["plan", "draft", "publish"]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "plan replays step plan" in caplog.text


async def test_a_graph_run_again_after_a_node_failed_runs_that_step_again(
    server: RunstreamServer,
) -> None:
    """A failed step is not finished: the node that failed before the producer died runs
    again as the step's next attempt (it was skipped as finished, and stayed FAILED in a run
    that succeeded)."""

    def fails(state: State) -> State:
        raise RuntimeError("the model timed out")

    plan: tuple[str, Any] = ("plan", lambda state: {"summary": "plan"})
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-replay-failed")
        handler = RunstreamCallbackHandler(run)
        with pytest.raises(RuntimeError):
            await _chain(plan, ("draft", fails)).ainvoke({"messages": []}, {"callbacks": [handler]})
        await handler.flush()
        await run.close()  # the producer dies, its run still running
        attached = await client.attach_run(run.run_id)
        async with attached:
            handler = RunstreamCallbackHandler(attached)
            draft: tuple[str, Any] = ("draft", lambda state: {"summary": "draft"})
            await _chain(plan, draft).ainvoke({"messages": []}, {"callbacks": [handler]})
            await handler.flush()
            await attached.complete()
        final = await client.get_run(run.run_id)

    assert [(s.step_id, s.status.name, s.attempts) for s in final.steps] == [
        ("plan", "SUCCEEDED", 1),
        ("draft", "SUCCEEDED", 2),
    ]


# --- what a failing tool or model call, a plain LLM and a model's own retries look like -----


async def _run_graph(
    server: RunstreamServer, graph: Any, *, fails_with: type[BaseException] | None = None
) -> tuple[Any, list[runstream.Event], list[runstream.Step]]:
    """Runs ``graph`` through a handler on a new run; returns its output (None when it raised
    ``fails_with``), the run's events and its steps."""
    result: Any = None
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-calls")
        handler = RunstreamCallbackHandler(run)
        inputs = {"messages": [HumanMessage("Summarise Runstream")]}
        if fails_with is None:
            async with run:
                result = await handler.run_graph(graph, inputs)
                await run.complete()
        else:
            with pytest.raises(fails_with):
                async with run:
                    await handler.run_graph(graph, inputs)
        events = [e async for e in client.list_events(run.run_id)]
        steps = await client.list_steps(run.run_id)
    return result, events, steps


def _chain(*nodes: tuple[str, Any]) -> Any:
    """A graph of these nodes, one after the other."""
    graph = StateGraph(State)
    previous = START
    for name, node in nodes:
        graph.add_node(name, node)
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile()


def _texts(events: list[runstream.Event]) -> list[Any]:
    return [e.payload for e in events if e.kind == EventKind.TEXT_DELTA]


@tool
def lookup(query: str) -> str:
    """Looks a query up in the index."""
    raise ConnectionError("the index is offline")


@pytest.mark.parametrize("handled", [False, True], ids=["node-raises", "node-handles-it"])
async def test_a_failing_tool_is_failed_activity_and_its_node_fails_unless_it_handles_it(
    server: RunstreamServer, handled: bool
) -> None:
    call = {"name": "lookup", "args": {"query": "runstream"}, "id": "c1"}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=[call])]))

    async def research(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = _chain(
        ("research", research), ("tools", ToolNode([lookup], handle_tool_errors=handled))
    )
    result, events, steps = await _run_graph(
        server, graph, fails_with=None if handled else ConnectionError
    )

    # The tool call is the "tools" agent's activity: started, then failed with the error.
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    assert [(a.agent_id, a.step_id, a.activity, a.message) for a in activity] == [  # type: ignore[union-attr]
        ("tools", "tools", ActivityType.STARTED, "calling lookup"),
        ("tools", "tools", ActivityType.FAILED, "lookup failed"),
    ]
    assert activity[0].data["tool_call_id"] == "c1"  # type: ignore[union-attr]
    assert activity[1].data == {  # type: ignore[union-attr]
        "tool": "lookup",
        "tool_call_id": "c1",  # the end names its call: ends of calls at once may cross
        "error": "ConnectionError: the index is offline",
    }

    # The step follows its node: ToolNode may hand the error to the model as the tool's
    # answer (the node completes), or raise it (the node's step fails with it).
    statuses = [(s.step_id, s.status.name) for s in steps]
    if handled:
        assert statuses == [("research", "SUCCEEDED"), ("tools", "SUCCEEDED")]
        assert result["messages"][-1].status == "error"
    else:
        assert statuses == [("research", "SUCCEEDED"), ("tools", "FAILED")]
        assert steps[1].error is not None
        assert steps[1].error.message == "ConnectionError: the index is offline"


async def test_a_tool_that_handles_its_own_error_is_failed_activity(
    server: RunstreamServer,
) -> None:
    """A ToolException the tool turns into its answer (handle_tool_error): the call failed,
    though LangChain ends it as a success whose output is the error."""

    @tool
    def search_index(query: str) -> str:
        """Looks a query up in the index."""
        raise ToolException("the index is offline")

    search_index.handle_tool_error = True
    call = {"name": "search_index", "args": {"query": "runstream"}, "id": "c1"}
    model = GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=[call])]))

    async def research(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = _chain(("research", research), ("tools", ToolNode([search_index])))
    _, events, steps = await _run_graph(server, graph)
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    assert [(a.activity, a.message) for a in activity] == [  # type: ignore[union-attr]
        (ActivityType.STARTED, "calling search_index"),
        (ActivityType.FAILED, "search_index failed"),
    ]
    assert activity[1].data == {  # type: ignore[union-attr]
        "tool": "search_index",
        "tool_call_id": "c1",
        "error": "the index is offline",
    }
    assert [(s.step_id, s.status.name) for s in steps] == [
        ("research", "SUCCEEDED"),
        ("tools", "SUCCEEDED"),
    ]


def _refusing() -> Iterator[AIMessage]:
    """A fake chat model's replies when its endpoint refuses every call."""
    raise ConnectionError("the model endpoint refused the call")
    yield AIMessage("")


async def test_a_chat_model_call_that_fails_fails_its_node_without_text(
    server: RunstreamServer,
) -> None:
    model = GenericFakeChatModel(messages=_refusing())

    async def research(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    _, events, steps = await _run_graph(
        server, _chain(("research", research)), fails_with=ConnectionError
    )

    allocations = [e.payload for e in events if e.kind == EventKind.MODEL_ALLOCATION]
    assert [(a.agent_id, a.model) for a in allocations] == [("research", "GenericFakeChatModel")]  # type: ignore[union-attr]
    # The call opened no message: no text, not even a final delta.
    assert _texts(events) == []
    assert [(s.step_id, s.status.name) for s in steps] == [("research", "FAILED")]
    assert steps[0].error is not None
    assert steps[0].error.message == "ConnectionError: the model endpoint refused the call"


async def test_a_chat_model_that_fails_mid_stream_closes_its_message_and_fails_its_node(
    server: RunstreamServer,
) -> None:
    # Streams one character a token, and raises instead of the tenth.
    model = FakeListChatModel(responses=["Runstream watches runs"], error_on_chunk_number=9)

    async def write(state: State) -> State:
        text = ""
        async for chunk in model.astream(state["messages"]):
            text += str(chunk.content)
        return {"summary": text}

    _, events, steps = await _run_graph(
        server, _chain(("write", write)), fails_with=FakeListChatModelError
    )

    # The tokens that came are one message of the "write" agent, closed by an empty final
    # delta, so a viewer does not wait for the rest.
    texts = _texts(events)
    assert {(t.agent_id, t.step_id, t.message_id) for t in texts} == {
        ("write", "write", texts[0].message_id)
    }
    assert [(t.delta, t.final) for t in texts] == [
        *((c, False) for c in "Runstream"),
        ("", True),
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [("write", "FAILED")]
    assert steps[0].error is not None
    assert steps[0].error.code == "FakeListChatModelError"
    # The error has no message: its type alone (as the run's own failure says it).
    assert steps[0].error.message == "FakeListChatModelError"


async def test_a_node_that_fails_while_it_reads_a_stream_closes_the_message_before_its_step(
    server: RunstreamServer,
) -> None:
    """The node's own code raises between two tokens: the model call ends only when its
    abandoned stream is collected, after the node; the message still closes before the
    step fails, not after."""
    model = FakeListChatModel(responses=["Runstream watches runs"])

    async def write(state: State) -> State:
        async for chunk in model.astream(state["messages"]):
            if chunk.content == "s":
                raise RuntimeError("the node gave up")
        return {}

    _, events, _ = await _run_graph(server, _chain(("write", write)), fails_with=RuntimeError)
    order = [
        "final" if e.kind == EventKind.TEXT_DELTA and e.payload.final else e.kind.name  # type: ignore[union-attr]
        for e in events
        if e.kind in (EventKind.TEXT_DELTA, EventKind.STEP_FAILED)
    ]
    assert order[-2:] == ["final", "STEP_FAILED"]


async def test_a_chat_model_call_that_did_not_stream_is_its_reply_as_one_final_text_delta(
    server: RunstreamServer,
) -> None:
    model = FakeListChatModel(responses=["Runstream watches runs"])

    async def write(state: State) -> State:
        return {"messages": [await model.ainvoke(state["messages"])]}

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        _, events, steps = await _run_graph(server, _chain(("write", write)))

    assert [(t.agent_id, t.step_id, t.delta, t.final) for t in _texts(events)] == [
        ("write", "write", "Runstream watches runs", True)
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [("write", "SUCCEEDED")]
    # The reply's text is read as langchain-core 1.x offers it, not by its deprecated call.
    assert [str(w.message) for w in warned if "deprecated" in str(w.message)] == []


async def test_a_plain_llm_call_is_a_model_allocation_and_one_final_text_delta(
    server: RunstreamServer,
) -> None:
    llm = FakeListLLM(responses=["1. what it watches 2. who answers"])

    async def outline(state: State) -> State:
        return {"summary": await llm.ainvoke("Outline a summary of Runstream")}

    result, events, steps = await _run_graph(server, _chain(("outline", outline)))

    assert result["summary"] == "1. what it watches 2. who answers"
    allocations = [e.payload for e in events if e.kind == EventKind.MODEL_ALLOCATION]
    assert [(a.agent_id, a.model, a.reasoning) for a in allocations] == [  # type: ignore[union-attr]
        ("outline", "FakeListLLM", "fakelist model")
    ]
    # A call that did not stream is its whole text as one final delta of the node's agent.
    assert [(t.agent_id, t.step_id, t.delta, t.final) for t in _texts(events)] == [
        ("outline", "outline", "1. what it watches 2. who answers", True)
    ]
    assert [(s.step_id, s.status.name) for s in steps] == [("outline", "SUCCEEDED")]


def _retrying(run_manager: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """LangChain's retry decorator for model calls, as provider integrations use it. It waits
    seconds between attempts; a hundredth here."""
    decorator = create_base_retry_decorator(
        [ConnectionError], max_retries=3, run_manager=run_manager
    )
    return lambda call: decorator(call).retry_with(wait=wait_fixed(0.01))


class BusyLLM(LLM):
    """A provider-style LLM whose endpoint is busy for the first two attempts of a call; the
    call retries with LangChain's retry decorator. ``retry_async`` retries in ``_acall`` (an
    async callback manager); otherwise ``_acall`` runs ``_call`` on a worker thread, which
    retries there (a sync one)."""

    retry_async: bool
    attempts: int = 0

    @property
    def _llm_type(self) -> str:
        return "busy"

    def _attempt(self) -> str:
        self.attempts += 1
        if self.attempts < 3:
            raise ConnectionError(f"attempt {self.attempts}: the endpoint is busy")
        return "ready"

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return str(_retrying(run_manager)(self._attempt)())

    async def _acall(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        if not self.retry_async:
            return await super()._acall(prompt, stop, run_manager, **kwargs)

        async def attempt() -> str:
            return self._attempt()

        return str(await _retrying(run_manager)(attempt)())


@pytest.mark.parametrize(
    ("retry_async", "errors"),
    [
        (
            False,
            [
                "ConnectionError: attempt 1: the endpoint is busy",
                "ConnectionError: attempt 2: the endpoint is busy",
            ],
        ),
        # LangChain reports these retries once tenacity has cleared the failed outcome.
        (True, ["retrying", "retrying"]),
    ],
    ids=["sync-retries", "async-retries"],
)
async def test_a_model_calls_own_retries_are_error_recoveries_of_its_agent(
    server: RunstreamServer, retry_async: bool, errors: list[str]
) -> None:
    llm = BusyLLM(retry_async=retry_async)

    async def ask(state: State) -> State:
        return {"summary": await llm.ainvoke("Is the endpoint ready?")}

    result, events, steps = await _run_graph(server, _chain(("ask", ask)))

    assert result["summary"] == "ready"
    # Each failed attempt of the call is an ErrorRecovery of the node's agent, numbered.
    recoveries = [e.payload for e in events if e.kind == EventKind.ERROR_RECOVERY]
    assert [(r.attempt, r.recovery_strategy, r.affected_agents) for r in recoveries] == [  # type: ignore[union-attr]
        (1, "retry", ("ask",)),
        (2, "retry", ("ask",)),
    ]
    assert [r.step_id for r in recoveries] == ["ask", "ask"]  # type: ignore[union-attr]
    assert [r.error_message for r in recoveries] == errors  # type: ignore[union-attr]
    assert [(t.agent_id, t.delta, t.final) for t in _texts(events)] == [("ask", "ready", True)]
    assert [(s.step_id, s.status.name) for s in steps] == [("ask", "SUCCEEDED")]


async def test_a_handler_made_on_a_worker_thread_takes_the_runs_loop_as_its_error_says(
    server: RunstreamServer,
) -> None:
    """Code on a worker thread (no running loop) that makes a handler is told to pass the
    run's loop; doing so, a chain run on that thread reports its step to the run."""
    chain = RunnableLambda(str.upper).with_config(run_name="shout")

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langchain-thread")
        loop = asyncio.get_running_loop()
        async with run:
            with pytest.raises(RuntimeError, match="pass loop=") as refused:
                await asyncio.to_thread(RunstreamCallbackHandler, run)
            assert "event loop" in str(refused.value)

            def shout_on_thread() -> tuple[str, RunstreamCallbackHandler]:
                handler = RunstreamCallbackHandler(run, loop=loop)
                return str(chain.invoke("hello", {"callbacks": [handler]})), handler

            shouted, handler = await asyncio.to_thread(shout_on_thread)
            await handler.flush()
            await run.complete()
        steps = await client.list_steps(run.run_id)

    assert shouted == "HELLO"
    assert [(s.step_id, s.status.name) for s in steps] == [("shout", "SUCCEEDED")]


async def test_a_graph_resumed_with_a_new_handler_finishes_the_interrupted_step(
    server: RunstreamServer,
) -> None:
    """A web app: one request runs the graph to its interrupt(), the next resumes it with
    Command(resume=...), each request with its own handler. The node that asked is one step,
    finished by the resumed run, not a second step beside one left running."""

    async def draft(state: State) -> State:
        return {"summary": "draft"}

    async def review(state: State) -> State:
        return {"tone": interrupt("Publish the draft?")}

    app = linear_graph(draft, review).compile(checkpointer=InMemorySaver())

    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-two-requests")
        thread: Any = {"configurable": {"thread_id": run.run_id}}
        async with run:
            first = RunstreamCallbackHandler(run)
            asked = await app.ainvoke({}, {**thread, "callbacks": [first]})
            await first.flush()
            assert "__interrupt__" in asked
            second = RunstreamCallbackHandler(run)
            done = await app.ainvoke(Command(resume="publish"), {**thread, "callbacks": [second]})
            await second.flush()
            await run.complete()
        events = [e async for e in client.list_events(run.run_id)]

    assert done["tone"] == "publish"
    step_events = [
        (e.kind.name, e.payload.step_id)  # type: ignore[union-attr]
        for e in events
        if e.kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED)
    ]
    assert step_events == [
        ("STEP_STARTED", "draft"),
        ("STEP_COMPLETED", "draft"),
        ("STEP_STARTED", "review"),
        ("STEP_COMPLETED", "review"),
    ]


async def test_a_graph_on_a_worker_thread_that_runs_on_while_paused_keeps_its_steps_times(
    server: RunstreamServer,
) -> None:
    """A pause cannot hold a synchronous graph on a worker thread (its callbacks run there,
    not on the run's loop): its nodes ran on, and the events queued behind the held start of
    the next node were stamped when sent after the resume, the second node's step lasting
    the pause and the third's 17 us (found in review). Each event carries the time its
    callback came."""

    def slow(state: State) -> State:
        time.sleep(0.4)
        return {}

    graph = _chain(("first", slow), ("second", slow), ("third", slow))
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-paused-thread")
        async with run:
            await run.flush()
            handler = RunstreamCallbackHandler(run)
            graph_run = asyncio.create_task(
                asyncio.to_thread(graph.invoke, {}, {"callbacks": [handler]})
            )
            await asyncio.sleep(0.2)  # the first node runs
            await client.pause_run(run.run_id)
            await asyncio.wait_for(graph_run, 10)  # it does not wait for the resume
            await asyncio.sleep(1.0)
            await client.resume_run(run.run_id)
            await handler.flush()
            await run.complete()
        steps = await client.list_steps(run.run_id)

    lasted = step_durations(steps)
    assert lasted.keys() == {"first", "second", "third"}, steps
    assert all(0.35 <= seconds < 1.2 for seconds in lasted.values()), lasted


class ToolCallingModel(GenericFakeChatModel):
    """A fake chat model create_agent can bind tools to: it answers its scripted messages."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


@pytest.mark.parametrize("mode", ["batched", "per_call"])
async def test_langchains_human_in_the_loop_middleware_asks_a_question_per_tool_call(
    server: RunstreamServer, mode: str
) -> None:
    """LangChain's create_agent with HumanInTheLoopMiddleware: its interrupt holds the tool
    calls of a model turn and resumes with ``{"decisions": [...]}``. It was asked as "The
    graph is waiting for input" and resumed with the string "approve", which the middleware
    cannot read, so the agent failed. Each call is a question now, answered in its shape."""
    pytest.importorskip("langchain.agents.middleware")
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware

    done: list[str] = []

    @tool
    def delete_file(path: str) -> str:
        """Deletes a file."""
        done.append(f"deleted {path}")
        return "deleted"

    @tool
    def send_email(to: str) -> str:
        """Sends an email."""
        done.append(f"sent to {to}")
        return "sent"

    calls = [
        {"name": "delete_file", "args": {"path": "/tmp/draft"}, "id": "c1"},
        {"name": "send_email", "args": {"to": "ana@example.com"}, "id": "c2"},
    ]
    model = ToolCallingModel(
        messages=iter([AIMessage(content="", tool_calls=calls), AIMessage(content="done")])
    )
    agent = create_agent(
        model,
        tools=[delete_file, send_email],
        middleware=[
            HumanInTheLoopMiddleware(
                interrupt_on={"delete_file": True, "send_email": {"allowed_decisions": ["reject"]}},
                interrupt_mode=mode,  # type: ignore[arg-type]
            )
        ],
        checkpointer=InMemorySaver(),
    )
    choices = {"delete_file": "approve", "send_email": "reject"}
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langchain-hitl")
        answering = asyncio.create_task(
            answer_questions(client, run.run_id, lambda d: choices[d.context["tool"]], 2)
        )
        async with run:
            handler = RunstreamCallbackHandler(run)
            config = {"configurable": {"thread_id": "hitl"}}
            result = await asyncio.wait_for(
                handler.run_graph(agent, {"messages": [HumanMessage("tidy up")]}, config=config),
                30,
            )
            await run.complete()
        await asyncio.wait_for(answering, 30)
        decisions = await client.list_decisions(run.run_id)

    assert done == ["deleted /tmp/draft"]
    assert result["messages"][-1].content == "done"
    asked = {d.context["tool"]: d for d in decisions}
    assert [o.value for o in asked["delete_file"].options] == ["approve", "reject"]
    assert [o.value for o in asked["send_email"].options] == ["reject"]
    assert "delete_file" in asked["delete_file"].prompt  # the middleware's description
    assert asked["send_email"].context["args"] == {"to": "ana@example.com"}
    assert {d.decision_type for d in decisions} == {"langchain_tool_approval"}
    assert {d.choice for d in decisions} == {"approve", "reject"}


@pytest.mark.parametrize(
    ("allowed", "said"),
    [
        (["edit"], "allows only the decisions ['edit'], which need text"),
        (["approve", "edit"], "closed unanswered (timed out or skipped), and the tool allows no"),
    ],
)
async def test_a_tool_review_no_option_can_answer_says_so_instead_of_a_forbidden_decision(
    server: RunstreamServer, allowed: list[str], said: str
) -> None:
    """An edit-only review was offered approve and reject, both refused by the middleware,
    and a question that timed out resumed as reject where the tool allows none: the agent
    failed with the middleware's "Unexpected human decision" (found in review)."""
    pytest.importorskip("langchain.agents.middleware")
    from langchain.agents import create_agent
    from langchain.agents.middleware import HumanInTheLoopMiddleware

    published: list[str] = []

    @tool
    def publish_post(text: str) -> str:
        """Publishes a post."""
        published.append(text)
        return "published"

    call = {"name": "publish_post", "args": {"text": "hello"}, "id": "c1"}
    model = ToolCallingModel(messages=iter([AIMessage(content="", tool_calls=[call])]))
    review = {"publish_post": {"allowed_decisions": allowed}}
    agent = create_agent(
        model,
        tools=[publish_post],
        middleware=[HumanInTheLoopMiddleware(interrupt_on=review)],  # type: ignore[arg-type]
        checkpointer=InMemorySaver(),
    )
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langchain-hitl-edges")
        handler = RunstreamCallbackHandler(run, decision_timeout=0.3)
        config = {"configurable": {"thread_id": "edges"}}
        with pytest.raises(ValueError, match=re.escape(said)):
            await asyncio.wait_for(
                handler.run_graph(agent, {"messages": [HumanMessage("post")]}, config=config), 30
            )
        await run.close()
        decisions = await client.list_decisions(run.run_id)
    assert published == []
    if "edit" in allowed and "approve" not in allowed:
        assert decisions == []  # nothing asked that no answer could settle
    else:
        assert [o.value for o in decisions[0].options] == ["approve"]


async def test_a_child_run_started_in_a_node_is_reported_in_the_child_run_alone(
    server: RunstreamServer,
) -> None:
    """Company discovery: the outer graph's research node starts a child run and runs a
    sub-agent graph with the child's own handler. LangChain hands that nested invoke the
    node's callbacks, so the outer handler reported the child's nodes as steps of the
    parent run too: four steps where the parent had two (found in review)."""
    async with runstream.connect(server.target) as client:
        parent = await client.start_run("discovery")

        async def search(state: State) -> State:
            return {"summary": "3 companies"}

        async def rank(state: State) -> State:
            return {"summary": state["summary"] + ", ranked"}

        async def research(state: State) -> State:
            child = await client.start_run("discovery-agent", labels={"parent": parent.run_id})
            async with child:
                inner = linear_graph(search, rank).compile()
                found = await RunstreamCallbackHandler(child).run_graph(inner, {"messages": []})
                await child.complete()
            return {"summary": found["summary"], "tone": child.run_id}

        async def report(state: State) -> State:
            return {"summary": f"report: {state['summary']}"}

        async with parent:
            outer = linear_graph(research, report).compile()
            result = await RunstreamCallbackHandler(parent).run_graph(outer, {"messages": []})
            await parent.complete()
        parent_steps = [s.step_id for s in await client.list_steps(parent.run_id)]
        child_steps = [s.step_id for s in await client.list_steps(result["tone"])]

    assert result["summary"] == "report: 3 companies, ranked"
    assert parent_steps == ["research", "report"]
    assert child_steps == ["search", "rank"]


async def test_a_loop_past_the_runs_step_limit_is_told_as_one_alert_and_completes(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent loop whose node runs outgrow the run's step limit (2,000; 5 here): the steps
    the run has room for are reported whole, one alert tells watchers where reporting
    stopped, the graph finishes, and ``run.complete()`` raises nothing (found in review: every
    later node run logged two warnings, and complete() raised the first refused start). The
    last node is the first without room, so its refusal comes as the run completes: the
    alert still goes before the run's end."""
    from runstream_server.domain import steps

    monkeypatch.setattr(steps, "MAX_RUN_STEPS", 5)

    async def think(state: State) -> State:
        turn = len(state.get("messages", [])) + 1
        model = GenericFakeChatModel(messages=iter([f"thought number {turn}"]))
        reply = await model.ainvoke([HumanMessage("go on")])
        return {"messages": [reply]}

    graph = StateGraph(State)
    graph.add_node("think", think)
    graph.add_edge(START, "think")
    graph.add_conditional_edges(
        "think", lambda state: END if len(state["messages"]) >= 6 else "think", ["think", END]
    )
    caplog.set_level(logging.DEBUG, logger="runstream")
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langgraph-long-loop")
        async with run:
            handler = RunstreamCallbackHandler(run)
            result = await handler.run_graph(graph.compile(), {})
            # The chat's next turn, once the server answered, with a handler of its own: it
            # starts no step, and no second alert comes.
            await run.flush()
            again = RunstreamCallbackHandler(run)
            await again.run_graph(_chain(("think", think)), {"messages": []})
            await run.complete()
        final = await client.get_run(run.run_id)
        events = [e async for e in client.list_events(run.run_id)]

    assert len(result["messages"]) == 6
    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("think", "SUCCEEDED"),
        *((f"think-{n}", "SUCCEEDED") for n in range(2, 6)),
    ]
    alerts = [e.payload for e in events if e.kind == EventKind.ALERT]
    assert len(alerts) == 1
    alert = alerts[0]
    assert isinstance(alert, runstream.Alert)
    assert alert.code == "step_limit"
    # Under a key of its own: when the refusal comes is timing, and a replay's keys must
    # stay those of the first run (the alert took the counter's next).
    [keyed] = [e.idempotency_key for e in events if e.kind == EventKind.ALERT]
    assert keyed == f"{run.key_prefix}:step-limit"
    assert alert.message.startswith("no room for more steps: the work from step 'think-6' on")
    assert "has 5 steps, the most a run may have" in alert.message
    texts = {d.step_id: d.delta for d in _texts(events)}
    assert texts == {
        "think": "thought number 1",
        **{f"think-{n}": f"thought number {n}" for n in range(2, 6)},
    }
    warnings_logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_logged) == 1, warnings_logged
    assert "'think-6'" in warnings_logged[0]


def test_a_full_run_still_starts_again_a_step_it_has() -> None:
    """Once a run has no room for a new step, a step it has (planned, or started before) may
    start again, a failed one's next attempt: the server counts new steps only (found in
    review: every start was skipped, and the step stayed FAILED though its work succeeded).
    New steps are not started, and their reports skipped until the step's last."""
    room = StepRoom(["plan"])
    assert not room.no_room_for("draft")  # started while there was room
    assert room.refused("extra", for_room=True)  # the first without room: watchers are told
    assert not room.refused("extra-2", for_room=True)  # told once
    assert not room.no_room_for("plan") and not room.no_room_for("draft")
    assert room.no_room_for("extra-3")
    assert room.skips("extra-3") and not room.skips("draft")
    room.forget("extra-3")
    assert not room.skips("extra-3")


async def test_a_graph_invoked_synchronously_on_the_runs_loop_is_reported_before_its_end(
    server: RunstreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``graph.invoke()`` (not ``ainvoke``) called inside the producer's coroutine, as a
    notebook cell or an async web handler does, then ``run.complete()`` with no
    ``handler.flush()``. LangChain runs the async handler's callbacks on a thread of its own
    then, so they reach the run's loop only once the coroutine yields, after the run's end
    was queued: the run ended SUCCEEDED with no step and one warning (found in review). The
    run's end now waits for what its integrations were handed before it."""

    def draft(state: State) -> State:
        return {"summary": "a draft"}

    def polish(state: State) -> State:
        return {"summary": state["summary"].upper()}

    graph = StateGraph(State)
    graph.add_node("draft", draft)
    graph.add_node("polish", polish)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "polish")
    graph.add_edge("polish", END)
    caplog.set_level(logging.WARNING, logger="runstream")
    async with runstream.connect(server.target) as client:
        run = await client.start_run("notebook-cell")
        async with run:
            handler = RunstreamCallbackHandler(run)
            out = graph.compile().invoke({}, config={"callbacks": [handler]})
            await run.complete(summary=out["summary"])
        final = await client.get_run(run.run_id)
        events = [e async for e in client.list_events(run.run_id)]

    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("draft", "SUCCEEDED"),
        ("polish", "SUCCEEDED"),
    ]
    assert events[-1].kind == EventKind.RUN_COMPLETED
    assert [r.getMessage() for r in caplog.records] == []
