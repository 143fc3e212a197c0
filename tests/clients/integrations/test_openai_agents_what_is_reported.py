"""What RunstreamProcessor reports of the OpenAI Agents SDK where no test looked (found by
the mutation audit mu68g): only the traces its filter takes, no alert for a guardrail that
passed, a tool that raised as a failed activity with the SDK's error, whom a handoff went to,
and the text of a Chat Completions model."""

from __future__ import annotations

from typing import Any

import runstream
from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelResponse,
    Runner,
    Usage,
    function_tool,
    input_guardrail,
    set_trace_processors,
    trace,
)
from agents.tracing import generation_span
from openai.types.chat import ChatCompletionMessage
from runstream import ActivityType, EventKind
from runstream.integrations.openai_agents import RunstreamProcessor
from runstream_server.app import RunstreamServer

from .test_openai_agents import CannedModel, message, processors, report_agent, tool_call

__all__ = ["processors"]  # the fixture, used by name


async def reported(
    server: RunstreamServer, processors: list[RunstreamProcessor], agent: Agent[Any]
) -> tuple[list[runstream.Event], runstream.Run]:
    """The events and the final state of a run that `agent` worked in (``report_agent``)."""
    async with runstream.connect(server.target) as client:
        _, run_id, events = await report_agent(client, processors, agent)
        return events, await client.get_run(run_id)


async def test_only_the_traces_the_filter_takes_are_reported(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("filtered-agents")
        processor = RunstreamProcessor(run, trace_filter=lambda t: t.name == "Support workflow")
        processors.append(processor)
        set_trace_processors([processor])
        async with run:
            for name, agent in (("Support workflow", "Support"), ("Billing batch", "Billing")):
                with trace(name):
                    model = CannedModel(f"canned-{agent}", [[message("Done.")]])
                    await Runner.run(Agent(name=agent, model=model), "Go")
            await processor.flush()
            await run.complete()
        steps = await client.list_steps(run.run_id)
    assert [(s.step_id, s.status.name) for s in steps] == [("Support", "SUCCEEDED")]


async def test_a_guardrail_that_passed_raises_no_alert(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    @input_guardrail
    async def polite(ctx: Any, agent: Any, user_input: Any) -> GuardrailFunctionOutput:
        return GuardrailFunctionOutput(output_info={"polite": True}, tripwire_triggered=False)

    agent = Agent(
        name="Support",
        input_guardrails=[polite],
        model=CannedModel("canned-support", [[message("Sure.")]]),
    )
    events, final = await reported(server, processors, agent)
    assert [e for e in events if e.kind == EventKind.ALERT] == []
    assert (final.status.name, final.health.name) == ("SUCCEEDED", "HEALTHY")


@function_tool
def charge_card(amount: int) -> str:
    """Charges the customer's card."""
    raise RuntimeError("card declined")


async def test_a_tool_that_raised_is_a_failed_activity_with_the_sdks_error(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    agent = Agent(
        name="Billing",
        tools=[charge_card],
        model=CannedModel(
            "canned-billing",
            [[tool_call("charge_card", {"amount": 5}, "call-1")], [message("It was declined.")]],
        ),
    )
    events, _ = await reported(server, processors, agent)
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    assert [a.activity for a in activity] == [ActivityType.STARTED, ActivityType.FAILED]  # type: ignore[union-attr]
    # The SDK's words: it keeps the exception's own out of its traces.
    error = activity[1].data["error"]  # type: ignore[union-attr]
    assert error.startswith("Error running tool") and '"tool_name": "charge_card"' in error
    assert "output" not in activity[1].data  # type: ignore[union-attr]


async def test_a_handoff_says_whom_it_handed_off_to(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    writer = Agent(name="Writer", model=CannedModel("canned-writer", [[message("Done.")]]))
    triage = Agent(
        name="Triage",
        handoffs=[writer],
        model=CannedModel("canned-triage", [[tool_call("transfer_to_writer", {}, "call-1")]]),
    )
    events, _ = await reported(server, processors, triage)
    activity = [e.payload for e in events if e.kind == EventKind.AGENT_ACTIVITY]
    assert [(a.agent_id, a.message) for a in activity] == [("Triage", "handed off to Writer")]  # type: ignore[union-attr]


class ChatCompletionsModel(CannedModel):
    """Answers as the SDK's Chat Completions models (LiteLLM's too) record a call: the
    generation span's output is the Chat Completions message, its content a string."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        with generation_span(model=self.name) as span:
            output = self.outputs.pop(0)
            text = "".join(part.text for item in output for part in item.content)  # type: ignore[union-attr]
            said = ChatCompletionMessage(role="assistant", content=text)
            span.span_data.output = [said.model_dump()]
            usage = Usage(requests=1, input_tokens=10, output_tokens=5, total_tokens=15)
            return ModelResponse(output=output, usage=usage, response_id=None)


async def test_the_text_of_a_chat_completions_model_is_the_agents_message(
    server: RunstreamServer, processors: list[RunstreamProcessor]
) -> None:
    model = ChatCompletionsModel("chat-model", [[message("Shipped Monday.")]])
    events, _ = await reported(server, processors, Agent(name="Writer", model=model))
    texts = [e.payload for e in events if e.kind == EventKind.TEXT_DELTA]
    assert [(t.agent_id, t.delta, t.final) for t in texts] == [("Writer", "Shipped Monday.", True)]  # type: ignore[union-attr]
