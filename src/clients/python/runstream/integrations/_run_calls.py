"""The reporting calls the framework integrations make, queued in order on the run's loop.

LangChain's handler and the OpenAI Agents SDK's processor report the same things the same way:
a framework unit of work starts, completes or fails a step; a model used by an agent is a
ModelAllocation once per agent and model; a tool call is AgentActivity (``calling <tool>``,
then ``<tool> done`` or ``<tool> failed``); assistant text is a TextDelta. :class:`RunCalls`
holds that shared vocabulary over one :class:`~runstream.integrations._common.OrderedReports`
queue, so each integration only maps its framework's callbacks onto it.

A cancelled unit of work is one of two things. When the producer itself is stopped (Ctrl-C,
its task cancelled, an operator's cancel) the run ends cancelled and closes the step, so the
integration reports nothing. When only the framework's work was cancelled (a streamed run's
``cancel()``, a task of its own cancelled) the run goes on, and its step fails as
``cancelled``: left running, the server would close it as succeeded when the run completes.

A step whose start the server refused (the run has the most steps a run may have) reports
nothing more: its later calls only take their events' keys, so a replay's keys stay those of
the first run. The first step the run has no room for is told to watchers as an alert, and
no step is started after it: a long agent loop's later work goes unreported, visibly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runstream._errors import ResourceExhaustedError, RunstreamError
from runstream._event_builders import HELD_WORK, alert_event
from runstream._run_events import text_pieces
from runstream._types import ActivityType, Severity
from runstream.integrations._common import ModelUse, OrderedReports, shared, short

if TYPE_CHECKING:
    from runstream._reporter import RunReporter
    from runstream.v1 import event_pb2

__all__ = ["RunCalls", "StepRoom"]


class StepRoom:
    """What the integrations reporting to one run (``shared``: a chat's handler of each turn
    too) learnt of its room for steps: the steps it has (planned, or started and not refused),
    those whose start the server refused or that were not started for want of room, until
    they end, and whether the run has room for another step at all."""

    def __init__(self, steps: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._has: set[str] = set(steps)
        self._unstarted: set[str] = set()
        self._full = False

    def refused(self, step_id: str, *, for_room: bool) -> bool:
        """Notes that the step's start was refused (``for_room``: the run has no room for
        it); True the first time the run has none, which watchers are to be told."""
        with self._lock:
            self._unstarted.add(step_id)
            if for_room:
                self._has.discard(step_id)
            first = for_room and not self._full
            self._full = self._full or for_room
            return first

    def no_room_for(self, step_id: str) -> bool:
        """Whether the step is not to be started: a new step once the run has no room (one
        it has may start again: the server counts new steps only), noted if so."""
        with self._lock:
            if self._full and step_id not in self._has:
                self._unstarted.add(step_id)
                return True
            self._has.add(step_id)
            return False

    def skips(self, step_id: str) -> bool:
        """Whether the step's events are not to be reported (it was not started)."""
        with self._lock:
            return step_id in self._unstarted

    def forget(self, step_id: str) -> None:
        """The step not started has ended (its last call was made)."""
        with self._lock:
            self._unstarted.discard(step_id)


class RunCalls:
    """A run's reporting calls, submitted from any thread and made in order on the run's loop.

    Every method returns at once: the call is queued (see ``OrderedReports``), and its
    arguments are taken as they are when the method is called.
    """

    def __init__(self, run: RunReporter, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._run = run
        self._reports = OrderedReports(loop, on_refused=self._on_refused)
        run._ends_after(self._reports)
        self._allocated: set[tuple[str, str]] = set()
        self._room = shared(run, StepRoom, lambda: StepRoom(s.step_id for s in run.run.steps))
        # The task that made the integration, taken for the producer's.
        try:
            self._producer = asyncio.current_task()
        except RuntimeError:  # made outside async code, with loop=
            self._producer = None

    @property
    def run(self) -> RunReporter:
        """The run the calls report to."""
        return self._run

    def on_loop(self) -> bool:
        """Whether the caller runs on the run's loop (its thread), where it may await."""
        return self._reports.on_loop()

    async def drain(self) -> None:
        """Waits until every call submitted so far is made (queued on the run's reporter)."""
        await self._reports.drain()

    def submit(self, call: Callable[[], Awaitable[object]]) -> None:
        """Queues ``call()``, a reporting call with no shared shape."""
        self._reports.submit(call)

    def _on_refused(self, event: event_pb2.RunEvent, error: RunstreamError) -> None:
        if not event.HasField("step_started"):
            return
        step_id = event.step_started.step_id
        if self._room.refused(step_id, for_room=isinstance(error, ResourceExhaustedError)):
            alert = alert_event(
                f"no room for more steps: the work from step {step_id!r} on is not reported "
                f"({short(error.message, 400)})",
                Severity.MEDIUM,
                suggested_action="report a long loop as fewer steps, or start a new run",
                code="step_limit",
                data=None,
            )
            # Under a key of its own, not the next of the counter: when the refusal comes
            # depends on timing, and a replay's keys must stay those of the first run.
            key = f"{self._run.key_prefix}:step-limit"
            self._reports.report_now(self._run, alert, key)

    def submit_for(
        self,
        step_id: str,
        call: Callable[[], Awaitable[object]],
        *,
        events: Callable[[], int] = lambda: 1,
        ends: bool = False,
    ) -> None:
        """Queues ``call()``, a report in step ``step_id`` (none when ""), unless that step
        was not started: then only the keys of its events are taken, ``events()`` of them,
        counted only then (see ``pass_over``). ``ends``: the call ends the step, which is
        forgotten then."""
        run, room = self._run, self._room
        if not step_id:
            self.submit(call)
            return

        async def skip() -> None:
            await run._pass_over(events())
            if ends:  # in turn: the calls queued before it for the step were made
                room.forget(step_id)

        async def report() -> None:
            if room.skips(step_id):  # refused after this call was queued
                await skip()
            else:
                await call()

        self.submit(skip if room.skips(step_id) else report)

    def start_step(self, step_id: str, *, name: str, agent: str = "", held: bool = False) -> None:
        """Starts the step; `held`: a pause holds the framework's work too (its start is
        then stamped when the pause ends, see ``HELD_WORK``)."""
        run = self._run
        if self._room.no_room_for(step_id):
            self.pass_over()
            return

        async def start() -> None:
            token = HELD_WORK.set(held)
            try:
                await run.start_step(step_id, name=name, agent=agent)
            finally:
                HELD_WORK.reset(token)

        self.submit(start)

    def pass_over(self) -> None:
        """Takes the place of a step event a replay does not report again (see ChainSteps),
        or of a step start there is no room for."""
        run = self._run
        self.submit(lambda: run._pass_over())

    def complete_step(self, step_id: str) -> None:
        run = self._run
        self.submit_for(step_id, lambda: run.step(step_id).complete(), ends=True)

    def fail_step(self, step_id: str, message: str, *, code: str) -> None:
        run = self._run
        self.submit_for(step_id, lambda: run.step(step_id).fail(message, code=code), ends=True)

    def producer_stopped(self, stop: BaseException | None) -> bool:
        """Whether ``stop``, the cancellation that ended a unit of work, stops the producer:
        a KeyboardInterrupt, or any while the task that made the integration is being
        cancelled. Otherwise only the work was cancelled (see the module)."""
        if isinstance(stop, KeyboardInterrupt):
            return True
        producer = self._producer
        return producer is not None and (producer.cancelling() > 0 or producer.cancelled())

    def cancel_step(self, step_id: str) -> None:
        """The step's work was cancelled before it finished, and the run goes on."""
        self.fail_step(step_id, "cancelled before it finished", code="cancelled")

    def allocate(self, agent: str, model: str, *, reasoning: str = "") -> None:
        """A ModelAllocation of ``model`` for ``agent``, the first time that pair is seen."""
        if (agent, model) in self._allocated:
            return
        self._allocated.add((agent, model))
        run = self._run
        self.submit(lambda: run.model_allocation(agent, model, reasoning=reasoning))

    def model_used(self, usage: Mapping[str, Any] | None) -> None:
        """A model call ended, with its ``usage`` (``input_tokens``, ``output_tokens``) when
        the model said: the run's metrics of its model use (see ``ModelUse``)."""
        run, use = self._run, ModelUse.of(self._run)
        use.add(usage)
        # The sums as they are when the call is made, in turn on the run's loop: taken here,
        # another thread's call queued meanwhile could report smaller ones after these.
        self.submit(lambda: run.metrics(use.sums()))

    def text(
        self, agent: str, message_id: str, delta: str, *, final: bool = False, step_id: str = ""
    ) -> None:
        run = self._run
        self.submit_for(
            step_id,
            lambda: run.text(agent, message_id, delta, final=final, step_id=step_id),
            events=lambda: max(1, len(text_pieces(delta))),  # as run.text() sends it
        )

    def activity(
        self,
        agent: str,
        activity: ActivityType,
        message: str,
        *,
        data: Mapping[str, Any],
        step_id: str,
    ) -> None:
        run = self._run
        self.submit_for(
            step_id, lambda: run.activity(agent, activity, message, data=data, step_id=step_id)
        )

    def tool_started(self, agent: str, tool: str, data: Mapping[str, Any], *, step_id: str) -> None:
        self.activity(agent, ActivityType.STARTED, f"calling {tool}", data=data, step_id=step_id)

    def tool_ended(
        self, agent: str, tool: str, data: Mapping[str, Any], *, failed: bool, step_id: str
    ) -> None:
        """``data`` holds the tool's output, or its error when ``failed``."""
        if failed:
            activity, verb = ActivityType.FAILED, "failed"
        else:
            activity, verb = ActivityType.COMPLETED, "done"
        self.activity(agent, activity, f"{tool} {verb}", data=data, step_id=step_id)
