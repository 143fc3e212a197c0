"""LangChain and LangGraph: report a chain's or a graph's run to Runstream with one handler.

::

    handler = RunstreamCallbackHandler(run)
    result = await handler.run_graph(graph, inputs, config={"configurable": {"thread_id": "t1"}})

or, without the interrupt loop, ``config={"callbacks": [handler]}`` on any ``ainvoke`` /
``astream``. What becomes what:

- a LangGraph node (a plain chain at the top, without LangGraph) is a step: StepStarted when
  it starts, StepCompleted when it ends, StepFailed with the error when it raises, or with
  code ``cancelled`` when the task running the graph is cancelled while the handler's own
  task (the one that made it) goes on, so the run can go on; not when the producer is
  stopped: Ctrl-C cancels the run, which closes the step. A node that
  runs again later (a loop, the graph's next invocation on the run, also through another
  handler) is a new step, ``node-2``; a node stopped by ``interrupt()`` stays running and
  carries on as the same step when the graph resumes (also through another handler). A graph
  run again from its start on a run that finished some of its steps before (a producer
  restarted without its checkpoints, ``attach_run``) replays those nodes: their steps are not
  started again.
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

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from runstream.integrations._common import require

require("langchain_core", "langchain")

from langchain_core.callbacks import AsyncCallbackHandler  # noqa: E402

from runstream._reporter import RunReporter  # noqa: E402
from runstream._types import DecisionResult  # noqa: E402
from runstream.integrations._langchain_calls import ModelCalls, ToolCalls  # noqa: E402
from runstream.integrations._langchain_interrupts import (  # noqa: E402
    DEFAULT_OPTIONS as _DEFAULT_OPTIONS,
)
from runstream.integrations._langchain_interrupts import InterruptQuestions  # noqa: E402
from runstream.integrations._langchain_steps import ChainSteps, LangChainRun  # noqa: E402
from runstream.integrations._run_calls import RunCalls  # noqa: E402

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult
    from tenacity import RetryCallState

__all__ = ["RunstreamCallbackHandler"]


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
            chosen option as the interrupt gave it (None when skipped or timed out).
        loop: The event loop the run belongs to; by default the running loop, so create the
            handler in async code, or pass the run's loop when creating it on another thread.

    Callbacks that LangChain runs on worker threads are reported on the run's loop, in the
    order they happened.
    """

    # LangChain calls the on_* methods by name; each hands its callback to the part that
    # keeps that kind of run: chains (steps), models, tools, and interrupts (questions).

    def __init__(
        self,
        run: RunReporter,
        *,
        agent: str = "",
        default_options: Sequence[str] = _DEFAULT_OPTIONS,
        decision_timeout: float | None = None,
        resume_value: Callable[[DecisionResult], Any] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__()
        self._run = run
        self._calls = RunCalls(run, loop)
        self._steps = ChainSteps(self._calls, agent)
        self._models = ModelCalls(self._calls, self._steps)
        self._tools = ToolCalls(self._calls, self._steps)
        self._questions = InterruptQuestions(
            run,
            default_options=default_options,
            decision_timeout=decision_timeout,
            resume_value=resume_value,
        )

    @property
    def run(self) -> RunReporter:
        """The run this handler reports to."""
        return self._run

    async def flush(self) -> None:
        """Waits until every callback so far is reported (queued on the run's reporter)."""
        await self._calls.drain()

    # --- LangGraph: interrupts become questions -------------------------------------------

    async def run_graph(
        self, graph: Any, inputs: Any, config: Mapping[str, Any] | None = None
    ) -> Any:
        """Runs a compiled LangGraph graph to its end, asking Runstream at each interrupt.

        Invokes ``graph.ainvoke(inputs, config)`` with this handler among the callbacks. While
        the graph stops at ``interrupt()`` calls, each is asked as a ``run.ask()`` question and
        the graph resumes with ``Command(resume={interrupt_id: value})``. The graph needs a
        checkpointer and ``config["configurable"]["thread_id"]``, as LangGraph's interrupts
        always do.

        Returns:
            The graph's final output.

        Raises:
            ValueError: an interrupt stopped a graph that has no checkpointer.
        """
        with self._apart_from_other_runs():
            return await self._run_graph(graph, inputs, config)

    @contextlib.contextmanager
    def _apart_from_other_runs(self) -> Iterator[None]:
        """A graph run from inside another handler's graph (a node that starts a child run
        for a sub-agent) reports into this handler's run alone: LangChain hands a nested
        invoke the callbacks of the node it runs in, so the outer handler reported the child
        graph's nodes and text as steps of its own run too. Its other callbacks (tracers)
        are kept."""
        from langchain_core.runnables.config import var_child_runnable_config

        outer = var_child_runnable_config.get()
        callbacks = (outer or {}).get("callbacks")
        handlers = callbacks if isinstance(callbacks, list) else getattr(callbacks, "handlers", [])
        others = [h for h in handlers if isinstance(h, RunstreamCallbackHandler) and h is not self]
        if outer is None or not others:
            yield
            return
        if isinstance(callbacks, list):
            kept: Any = [h for h in callbacks if h not in others]
        else:  # a callback manager (it has handlers)
            kept = callbacks.copy()  # type: ignore[union-attr]
            for handler in others:
                kept.remove_handler(handler)
        token = var_child_runnable_config.set({**outer, "callbacks": kept})
        try:
            yield
        finally:
            var_child_runnable_config.reset(token)

    async def _run_graph(self, graph: Any, inputs: Any, config: Mapping[str, Any] | None) -> Any:
        from langgraph.types import Command

        run_config = self._with_handler(config)
        # A node named like another node's rerun ("draft-2") keeps its name as its step id.
        self._steps.reserve_nodes(getattr(graph, "nodes", None) or ())
        current: Any = inputs
        while True:
            result = await graph.ainvoke(current, run_config)
            await self.flush()
            if not getattr(graph, "checkpointer", None):
                if isinstance(result, Mapping) and result.get("__interrupt__"):
                    # LangGraph stops there all the same, with nothing to resume it from:
                    # returning would end the run as if the node after it had run.
                    raise ValueError(
                        "interrupt() stopped the graph, which has no checkpointer to resume it "
                        "from: compile it with one (graph.compile(checkpointer=InMemorySaver()))"
                    )
                return result
            state = await graph.aget_state(run_config)
            interrupts = tuple(getattr(state, "interrupts", ()) or ())
            if not interrupts:
                return result
            # Every question at once: a human sees them all, and their timeouts run together.
            steps = self._interrupted_steps(state)
            asked = [
                self._questions.ask(
                    pending.value,
                    pending.id,
                    steps.get(pending.id, ""),
                    response_schema=getattr(pending, "response_schema", None),
                )
                for pending in interrupts
            ]
            answers = dict(
                zip((p.id for p in interrupts), await asyncio.gather(*asked), strict=True)
            )
            # Always by interrupt id: LangGraph takes Command(resume=None) for no resume at all
            # (and fails), while {id: None} resumes that interrupt with None.
            current = Command(resume=answers)

    def _interrupted_steps(self, state: Any) -> dict[str, str]:
        """The step of each interrupt pending in a graph's ``state``, by interrupt id."""
        steps: dict[str, str] = {}
        for task in getattr(state, "tasks", ()) or ():
            step_id = self._steps.interrupted_step(f"{task.name}:{task.id}")
            for pending in task.interrupts:
                steps[pending.id] = step_id
        return steps

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
        start = LangChainRun(serialized, run_id, parent_run_id, tags, metadata or {}, kwargs)
        await self._steps.chain_started(start)

    async def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._steps.chain_ended(run_id)

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        step_id = self._steps.step_of_chain(run_id)
        if step_id is not None:
            self._models.step_failed(step_id)  # its messages close before the step fails
        self._steps.chain_failed(error, run_id, parent_run_id)

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
        start = LangChainRun(serialized, run_id, parent_run_id, tags, metadata or {}, kwargs)
        self._models.started(start)

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
        start = LangChainRun(serialized, run_id, parent_run_id, tags, metadata or {}, kwargs)
        self._models.started(start)

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
        self._models.token(token, run_id)

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._models.ended(response, run_id)

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._models.failed(run_id)
        # A RunnableRetry's failed attempt may be this model call: its retry names the error.
        self._steps.child_failed(error, parent_run_id)

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
        start = LangChainRun(serialized, run_id, parent_run_id, tags, metadata or {}, kwargs)
        self._tools.started(start, input_str, inputs)

    async def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._tools.ended(output, run_id)

    async def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._tools.failed(error, run_id)

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
        self._models.retried(retry_state, run_id)
