"""LangChain chains as Runstream steps: graph nodes and plain top-level chains.

A LangGraph node (a plain chain at the top, without LangGraph) is a step. A node that runs
again later is a new step; a node stopped by ``interrupt()``, or retried by its retry policy
after failing, carries on as the same step. A RunnableRetry's further attempts and a retry
policy's rerun are ErrorRecovery events. A graph that runs again from its start on a run it
reported before (the producer restarted, its checkpoints were lost) runs its nodes again: the
steps that succeeded or were skipped are not started again (the server refuses a finished
step's start), and their model and tool calls are reported in them; a step that failed starts
again, as its next attempt. :class:`ChainSteps` keeps that bookkeeping
for ``RunstreamCallbackHandler`` and tells the model and tool calls which agent and step they
belong to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from runstream._types import Severity
from runstream.integrations._common import StepIds, short
from runstream.integrations._run_calls import RunCalls

__all__ = ["ChainSteps", "LangChainRun", "error_text"]

_log = logging.getLogger("runstream.integrations")


# What stops a producer rather than failing its work.
_STOPPED = (asyncio.CancelledError, KeyboardInterrupt)


@dataclass(frozen=True)
class LangChainRun:
    """A LangChain run (a chain, model or tool call) as its start callback describes it."""

    serialized: Mapping[str, Any] | None
    run_id: UUID
    parent_run_id: UUID | None
    tags: list[str] | None
    metadata: Mapping[str, Any]
    kwargs: Mapping[str, Any]

    def name(self, default: str) -> str:
        return str(self.kwargs.get("name") or (self.serialized or {}).get("name") or default)


@dataclass
class _StepRun:
    step_id: str
    agent: str
    namespace: str
    failures: int = 0
    """Attempts of the node that failed before this one (a retry policy's reruns)."""
    replayed: bool = False
    """The node replays a step that finished before this handler's reporter attached."""


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
    resolved: bool = False


def _graph_bubble_up() -> tuple[type[BaseException], ...]:
    """LangGraph's control-flow exceptions (interrupts), when LangGraph is installed."""
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:
        return ()
    return (GraphBubbleUp,)


def _internal(node: str) -> bool:
    """LangGraph's own nodes (``__start__`` runs a conditional edge from START): no steps."""
    return node.startswith("__") and node.endswith("__")


def error_text(error: BaseException) -> str:
    """How an error a callback reports reads in an event: its type and its message, or its
    type alone when it has no message (as the run's own failure reads)."""
    message = str(error)
    return short(f"{type(error).__name__}: {message}" if message else type(error).__name__)


class ChainSteps:
    """Which chain runs are steps, and what becomes of a step when its chain ends or fails.

    Args:
        calls: Where the step events go.
        agent: The agent of a plain top-level chain's step; by default the chain's name.
    """

    def __init__(self, calls: RunCalls, agent: str) -> None:
        self._calls = calls
        self._agent = agent
        # Shared by every handler of the run: a graph run again with a new handler (a chat
        # app's next turn) gets new step ids, not those of the steps it finished before.
        self._step_ids = StepIds.of(calls.run)
        self._roots: dict[UUID, _Root] = {}
        self._steps: dict[UUID, _StepRun] = {}
        # Steps a node left running when interrupt() stopped it (shared by the run's handlers:
        # the graph may resume with another), and steps whose node failed (a retry policy may
        # run it again), by the node's checkpoint namespace.
        self._interrupted = self._step_ids.interrupted
        self._failed: dict[str, _Failure] = {}
        # The latest error of a child of each run: a RunnableRetry's failed attempt.
        self._child_errors: dict[UUID, str] = {}
        # The step each running chain works in (a step's own chain and those under it), so
        # that a model or tool call is the step's it runs under, also when copies of one
        # node run at once (a Send fan-out, several tool calls).
        self._step_of: dict[UUID, str] = {}
        self._bubble_up = _graph_bubble_up()
        # Step ids come in the order nodes start, so a graph that runs again from its start
        # (a producer restarted without its checkpoints) meets the steps it finished before
        # under the same ids.
        self._finished_before = self._step_ids.finished_before

    async def chain_started(self, chain: LangChainRun) -> None:
        name = chain.name("chain")
        node = chain.metadata.get("langgraph_node")
        run_id, parent_run_id = chain.run_id, chain.parent_run_id
        if parent_run_id is None:
            self._roots[run_id] = _Root(name)
            return
        self._child_started(parent_run_id, chain.tags, is_graph=node is not None)
        if node is None or name != node or parent_run_id in self._steps or _internal(node):
            owner = self._step_of.get(parent_run_id)
            if owner is not None:
                self._step_of[run_id] = owner
            return
        namespace = str(chain.metadata.get("langgraph_checkpoint_ns") or node)
        resumed = self._interrupted.pop(namespace, None)
        if resumed is not None:
            # The node interrupt() stopped runs again with the answer: still the same step.
            replayed = resumed in self._finished_before
            self._steps[run_id] = _StepRun(resumed, node, namespace, replayed=replayed)
            self._step_of[run_id] = resumed
            return
        failed = self._failed.pop(namespace, None)
        failures = 0
        if failed is not None:
            # A retry policy runs the failed node again: the same step, restarted.
            step_id, failures = failed.step_id, failed.attempts
            self.report_retry(failed.message, failed.attempts, [node], step_id)
        else:
            step_id = self._step_ids.new(node, replay=True)
        self._start(run_id, _StepRun(step_id, node, namespace, failures), name=node, agent=node)
        await self._hold_if_paused()

    def _start(self, run_id: UUID, step: _StepRun, *, name: str, agent: str = "") -> None:
        """Starts the step of a chain run, unless the run finished it before (a replay)."""
        step.replayed = step.step_id in self._finished_before
        self._steps[run_id] = step
        self._step_of[run_id] = step.step_id
        if step.replayed:
            _log.info(
                "%s replays step %s, which finished before: not started again", name, step.step_id
            )
            self._calls.pass_over()
        elif self._step_ids.take_running(step.step_id):
            _log.info(
                "%s goes on with step %s, running when the run was attached", name, step.step_id
            )
            self._calls.pass_over()
        else:
            self._calls.start_step(step.step_id, name=name, agent=agent)

    async def _hold_if_paused(self) -> None:
        """A node boundary is a step boundary: a paused run holds the graph here.

        Only a pause holds it. The step's events are queued, never waited for: while the
        server is out of reach and the reporter's buffer is full, the graph goes on.
        """
        if self._calls.on_loop():
            await self._calls.run.wait_if_paused()

    def chain_ended(self, run_id: UUID) -> None:
        self._finish_root(run_id)
        self._step_of.pop(run_id, None)
        self._child_errors.pop(run_id, None)  # its children's errors were retried, or caught
        step = self._steps.pop(run_id, None)
        if step is not None and step.replayed:
            self._calls.pass_over()
        elif step is not None:
            self._calls.complete_step(step.step_id)

    def reserve_nodes(self, nodes: Iterable[str]) -> None:
        """Keeps the step ids of nodes that run again off the names of a graph's nodes."""
        self._step_ids.reserve(node for node in nodes if not _internal(node))

    def interrupted_step(self, namespace: str) -> str:
        """The step of the node that ``interrupt()`` stopped in checkpoint ``namespace``
        ("<node>:<task id>"), "" when none did."""
        return self._interrupted.get(namespace, "")

    def step_of_chain(self, run_id: UUID) -> str | None:
        """The step whose own chain `run_id` is, if it is one."""
        step = self._steps.get(run_id)
        return step.step_id if step is not None else None

    def chain_failed(self, error: BaseException, run_id: UUID, parent_run_id: UUID | None) -> None:
        self._step_of.pop(run_id, None)
        self._child_errors.pop(run_id, None)
        step = self._steps.pop(run_id, None)
        if self._bubble_up and isinstance(error, self._bubble_up):
            # interrupt(): the node stops to wait for an answer and runs again with it.
            if step is not None:
                self._interrupted[step.namespace] = step.step_id
            self._roots.pop(run_id, None)
            return
        if isinstance(error, _STOPPED):
            self._roots.pop(run_id, None)
            if step is None or self._calls.producer_stopped(error):
                # The producer was stopped (Ctrl-C, its task cancelled), not the node failing:
                # the step stays running, and the run's end (cancelled, as ``async with run:``
                # reports it) closes it, as an operator's cancel does.
                return
            # Only the graph was cancelled (a task of its own) and the run goes on.
            if step.replayed:
                self._calls.pass_over()
            else:
                self._calls.cancel_step(step.step_id)
            return
        self._finish_root(run_id)
        message = error_text(error)
        if parent_run_id is not None:
            self._child_errors[parent_run_id] = message
        if step is not None and step.replayed:
            # It finished before, and cannot fail now; a rerun is a new step.
            self._calls.pass_over()
        elif step is not None:
            self._failed[step.namespace] = _Failure(step.step_id, message, step.failures + 1)
            self._calls.fail_step(step.step_id, message, code=type(error).__name__)

    def child_failed(self, error: BaseException, parent_run_id: UUID | None) -> None:
        """A model or tool call under ``parent_run_id`` failed (a RunnableRetry's attempt)."""
        if parent_run_id is not None:
            self._child_errors[parent_run_id] = error_text(error)

    def call_started(self, call: LangChainRun, default_agent: str) -> tuple[str, str]:
        """A model or tool call started: its agent (``default_agent`` when it has none) and
        that agent's running step ("" when there is none)."""
        if call.parent_run_id is not None:
            is_graph = bool(call.metadata.get("langgraph_node"))
            self._child_started(call.parent_run_id, call.tags, is_graph=is_graph)
        agent = self._agent_for(call.parent_run_id, call.metadata) or default_agent
        owner = self._step_of.get(call.parent_run_id) if call.parent_run_id else None
        return agent, owner if owner is not None else self._step_for(agent)

    def _child_started(
        self, parent_run_id: UUID, tags: list[str] | None, *, is_graph: bool
    ) -> None:
        self._resolve_root(parent_run_id, is_graph=is_graph)
        self._note_retry(parent_run_id, tags)

    def _resolve_root(self, parent_run_id: UUID, *, is_graph: bool) -> None:
        root = self._roots.get(parent_run_id)
        if root is None or root.resolved:
            return
        root.resolved = True
        if not is_graph:
            step_id = self._step_ids.new(root.name, replay=True)
            name = root.name
            agent = self._agent or name
            self._start(parent_run_id, _StepRun(step_id, agent, name), name=name, agent=agent)

    def _finish_root(self, run_id: UUID) -> None:
        root = self._roots.get(run_id)
        if root is not None and not root.resolved:
            # A top-level chain with no children at all: a one-step chain.
            self._resolve_root(run_id, is_graph=False)
        self._roots.pop(run_id, None)

    def _agent_for(self, parent_run_id: UUID | None, metadata: Mapping[str, Any]) -> str:
        node = metadata.get("langgraph_node")
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

    def _note_retry(self, parent_run_id: UUID, tags: list[str] | None) -> None:
        """A RunnableRetry's attempts are its children, tagged ``retry:attempt:N`` from the
        second on: each such start means the attempt before it failed."""
        for tag in tags or ():
            if tag.startswith("retry:attempt:"):
                attempt = int(tag.rsplit(":", 1)[1]) - 1
                message = self._child_errors.pop(parent_run_id, "the previous attempt failed")
                # The RunnableRetry runs in a step (a node's, or a plain chain's own): the
                # step its chain works in, not a step of its own.
                step = self._enclosing_step(parent_run_id)
                self.report_retry(
                    message, attempt, [step.agent] if step else [], step.step_id if step else ""
                )

    def _enclosing_step(self, run_id: UUID) -> _StepRun | None:
        """The running step that the chain run ``run_id`` is, or works in."""
        step_id = self._step_of.get(run_id)
        for step in self._steps.values():
            if step.step_id == step_id:
                return step
        return None

    def report_retry(self, message: str, attempt: int, agents: list[str], step_id: str) -> None:
        """An ErrorRecovery in ``step_id`` (none when ""): attempt ``attempt`` failed with
        ``message``; retrying."""
        affected = [agent for agent in agents if agent]
        run = self._calls.run
        self._calls.submit_for(
            step_id,
            lambda: run.error_recovery(
                message,
                severity=Severity.MEDIUM,
                recovery_strategy="retry",
                affected_agents=affected,
                attempt=attempt,
                step_id=step_id,
            ),
        )
