"""The producer side: RunReporter and StepReporter over one ReportService.Report stream.

RunReporter is the producer's handle on a run: its public calls, and the objects it holds
that do the work, each private, so that none of their methods is the reporter's API. The
typed events it reports are :mod:`runstream._run_events` (a mixin: the reporter's public
surface by design, over one primitive, ``_report``); whether an event may be queued, and
backpressure, is :mod:`runstream._report_gate`; steps 1-5 below are the stream itself,
:mod:`runstream._report_stream`, and the events waiting for it or for their
acknowledgements, :mod:`runstream._outbox`; the reporter's side of that stream (routing what
the server sends back, re-reading after a reconnect, flushing, closing) is
:mod:`runstream._stream_ownership`; what the server sends back is handled by
:mod:`runstream._run_decisions` (decisions, ``ask()``) and :mod:`runstream._run_control`
(controls: ``cancelled``, ``paused``, ``wait_if_paused()``); ``async with run:`` and how the
run ends when the producer does not report it are :mod:`runstream._run_end`.

How a reported event travels:

1. A reporting call (``step.progress(...)``, ``run.metrics(...)``) builds the event, checking
   its arguments as the server will (an argument it would refuse raises InvalidArgumentError
   naming it, and nothing is queued: :mod:`runstream._arguments`), stamps it
   with a stable idempotency key ``"<reporter uuid>:<counter>"`` and appends it to the unsent
   queue. It returns at once unless the reporter already holds ``max_buffered`` unacknowledged
   events, or 64 MiB of them, in which case it waits for acknowledgements (backpressure,
   never dropping).
2. One background task per reporter owns the bidirectional stream. It sends everything queued
   as batches (up to ``batch_size`` events and about 1 MiB each) and keeps up to
   ``max_in_flight`` batches unacknowledged, so the producer is never blocked on a round trip.
3. The server acknowledges batches in order once they are durable; acknowledged events are
   forgotten. Unacknowledged ones stay in the in-flight queue.
4. When the connection breaks (server killed, restarted or shutting down), the task
   reconnects with exponential backoff and resends every unacknowledged event, in order, with
   its original key. The server stores an event whose key it already holds only once and
   acknowledges it with the original seq, so the run's log ends up gap-free and duplicate-free.
5. An event the server refuses (a step completed twice, a step the run does not have) is set
   aside: the events around it are stored in order, it is logged, naming the call that
   reported it and its step (``step.progress() of step 'draft'``), and the next ``flush()`` or
   ``close()`` (so ``complete()`` and the end of ``async with run:`` too) raises the first
   refusal not raised yet; ``ask()`` raises its own question's. Any other status that a
   retry cannot fix (the run ended, limits) fails the reporter: the next reporting call,
   ``flush()`` or ``close()`` raises it as a RunstreamError.

What the server sends back on the same stream:

- ``decision``: a decision of the run closed. ``ask()`` waits for exactly this. Because a
  decision may close while the stream is broken, every reconnect is followed by a
  ``GetDecision`` for each decision still awaited (after the new stream is attached, so a
  closure is either pushed on it or visible to that read).
- ``control``: CANCEL marks the run cancelled (reporting calls and pending ``ask()`` calls
  raise RunCancelledError) and, by default, cancels the task running inside
  ``async with run:`` so a workflow stuck in a long await stops at once; the
  CancelledError is turned into RunCancelledError where the block ends, the way
  ``asyncio.timeout()`` turns its cancellation into TimeoutError. PAUSE holds the producer at
  its next step boundary (``run.step()`` / ``start_step()`` entry, or ``wait_if_paused()``)
  until RESUME. A reconnect while paused re-reads the run, since a RESUME may have been
  missed while the stream was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from runstream import _arguments as arguments
from runstream import _event_builders as builders
from runstream._errors import FailedPreconditionError, RunstreamError
from runstream._outbox import Outbox
from runstream._report_gate import ReportGate
from runstream._report_stream import ReportStream, Signal
from runstream._run_control import RunControl
from runstream._run_decisions import RunDecisions
from runstream._run_end import QueuedReports, RunEnd, describe
from runstream._run_events import RunEvents
from runstream._stream_ownership import RunStreamOwner
from runstream._types import (
    Decision,
    DecisionResult,
    OptionLike,
    Run,
    RunStatus,
    SubStepDetails,
)

if TYPE_CHECKING:
    from runstream._report_stream import ReportMethod
    from runstream._unreachable import Diagnosis
    from runstream.v1 import event_pb2

__all__ = ["RunReporter", "StepReporter"]

_log = logging.getLogger("runstream.reporter")


class RunReporter(RunEvents):
    """Reports one run's events to the server; create it with ``Client.start_run``.

    Use it as an async context manager (``async with run:``) or call ``close()``. Reporting
    calls (the typed events of :class:`~runstream._run_events.RunEvents`, steps, ``ask()``)
    return as soon as the event is queued; ``flush()`` waits until everything reported so
    far is durable on the server.

    Only ``complete()`` and ``fail()`` end the run (and an exception or a cancellation
    escaping ``async with run:``). Leaving the block normally, or closing, without either
    leaves the run RUNNING, for a producer to continue with ``Client.attach_run``; its
    watchers go on waiting.
    """

    def __init__(
        self,
        *,
        run: Run,
        report_rpc: ReportMethod,
        get_run: Callable[[str], Awaitable[Run]],
        get_decision: Callable[[str, str], Awaitable[Decision]],
        list_decisions: Callable[[str], Awaitable[list[Decision]]],
        metadata: Sequence[tuple[str, str]],
        reconnect_timeout: float | None,
        max_buffered: int = 10_000,
        batch_size: int = 500,
        # Two: the server commits what queued up while it was committing as one, so more
        # batches in flight would mean more messages each way, not less waiting.
        max_in_flight: int = 2,
        cancel_task: bool = True,
        key_prefix: str | None = None,
        linger: float = 0.0,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        self._run_id = run.run_id
        self._workflow = run.workflow
        self._snapshot = run
        arguments.key_prefix(key_prefix)
        self._signal = Signal()
        self._outbox = Outbox(
            run.run_id,
            # RunStarted takes key 0; attach_run() starts at 1, so a producer that reports the
            # same events again after a restart gets the same keys (and the server drops them).
            key_prefix=key_prefix if key_prefix is not None else uuid.uuid4().hex,
            last_seq=run.last_seq,
            batch_size=batch_size,
        )
        # Steering: an operator's cancel, pause and resume.
        self._control = RunControl(
            run.run_id,
            self._signal,
            get_run,
            paused=run.status == RunStatus.PAUSED,
            cancel_task=cancel_task,
        )
        # The stream's owner, not the reporter: what the stream calls is no API.
        self._owner = RunStreamOwner(run.run_id, self._signal, self._outbox, self._control)
        self._stream = ReportStream(
            self._owner,
            self._signal,
            self._outbox,
            run_id=run.run_id,
            report_rpc=report_rpc,
            metadata=metadata,
            reconnect_timeout=reconnect_timeout,
            max_in_flight=max_in_flight,
            linger=linger,
            diagnosis=diagnosis,
        )
        self._gate = ReportGate(
            run.run_id,
            self._stream,
            self._outbox,
            self._signal,
            self._control,
            max_buffered=max_buffered,
        )
        # Steering: the humans' decisions.
        self._decisions = RunDecisions(
            run.run_id,
            gate=self._gate,
            stream=self._stream,
            outbox=self._outbox,
            signal=self._signal,
            control=self._control,
            get_decision=get_decision,
            list_decisions=list_decisions,
        )
        self._owner.serve(self._stream, self._gate, self._decisions)
        self._end = RunEnd(
            run.run_id,
            control=self._control,
            gate=self._gate,
            stream=self._stream,
            outbox=self._outbox,
            owner=self._owner,
        )

    # --- properties ------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run this reporter reports on."""
        return self._run_id

    @property
    def workflow(self) -> str:
        """The workflow the run executes."""
        return self._workflow

    @property
    def run(self) -> Run:
        """The run as CreateRun returned it (use ``Client.get_run`` for a fresh snapshot)."""
        return self._snapshot

    @property
    def events_reported(self) -> int:
        """How many events were reported (queued) so far."""
        return self._outbox.reported

    @property
    def events_acknowledged(self) -> int:
        """How many of the reported events the server acknowledged as durable."""
        return self._outbox.acked

    @property
    def last_seq(self) -> int:
        """The highest seq the server assigned to an acknowledged event of this reporter (for
        a reporter from ``attach_run``, at least the run's last seq when it attached)."""
        return self._outbox.last_seq

    @property
    def key_prefix(self) -> str:
        """The prefix of this reporter's idempotency keys (``"<prefix>:<n>"``)."""
        return self._outbox.key_prefix

    def __reduce__(self) -> NoReturn:
        # As Client.__reduce__: its stream task and channel belong to this process.
        raise TypeError(
            f"the reporter of run {self._run_id!r} cannot be sent to another process: pass "
            "the run_id to the worker, connect there and attach_run() it"
        )

    # --- lifecycle -------------------------------------------------------------------------

    def _start(self, started: event_pb2.RunEvent) -> None:
        """Queues RunStarted (built, hence checked, before the run was created) and starts the
        background stream task."""
        self._stream.enqueue(started)
        self._stream.start()

    async def _attach(self) -> None:
        """Continues an existing run: opens the stream, waits until the server attached it,
        then learns the run's decisions. In that order, a decision that closes meanwhile is
        either pushed on the attached stream or already closed in the list."""
        self._outbox.next_key = 1
        self._stream.start()
        while not self._stream.attached_once:
            self._gate.raise_if_failed()
            self._stream.raise_if_unreachable()
            if self._stream.stopped:
                raise FailedPreconditionError(f"the reporter of run {self._run_id!r} stopped")
            await self._signal.wait()
        await self._decisions.learn_asked_before()

    async def __aenter__(self) -> RunReporter:
        self._end.enter_block()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end.exit_block(exc)

    async def flush(self) -> None:
        """Waits until every event reported so far is acknowledged, hence durable, or refused.

        Raises the reporter's failure (RunCancelledError, UnavailableError after the
        reconnect timeout, ...) if it fails first; then the error of an event the server
        refused (FailedPreconditionError, InvalidArgumentError, ...), if one was refused since
        the last flush: the events around it are stored all the same, and the reporter goes
        on. Each refusal is raised once; its message names the call that reported the event
        and its step, then gives the server's (``step.progress() of step 'draft':
        events[0].step_progress.step_id: run ... has no step 'draft'``). Arguments the
        server would refuse whatever the run's state were raised by the call itself.
        """
        await self._owner.flush()

    async def close(self) -> None:
        """Flushes, then ends the stream. Idempotent.

        After a cancellation the run accepts no further events, so queued events are dropped
        and close() does not raise; ``cancelled`` tells what happened.
        """
        await self._owner.close(wait=True)

    async def _close_with_client(self) -> None:
        """``close()``, as its client closes; a run whose block is still open in another task
        is reported cancelled first (see ``RunEnd.close_with_client``)."""
        await self._end.close_with_client()

    async def _close_quietly(self) -> None:
        """``close()``, logging its failure (an ``attach_run`` that failed)."""
        await self._end.close_quietly()

    # --- steps ------------------------------------------------------------------------------

    def step(
        self, step_id: str, *, name: str = "", description: str = "", agent: str = ""
    ) -> StepReporter:
        """A step context: StepStarted on entry, StepCompleted on normal exit, StepFailed (and
        the exception re-raised) when the body raises.

        Entering the step is a step boundary: while the run is paused it waits there until
        the run is resumed (or raises RunCancelledError when it is cancelled instead).
        ``name``, ``description`` and ``agent`` describe a step that is not in the plan.
        Entering checks ``step_id`` (an id) and the texts' lengths: InvalidArgumentError
        naming the argument, and nothing reported.
        """
        return StepReporter(
            self, step_id, gate=self._gate, name=name, description=description, agent=agent
        )

    async def start_step(
        self, step_id: str, *, name: str = "", description: str = "", agent: str = ""
    ) -> StepReporter:
        """Starts a step without a context manager: reports it started and returns its
        reporter, ``step = await run.start_step("crawl")`` (awaited, and already started:
        no ``step.start()`` after it); finish it with ``await step.complete()`` or
        ``fail()``. ``async with run.step("crawl"):`` is the same with the end reported for
        you (not awaited)."""
        step = self.step(step_id, name=name, description=description, agent=agent)
        await step.start()
        return step

    # --- steering: controls (RunControl) and decisions (RunDecisions) ------------------------

    @property
    def cancelled(self) -> bool:
        """Whether an operator cancelled the run; reporting calls then raise RunCancelledError."""
        return self._control.cancelled

    @property
    def cancel_reason(self) -> str:
        """Why the run was cancelled, when the server said."""
        return self._control.cancel_reason

    @property
    def paused(self) -> bool:
        """Whether the latest control from the server paused the run (and none resumed it)."""
        return self._control.paused

    @property
    def cancel_task(self) -> bool:
        """Whether a CANCEL from the server cancels the task inside ``async with run:``."""
        return self._control.cancel_task

    @property
    def open_decisions(self) -> tuple[Decision, ...]:
        """The decisions asked before ``attach_run`` that are still open, as far as this
        reporter knows: ``ask()`` with one of their ids waits for its answer."""
        return self._decisions.open_before

    async def wait_if_paused(self) -> None:
        """Waits while an operator has the run paused; returns at once when it is not.

        ``run.step()`` and ``start_step()`` call it on entry; call it at any other point where
        the workflow can safely hold. Raises RunCancelledError when the run is cancelled
        while paused, and the reporter's failure if it fails.
        """
        self._gate.check_loop()
        while self._control.paused:
            self._gate.raise_if_failed()
            self._stream.raise_if_unreachable()  # no stream to bring the RESUME either
            if self._stream.stopped:
                return  # No stream left to bring the RESUME; holding would hang forever.
            await self._signal.wait()

    async def ask(
        self,
        prompt: str,
        options: Iterable[OptionLike],
        *,
        default: str | None = None,
        # The decision's own deadline, enforced by the server; not a timeout of this call.
        timeout: timedelta | float | None = None,  # noqa: ASYNC109
        can_skip: bool = False,
        context: Mapping[str, Any] | None = None,
        decision_type: str = "",
        affects_workflow: bool = False,
        decision_id: str | None = None,
    ) -> DecisionResult:
        """Asks a human to decide, and waits until the decision closes.

        The question is a DecisionRequested event of the run (the run is WAITING_FOR_INPUT
        while it is open); viewers answer it with ``Client.submit_decision`` or an
        interaction, or the server closes it at the deadline. The answer comes back on this
        reporter's stream, also when the connection broke in between.

        Args:
            prompt: The question, for example "Multiple files found. Which should I analyze?".
            options: The possible answers: values, DecisionOptions, or (value, label[,
                description]) tuples. Values must be unique.
            default: The value taken when nobody answers before the timeout: one of the
                options' values, or a fallback offered to nobody ("analyze_all" beside
                the files a human may pick).
            timeout: How long to wait for an answer (seconds or timedelta); None waits until
                someone answers.
            can_skip: Whether the human may skip the decision.
            context: JSON-like data that helps the human decide, e.g. {"file_count": 3}.
            decision_type: The kind of decision, for example "file_selection".
            affects_workflow: Whether the answer changes the workflow's course.
            decision_id: Unique within the run; generated when None. Give one to a question
                that must survive a producer restart: after ``attach_run`` (or an ``ask()``
                the caller cancelled), asking the same question with its id waits for its
                answer instead of asking again; another question under that id raises
                FailedPreconditionError.

        Returns:
            The DecisionResult: ANSWERED with the choice, DEFAULTED with the default (nobody
            answered in time), SKIPPED, or TIMED_OUT (nobody answered, no default).

        Raises:
            InvalidArgumentError: before anything is sent, for a question the server would
                refuse (no options or more than 100, a blank or repeated value, a default
                over 256 characters, a prompt over 16,384 characters, a decision_id that
                is no id or was asked already, a timeout past 366 days, context that is not
                JSON-like), naming the argument, and for options given as one string or a
                timeout given as True or False.
            RunCancelledError: the run was cancelled while waiting.
            FailedPreconditionError: the run ended otherwise while waiting (another task or
                producer completed or failed it).
        """
        return await self._decisions.ask(
            prompt,
            options,
            default=default,
            timeout=timeout,
            can_skip=can_skip,
            context=context,
            decision_type=decision_type,
            affects_workflow=affects_workflow,
            decision_id=decision_id,
        )

    # --- queueing (ReportGate), and the framework integrations' hooks ------------------------

    async def _report(
        self, event: event_pb2.RunEvent, *, ends_run: bool = False, call: str | None = None
    ) -> None:
        """RunEvents' one primitive: queues ``event``; one that ``ends_run`` is queued after
        what must go before the run's end (``RunEnd.before_end``), then flushed."""
        if ends_run:
            await self._end.before_end()
        await self._gate.admit(event, terminal=ends_run)
        if call is not None:  # queued, with its key, and not sent before this line
            self._outbox.name_call(event, call)
        if ends_run:
            await self.flush()

    async def _pass_over(self, events: int = 1) -> None:
        """Takes the keys of ``events`` events a replay does not report again (the framework
        integrations' finished steps, and the reports of a step not started), so the keys
        after them stay those of the first run (see ``attach_run``)."""
        self._outbox.next_key += events

    def _report_now(self, event: event_pb2.RunEvent, key: str) -> None:
        """Queues ``event`` at once, past the buffer's bound, under the idempotency ``key``
        (the keys' counter stays as it is): a framework integration's word on a refusal (see
        ``builders.REFUSALS_TO``), which must go before the run's end."""
        self._gate.check_can_report()
        self._stream.enqueue(event, key)

    def _ends_after(self, queue: QueuedReports) -> None:
        """The run's end waits for the calls ``queue`` holds then (a framework integration's,
        whose callbacks may come from another thread, and land only once the producer's
        coroutine yields: ``graph.invoke()`` called on the run's loop)."""
        self._end.ends_after(queue)


class StepReporter:
    """Reports one step; use ``async with run.step(step_id) as step:``.

    Exiting the block normally reports StepCompleted with the summary set by
    ``set_summary()`` and the metrics reported through ``metrics()``. An exception escaping the
    block reports StepFailed and is re-raised.
    """

    def __init__(
        self,
        run: RunReporter,
        step_id: str,
        *,
        gate: ReportGate,
        name: str = "",
        description: str = "",
        agent: str = "",
    ) -> None:
        self._run = run
        # The step's own events go through the run's gate, the same admission and
        # backpressure as the run's events, without reaching into the run's internals.
        self._gate = gate
        self._step_id = step_id
        self._name = name
        self._description = description
        self._agent = agent
        self._summary = ""
        self._metrics: dict[str, float] = {}
        self._finished = False

    @property
    def step_id(self) -> str:
        """The step this reporter reports on."""
        return self._step_id

    @property
    def run(self) -> RunReporter:
        """The run the step belongs to."""
        return self._run

    async def __aenter__(self) -> StepReporter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._finished:
            return
        if exc is None:
            await self.complete()
            return
        if not self._gate.can_report():
            return  # The reporter failed or the run ended; reporting more would only fail.
        if isinstance(exc, asyncio.CancelledError):
            return  # Not a step failure: the run block reports the run cancelled.
        try:
            await self.fail(describe(exc), code=type(exc).__name__)
        except RunstreamError as report_error:
            _log.warning("could not report step %s failed: %s", self._step_id, report_error)

    async def start(self) -> None:
        """Reports StepStarted (done by ``async with``), after waiting while the run is
        paused. Checks the step's id, name, description and agent first."""
        event = builders.step_started_event(
            self._step_id, self._name, self._description, self._agent
        )
        held = self._run.paused
        await self._run.wait_if_paused()
        if held and (builders.HAPPENED_NS.get() is None or builders.HELD_WORK.get()):
            # The step waited for the resume: it starts now, and its time leaves the pause
            # out (the server learns estimates from how long steps take). A framework that
            # ran on through the pause keeps the time it told of the step.
            builders.stamp(event, time.time_ns())
        await self._gate.admit(event)

    async def progress(
        self,
        percent: float,
        sub_step: str = "",
        *,
        detail: str = "",
        tokens_processed: int = 0,
        details: SubStepDetails | None = None,
        estimated_time_remaining: timedelta | float | None = None,
    ) -> None:
        """Reports the step's own completion (0 to 100) and what it is doing.

        ``details`` says more about the sub-step (operation, model, expected end);
        ``estimated_time_remaining`` is the producer's own estimate of the whole run.
        Checks ``percent`` (0 to 100), ``tokens_processed`` (a count),
        ``estimated_time_remaining`` (0 to 100 years), ``details`` (its texts' lengths, an
        end from 1970 on) and ``sub_step`` and ``detail``'s lengths: InvalidArgumentError
        naming the argument (``percent: must be between 0 and 100, got 150``), and nothing
        reported.
        """
        await self._gate.admit(
            builders.step_progress_event(
                self._step_id,
                percent,
                sub_step,
                detail,
                tokens_processed,
                details,
                estimated_time_remaining,
            )
        )

    async def artifact(
        self,
        name: str,
        *,
        kind: str = "",
        uri: str | None = None,
        size_bytes: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Reports an artifact the step produced; checked as ``RunReporter.artifact``."""
        await self._run.artifact(
            name,
            kind=kind,
            uri=uri or "",
            size_bytes=size_bytes or 0,
            step_id=self._step_id,
            metadata=metadata,
        )

    async def metrics(self, values: Mapping[str, float]) -> None:
        """Reports step metrics; their latest values also go into StepCompleted. Checked as
        ``RunReporter.metrics``."""
        numbers = builders.metric_values(values)
        self._metrics.update(numbers)
        await self._run.metrics(numbers, step_id=self._step_id)

    def set_summary(self, summary: str) -> None:
        """Sets the summary reported with StepCompleted."""
        self._summary = summary

    async def complete(self, summary: str | None = None) -> None:
        """Reports StepCompleted (done by ``async with`` on normal exit). Checks ``summary``
        (at most 4,096 characters): a bad one raises and the step is still open."""
        event = builders.step_completed_event(
            self._step_id, self._summary if summary is None else summary, self._metrics, None
        )
        if summary is not None:
            self._summary = summary
        self._finished = True
        await self._gate.admit(event)

    async def fail(
        self, message: str, *, code: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        """Reports StepFailed (done by ``async with`` when the block raises). Checks
        ``message`` (required, at most 4,096 characters), ``code`` and ``details``: a bad one
        raises and the step is still open."""
        event = builders.step_failed_event(self._step_id, message, code, details)
        self._finished = True
        await self._gate.admit(event)
