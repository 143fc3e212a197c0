"""LangChain and LangGraph: report a chain's or a graph's run to Runstream with one handler.

::

    handler = RunstreamCallbackHandler(run)
    result = await handler.run_graph(graph, inputs, config={"configurable": {"thread_id": "t1"}})

or, without the interrupt loop, ``config={"callbacks": [handler]}`` on any ``ainvoke`` /
``astream``. What becomes what:

- a LangGraph node (a plain chain at the top, without LangGraph) is a step: StepStarted when
  it starts, StepCompleted when it ends, StepFailed with the error when it raises. A node that
  runs again later (a loop) is a new step, ``node-2``; a node stopped by ``interrupt()`` stays
  running and carries on as the same step when the graph resumes.
- LLM tokens (``on_llm_new_token``) are TextDelta events of the node's agent, one message per
  model call, closed with a final delta; a model call that did not stream reports its text as
  one final delta.
- the model a call uses is a ModelAllocation for that agent (once per agent and model).
- a tool call is AgentActivity: STARTED with the input, COMPLETED with the output, FAILED with
  the error.
- a retry (``on_retry``) is an ErrorRecovery with the attempt number.
- ``interrupt(value)`` in a node is a ``run.ask()`` question when the graph runs through
  ``run_graph``: the run waits for a human (dashboard, CLI, any DecisionService client) and the
  graph resumes with ``Command(resume=choice)``.

The interrupt's value says what to ask: a string is the prompt (with ``default_options`` as
the choices), a mapping may hold ``question`` (or ``prompt``), ``options``, ``default``,
``timeout`` (seconds), ``can_skip``, ``context`` and ``decision_type``.

Needs the ``langchain`` extra (``pip install 'runstream[langchain]'``: langchain-core and
langgraph).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from runstream.integrations._common import OrderedReports, StepIds, require, short

require("langchain_core", "langchain")

from langchain_core.callbacks import AsyncCallbackHandler  # noqa: E402

from runstream._reporter import RunReporter  # noqa: E402
from runstream._types import ActivityType, DecisionResult, Severity  # noqa: E402

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult
    from tenacity import RetryCallState

__all__ = ["RunstreamCallbackHandler"]

_DEFAULT_OPTIONS = ("approve", "reject")
_INTERRUPT_DECISION_TYPE = "langgraph_interrupt"


@dataclass
class _ModelCall:
    agent: str
    step_id: str
    message_id: str
    streamed: bool = False


@dataclass
class _StepRun:
    step_id: str
    agent: str
    namespace: str


@dataclass
class _Failure:
    step_id: str
    message: str
    attempts: int


@dataclass
class _Root:
    """A top-level chain whose nature is known only once its first child starts: a LangGraph
    graph (its nodes are the steps) or a plain chain (itself a step)."""

    name: str
    step_id: str | None = None
    resolved: bool = False


def _graph_bubble_up() -> tuple[type[BaseException], ...]:
    """LangGraph's control-flow exceptions (interrupts), when LangGraph is installed."""
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return ()
    return (GraphBubbleUp,)


class RunstreamCallbackHandler(AsyncCallbackHandler):
    """Reports a LangChain / LangGraph run to a Runstream run (see the module).

    Args:
        run: The run to report to (``await client.start_run(...)``).
        agent: The agent name for model calls and tools outside any graph node; by default
            the node's name, else the model's or tool's name.
        default_options: The choices offered for an ``interrupt()`` whose value names none.
        decision_timeout: Seconds a question from ``interrupt()`` waits before the server
            closes it (with its default, when it has one); None waits until answered. An
            interrupt's own ``timeout`` wins.
        resume_value: What the graph resumes with, from the closed decision; by default the
            chosen option's value (None when skipped or timed out).

    Create it in async code, on the loop that runs the run: callbacks that LangChain runs on
    worker threads are reported on that loop, in the order they happened.
    """

    def __init__(
        self,
        run: RunReporter,
        *,
        agent: str = "",
        default_options: Sequence[str] = _DEFAULT_OPTIONS,
        decision_timeout: float | None = None,
        resume_value: Callable[[DecisionResult], Any] | None = None,
    ) -> None:
        super().__init__()
        self._run = run
        self._agent = agent
        self._default_options = tuple(default_options)
        self._decision_timeout = decision_timeout
        self._resume_value = resume_value or (lambda result: result.choice)
        self._reports = OrderedReports()
        self._step_ids = StepIds()
        self._roots: dict[UUID, _Root] = {}
        self._steps: dict[UUID, _StepRun] = {}
        # Steps a node left running when interrupt() stopped it, and steps whose node failed
        # (a retry policy may run it again), by the node's checkpoint namespace.
        self._interrupted: dict[str, str] = {}
        self._failed: dict[str, _Failure] = {}
        # The latest error of a child of each run: a RunnableRetry's failed attempt.
        self._child_errors: dict[UUID, str] = {}
        self._calls: dict[UUID, _ModelCall] = {}
        self._tools: dict[UUID, tuple[str, str, str]] = {}
        self._allocated: set[tuple[str, str]] = set()
        self._bubble_up = _graph_bubble_up()

    @property
    def run(self) -> RunReporter:
        """The run this handler reports to."""
        return self._run

    async def flush(self) -> None:
        """Waits until every callback so far is reported (queued on the run's reporter)."""
        await self._reports.drain()

    # --- LangGraph: interrupts become questions -------------------------------------------

    async def run_graph(
        self, graph: Any, inputs: Any, config: Mapping[str, Any] | None = None
    ) -> Any:
        """Runs a compiled LangGraph graph to its end, asking Runstream at each interrupt.

        Invokes ``graph.ainvoke(inputs, config)`` with this handler among the callbacks. While
        the graph stops at ``interrupt()`` calls, each is asked as a ``run.ask()`` question and
        the graph resumes with ``Command(resume=...)`` (one value, or a mapping by interrupt
        id when several are pending). The graph needs a checkpointer and
        ``config["configurable"]["thread_id"]``, as LangGraph's interrupts always do.

        Returns:
            The graph's final output.
        """
        from langgraph.types import Command

        run_config = self._with_handler(config)
        current: Any = inputs
        while True:
            result = await graph.ainvoke(current, run_config)
            await self.flush()
            if not getattr(graph, "checkpointer", None):
                return result  # Without a checkpointer a graph cannot stop at an interrupt.
            state = await graph.aget_state(run_config)
            interrupts = tuple(getattr(state, "interrupts", ()) or ())
            if not interrupts:
                return result
            answers = {}
            for pending in interrupts:
                answers[pending.id] = await self.ask_interrupt(pending.value, pending.id)
            resume = answers if len(answers) > 1 else next(iter(answers.values()))
            current = Command(resume=resume)

    async def ask_interrupt(self, value: Any, interrupt_id: str = "") -> Any:
        """Asks the question an ``interrupt(value)`` stands for; returns the resume value."""
        question = _Question.from_interrupt(value, self._default_options, self._decision_timeout)
        context = dict(question.context)
        if interrupt_id:
            context.setdefault("interrupt_id", interrupt_id)
        result = await self._run.ask(
            question.prompt,
            question.options,
            default=question.default,
            timeout=question.timeout,
            can_skip=question.can_skip,
            context=context,
            decision_type=question.decision_type,
            affects_workflow=True,
        )
        return self._resume_value(result)

    def _with_handler(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        run_config = dict(config or {})
        callbacks = run_config.get("callbacks")
        if callbacks is None:
            run_config["callbacks"] = [self]
        elif isinstance(callbacks, list):
            if self not in callbacks:
                run_config["callbacks"] = [*callbacks, self]
        else:  # A callback manager.
            callbacks.add_handler(self, inherit=True)
        return run_config

    # --- chains: graph nodes and top-level chains are steps -------------------------------

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "chain")
        meta = metadata or {}
        node = meta.get("langgraph_node")
        if parent_run_id is None:
            self._roots[run_id] = _Root(name)
            return
        self._resolve_root(parent_run_id, is_graph=node is not None)
        self._note_retry(parent_run_id, tags)
        if node is None or name != node or parent_run_id in self._steps:
            return
        namespace = str(meta.get("langgraph_checkpoint_ns") or node)
        resumed = self._interrupted.pop(namespace, None)
        if resumed is not None:
            # The node interrupt() stopped runs again with the answer: still the same step.
            self._steps[run_id] = _StepRun(resumed, node, namespace)
            return
        failed = self._failed.pop(namespace, None)
        if failed is not None:
            # A retry policy runs the failed node again: the same step, restarted.
            step_id = failed.step_id
            self._report_retry(failed.message, failed.attempts, [node])
        else:
            step_id = self._step_ids.new(node)
        self._steps[run_id] = _StepRun(step_id, node, namespace)
        self._submit(lambda: self._run.start_step(step_id, name=node, agent=node))
        await self._hold_if_paused()

    async def _hold_if_paused(self) -> None:
        """A node boundary is a step boundary: a paused run holds the graph here."""
        if self._reports.on_loop():
            await self._reports.drain()
            await self._run.wait_if_paused()

    async def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._finish_root(run_id)
        step = self._steps.pop(run_id, None)
        if step is not None:
            self._submit(lambda: self._run.step(step.step_id).complete())

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        step = self._steps.pop(run_id, None)
        if self._bubble_up and isinstance(error, self._bubble_up):
            # interrupt(): the node stops to wait for an answer and runs again with it.
            if step is not None:
                self._interrupted[step.namespace] = step.step_id
            self._roots.pop(run_id, None)
            return
        self._finish_root(run_id)
        message = short(f"{type(error).__name__}: {error}")
        if parent_run_id is not None:
            self._child_errors[parent_run_id] = message
        if step is not None:
            code = type(error).__name__
            previous = self._failed.get(step.namespace)
            attempts = previous.attempts + 1 if previous is not None else 1
            self._failed[step.namespace] = _Failure(step.step_id, message, attempts)
            self._submit(lambda: self._run.step(step.step_id).fail(message, code=code))

    def _resolve_root(self, parent_run_id: UUID, *, is_graph: bool) -> None:
        root = self._roots.get(parent_run_id)
        if root is None or root.resolved:
            return
        root.resolved = True
        if not is_graph:
            step_id = self._step_ids.new(root.name)
            root.step_id = step_id
            name = root.name
            self._steps[parent_run_id] = _StepRun(step_id, self._agent or name, name)
            self._submit(lambda: self._run.start_step(step_id, name=name))

    def _finish_root(self, run_id: UUID) -> None:
        root = self._roots.pop(run_id, None)
        if root is not None and not root.resolved:
            # A top-level chain with no children at all: a one-step chain.
            self._roots[run_id] = root
            self._resolve_root(run_id, is_graph=False)
            self._roots.pop(run_id, None)

    def _agent_for(self, parent_run_id: UUID | None, metadata: Mapping[str, Any] | None) -> str:
        node = (metadata or {}).get("langgraph_node")
        if node:
            return str(node)
        if parent_run_id is not None and parent_run_id in self._steps:
            return self._steps[parent_run_id].agent
        return self._agent

    def _step_for(self, agent: str) -> str:
        """The running step of this agent (node), if there is one."""
        for step in reversed(list(self._steps.values())):
            if step.agent == agent:
                return step.step_id
        return ""

    # --- models: allocations and streamed text --------------------------------------------

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(serialized, run_id, parent_run_id, tags, metadata, kwargs)

    async def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._model_start(serialized, run_id, parent_run_id, tags, metadata, kwargs)

    def _model_start(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        if parent_run_id is not None:
            self._resolve_root(parent_run_id, is_graph=bool((metadata or {}).get("langgraph_node")))
            self._note_retry(parent_run_id, tags)
        model = _model_name(serialized, metadata, kwargs)
        agent = self._agent_for(parent_run_id, metadata) or model
        call = _ModelCall(agent=agent, step_id=self._step_for(agent), message_id=str(run_id))
        self._calls[run_id] = call
        if (agent, model) not in self._allocated:
            self._allocated.add((agent, model))
            params = kwargs.get("invocation_params") or {}
            provider = str((metadata or {}).get("ls_provider") or params.get("_type") or "")
            self._submit(
                lambda: self._run.model_allocation(
                    agent, model, reasoning=f"{provider} model" if provider else ""
                )
            )

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._calls.get(run_id)
        text = token if isinstance(token, str) else "".join(_block_text(b) for b in token)
        if call is None or not text:
            return
        call.streamed = True
        self._submit(
            lambda: self._run.text(call.agent, call.message_id, text, step_id=call.step_id)
        )

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        # A streamed message ends with an empty final delta; one that did not stream arrives
        # whole, as a single final delta.
        text = "" if call.streamed else _response_text(response)
        if call.streamed or text:
            self._submit(
                lambda: self._run.text(
                    call.agent, call.message_id, text, final=True, step_id=call.step_id
                )
            )

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None and call.streamed:
            self._submit(
                lambda: self._run.text(
                    call.agent, call.message_id, "", final=True, step_id=call.step_id
                )
            )

    # --- tools: agent activity --------------------------------------------------------------

    async def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is not None:
            self._resolve_root(parent_run_id, is_graph=bool((metadata or {}).get("langgraph_node")))
            self._note_retry(parent_run_id, tags)
        tool = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        agent = self._agent_for(parent_run_id, metadata) or tool
        step_id = self._step_for(agent)
        self._tools[run_id] = (agent, tool, step_id)
        given = json.dumps(inputs, default=str) if inputs is not None else input_str
        data = {"tool": tool, "input": short(given)}
        if kwargs.get("tool_call_id"):
            data["tool_call_id"] = str(kwargs["tool_call_id"])
        self._submit(
            lambda: self._run.activity(
                agent, ActivityType.STARTED, f"calling {tool}", data=data, step_id=step_id
            )
        )

    async def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        content = getattr(output, "content", output)
        self._tool_ended(run_id, ActivityType.COMPLETED, "done", {"output": short(content)})

    async def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        message = short(f"{type(error).__name__}: {error}")
        self._tool_ended(run_id, ActivityType.FAILED, "failed", {"error": message})

    def _tool_ended(
        self, run_id: UUID, activity: ActivityType, verb: str, details: dict[str, str]
    ) -> None:
        started = self._tools.pop(run_id, None)
        if started is None:
            return
        agent, tool, step_id = started
        data = {"tool": tool, **details}
        self._submit(
            lambda: self._run.activity(
                agent, activity, f"{tool} {verb}", data=data, step_id=step_id
            )
        )

    # --- retries: error recoveries ----------------------------------------------------------

    async def on_retry(
        self,
        retry_state: RetryCallState,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A model call's own retry (LangChain's LLM retry decorators)."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        message = short(f"{type(error).__name__}: {error}" if error else "retrying")
        call = self._calls.get(run_id)
        self._report_retry(message, int(retry_state.attempt_number), [call.agent] if call else [])

    def _note_retry(self, parent_run_id: UUID, tags: list[str] | None) -> None:
        """A RunnableRetry's attempts are its children, tagged ``retry:attempt:N`` from the
        second on: each such start means the attempt before it failed."""
        for tag in tags or ():
            if tag.startswith("retry:attempt:"):
                attempt = int(tag.rsplit(":", 1)[1]) - 1
                message = self._child_errors.pop(parent_run_id, "the previous attempt failed")
                step = self._steps.get(parent_run_id)
                self._report_retry(message, attempt, [step.agent] if step else [])

    def _report_retry(self, message: str, attempt: int, agents: list[str]) -> None:
        """An ErrorRecovery: attempt ``attempt`` failed with ``message``; retrying."""
        affected = [agent for agent in agents if agent]
        self._submit(
            lambda: self._run.error_recovery(
                message,
                severity=Severity.MEDIUM,
                recovery_strategy="retry",
                affected_agents=affected,
                attempt=attempt,
            )
        )

    def _submit(self, call: Callable[[], Any]) -> None:
        self._reports.submit(call)


@dataclass(frozen=True)
class _Question:
    prompt: str
    options: tuple[str | tuple[str, ...], ...]
    default: str | None
    timeout: float | None
    can_skip: bool
    context: Mapping[str, Any]
    decision_type: str

    @classmethod
    def from_interrupt(
        cls, value: Any, default_options: Sequence[str], default_timeout: float | None
    ) -> _Question:
        if not isinstance(value, Mapping):
            prompt = value if isinstance(value, str) else short(value)
            return cls(
                prompt or "The graph is waiting for input",
                tuple(default_options),
                None,
                default_timeout,
                False,
                {},
                _INTERRUPT_DECISION_TYPE,
            )
        prompt = value.get("question") or value.get("prompt") or value.get("message") or ""
        options = value.get("options") or default_options
        timeout = value.get("timeout", default_timeout)
        context = value.get("context")
        return cls(
            str(prompt) or "The graph is waiting for input",
            tuple(_option(o) for o in options),
            str(value["default"]) if value.get("default") is not None else None,
            float(timeout) if timeout is not None else None,
            bool(value.get("can_skip", False)),
            dict(context) if isinstance(context, Mapping) else {},
            str(value.get("decision_type") or _INTERRUPT_DECISION_TYPE),
        )


def _option(option: Any) -> str | tuple[str, ...]:
    if isinstance(option, Mapping):
        return tuple(str(option.get(key, "")) for key in ("value", "label", "description"))
    if isinstance(option, tuple):
        return tuple(str(part) for part in option)
    return str(option)


def _model_name(
    serialized: dict[str, Any] | None, metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
) -> str:
    params = kwargs.get("invocation_params") or {}
    for candidate in (
        (metadata or {}).get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        kwargs.get("name"),
        (serialized or {}).get("name"),
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
            text = getattr(message, "text", None) if message is not None else None
            if callable(text):  # langchain-core < 1 had text() as a method.
                text = text()
            parts.append(str(text if text is not None else generation.text or ""))
    return "".join(parts)
