"""What the agents do that AG-UI has events of its own for: tool calls and reasoning.

An AgentActivity whose data names a ``tool`` (as the framework integrations report a tool call:
``calling <tool>``, then ``<tool> done`` or ``<tool> failed``) is an AG-UI tool call: STARTED
is TOOL_CALL_START, TOOL_CALL_ARGS (the data's ``input``) and TOOL_CALL_END; COMPLETED or
FAILED is the TOOL_CALL_RESULT (its ``output``, or its ``error``) of the call with the same
``tool_call_id`` in its data (the integrations give one: calls of one tool at once may end in
any order), or without one, of the oldest call of that tool, by that agent in that step, still
without a result. A start whose data has no ``input`` at all (the OpenAI Agents SDK's own
tools are given theirs only after their span starts) leaves the call open: its end sends the
TOOL_CALL_ARGS from the end's ``input``, then TOOL_CALL_END, then the result, so that a
frontend shows what the tool was called with; a call still open when the run ends is ended
with it (:meth:`AgentEvents.close_all`). Another activity of the tool (a LangGraph tool that
waits for an answer, and runs again as a new call) takes that call out with no result.
Thinking with an ``analysis`` is a reasoning message: REASONING_START,
REASONING_MESSAGE_START, _CONTENT, _END and REASONING_END. A frontend that renders AG-UI's
tool calls and reasoning (CopilotKit's) shows them as such; the CUSTOM event with the whole
Runstream payload still follows each (see ``AguiTranslator``).
"""

from __future__ import annotations

import json
from typing import Any

from ag_ui.core import (
    BaseEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from runstream._events import AgentActivity, Thinking
from runstream._types import ActivityType, Event

__all__ = ["AgentEvents"]

_ENDS = (ActivityType.COMPLETED, ActivityType.FAILED)


class AgentEvents:
    """The tool calls and reasoning of one run's events, in order (see the module)."""

    def __init__(self) -> None:
        # The calls without a result, by agent, step and tool, oldest first: each one's AG-UI
        # id and the producer's own id of it ("" when it gave none).
        self._calls: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
        # The AG-UI ids of the calls started without their input, not yet ended.
        self._open: dict[str, None] = {}

    def translate(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events of its own that ``event`` stands for (none for most events)."""
        p = event.payload
        if isinstance(p, AgentActivity):
            return self._tool(event.seq, p)
        if isinstance(p, Thinking) and p.analysis:
            return _reasoning(f"reasoning-{event.seq}", p.analysis)
        return []

    def _tool(self, seq: int, p: AgentActivity) -> list[BaseEvent]:
        tool = p.data.get("tool")
        if not isinstance(tool, str) or not tool:
            return []
        named = p.data.get("tool_call_id")
        own_id = named if isinstance(named, str) else ""
        key = (p.agent_id or p.agent_name, p.step_id, tool)
        if p.activity == ActivityType.STARTED:
            call_id = f"tool-{seq}"
            self._calls.setdefault(key, []).append((call_id, own_id))
            start = ToolCallStartEvent(tool_call_id=call_id, tool_call_name=tool)
            if "input" not in p.data:  # given at its end
                self._open[call_id] = None
                return [start]
            return [start, *_arguments(call_id, p.data)]
        waiting = self._calls.get(key)
        if not waiting:
            return []
        # The call the end names, else (no name, or one no start gave) the oldest.
        at = next((i for i, (_, own) in enumerate(waiting) if own_id and own == own_id), 0)
        call_id, _ = waiting.pop(at)
        if not waiting:
            del self._calls[key]
        out: list[BaseEvent] = []
        if call_id in self._open:
            del self._open[call_id]
            out += _arguments(call_id, p.data)
        if p.activity not in _ENDS:
            return out
        said = p.data.get("error" if p.activity == ActivityType.FAILED else "output")
        out.append(
            ToolCallResultEvent(
                message_id=f"{call_id}-result",
                tool_call_id=call_id,
                content=_text(said),
                role="tool",
            )
        )
        return out

    def close_all(self) -> list[BaseEvent]:
        """TOOL_CALL_END for each call still waiting for its input: AG-UI ends a run only
        after its tool calls."""
        out: list[BaseEvent] = [ToolCallEndEvent(tool_call_id=c) for c in self._open]
        self._open.clear()
        return out


def _arguments(call_id: str, data: dict[str, Any]) -> list[BaseEvent]:
    """TOOL_CALL_ARGS of the data's ``input`` (none when it is empty), then TOOL_CALL_END."""
    arguments = _text(data.get("input"))
    out: list[BaseEvent] = []
    if arguments:
        out.append(ToolCallArgsEvent(tool_call_id=call_id, delta=arguments))
    out.append(ToolCallEndEvent(tool_call_id=call_id))
    return out


def _reasoning(message_id: str, text: str) -> list[BaseEvent]:
    return [
        ReasoningStartEvent(message_id=message_id),
        ReasoningMessageStartEvent(message_id=message_id, role="reasoning"),
        ReasoningMessageContentEvent(message_id=message_id, delta=text),
        ReasoningMessageEndEvent(message_id=message_id),
        ReasoningEndEvent(message_id=message_id),
    ]


def _text(value: Any) -> str:
    """A tool's input or output as AG-UI carries it: text as it is, anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)
