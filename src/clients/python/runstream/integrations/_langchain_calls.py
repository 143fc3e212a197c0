"""What a LangChain node's agent does: its model calls and its tool calls.

A model call is a ModelAllocation (once per agent and model) and a TextDelta message: streamed
tokens, closed with an empty final delta, or a call that did not stream as one final delta;
its own retries (LangChain's LLM retry decorators) are ErrorRecovery events; its token usage
(a chat message's ``usage_metadata``) adds to the run's metrics (see ``ModelUse``). A tool call is
AgentActivity: STARTED with the input, COMPLETED with the output, FAILED with the error. Both
belong to the agent and step :class:`~runstream.integrations._langchain_steps.ChainSteps` says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from runstream._types import ActivityType
from runstream.integrations._common import short
from runstream.integrations._langchain_steps import ChainSteps, LangChainRun, error_text
from runstream.integrations._run_calls import RunCalls

if TYPE_CHECKING:
    from langchain_core.outputs import LLMResult
    from tenacity import RetryCallState

__all__ = ["ModelCalls", "ToolCalls"]


@dataclass
class _ModelCall:
    agent: str
    step_id: str
    message_id: str
    streamed: bool = False
    retries: int = 0


class ModelCalls:
    """The model calls in progress, each one TextDelta message of its agent."""

    def __init__(self, calls: RunCalls, steps: ChainSteps) -> None:
        self._calls = calls
        self._steps = steps
        self._running: dict[UUID, _ModelCall] = {}

    def started(self, start: LangChainRun) -> None:
        model = _model_name(start)
        agent, step_id = self._steps.call_started(start, model)
        self._running[start.run_id] = _ModelCall(agent, step_id, str(start.run_id))
        params = start.kwargs.get("invocation_params") or {}
        provider = str(start.metadata.get("ls_provider") or params.get("_type") or "")
        self._calls.allocate(agent, model, reasoning=f"{provider} model" if provider else "")

    def token(self, token: str | list[str | dict[str, Any]], run_id: UUID) -> None:
        call = self._running.get(run_id)
        text = token if isinstance(token, str) else "".join(_block_text(b) for b in token)
        if call is None or not text:
            return
        call.streamed = True
        self._calls.text(call.agent, call.message_id, text, step_id=call.step_id)

    def ended(self, response: LLMResult, run_id: UUID) -> None:
        call = self._running.pop(run_id, None)
        if call is None:
            return
        # A streamed message ends with an empty final delta; one that did not stream arrives
        # whole, as a single final delta.
        text = "" if call.streamed else _response_text(response)
        if call.streamed or text:
            self._calls.text(call.agent, call.message_id, text, final=True, step_id=call.step_id)
        self._calls.model_used(_usage(response))

    def failed(self, run_id: UUID) -> None:
        call = self._running.pop(run_id, None)
        if call is not None and call.streamed:
            # Close the message its tokens opened, so viewers do not wait for more text.
            self._calls.text(call.agent, call.message_id, "", final=True, step_id=call.step_id)

    def step_failed(self, step_id: str) -> None:
        """The step's node failed: close the messages its model calls still stream (a call
        the node abandoned mid-stream ends only when its stream is collected, later)."""
        for run_id, call in list(self._running.items()):
            if call.step_id == step_id:
                self.failed(run_id)

    def retried(self, retry_state: RetryCallState, run_id: UUID) -> None:
        # With an async callback manager, LangChain's retry decorator reports each retry from a
        # task of its own, which runs once tenacity has moved the state on: its outcome
        # cleared (the error is lost), its attempt number that of the next attempt, or of a
        # later one when attempts do not wait. So the call counts its failed attempts here,
        # one a callback, and the error is the state's while it still holds the failed outcome.
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        message = error_text(error) if error else "retrying"
        call = self._running.get(run_id)
        if call is None:
            self._steps.report_retry(message, int(retry_state.attempt_number), [], "")
            return
        call.retries += 1
        self._steps.report_retry(message, call.retries, [call.agent], call.step_id)


class ToolCalls:
    """The tool calls in progress, each AgentActivity of its agent."""

    def __init__(self, calls: RunCalls, steps: ChainSteps) -> None:
        self._calls = calls
        self._steps = steps
        # agent, tool, step and call id of each running tool call
        self._running: dict[UUID, tuple[str, str, str, str]] = {}

    def started(
        self, start: LangChainRun, input_str: str, inputs: Mapping[str, Any] | None
    ) -> None:
        tool = start.name("tool")
        agent, step_id = self._steps.call_started(start, tool)
        # The model's id of the call, else LangChain's: its end names it too, so a watcher
        # pairs them when calls of one tool run at once and end out of order.
        call_id = str(start.kwargs.get("tool_call_id") or start.run_id)
        self._running[start.run_id] = (agent, tool, step_id, call_id)
        given = json.dumps(inputs, default=str) if inputs is not None else input_str
        data = {"tool": tool, "tool_call_id": call_id, "input": short(given)}
        self._calls.tool_started(agent, tool, data, step_id=step_id)

    def ended(self, output: Any, run_id: UUID) -> None:
        content = getattr(output, "content", output)
        if getattr(output, "status", None) == "error":
            # A tool that handled its own error (handle_tool_error) ends as a success whose
            # output is the error: the call failed all the same.
            self._finished(run_id, {"error": short(content)}, failed=True)
            return
        self._finished(run_id, {"output": short(content)}, failed=False)

    def failed(self, error: BaseException, run_id: UUID) -> None:
        if _waits_for_input(error):
            # interrupt() in the tool: it waits for an answer and runs again with it (a new
            # call), so this one neither failed nor finished.
            started = self._running.pop(run_id, None)
            if started is not None:
                agent, tool, step_id, call_id = started
                self._calls.activity(
                    agent,
                    ActivityType.PROGRESS,
                    f"{tool} waits for input",
                    data={"tool": tool, "tool_call_id": call_id},
                    step_id=step_id,
                )
            return
        self._finished(run_id, {"error": error_text(error)}, failed=True)

    def _finished(self, run_id: UUID, details: Mapping[str, str], *, failed: bool) -> None:
        started = self._running.pop(run_id, None)
        if started is None:
            return
        agent, tool, step_id, call_id = started
        data = {"tool": tool, "tool_call_id": call_id, **details}
        self._calls.tool_ended(agent, tool, data, failed=failed, step_id=step_id)


def _waits_for_input(error: BaseException) -> bool:
    """Whether ``error`` is LangGraph's interrupt() (or another GraphBubbleUp)."""
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return False
    return isinstance(error, GraphBubbleUp)


def _model_name(start: LangChainRun) -> str:
    params = start.kwargs.get("invocation_params") or {}
    for candidate in (
        start.metadata.get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        start.kwargs.get("name"),
        (start.serialized or {}).get("name"),
        params.get("_type"),
    ):
        if candidate:
            return str(candidate)
    return "model"


def _block_text(block: str | dict[str, Any]) -> str:
    """The text of one content block of a streamed token (content-block models)."""
    if isinstance(block, str):
        return block
    return str(block.get("text", "")) if block.get("type", "text") == "text" else ""


def _response_text(response: LLMResult) -> str:
    parts: list[str] = []
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            # A chat generation's message.text (a str; calling it is deprecated), else its text.
            text = getattr(message, "text", None) if message is not None else None
            parts.append(str(text if text is not None else generation.text or ""))
    return "".join(parts)


def _usage(response: LLMResult) -> dict[str, Any] | None:
    """The tokens a model call used, as its model told LangChain: a chat message's
    ``usage_metadata``, else the ``token_usage`` (OpenAI's names) of a plain LLM's output."""
    used: dict[str, Any] = {}
    for generations in response.generations:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
            if usage:
                for name in ("input_tokens", "output_tokens"):
                    used[name] = used.get(name, 0) + (usage.get(name) or 0)
    if used:
        return used
    output = response.llm_output or {}
    usage = output.get("token_usage") or output.get("usage")
    if not isinstance(usage, Mapping):
        return None
    return {
        "input_tokens": usage.get("prompt_tokens", usage.get("input_tokens")),
        "output_tokens": usage.get("completion_tokens", usage.get("output_tokens")),
    }
