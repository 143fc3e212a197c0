"""The OpenAI Agents SDK reported through RunstreamProcessor to a real server.

The agents run on a custom offline ``Model`` that returns canned responses (no network) and,
like the SDK's own models, records each call in a generation span with its token usage. A
triage agent hands off to a writer, which calls a tool and then answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import runstream
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    ModelBehaviorError,
    ModelProvider,
    ModelResponse,
    RunConfig,
    Runner,
    Usage,
    function_tool,
    input_guardrail,
    set_trace_processors,
    trace,
)
from agents.models.interface import Model, ModelTracing
from agents.tracing import agent_span, function_span, generation_span
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel
from runstream import ActivityType, EventKind, RunCancelledError, Severity
from runstream.integrations.agui import AguiTranslator
from runstream.integrations.openai_agents import (
    RunstreamHooks,
    RunstreamModel,
    RunstreamModelProvider,
    RunstreamProcessor,
    runstream_trace,
)
from runstream_server.app import RunstreamServer

from tests.clients.support import eventually, step_changes, step_durations


class CannedModel(Model):
    """Answers each call with the next canned output, recording it in a generation span."""

    def __init__(self, name: str, outputs: list[list[ResponseOutputItem]]) -> None:
        self.name = name
        self.outputs = outputs

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        with generation_span(model=self.name, disabled=tracing.is_disabled()) as span:
            output = self.outputs.pop(0)
            span.span_data.output = [item.model_dump() for item in output]
            span.span_data.usage = {"input_tokens": 120, "output_tokens": 30}
            usage = Usage(requests=1, input_tokens=120, output_tokens=30, total_tokens=150)
            return ModelResponse(output=output, usage=usage, response_id=None)

    async def stream_response(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Streams the next canned output as the SDK's Chat Completions model does: its
        generation span's output is the whole final Response, dumped. The arguments are
        get_response's; the seventh is the tracing."""
        tracing: ModelTracing = args[6]
        with generation_span(model=self.name, disabled=tracing.is_disabled()) as span:
            async for event in self._streamed(span):
                yield event

    async def _streamed(self, span: Any) -> AsyncIterator[Any]:
        """What one streamed call yields inside its generation ``span``."""
        yield self._completed(span)

    def _completed(self, span: Any) -> ResponseCompletedEvent:
        """The next canned output as a streamed call's last event, recorded in its span."""
        response = Response(
            id="resp-1",
            created_at=0,
            model=self.name,
            object="response",
            output=self.outputs.pop(0),
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
            usage=ResponseUsage(
                input_tokens=120,
                output_tokens=30,
                total_tokens=150,
                input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            ),
        )
        span.span_data.output = [response.model_dump()]
        span.span_data.usage = {"input_tokens": 120, "output_tokens": 30}
        return ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=0
        )


class StreamingModel(CannedModel):
    """Streams one message's text in ``chunks``, a delta at a time as the SDK's models do;
    after the first, each waits for ``go``."""

    def __init__(self, name: str, chunks: list[str]) -> None:
        super().__init__(name, [[message("".join(chunks))]])
        self.model = name  # as the SDK's own models name theirs
        self.chunks = chunks
        self.go = asyncio.Event()

    async def _streamed(self, span: Any) -> AsyncIterator[Any]:
        for i, chunk in enumerate(self.chunks):
            if i:
                await self.go.wait()
            yield text_delta(chunk, i)
        yield self._completed(span)


class UntracedStreamingModel(StreamingModel):
    """Streams without a span of its own, as ``agents.testing.ScriptedModel`` (the README
    example's model) and many a hand-written model do."""

    async def stream_response(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for event in self._streamed(SimpleNamespace(span_data=SimpleNamespace())):
            yield event


def text_delta(text: str, sequence_number: int) -> ResponseTextDeltaEvent:
    """A delta of the message ``msg-1``, as a streamed call yields it."""
    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        delta=text,
        item_id="msg-1",
        output_index=0,
        content_index=0,
        sequence_number=sequence_number,
        logprobs=[],
    )


def tool_call(name: str, arguments: dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call",
        name=name,
        arguments=json.dumps(arguments),
        call_id=call_id,
        id=call_id,
        status="completed",
    )


def message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        type="message",
        id="msg-1",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


@function_tool
def lookup_order(order_id: str) -> str:
    """Looks up an order."""
    return f"order {order_id} shipped on Monday"


def order_writer() -> Agent[Any]:
    """An agent that looks order A-17 up with its tool, then answers."""
    return Agent(
        name="Writer",
        instructions="Answer the customer.",
        tools=[lookup_order],
        model=CannedModel(
            "canned-writer",
            [
                [tool_call("lookup_order", {"order_id": "A-17"}, "call-2")],
                [message("Your order A-17 shipped on Monday.")],
            ],
        ),
    )


async def report_agent(
    client: runstream.Client, processors: list[RunstreamProcessor], agent: Agent[Any]
) -> tuple[Any, str, list[runstream.Event]]:
    """Runs `agent` on a customer's question in a new run, with a processor of its own (the
    only one installed), and completes the run with the answer as its summary: the agent's
    result, the run's id and its events as a watcher got them."""
    run = await client.start_run("support-agents")
    watched = asyncio.create_task(_collect(client, run.run_id))
    async with run:
        processor = RunstreamProcessor(run)
        processors.append(processor)
        set_trace_processors([processor])
        result = await Runner.run(agent, "Where is my order A-17?")
        await processor.flush()
        await run.complete(summary=str(result.final_output))
    return result, run.run_id, await asyncio.wait_for(watched, 30)


async def run_raising(
    run: runstream.RunReporter,
    processors: list[RunstreamProcessor],
    agent: Agent[Any],
    prompt: str,
    error: type[BaseException],
) -> None:
    """Runs `agent` inside `run` with a processor of its own (the only one installed), and
    checks that `error` escapes Runner.run and the run's block, once all is reported."""
    processor = RunstreamProcessor(run)
    processors.append(processor)
    set_trace_processors([processor])
    with pytest.raises(error):
        async with run:
            try:
                await Runner.run(agent, prompt)
            finally:
                await processor.flush()


@pytest.fixture
def processors() -> Iterator[list[RunstreamProcessor]]:
    """Installs the test's processors as the only ones (no exporter, no network); restores
    an empty list afterwards."""
    installed: list[RunstreamProcessor] = []
    yield installed
    set_trace_processors([])


async def test_two_agents_a_handoff_and_a_tool_call_become_runstream_events(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    writer = order_writer()
    triage = Agent(
        name="Triage",
        instructions="Route the customer.",
        handoffs=[writer],
        model=CannedModel("canned-triage", [[tool_call("transfer_to_writer", {}, "call-1")]]),
    )

    async with runstream.connect(server.target) as client:
        result, run_id, events = await report_agent(client, processors, triage)
        final = await client.get_run(run_id)

    assert result.final_output == "Your order A-17 shipped on Monday."

    # Each agent is a step, in the order they worked.
    steps = step_changes(events)
    assert steps == [
        ("STEP_STARTED", "Triage"),
        ("STEP_COMPLETED", "Triage"),
        ("STEP_STARTED", "Writer"),
        ("STEP_COMPLETED", "Writer"),
    ]

    # The handoff names both agents; the tool call is the writer's activity.
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    handoff = activity[0]
    assert handoff.agent_id == "Triage"  # type: ignore[union-attr]
    assert handoff.data == {"handoff": True, "from_agent": "Triage", "to_agent": "Writer"}  # type: ignore[union-attr]
    assert handoff.step_id == "Triage"  # type: ignore[union-attr]
    tool_events = [(a.agent_id, a.activity, a.step_id) for a in activity[1:]]  # type: ignore[union-attr]
    assert tool_events == [
        ("Writer", ActivityType.STARTED, "Writer"),
        ("Writer", ActivityType.COMPLETED, "Writer"),
    ]
    assert activity[2].data["tool"] == "lookup_order"  # type: ignore[union-attr]
    assert activity[2].data["output"] == "order A-17 shipped on Monday"  # type: ignore[union-attr]
    assert json.loads(activity[2].data["input"]) == {"order_id": "A-17"}  # type: ignore[union-attr]

    # Each agent's model is a model allocation; the writer's answer is its text.
    allocations = [
        (e.payload.agent_id, e.payload.model)  # type: ignore[union-attr]
        for e in events
        if e.kind == EventKind.MODEL_ALLOCATION
    ]
    assert allocations == [("Triage", "canned-triage"), ("Writer", "canned-writer")]
    texts = [e.payload for e in events if e.kind == EventKind.TEXT_DELTA]
    assert [(t.agent_id, t.delta, t.final) for t in texts] == [  # type: ignore[union-attr]
        ("Writer", "Your order A-17 shipped on Monday.", True)
    ]

    # Token usage adds up over the three model calls.
    assert final.metrics == {
        "input_tokens": 360.0,
        "output_tokens": 90.0,
        "total_tokens": 450.0,
        "model_calls": 3.0,
    }
    assert final.status.name == "SUCCEEDED"


async def test_a_tool_call_reaches_ag_ui_frontends_with_its_arguments(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    """The SDK gives its own tools their input only after their span starts, so the
    activity's start has none: the AG-UI bridge ended the call at its start, and a frontend
    (HttpAgent) showed it called with no arguments (found in review). The call's arguments
    now come with its end, before TOOL_CALL_END and its result."""
    async with runstream.connect(server.target) as client:
        _, run_id, events = await report_agent(client, processors, order_writer())

    translator = AguiTranslator(run_id)
    agui = [e for event in events for e in translator.translate(event)]
    calls = [e for e in agui if e.type.value.startswith("TOOL_CALL")]
    assert [e.type.value for e in calls] == [
        "TOOL_CALL_START",
        "TOOL_CALL_ARGS",
        "TOOL_CALL_END",
        "TOOL_CALL_RESULT",
    ]
    start, arguments, _, result = calls
    assert start.tool_call_name == "lookup_order"  # type: ignore[attr-defined]
    assert json.loads(arguments.delta) == {"order_id": "A-17"}  # type: ignore[attr-defined]
    assert result.content == "order A-17 shipped on Monday"  # type: ignore[attr-defined]


async def test_a_tripped_guardrail_is_an_alert_and_fails_the_agent_step(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    @input_guardrail
    async def no_refund_requests(ctx: Any, agent: Any, user_input: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info={"refund": True}, tripwire_triggered=True)

    agent = Agent(
        name="Support",
        instructions="Help.",
        input_guardrails=[no_refund_requests],
        model=CannedModel("canned-support", [[message("Sure.")]]),
    )
    async with runstream.connect(server.target) as client:
        run = await client.start_run("guarded-agent")
        await run_raising(
            run, processors, agent, "I want a refund", InputGuardrailTripwireTriggered
        )
        events = [e async for e in client.list_events(run.run_id)]
        steps = await client.list_steps(run.run_id)
        final = await client.get_run(run.run_id)

    alerts = [e.payload for e in events if e.kind == EventKind.ALERT]
    assert [(a.severity, a.code, a.data["guardrail"]) for a in alerts] == [  # type: ignore[union-attr]
        (Severity.HIGH, "guardrail_tripped", "no_refund_requests")
    ]
    assert "Support" in alerts[0].message  # type: ignore[union-attr]
    assert [(s.step_id, s.status.name) for s in steps] == [("Support", "FAILED")]
    assert steps[0].error is not None and "no_refund_requests" in steps[0].error.message
    assert final.status.name == "FAILED"


async def test_a_streamed_run_reports_the_agents_text(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    """Runner.run_streamed: the generation span holds the whole Response, and its text is
    the agent's output all the same."""
    agent = Agent(name="Writer", model=CannedModel("canned-writer", [[message("Shipped Monday.")]]))
    async with runstream.connect(server.target) as client:
        run = await client.start_run("streamed-agent")
        processor = RunstreamProcessor(run)
        processors.append(processor)
        set_trace_processors([processor])
        async with run:
            streamed = Runner.run_streamed(agent, "Where is my order?")
            async for _ in streamed.stream_events():
                pass
            await processor.flush()
            await run.complete(summary=str(streamed.final_output))
        events = [e async for e in client.list_events(run.run_id)]

    texts = [e.payload for e in events if e.kind == EventKind.TEXT_DELTA]
    assert "".join(t.delta for t in texts) == "Shipped Monday."  # type: ignore[union-attr]
    assert texts[-1].final  # type: ignore[union-attr]


@pytest.mark.parametrize("wrapped", ["model", "provider", "untraced-model"])
async def test_a_streamed_runs_text_reaches_watchers_delta_by_delta_through_runstream_model(
    server: RunstreamServer, wrapped: str
) -> None:
    """The SDK traces a model call's text whole, at its end: watchers of a run_streamed saw
    each answer at once (found in review). Through RunstreamModel (an agent's model, or every
    model of RunstreamModelProvider) each delta is the agent's text as the model yields it,
    while the call still runs, and the call's end closes the message without repeating it.
    A model that opens no span of its own streamed into its agent's span, whose end left the
    message open for good (found in review, with the README example's ScriptedModel)."""
    kind = UntracedStreamingModel if wrapped == "untraced-model" else StreamingModel
    model = kind("streaming-writer", ["Shipped ", "on ", "Monday."])
    if wrapped != "provider":
        wrapper = RunstreamModel(model)
        assert wrapper.wrapped is model
        assert wrapper.model == wrapper.name == "streaming-writer"  # the model's own
        agent = Agent(name="Writer", model=wrapper)
        config = RunConfig()
    else:

        class Canned(ModelProvider):
            def get_model(self, model_name: str | None) -> Model:
                assert model_name == "streaming-writer"
                return model

        agent = Agent(name="Writer", model="streaming-writer")
        config = RunConfig(model_provider=RunstreamModelProvider(Canned()))

    async with runstream.connect(server.target) as client:
        run = await client.start_run("streamed-deltas")

        async def texts() -> list[tuple[str, str, bool]]:
            events = [e async for e in client.list_events(run.run_id)]
            return [
                (e.payload.step_id, e.payload.delta, e.payload.final)  # type: ignore[union-attr]
                for e in events
                if e.kind == EventKind.TEXT_DELTA
            ]

        async with run, runstream_trace(run) as processor:
            streamed = Runner.run_streamed(agent, "Where is my order?", run_config=config)
            async for event in streamed.stream_events():
                delta = isinstance(getattr(event, "data", None), ResponseTextDeltaEvent)
                if delta and not model.go.is_set():
                    # The model waits mid-message: its first delta is stored already.
                    await processor.flush()
                    await run.flush()
                    assert await texts() == [("Writer", "Shipped ", False)]
                    model.go.set()
            await run.complete(summary=str(streamed.final_output))
        got = await texts()
        events = [e async for e in client.list_events(run.run_id)]

    assert got == [
        ("Writer", "Shipped ", False),
        ("Writer", "on ", False),
        ("Writer", "Monday.", False),
        ("Writer", "", True),
    ]
    messages = {e.payload.message_id for e in events if e.kind == EventKind.TEXT_DELTA}  # type: ignore[union-attr]
    assert len(messages) == 1
    assert streamed.final_output == "Shipped on Monday."


class UntracedTurnsModel(CannedModel):
    """Streams each canned output's text as one delta, then the output, opening no span of
    its own (as ``agents.testing.ScriptedModel`` does)."""

    async def stream_response(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        text = "".join(
            block.text
            for item in self.outputs[0]
            if isinstance(item, ResponseOutputMessage)
            for block in item.content
            if isinstance(block, ResponseOutputText)
        )
        if text:
            yield text_delta(text, 0)
        yield self._completed(SimpleNamespace(span_data=SimpleNamespace()))


@pytest.mark.parametrize("turn_spans", [True, False], ids=["turn-spans", "no-turn-spans"])
async def test_each_streamed_turn_of_an_agent_whose_model_opens_no_span_is_its_own_message(
    server: RunstreamServer, turn_spans: bool
) -> None:
    """A model that opens no span of its own streams into the SDK's turn span, or, with
    ``include_task_and_turn_spans`` off, its agent's: an agent that spoke, called a tool and
    spoke again was then one message, its two answers run together (found in review). Each
    model call's text is a message of its own, closed as the call ends."""
    model = UntracedTurnsModel(
        "scripted-writer",
        [
            [message("Let me look that up."), tool_call("lookup_order", {"order_id": "A-17"}, "c")],
            [message("It shipped on Monday.")],
        ],
    )
    agent = Agent(name="Writer", tools=[lookup_order], model=RunstreamModel(model))
    async with runstream.connect(server.target) as client:
        run = await client.start_run("untraced-turns")
        async with run, runstream_trace(run):
            config = RunConfig(tracing={"include_task_and_turn_spans": turn_spans})
            streamed = Runner.run_streamed(agent, "Where is my order A-17?", run_config=config)
            async for _ in streamed.stream_events():
                pass
            await run.complete(summary=str(streamed.final_output))
        events = [e async for e in client.list_events(run.run_id)]

    messages: dict[str, list[tuple[str, bool]]] = {}
    story: list[str] = []  # what watchers saw, in order: each message's end, the tool's start
    for e in events:
        if e.kind == EventKind.TEXT_DELTA:
            text = e.payload
            messages.setdefault(text.message_id, []).append((text.delta, text.final))  # type: ignore[union-attr]
            if text.final:  # type: ignore[union-attr]
                story.append(f"message {len(messages)} ended")
        elif e.kind == EventKind.AGENT_ACTIVITY and e.payload.activity == ActivityType.STARTED:  # type: ignore[union-attr]
            story.append("tool started")
    assert list(messages.values()) == [
        [("Let me look that up.", False), ("", True)],
        [("It shipped on Monday.", False), ("", True)],
    ]
    # The first call's message ends with that call, not when the turn's tool calls are done.
    assert story == ["message 1 ended", "tool started", "message 2 ended"]
    assert streamed.final_output == "It shipped on Monday."


def test_a_runstream_model_copies_as_any_model_does() -> None:
    """A copy (``copy.deepcopy``, as code that copies a run's configuration makes) looked up
    its wrapped model before it had one, for ever: RecursionError."""
    model = RunstreamModel(StreamingModel("streaming-writer", ["Hi"]))
    copied = copy.deepcopy(model)
    assert isinstance(copied.wrapped, StreamingModel) and copied.wrapped is not model.wrapped
    assert copied.name == "streaming-writer"


@function_tool
async def slow_lookup(order_id: str) -> str:
    """Looks up an order, slowly enough that two runs' agents interleave."""
    await asyncio.sleep(0.05)
    return f"order {order_id} shipped"


def looker(tag: str) -> Agent[Any]:
    return Agent(
        name=f"Agent{tag}",
        tools=[slow_lookup],
        model=CannedModel(
            f"canned-{tag}",
            [
                [tool_call("slow_lookup", {"order_id": tag}, f"call-{tag}")],
                [message(f"done {tag}")],
            ],
        ),
    )


@pytest.mark.parametrize("shared_trace", [False, True], ids=["own-traces", "one-outer-trace"])
async def test_runs_reported_at_once_in_one_process_each_get_only_their_own_agents(
    server: RunstreamServer, processors: list[RunstreamProcessor], shared_trace: bool
) -> None:
    """Two ``runstream_trace`` blocks at once (asyncio.gather), then a third after them: each
    run gets its own agent's step, tool calls, model and tokens, once; an agent run after a
    block ended reports to nobody. The same when both blocks run inside one SDK trace begun
    outside them."""
    set_trace_processors([])  # runstream_trace registers its processor again by itself

    async def report(client: runstream.Client, tag: str) -> str:
        run = await client.start_run(f"concurrent-{tag}")
        async with run:
            async with runstream_trace(run):
                result = await Runner.run(looker(tag), "Where is my order?")
            await run.complete(summary=str(result.final_output))
        return run.run_id

    async with runstream.connect(server.target) as client:
        with trace("one workflow") if shared_trace else contextlib.nullcontext():
            ids = await asyncio.gather(report(client, "A"), report(client, "B"))
        third = await report(client, "C")
        await Runner.run(looker("D"), "Where is my order?")  # outside any block
        logs = {
            tag: [e async for e in client.list_events(run_id)]
            for tag, run_id in zip("ABC", [*ids, third], strict=True)
        }

    for tag, events in logs.items():
        steps = [
            (e.kind.name, e.payload.step_id)  # type: ignore[union-attr]
            for e in events
            if e.kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED)
        ]
        assert steps == [("STEP_STARTED", f"Agent{tag}"), ("STEP_COMPLETED", f"Agent{tag}")]
        tools = [
            (a.activity, json.loads(a.data["input"]))  # type: ignore[union-attr]
            for a in (e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY)
            if "input" in a.data  # type: ignore[union-attr]
        ]
        assert tools == [(ActivityType.COMPLETED, {"order_id": tag})]
        allocations = [e.payload.model for e in events if e.kind == EventKind.MODEL_ALLOCATION]  # type: ignore[union-attr]
        assert allocations == [f"canned-{tag}"]
        metrics = [e.payload.values for e in events if e.kind == EventKind.METRICS_UPDATE]  # type: ignore[union-attr]
        assert metrics[-1]["model_calls"] == 2.0
        assert metrics[-1]["input_tokens"] == 240.0
        assert events[-1].kind == EventKind.RUN_COMPLETED


async def test_a_tool_span_that_starts_with_its_input_reports_it_when_it_starts(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("traced-by-hand")
        async with run:
            async with runstream_trace(run):
                with (
                    trace("by hand"),
                    agent_span(name="Helper"),
                    function_span("lookup_order", input='{"order_id": "A-17"}') as span,
                ):
                    span.span_data.output = "shipped"
            await run.complete()
        events = [e async for e in client.list_events(run.run_id)]

    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    call = {"tool": "lookup_order", "tool_call_id": span.span_id}  # its end names it too
    assert [(a.activity, a.data) for a in activity] == [  # type: ignore[union-attr]
        (ActivityType.STARTED, {**call, "input": '{"order_id": "A-17"}'}),
        (
            ActivityType.COMPLETED,
            {**call, "input": '{"order_id": "A-17"}', "output": "shipped"},
        ),
    ]


async def _collect(client: runstream.Client, run_id: str) -> list[runstream.Event]:
    return [event async for event in client.watch(run_id)]


async def test_each_turn_of_a_chat_with_a_new_processor_is_a_new_step_also_after_attach(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    """A chat app: one run per conversation, one Runner.run per turn, a new processor each
    turn, and a producer that restarted (attach_run) for the last turn. The agent that ran
    before is a new step each turn, so the run completes, and the run's token metrics sum
    every turn (each processor counted from 0: the run's totals went back at every turn)."""

    async def turn(run: runstream.RunReporter, text: str) -> None:
        agent = Agent(name="Bot", model=CannedModel("canned-bot", [[message(text)]]))
        processor = RunstreamProcessor(run)
        processors.append(processor)
        set_trace_processors([processor])
        await Runner.run(agent, "hi")
        await processor.flush()

    async with runstream.connect(server.target) as client:
        run = await client.start_run("chat-turns")
        await turn(run, "reply 1")
        await turn(run, "reply 2")
        await run.close()  # the producer stops, its run still running
        attached = await client.attach_run(run.run_id)
        async with attached:
            await turn(attached, "reply 3")
            await attached.complete()
        final = await client.get_run(run.run_id)

    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.name, s.status.name) for s in final.steps] == [
        ("Bot", "Bot", "SUCCEEDED"),
        ("Bot-2", "Bot", "SUCCEEDED"),
        ("Bot-3", "Bot", "SUCCEEDED"),
    ]
    assert final.metrics == {
        "input_tokens": 360.0,
        "output_tokens": 90.0,
        "total_tokens": 450.0,
        "model_calls": 3.0,
    }


class WaitingModel(CannedModel):
    """A model call that never answers; ``called`` is set once the agent waits on it."""

    def __init__(self) -> None:
        super().__init__("waiting", [])
        self.called = asyncio.Event()

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.called.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_a_producer_stopped_mid_agent_completes_no_step_and_the_run_ends_cancelled(
    server: RunstreamServer, processors: list[RunstreamProcessor], streamed: bool
) -> None:
    """Ctrl-C (the producer's task cancelled) while an agent waits on its model, or while
    the producer reads a streamed run (which the SDK then cancels): the SDK ends the agent's
    span without an error on the way out, which is no reason to call the agent's step
    completed, nor a failure of its own. The run ends cancelled and so does the step."""
    model = StallingModel() if streamed else WaitingModel()
    working = model.streaming if isinstance(model, StallingModel) else model.called
    agent = Agent(name="Writer", model=model)

    async def produce(run: runstream.RunReporter) -> None:
        async with run, runstream_trace(run):
            if streamed:
                async for _ in Runner.run_streamed(agent, "Where is my order?").stream_events():
                    pass
            else:
                await Runner.run(agent, "Where is my order?")

    async with runstream.connect(server.target) as client:
        run = await client.start_run("stopped-agent")
        producer = asyncio.create_task(produce(run))
        await working.wait()
        producer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await producer
        events = [e async for e in client.list_events(run.run_id)]
        steps = await client.list_steps(run.run_id)
        final = await client.get_run(run.run_id)

    assert EventKind.STEP_COMPLETED not in [e.kind for e in events]
    assert [(s.step_id, s.status.name) for s in steps] == [("Writer", "FAILED")]
    assert steps[0].error is not None and steps[0].error.code == "RUN_CANCELLED"
    assert final.status.name == "CANCELLED"


async def test_agents_streamed_after_their_block_ended_are_named_in_a_warning(
    server: RunstreamServer, processors: list[RunstreamProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    """Runner.run_streamed begun inside ``runstream_trace`` but read after the block: its
    agents run after the block ended and are not reported. The user hears why, once."""
    agent = Agent(name="Writer", model=CannedModel("canned-writer", [[message("Shipped.")]]))
    async with runstream.connect(server.target) as client:
        run = await client.start_run("streamed-late")
        async with run:
            async with runstream_trace(run):
                streamed = Runner.run_streamed(agent, "Where is my order?")
            async for _ in streamed.stream_events():
                pass
            await run.complete(summary=str(streamed.final_output))
        steps = await client.list_steps(run.run_id)

    assert steps == []
    late = [r for r in caplog.records if "after their runstream_trace block" in r.getMessage()]
    assert [(r.levelname, run.run_id in r.getMessage()) for r in late] == [("WARNING", True)]
    assert "stream_events()" in late[0].getMessage()


class StallingModel(CannedModel):
    """Streams ``first`` whole (a tool call, say), if given; then, at the next call, a delta
    of text, and stalls until its run is cancelled. ``streaming`` is set once that delta is
    out."""

    def __init__(self, first: list[ResponseOutputItem] | None = None) -> None:
        super().__init__("stalling", [first] if first is not None else [])
        self.streaming = asyncio.Event()

    async def _streamed(self, span: Any) -> AsyncIterator[Any]:
        if self.outputs:
            yield self._completed(span)
            return
        yield text_delta("Your order", 0)
        self.streaming.set()
        await asyncio.Event().wait()


@pytest.mark.parametrize(
    "cut_in",
    [
        "streamed-model",
        "streamed-wrapped-model",
        "streamed-tool",
        "streamed-then-break",
        "own-task",
    ],
)
async def test_an_agent_cancelled_mid_run_fails_its_step_as_cancelled_and_the_run_goes_on(
    server: RunstreamServer, processors: list[RunstreamProcessor], cut_in: str
) -> None:
    """``result.cancel()`` while a streamed agent writes (or waits on its tool; or called in
    the ``stream_events()`` loop, which then breaks and leaves the block at once), or the
    task running an agent cancelled while it waits on its model: the SDK ends the agent's span
    without an error, but the agent did not finish. A watcher sees its step fail as
    cancelled, not complete, and the run goes on: the next agent, in a block of its own,
    completes its step and the run completes. A RunstreamModel's message, streamed so far,
    ends where the cancel cut it."""
    tool_working = asyncio.Event()

    @function_tool
    async def stalling_lookup(order_id: str) -> str:
        """Looks up an order and never answers: a tool still at work."""
        tool_working.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    model: Model
    if cut_in in ("streamed-model", "streamed-wrapped-model", "streamed-then-break"):
        stalling = StallingModel()
        model = RunstreamModel(stalling) if cut_in == "streamed-wrapped-model" else stalling
        stalled = stalling.streaming
    elif cut_in == "streamed-tool":
        model = StallingModel([tool_call("stalling_lookup", {"order_id": "A-17"}, "call-1")])
        stalled = tool_working
    else:
        model = WaitingModel()
        stalled = model.called
    writer = Agent(name="Writer", tools=[stalling_lookup], model=model)
    reviewer = Agent(name="Reviewer", model=CannedModel("canned", [[message("Looks good.")]]))

    async with runstream.connect(server.target) as client:
        run = await client.start_run("cancelled-stream")
        watched = asyncio.create_task(_collect(client, run.run_id))
        async with run:
            async with runstream_trace(run):
                if cut_in == "own-task":
                    writing = asyncio.create_task(Runner.run(writer, "Where is my order?"))
                    await stalled.wait()
                    writing.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await writing
                elif cut_in == "streamed-then-break":
                    streamed = Runner.run_streamed(writer, "Where is my order?")
                    async for _ in streamed.stream_events():
                        if stalled.is_set():
                            streamed.cancel()
                            break
                else:
                    streamed = Runner.run_streamed(writer, "Where is my order?")

                    async def stop_when_stalled() -> None:  # the user presses stop
                        await stalled.wait()
                        streamed.cancel()

                    stopping = asyncio.create_task(stop_when_stalled())
                    async for _ in streamed.stream_events():
                        pass
                    await stopping
            async with runstream_trace(run):
                reviewed = await Runner.run(reviewer, "Check the answer.")
            await run.complete(summary=str(reviewed.final_output))
        events = await asyncio.wait_for(watched, 30)
        final = await client.get_run(run.run_id)

    steps = step_changes(events)
    assert steps == [
        ("STEP_STARTED", "Writer"),
        ("STEP_FAILED", "Writer"),
        ("STEP_STARTED", "Reviewer"),
        ("STEP_COMPLETED", "Reviewer"),
    ]
    failed = next(e.payload for e in events if e.kind == EventKind.STEP_FAILED)
    assert failed.error.code == "cancelled"  # type: ignore[union-attr]
    assert failed.error.message == "cancelled before it finished"  # type: ignore[union-attr]
    assert final.status.name == "SUCCEEDED"
    assert [(s.step_id, s.status.name) for s in final.steps] == [
        ("Writer", "FAILED"),
        ("Reviewer", "SUCCEEDED"),
    ]
    writers = [
        (e.payload.delta, e.payload.final)  # type: ignore[union-attr]
        for e in events
        if e.kind == EventKind.TEXT_DELTA and e.payload.step_id == "Writer"  # type: ignore[union-attr]
    ]
    assert writers == (
        [("Your order", False), ("", True)] if cut_in == "streamed-wrapped-model" else []
    )


@pytest.mark.parametrize("mistake", ["tool-not-found", "invalid-structured-output"])
async def test_an_agent_whose_run_raised_a_model_behavior_error_fails_its_step(
    server: RunstreamServer, processors: list[RunstreamProcessor], mistake: str
) -> None:
    """The SDK hangs these everyday model mistakes on a turn span and ends the agent's span
    with no error while the error escapes Runner.run: the run failed with its agent's step
    SUCCEEDED, all green on a dashboard (found in review)."""

    class Answer(BaseModel):
        verdict: str

    if mistake == "tool-not-found":
        output = [tool_call("refund_everything", {}, call_id="c1")]
        agent: Agent[Any] = Agent(name="Support", model=CannedModel("canned", [output]))
        said = "Tool refund_everything not found"
    else:
        output = [message("not JSON at all")]
        agent = Agent(name="Support", output_type=Answer, model=CannedModel("canned", [output]))
        said = "Invalid JSON"
    async with runstream.connect(server.target) as client:
        run = await client.start_run("misbehaving-agent")
        await run_raising(run, processors, agent, "help", ModelBehaviorError)
        steps = await client.list_steps(run.run_id)
        final = await client.get_run(run.run_id)

    assert [(s.step_id, s.status.name) for s in steps] == [("Support", "FAILED")]
    assert steps[0].error is not None
    assert steps[0].error.message.startswith("ModelBehaviorError: " + said), steps[0].error
    assert final.status.name == "FAILED"


async def test_agents_that_ran_on_while_the_run_was_paused_are_reported_with_their_own_times(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    """A pause holds the report of the next agent's start, and the SDK's synchronous
    processor cannot hold the agent: the agents ran on, and every event queued behind that
    start was stamped when it was finally sent, after the resume. The second agent's step
    lasted the pause, the third's 54 us (found in review); the server learns its ETAs from
    these durations. Each event now carries the time the SDK told of it."""

    class SlowModel(CannedModel):
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            await asyncio.sleep(0.4)
            return await super().get_response(*args, **kwargs)

    async with runstream.connect(server.target) as client:
        run = await client.start_run("paused-agents")
        await run.flush()  # RUNNING: a PENDING run cannot be paused
        async with run:
            async with runstream_trace(run):
                for name in ("First", "Second", "Third"):
                    if name == "Second":
                        await client.pause_run(run.run_id)
                        resuming = asyncio.get_running_loop().call_later(
                            2.0, lambda: asyncio.ensure_future(client.resume_run(run.run_id))
                        )
                    agent = Agent(name=name, model=SlowModel("slow", [[message(name)]]))
                    await Runner.run(agent, "go")
            await run.complete()
        resuming.cancel()
        steps = await client.list_steps(run.run_id)

    lasted = step_durations(steps)
    assert lasted.keys() == {"First", "Second", "Third"}, steps
    assert all(0.35 <= seconds < 1.5 for seconds in lasted.values()), lasted


async def test_runstream_hooks_hold_the_agents_while_the_run_is_paused(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    """With the hooks given to the runner, a paused run holds the next agent before its
    model is called, until the resume; a cancel while held raises RunCancelledError."""
    calls: list[str] = []

    class CountingModel(CannedModel):
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            calls.append(self.name)
            return await super().get_response(*args, **kwargs)

    def agent(name: str) -> Agent[Any]:
        return Agent(name=name, model=CountingModel(name, [[message(name)]]))

    async with runstream.connect(server.target) as client:
        run = await client.start_run("held-agents")
        await run.flush()  # RUNNING: a PENDING run cannot be paused
        with pytest.raises(RunCancelledError):
            async with run:
                hooks = RunstreamHooks(run)
                async with runstream_trace(run):
                    await Runner.run(agent("First"), "go", hooks=hooks)
                    await client.pause_run(run.run_id)
                    await eventually(lambda: run.paused)
                    second = asyncio.create_task(Runner.run(agent("Second"), "go", hooks=hooks))
                    await asyncio.sleep(0.5)
                    assert calls == ["First"] and not second.done()
                    await client.resume_run(run.run_id)
                    await asyncio.wait_for(second, 10)
                    assert calls == ["First", "Second"]
                    await client.pause_run(run.run_id)
                    await eventually(lambda: run.paused)
                    third = asyncio.create_task(Runner.run(agent("Third"), "go", hooks=hooks))
                    await asyncio.sleep(0.3)
                    await client.cancel_run(run.run_id)
                    await asyncio.wait_for(third, 10)
        # The held agent never called its model: refused, or cancelled with the task that
        # waited for it (a cancelled run's reporter cancels the task it reports from).
        await asyncio.wait([third], timeout=10)
        assert third.cancelled() or isinstance(third.exception(), RunCancelledError)
        assert calls == ["First", "Second"]
        assert (await client.get_run(run.run_id)).status.name == "CANCELLED"
        # Held from its start until the resume, the second agent's step leaves the pause out.
        lasted = step_durations(await client.list_steps(run.run_id))
        assert lasted["Second"] < 0.4, lasted
