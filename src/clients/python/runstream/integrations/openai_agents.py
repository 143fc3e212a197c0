"""The OpenAI Agents SDK: a tracing processor that reports an agent workflow to Runstream.

::

    async with runstream_trace(run):
        result = await Runner.run(triage_agent, "...")

``runstream_trace(run)`` reports to ``run`` the traces that start inside the block (and the
spans that start there, in a trace begun outside it), in this task and the tasks it creates,
and nothing else: two runs reported at once in one process (``asyncio.gather``) each get
their own agents' spans. It registers one process-wide processor with the SDK the first time
(``add_trace_processor``, beside the SDK's own exporter; again if ``set_trace_processors``
replaced it since), so processors do not pile up, and it waits on leaving the block until
everything is reported; a run that finished gets nothing more. Agents that run on after the
block (``Runner.run_streamed`` read after it) are not reported, and a WARNING says so.

A ``RunstreamProcessor`` registered with the SDK directly (``add_trace_processor`` or
``set_trace_processors``) sees every trace in the process for as long as the process runs
(the SDK cannot remove one processor), so use that only with one run per process or with
``trace_filter``.

What becomes what (the SDK's spans, as they start and end):

- an agent span is a step named after the agent (StepStarted, then StepCompleted, or
  StepFailed with the span's error); an agent that runs again later is a new step,
  ``Writer-2``. An agent cancelled before it finished while the block's own task goes on (a
  streamed run's ``cancel()``, a task of its own that runs it cancelled) is StepFailed with
  code ``cancelled``, and the run can go on (also when the producer breaks out of
  ``stream_events()`` right after ``cancel()`` and leaves the block: leaving it waits a few
  seconds at most for the cancelled agents to end). A producer stopped mid-agent (Ctrl-C, the
  block's task cancelled, also while it reads a streamed run) completes and fails nothing:
  the run ends cancelled, which closes the step.
- a generation span (or a response span, from the Responses API) is a ModelAllocation of the
  model for the agent (once per agent and model), its assistant text a TextDelta of the agent,
  and its token usage run-level metrics: ``input_tokens``, ``output_tokens`` and
  ``total_tokens``, summed over the run so far, and ``model_calls``. The SDK traces the text
  whole, as the call ends; a model wrapped in ``RunstreamModel`` (or given by
  ``RunstreamModelProvider``) streams it delta by delta in a ``Runner.run_streamed``, each
  call's text a message of its own that the call's end closes (also for a model that opens
  no span of its own, whose text streams into the SDK's turn span or its agent's).
- a function (tool) span is AgentActivity of the agent: STARTED, then COMPLETED with the
  output or FAILED with the error.
- a handoff span is AgentActivity naming both agents (``from_agent``, ``to_agent``).
- a guardrail span that tripped is a HIGH Alert (code ``guardrail_tripped``).

The Agents SDK calls processors synchronously, from the thread that runs the agents; the
processor queues each report and sends them in order on the run's event loop, so it never
blocks the agents, and each event keeps the time the SDK told of it. So a paused run does not
hold the agents unless the runner is given ``hooks=RunstreamHooks(run)``, which wait for the
resume as each agent starts and before each model call. ``await processor.flush()`` waits
until everything so far is reported (``runstream_trace`` does so as its block ends).

Needs the ``openai-agents`` extra (``pip install 'runstream[openai-agents]'``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from runstream.integrations._common import StepIds, require, short

require("agents", "openai-agents")

from agents import RunHooks  # noqa: E402
from agents.tracing import (  # noqa: E402
    Span,
    Trace,
    TracingProcessor,
    add_trace_processor,
    get_current_span,
    get_trace_provider,
)
from agents.tracing.span_data import (  # noqa: E402
    AgentSpanData,
    FunctionSpanData,
    GenerationSpanData,
    GuardrailSpanData,
    HandoffSpanData,
    ResponseSpanData,
)

from runstream._reporter import RunReporter  # noqa: E402
from runstream._types import ActivityType, Severity  # noqa: E402
from runstream.integrations._run_calls import RunCalls  # noqa: E402

__all__ = [
    "RunstreamHooks",
    "RunstreamModel",
    "RunstreamModelProvider",
    "RunstreamProcessor",
    "runstream_trace",
]

_log = logging.getLogger("runstream.integrations")

_TOKEN_FIELDS = ("input_tokens", "output_tokens")  # a Usage's, as ModelUse takes them
# What stops the producer rather than an agent failing; the SDK ends its spans as either passes.
_STOPPED = (asyncio.CancelledError, KeyboardInterrupt)
# How long flush() waits for agents being cancelled to end their spans (the SDK's cleanup).
_WIND_DOWN = 5.0


@dataclass
class _AgentStep:
    agent: str
    step_id: str
    tripped: str = ""  # The guardrail that stopped the agent, if one did.
    task: asyncio.Task[Any] | None = None  # The task the agent runs in, when on the loop.


class RunstreamProcessor(TracingProcessor):
    """Reports the OpenAI Agents SDK's traces to a Runstream run (see the module).

    Args:
        run: The run to report to (``await client.start_run(...)``).
        trace_filter: Which traces to report; all when None. For example
            ``lambda trace: trace.name == "Support workflow"``.
        loop: The event loop the run belongs to; by default the running loop, so create the
            processor in async code.

    The task that creates the processor is taken for the producer's: while it is being
    cancelled, agents that end cancelled leave their steps to the run's end; otherwise each
    such agent's step fails as ``cancelled``.
    """

    def __init__(
        self,
        run: RunReporter,
        *,
        trace_filter: Callable[[Trace], bool] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._run = run
        self._filter = trace_filter
        self._calls = RunCalls(run, loop)
        self._step_ids = StepIds.of(run)
        self._traces: set[str] = set()
        self._agents: dict[str, _AgentStep] = {}  # by agent span id
        self._parents: dict[str, str | None] = {}  # span id -> parent span id
        self._closed = False  # set when its runstream_trace block ended: reports nothing more
        # The messages whose text went delta by delta and that are still open, by the span
        # they streamed in: a model call's (the message is the span's id), else its turn's
        # or its agent's, for a model that opens no span (one message per call).
        self._streamed: dict[str, set[str]] = {}
        self._calls_untraced = itertools.count(1)  # numbers those calls' messages
        with _PROCESSORS_LOCK:
            _PROCESSORS.add(self)
        self._warned_late = False  # whether it said that agents ran after its block ended

    @property
    def run(self) -> RunReporter:
        """The run this processor reports to."""
        return self._run

    async def flush(self) -> None:
        """Waits until every span so far is reported (queued on the run's reporter), and
        first, for a few seconds at most, until agents being cancelled have ended theirs."""
        await self._wind_down()
        await self._calls.drain()

    async def _wind_down(self) -> None:
        """Waits (at most ``_WIND_DOWN`` seconds) for the tasks of agents being cancelled.

        ``cancel()`` on a streamed run cancels the SDK's task and returns; the agent's span
        ends as that task unwinds, which a producer that breaks out of ``stream_events()``
        and leaves its ``runstream_trace`` block at once would not wait for. Not while the
        producer itself is stopped: its steps are the run's end's to close.
        """
        if self._calls.producer_stopped(None):
            return
        loop = asyncio.get_running_loop()
        ending = {  # tasks of this loop only: an agent run by run_sync has a loop of its own
            step.task
            for step in self._agents.values()
            if step.task is not None
            and step.task.get_loop() is loop
            and not step.task.done()
            and step.task.cancelling()
        }
        if ending:
            await asyncio.wait(ending, timeout=_WIND_DOWN)

    # --- TracingProcessor -----------------------------------------------------------------

    def on_trace_start(self, trace: Trace) -> None:
        if self._filter is None or self._filter(trace):
            self._traces.add(trace.trace_id)

    def on_trace_end(self, trace: Trace) -> None:
        self._traces.discard(trace.trace_id)

    def on_span_start(self, span: Span[Any]) -> None:
        if span.trace_id in self._traces:
            self._span_started(span)

    def on_span_end(self, span: Span[Any]) -> None:
        if span.trace_id in self._traces:
            self._span_ended(span)

    def shutdown(self) -> None:
        """Nothing to release: reports go through the run's own reporter."""

    def force_flush(self) -> None:
        """Reports are queued on the run's event loop; ``await flush()`` waits for them."""

    # --- span kinds ------------------------------------------------------------------------

    def _span_started(self, span: Span[Any]) -> None:
        self._parents[span.span_id] = span.parent_id
        data = span.span_data
        if isinstance(data, AgentSpanData):
            step = _AgentStep(data.name, self._step_ids.new(data.name), task=_current_task())
            self._agents[span.span_id] = step
            self._calls.start_step(
                step.step_id, name=step.agent, agent=step.agent, held=self._run in _HELD_RUNS
            )
        elif isinstance(data, FunctionSpanData):
            step = self._agent_of(span)
            details: dict[str, Any] = {"tool": data.name, "tool_call_id": span.span_id}
            if data.input is not None:  # the SDK's own tools set it after the span starts
                details["input"] = short(data.input)
            self._calls.tool_started(step.agent, data.name, details, step_id=step.step_id)

    def _span_ended(self, span: Span[Any]) -> None:
        data = span.span_data
        stop = sys.exc_info()[1]
        if isinstance(stop, _STOPPED):
            # The SDK ends its spans on the way out of a cancellation, without an error: the
            # agent did not finish, nor did its tool or model call.
            if span.span_id in self._streamed:
                self._messages_cut(span, stop)
            step = self._agents.pop(span.span_id, None)
            self._parents.pop(span.span_id, None)
            if step is not None and not self._calls.producer_stopped(stop):
                # Only the agents were cancelled (a streamed run's cancel(), a task of their
                # own cancelled) and the run goes on.
                self._calls.cancel_step(step.step_id)
            # Else the producer was stopped (Ctrl-C, its task cancelled): the step stays
            # running, and the run's end (cancelled, as ``async with run:`` reports it) closes
            # it, as an operator's cancel does.
            return
        error = _error_text(span.error)
        model_call = isinstance(data, GenerationSpanData | ResponseSpanData)
        if span.span_id in self._streamed and not model_call:
            # A RunstreamModel whose model opens no span of its own (agents.testing's
            # ScriptedModel) streamed into this span, its turn's or agent's, and the call's
            # end did not close its message (a stream left unclosed): it ends with the span,
            # or it stayed open for good.
            self._messages_ended(span)
        if isinstance(data, AgentSpanData):
            self._agent_ended(span.span_id, error, stop)
        elif isinstance(data, GenerationSpanData):
            self._model_used(span, data.model, data.usage, _output_text(data.output))
        elif isinstance(data, ResponseSpanData):
            response = data.response
            model = getattr(response, "model", None)
            usage = data.usage or _usage_of(getattr(response, "usage", None))
            self._model_used(span, model, usage, str(getattr(response, "output_text", "") or ""))
        elif isinstance(data, FunctionSpanData):
            self._tool_ended(span, data, error)
        elif isinstance(data, HandoffSpanData):
            self._handoff(span, data)
        elif isinstance(data, GuardrailSpanData) and data.triggered:
            step = self._agent_of(span)
            name = data.name
            step.tripped = step.tripped or name
            self._calls.submit(
                lambda: self._run.alert(
                    f"guardrail {name} tripped" + (f" on {step.agent}" if step.agent else ""),
                    severity=Severity.HIGH,
                    code="guardrail_tripped",
                    suggested_action="review the input or output the guardrail stopped",
                    data={"guardrail": name, "agent": step.agent},
                )
            )
        self._parents.pop(span.span_id, None)

    def _agent_ended(
        self, span_id: str, error: str | None, stop: BaseException | None = None
    ) -> None:
        step = self._agents.pop(span_id, None)
        if step is None:
            return
        if error is None and step.tripped:
            # The SDK ends a stopped agent's span without an error; the run did not go on.
            error = f"guardrail {step.tripped} tripped"
        if error is None and isinstance(stop, Exception):
            # The SDK attaches some errors (a tool not found, invalid structured output) to
            # the turn span and ends the agent's span without one while the error escapes.
            error = short(f"{type(stop).__name__}: {stop}")
        if error is None:
            self._calls.complete_step(step.step_id)
        else:
            self._calls.fail_step(step.step_id, error, code="agent_error")

    def _model_used(
        self, span: Span[Any], model: str | None, usage: Mapping[str, Any] | None, text: str
    ) -> None:
        if model:
            self._calls.allocate(self._agent_of(span).agent or "agent", model)
        if span.span_id in self._streamed:  # its text went already: close the message
            self._messages_ended(span)
        elif text:
            self._text(span, text, final=True)
        self._calls.model_used(usage)

    def _tool_ended(self, span: Span[Any], data: FunctionSpanData, error: str | None) -> None:
        step = self._agent_of(span)
        details: dict[str, Any] = {"tool": data.name, "tool_call_id": span.span_id}
        if data.input is not None:
            details["input"] = short(data.input)
        if error is None:
            details["output"] = short(data.output) if data.output is not None else ""
        else:
            details["error"] = error
        self._calls.tool_ended(
            step.agent, data.name, details, failed=error is not None, step_id=step.step_id
        )

    def _handoff(self, span: Span[Any], data: HandoffSpanData) -> None:
        source = data.from_agent or self._agent_of(span).agent
        target = data.to_agent or ""
        step = self._agent_of(span)
        self._calls.activity(
            source or "agent",
            ActivityType.COMPLETED,
            f"handed off to {target}" if target else "handed off",
            data={"handoff": True, "from_agent": source, "to_agent": target},
            step_id=step.step_id,
        )

    def _messages_ended(self, span: Span[Any]) -> None:
        """``span`` ended: the messages still open that streamed in it end too."""
        for message_id in sorted(self._streamed.pop(span.span_id, ())):
            self._text(span, "", final=True, message_id=message_id)

    def _messages_cut(self, span: Span[Any], stop: BaseException) -> None:
        """``span``, whose text streamed, was cancelled: its messages end where they stopped,
        unless the producer stopped (the run's end says it all)."""
        if self._calls.producer_stopped(stop):
            self._streamed.pop(span.span_id, None)
        else:
            self._messages_ended(span)

    def _text_streamed(self, span: Span[Any], message_id: str, delta: str) -> None:
        """A text delta of the message ``message_id``, streamed in ``span`` (see
        ``RunstreamModel``)."""
        self._streamed.setdefault(span.span_id, set()).add(message_id)
        self._text(span, delta, message_id=message_id)

    def _stream_ended(self, span: Span[Any], message_id: str, stop: BaseException | None) -> None:
        """The model call whose text streamed in ``span`` as ``message_id`` ended, by
        ``stop`` when it raised: its message ends, unless the producer was stopped."""
        open_here = self._streamed.get(span.span_id)
        if self._closed or open_here is None or message_id not in open_here:
            return
        open_here.discard(message_id)
        if not open_here:
            del self._streamed[span.span_id]
        if stop is None or isinstance(stop, Exception) or not self._calls.producer_stopped(stop):
            self._text(span, "", final=True, message_id=message_id)

    def _text(
        self, span: Span[Any], delta: str, *, final: bool = False, message_id: str = ""
    ) -> None:
        """Text of the model call ``span`` (the message ``message_id``, by default the span's
        own id): a message of its agent, in the agent's step."""
        step = self._agent_of(span)
        self._calls.text(
            step.agent or "agent",
            message_id or span.span_id,
            delta,
            final=final,
            step_id=step.step_id,
        )

    def _agent_of(self, span: Span[Any]) -> _AgentStep:
        """The agent whose span encloses ``span`` (its own, for an agent span)."""
        span_id: str | None = span.span_id
        while span_id is not None:
            if span_id in self._agents:
                return self._agents[span_id]
            span_id = self._parents.get(span_id)
        return _AgentStep("", "")


@asynccontextmanager
async def runstream_trace(run: RunReporter) -> AsyncIterator[RunstreamProcessor]:
    """Reports the agents run inside the block to ``run`` (see the module).

    ::

        async with runstream_trace(run):
            result = await Runner.run(triage_agent, "...")

    Yields the block's processor. Create it on the run's event loop. On leaving the block,
    also by an exception, it waits until every span so far is reported (and, a few seconds at
    most, for agents whose streamed run was just cancelled to end theirs), then reports no
    more.
    """
    processor = RunstreamProcessor(run)
    _ROUTER.register()
    token = _BOUND.set(processor)
    try:
        yield processor
    finally:
        _BOUND.reset(token)
        try:
            await processor._wind_down()  # a streamed run cancelled just before the end
        finally:
            _ROUTER.release(processor)
            await processor._calls.drain()


class RunstreamHooks(RunHooks[Any]):
    """Run hooks that hold the agents while ``run`` is paused: at each agent's start and
    before each of its model calls, the agents wait for the resume (and raise
    RunCancelledError when the run is cancelled meanwhile), as a LangGraph graph holds at its
    next node. The tracing processor cannot: the SDK calls it synchronously, and the agents
    would run on, their events waiting for the resume. Pass them to the runner, on the run's
    event loop::

        async with runstream_trace(run):
            result = await Runner.run(agent, "...", hooks=RunstreamHooks(run))
    """

    def __init__(self, run: RunReporter) -> None:
        self._run = run
        _HELD_RUNS.add(run)

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        await self._run.wait_if_paused()

    async def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        await self._run.wait_if_paused()


_PROCESSORS: weakref.WeakSet[RunstreamProcessor] = weakref.WeakSet()
"""Every processor alive, for the text a RunstreamModel streams (``StreamedText``)."""
_PROCESSORS_LOCK = threading.Lock()


class StreamedText:
    """The text one model call streams (``RunstreamModel``), told inside the call's span: the
    agent's streamed text, for the processor the span went to.

    A model that opens a generation or response span streams its message under that span's
    id, and the span's end closes it. A model that opens none streams in the SDK's turn span
    or its agent's, which several calls share: each call is then a message of its own, which
    the call's end (``ended``) closes.
    """

    def __init__(self) -> None:
        self._told: list[tuple[RunstreamProcessor, Span[Any], str]] = []  # untraced messages

    def delta(self, delta: str) -> None:
        """A text delta the model call yields."""
        span = get_current_span()
        if span is None:
            return
        with _PROCESSORS_LOCK:
            processors = list(_PROCESSORS)
        for processor in processors:
            if span.span_id in processor._parents and not processor._closed:
                processor._text_streamed(span, self._message_of(processor, span), delta)
                return

    def ended(self, stop: BaseException | None) -> None:
        """The model call's stream ended: normally when ``stop`` is None, else by it."""
        for processor, span, message_id in self._told:
            processor._stream_ended(span, message_id, stop)
        self._told.clear()

    def _message_of(self, processor: RunstreamProcessor, span: Span[Any]) -> str:
        """The id of this call's message, streamed in ``span``."""
        if isinstance(span.span_data, GenerationSpanData | ResponseSpanData):
            return span.span_id  # the call's own span: its end closes the message
        for told in self._told:
            if told[0] is processor and told[1].span_id == span.span_id:
                return told[2]
        message_id = f"{span.span_id}-{next(processor._calls_untraced)}"
        self._told.append((processor, span, message_id))
        return message_id


_HELD_RUNS: weakref.WeakSet[RunReporter] = weakref.WeakSet()
"""The runs whose agents RunstreamHooks hold while paused."""

_BOUND: ContextVar[RunstreamProcessor | None] = ContextVar(
    "runstream_openai_agents_processor", default=None
)
"""The processor of the innermost ``runstream_trace`` block around the running code."""


class _Router(TracingProcessor):
    """The one processor ``runstream_trace`` registers: it hands each span to the processor
    bound where the span started, else to the one bound where its trace started.

    The SDK calls processors from the code that starts and ends traces and spans, so
    ``_BOUND`` there is the block's processor (asyncio tasks copy it when they are created).
    A span's end goes wherever its start went: a streamed model call ends its span elsewhere.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the SDK may call from worker threads too
        self._traces: dict[str, RunstreamProcessor] = {}  # by trace id
        self._spans: dict[str, RunstreamProcessor] = {}  # by span id, until the span ends
        self._added = False

    def register(self) -> None:
        """Adds this router to the SDK's processors unless it is among them already."""
        # The SDK can list its processors only through its provider's internals (openai-agents
        # is pinned to 0.24); without them, add once and trust nobody replaced the list.
        multi = getattr(get_trace_provider(), "_multi_processor", None)
        registered = getattr(multi, "_processors", None)
        with self._lock:
            if isinstance(registered, tuple | list):
                present = any(p is self for p in registered)
            else:
                present = self._added
            if not present:
                add_trace_processor(self)
                self._added = True

    def release(self, processor: RunstreamProcessor) -> None:
        """Forgets ``processor``'s traces and spans; it reports nothing more."""
        with self._lock:
            processor._closed = True
            for owned in (self._traces, self._spans):
                for key in [k for k, p in owned.items() if p is processor]:
                    del owned[key]

    def on_trace_start(self, trace: Trace) -> None:
        processor = _BOUND.get()
        if processor is not None and not processor._closed:
            with self._lock:
                self._traces[trace.trace_id] = processor

    def on_trace_end(self, trace: Trace) -> None:
        with self._lock:
            self._traces.pop(trace.trace_id, None)

    def on_span_start(self, span: Span[Any]) -> None:
        with self._lock:
            processor = _BOUND.get() or self._traces.get(span.trace_id)
            if processor is None:
                return
            closed = processor._closed
            if not closed:
                self._spans[span.span_id] = processor
            first_late = closed and not processor._warned_late
            processor._warned_late = processor._warned_late or closed
        if not closed:
            processor._span_started(span)
        elif first_late:
            # A task begun in the block runs on after it: Runner.run_streamed's events
            # consumed after the block, most likely. Its agents would vanish without a word.
            _log.warning(
                "agents ran after their runstream_trace block for run %s ended and are not "
                "reported: keep them inside the block (for Runner.run_streamed, read "
                "stream_events() there)",
                processor.run.run_id,
            )

    def on_span_end(self, span: Span[Any]) -> None:
        with self._lock:
            processor = self._spans.pop(span.span_id, None)
        if processor is not None and not processor._closed:
            processor._span_ended(span)

    def shutdown(self) -> None:
        """Nothing to release: each block's processor reports through its run."""

    def force_flush(self) -> None:
        """Each ``runstream_trace`` block waits for its own reports as it ends."""


_ROUTER = _Router()


def _current_task() -> asyncio.Task[Any] | None:
    """The running task, None off the event loop (the SDK may call from worker threads)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _error_text(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, Mapping):
        message = str(error.get("message") or "error")
        data = error.get("data")
        return short(f"{message}: {json.dumps(data, default=str)}" if data else message)
    return short(error)


def _output_text(output: Any) -> str:
    """The assistant text in a generation span's output: Responses-format items, Chat
    Completions messages, or (a streamed Chat Completions call) the whole final Response."""
    parts: list[str] = []
    for item in output or ():
        if isinstance(item, Mapping) and item.get("object") == "response":
            parts.append(_output_text(item.get("output")))
            continue
        if not isinstance(item, Mapping) or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content or ():
            if isinstance(block, Mapping) and block.get("type") in ("output_text", "text"):
                parts.append(str(block.get("text", "")))
    return "".join(parts)


def _usage_of(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {field: getattr(usage, field, None) for field in _TOKEN_FIELDS}


from runstream.integrations._openai_models import (  # noqa: E402  (it imports this module)
    RunstreamModel,
    RunstreamModelProvider,
)
