"""What comes back to a producer from people: humans' decisions, operators' controls.

:class:`RunSteering` is the part of :class:`~runstream.RunReporter` a workflow uses to be
steered: ``ask()`` a human and wait for the decision (:mod:`runstream._run_decisions` does the
work), and hold while an operator has the run paused or learn that it was cancelled
(:mod:`runstream._run_control`). Both arrive on the reporter's stream
(:mod:`runstream._stream_ownership` routes them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from runstream import _event_builders as builders
from runstream._types import Decision, DecisionResult

if TYPE_CHECKING:
    from runstream._report_gate import ReportGate
    from runstream._report_stream import ReportStream, Signal
    from runstream._run_control import RunControl
    from runstream._run_decisions import RunDecisions

__all__ = ["RunSteering"]


class RunSteering:
    """A reporter's decisions and controls: ``ask()``, ``wait_if_paused()``, whether the run
    is paused or cancelled (see RunReporter)."""

    # The reporter's parts, set by RunReporter.__init__.
    _signal: Signal
    _stream: ReportStream
    _gate: ReportGate
    _control: RunControl
    _decisions: RunDecisions

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
        while self.paused:
            self._gate.raise_if_failed()
            self._stream.raise_if_unreachable()  # no stream to bring the RESUME either
            if self._stream.stopped:
                return  # No stream left to bring the RESUME; holding would hang forever.
            await self._signal.wait()

    async def ask(
        self,
        prompt: str,
        options: Iterable[builders.OptionLike],
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
                JSON-like), naming the argument, and for options given as one string.
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
