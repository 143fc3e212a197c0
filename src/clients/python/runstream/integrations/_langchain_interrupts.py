"""LangGraph interrupts as Runstream questions: what an ``interrupt(value)`` asks.

A string value is the prompt, offered with the handler's default options; a mapping may hold
``question`` (or ``prompt``, ``message``), ``options``, ``default``, ``timeout`` (seconds),
``can_skip``, ``context`` and ``decision_type``. One that asks nothing (None, ``""``, ``{}``)
says "The graph is waiting for input". The closed decision's result becomes the
value the graph resumes with: the option chosen, as the interrupt gave it (``3``, not
``"3"``), or None when the question was skipped or timed out with no default.

What LangGraph takes but a question cannot hold is fitted, not refused (a refusal would fail
the node and the run without asking anything): a prompt past 16,384 characters is cut; an
option whose text cannot be a value (a line break, past 256 characters, the text of an option
before it) is asked as ``option-N`` with its text as label (one line, cut) and description,
and still resumes the graph with the value the interrupt gave; labels and descriptions are
cut to their limits, options past the 100th left out (a WARNING says so), and a context's
values that are not JSON-like (a datetime, an object) are sent as their text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from runstream._arguments import (
    CONTROL,
    MAX_DECISION_TIMEOUT_SECONDS,
    NAME_CHARS,
    OPTIONS_ITEMS,
    PROMPT_CHARS,
    TEXT_CHARS,
)
from runstream.integrations._common import short

if TYPE_CHECKING:
    from runstream._reporter import RunReporter
    from runstream._types import DecisionResult

__all__ = ["DEFAULT_OPTIONS", "InterruptQuestions"]

_log = logging.getLogger("runstream.integrations")

DEFAULT_OPTIONS = ("approve", "reject")
_INTERRUPT_DECISION_TYPE = "langgraph_interrupt"
_QUESTION_KEYS = frozenset(
    {
        "question",
        "prompt",
        "message",
        "options",
        "default",
        "timeout",
        "can_skip",
        "context",
        "decision_type",
    }
)
"""The keys of an interrupt's mapping that make the question; the others are its context."""
_TOOL_APPROVAL_DECISION_TYPE = "langchain_tool_approval"
_AT_ONCE = 0.001
"""The timeout of an interrupt that gives none or less, in seconds: it closes at once, as
asked (a question refuses a timeout of 0)."""
# Of a step id in a decision id ("interrupt-<step>-<digest>"; ids hold at most 128 characters).
_MAX_STEP_IN_ID = 100


class InterruptQuestions:
    """Asks the run what an interrupt stands for, and turns the answer into a resume value."""

    def __init__(
        self,
        run: RunReporter,
        *,
        default_options: Sequence[str],
        decision_timeout: float | None,
        resume_value: Callable[[DecisionResult], Any] | None,
    ) -> None:
        self._run = run
        self._default_options = tuple(default_options)
        self._decision_timeout = decision_timeout
        self._resume_value = resume_value
        # How many times each question was asked in its step (see _decision_id).
        self._times_asked: dict[str, int] = {}
        self._given: set[str] = set()

    async def ask(
        self, value: Any, interrupt_id: str, step_id: str = "", *, response_schema: Any = None
    ) -> Any:
        """Asks what the interrupt ``interrupt_id`` (LangGraph's id) of the node reporting
        into ``step_id`` stands for, and waits for the answer (``response_schema``: what the
        interrupt said it takes back, when it said)."""
        actions = _tool_approvals(value, _decision_types(response_schema))
        if self._resume_value is None and actions is not None:
            return await self._ask_tool_approvals(actions, interrupt_id, step_id)
        question = _Question.from_interrupt(value, self._default_options, self._decision_timeout)
        return await self._ask(question, interrupt_id, step_id)

    async def _ask_tool_approvals(
        self, actions: _ToolApprovals, interrupt_id: str, step_id: str
    ) -> Any:
        """LangChain's HumanInTheLoopMiddleware: one question per tool call it holds, all at
        once, resumed with the decisions in its shape (a list under ``decisions`` for the
        calls of one model turn, or one decision for a call asked on its own)."""
        answers = await asyncio.gather(
            *(
                self._ask(
                    replace(question, timeout=self._decision_timeout),
                    f"{interrupt_id}-{place}" if interrupt_id else "",
                    step_id,
                )
                for place, question in enumerate(actions.questions)
            )
        )
        decisions = [
            _tool_decision(answer, question)
            for answer, question in zip(answers, actions.questions, strict=True)
        ]
        return {"decisions": decisions} if actions.batched else decisions[0]

    async def _ask(self, question: _Question, interrupt_id: str, step_id: str) -> Any:
        context = dict(question.context)
        if interrupt_id:
            context.setdefault("interrupt_id", interrupt_id)
        if step_id:
            context.setdefault("step_id", step_id)
        result = await self._run.ask(
            question.prompt,
            question.options,
            default=question.default,
            timeout=question.timeout,
            can_skip=question.can_skip,
            context=context,
            decision_type=question.decision_type,
            affects_workflow=True,
            decision_id=self._decision_id(question, interrupt_id, step_id),
        )
        if self._resume_value is not None:
            return self._resume_value(result)
        if result.choice is None:
            return None
        return question.values.get(result.choice, result.choice)

    def _decision_id(self, question: _Question, interrupt_id: str, step_id: str) -> str | None:
        """The question's id: the same when a producer that restarted (attach_run) meets the
        interrupt again, which then waits for the question asked before (see ``run.ask``).

        LangGraph's interrupt id is that of its checkpoints: a graph run again from its start
        without them gives the interrupt a new one. What a replay keeps is the step the node
        reports into (step ids come in the order nodes start), the question, and how often the
        step asked it before, so those make the id. With the same key_prefix a replay's
        question takes the key of the one asked before and the server drops it: under a new
        id, the producer would wait for the answer to a question never stored.
        """
        asked = json.dumps([step_id, question.prompt, question.options])
        # Counted also when an earlier question is found, so the next one lines up.
        self._times_asked[asked] = self._times_asked.get(asked, 0) + 1
        decision_id = self._asked_before(interrupt_id)
        if decision_id is None and step_id:
            decision_id = self._id_in_step(asked, step_id)
        elif decision_id is None and interrupt_id:
            decision_id = f"interrupt-{interrupt_id}"
        if decision_id is not None:
            self._given.add(decision_id)
        return decision_id

    def _asked_before(self, interrupt_id: str) -> str | None:
        """The open question asked for LangGraph's interrupt ``interrupt_id`` before the
        producer restarted (its checkpoints kept, LangGraph's ids are the same)."""
        if not interrupt_id:
            return None
        for decision in self._run.open_decisions:
            if decision.context.get("interrupt_id") == interrupt_id:
                return decision.decision_id
        return None

    def _id_in_step(self, asked: str, step_id: str) -> str:
        """``interrupt-<step>-<digest of the question and how often the step asked it>``."""
        while True:
            times = self._times_asked[asked]
            digest = hashlib.sha256(f"{asked}:{times}".encode()).hexdigest()[:12]
            decision_id = f"interrupt-{step_id[:_MAX_STEP_IN_ID]}-{digest}"
            if decision_id not in self._given:
                return decision_id
            self._times_asked[asked] = times + 1


@dataclass(frozen=True)
class _Question:
    prompt: str
    options: tuple[str | tuple[str, ...], ...]
    default: str | None
    timeout: float | None
    can_skip: bool
    context: Mapping[str, Any]
    decision_type: str
    values: Mapping[str, Any]
    """Each option's value as the interrupt gave it, by the text it is asked with."""

    @classmethod
    def from_interrupt(
        cls, value: Any, default_options: Sequence[str], default_timeout: float | None
    ) -> _Question:
        if not isinstance(value, Mapping):
            if value is None:  # interrupt(None) asks nothing, as interrupt({}) does
                prompt = ""
            elif isinstance(value, str):
                prompt = short(value, PROMPT_CHARS)
            else:
                prompt = short(value)
            return cls(
                prompt or "The graph is waiting for input",
                tuple(default_options),
                None,
                default_timeout,
                False,
                {},
                _INTERRUPT_DECISION_TYPE,
                {},
            )
        prompt = value.get("question") or value.get("prompt") or value.get("message") or ""
        options = value.get("options") or default_options
        if isinstance(options, str):  # one option, not one per letter
            options = [options]
        timeout = _timeout(value.get("timeout", default_timeout))
        # What else the interrupt carries is what the human reviews (LangGraph's own
        # examples: {"question": ..., "tool_call": ...}, {"text_to_revise": ...}): it goes
        # into the context beside the interrupt's own, whose keys win.
        own = value.get("context")
        context = {key: item for key, item in value.items() if key not in _QUESTION_KEYS}
        if isinstance(own, Mapping):
            context.update(own)
        elif own is not None:
            context["context"] = own
        if len(options) > OPTIONS_ITEMS:
            _log.warning(
                "an interrupt offers %d options; a question holds %d, the rest are left out",
                len(options),
                OPTIONS_ITEMS,
            )
            options = options[:OPTIONS_ITEMS]
        asked = _fitted([_option(o) for o in options])
        values = {_value_of(a): _given_value(o) for a, o in zip(asked, options, strict=True)}
        default = str(value["default"]) if value.get("default") is not None else None
        for given, option in zip(options, asked, strict=True):
            if default is not None and default == _value_of(_option(given)):
                default = _value_of(option)  # the value its option is asked with
                break
        else:
            if default is not None and (not _usable(default) or default in values):
                _log.warning(
                    "an interrupt's default %r is no value a question can take: asked without",
                    default,
                )
                default = None
            elif default is not None:  # the graph's fallback, offered to nobody
                values[default] = value["default"]
        return cls(
            short(str(prompt), PROMPT_CHARS) or "The graph is waiting for input",
            tuple(asked),
            default,
            timeout,
            bool(value.get("can_skip", False)),
            _json_like(context),
            str(value.get("decision_type") or _INTERRUPT_DECISION_TYPE),
            values,
        )


def _option(option: Any) -> str | tuple[str, ...]:
    if isinstance(option, Mapping):
        return tuple(str(option.get(key, "")) for key in ("value", "label", "description"))
    if isinstance(option, tuple):
        return tuple(str(part) for part in option)
    return str(option)


def _value_of(option: str | tuple[str, ...]) -> str:
    """The text an option is asked (and answered) with."""
    return option[0] if isinstance(option, tuple) else option


def _usable(value: str) -> bool:
    return bool(value.strip()) and len(value) <= NAME_CHARS and not CONTROL.search(value)


def _one_line(text: str) -> str:
    return short(" ".join(CONTROL.sub(" ", text).split()), NAME_CHARS)


def _fitted(options: list[str | tuple[str, ...]]) -> list[str | tuple[str, ...]]:
    """The options as a question can hold them: one whose value is no usable value, or the
    value of an option before it (``1`` and ``"1"``), is asked as ``option-N`` (N its place),
    its text its label (when it has none) and description; labels and descriptions cut."""
    given = {_value_of(o) for o in options}
    used: set[str] = set()
    fitted: list[str | tuple[str, ...]] = []
    for place, option in enumerate(options, 1):
        parts = (option,) if isinstance(option, str) else option
        value, label, description = (*parts, "", "")[:3]
        fits = not label or _usable(label)
        if _usable(value) and value not in used and fits and len(description) <= TEXT_CHARS:
            fitted.append(option)
            used.add(value)
            continue
        if not _usable(value) or value in used:
            description = description or value
            label = label or value
            value = f"option-{place}"
            while value in used or value in given:
                value += "-"
        used.add(value)
        fitted.append((value, _one_line(label), short(description, TEXT_CHARS)))
    return fitted


def _json_like(value: Any) -> Any:
    """``value`` as what a question's context holds: mappings with text keys, lists, texts,
    finite numbers, booleans and None; anything else (a datetime, an object) as its text."""
    if isinstance(value, Mapping):
        return {str(key): _json_like(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_like(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return short(value)


def _timeout(given: Any) -> float | None:
    """An interrupt's timeout as a question holds it: seconds, more than none and at most 366
    days; a `timedelta` in seconds; one that is no number at all, none (it waits)."""
    seconds = given.total_seconds() if isinstance(given, timedelta) else given
    if seconds is None:
        return None
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        _log.warning("an interrupt's timeout %r is no number of seconds: it waits", given)
        return None
    if math.isnan(seconds):
        return None
    fitted = min(max(seconds, _AT_ONCE), MAX_DECISION_TIMEOUT_SECONDS)
    if fitted != seconds:
        # Said in the user's terms: it read "timeout of infs is asked as 3.16224e+07s".
        shown = given if isinstance(given, timedelta) else f"{seconds:g} s"
        if fitted == MAX_DECISION_TIMEOUT_SECONDS:
            _log.warning("an interrupt's timeout of %s is past 366 days: it waits 366 days", shown)
        else:
            _log.warning("an interrupt's timeout of %s closes its question at once", shown)
    return fitted


def _given_value(option: Any) -> Any:
    """An option's value as the interrupt gave it (a mapping without one: the mapping)."""
    if isinstance(option, Mapping):
        return option.get("value", option)
    if isinstance(option, tuple):
        return option[0] if option else ""
    return option


@dataclass(frozen=True)
class _ToolApprovals:
    questions: tuple[_Question, ...]
    batched: bool
    """One interrupt for the tool calls of a model turn (resumed with ``{"decisions": [...]}``),
    or for one call on its own (``interrupt_mode="per_call"``: resumed with its decision)."""


_TOOL_DECISIONS = {"approve": ("approve", "Approve"), "reject": ("reject", "Reject")}
"""The decisions of HumanInTheLoopMiddleware a question can offer: "edit" (new arguments) and
"respond" (a message instead of the tool's result) need text an option cannot carry."""


def _tool_approvals(value: Any, allowed: Sequence[str] = ()) -> _ToolApprovals | None:
    """The tool calls HumanInTheLoopMiddleware's interrupt ``value`` asks about, or None when
    it is no such interrupt: ``{"action_requests": [...], "review_configs": [...]}``, or
    ``{"type": "tool_approval", "name": ..., "args": ...}`` for one call, whose decisions
    `allowed` are those of the interrupt's response schema."""
    if not isinstance(value, Mapping):
        return None
    if value.get("type") == "tool_approval" and isinstance(value.get("name"), str):
        return _ToolApprovals((_tool_question(value, allowed),), batched=False)
    requests, configs = value.get("action_requests"), value.get("review_configs")
    if not (isinstance(requests, list) and isinstance(configs, list) and requests):
        return None
    if not all(isinstance(r, Mapping) and isinstance(r.get("name"), str) for r in requests):
        return None
    by_action = {
        c.get("action_name"): tuple(c.get("allowed_decisions") or ())
        for c in configs
        if isinstance(c, Mapping)
    }
    return _ToolApprovals(
        tuple(_tool_question(r, by_action.get(r["name"], ())) for r in requests), batched=True
    )


def _tool_question(action: Mapping[str, Any], allowed: Sequence[str]) -> _Question:
    name, args = action["name"], action.get("args") or {}
    arguments = json.dumps(_json_like(args), ensure_ascii=False)
    prompt = action.get("description") or f"Allow the tool call {name}({arguments})?"
    offered = [d for d in allowed if d in _TOOL_DECISIONS]
    if allowed and not offered:
        # Asked anyway, every answer would be one the middleware refuses, failing the agent.
        raise ValueError(
            f"the tool {name!r} allows only the decisions {list(allowed)}, which need text a "
            "Runstream question's options cannot carry (approve and reject can): give "
            "RunstreamCallbackHandler a resume_value= that makes them from the answer"
        )
    offered = offered or list(_TOOL_DECISIONS)
    return _Question(
        short(str(prompt), PROMPT_CHARS),
        tuple(_TOOL_DECISIONS[d] for d in offered),
        None,
        None,
        False,
        {"tool": name, "args": _json_like(args)},
        _TOOL_APPROVAL_DECISION_TYPE,
        {d: d for d in offered},
    )


def _decision_types(schema: Any) -> tuple[str, ...]:
    """The decision types (``{"type": "approve"}``, ...) a response schema takes: the
    ``type`` constants of its JSON schema's objects; () when there is none to read."""
    if schema is None:
        return ()
    try:
        from pydantic import TypeAdapter

        described = schema if isinstance(schema, Mapping) else TypeAdapter(schema).json_schema()
    except Exception:  # a schema pydantic cannot read: every decision is offered
        return ()
    objects = [described, *(described.get("$defs") or {}).values()]
    found = [
        o.get("properties", {}).get("type", {}).get("const")
        for o in objects
        if isinstance(o, Mapping)
    ]
    return tuple(t for t in found if isinstance(t, str))


def _tool_decision(answer: Any, question: _Question) -> dict[str, Any]:
    """The middleware's decision for a question's answer (None: closed unanswered, which is
    a reject where the tool allows one)."""
    if answer == "approve":
        return {"type": "approve"}
    if answer is None and "reject" not in question.values:
        raise ValueError(
            f"the question about the tool {question.context['tool']!r} closed unanswered "
            "(timed out or skipped), and the tool allows no reject: answer it before its "
            "timeout, or allow reject for it"
        )
    return {"type": "reject", "message": "rejected through Runstream"}
