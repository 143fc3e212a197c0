"""What an operator's controls do to a producer: cancel, pause and resume its run.

:class:`RunControl` holds the run's control state as its :class:`~runstream.RunReporter`
knows it. A CANCEL marks the run cancelled (reporting calls and pending ``ask()`` calls then
raise RunCancelledError) and, unless the producer opted out, cancels the task running inside
``async with run:``, so a workflow stuck in a long await stops at once; where that block ends
the CancelledError becomes RunCancelledError, the way ``asyncio.timeout()`` turns its
cancellation into TimeoutError. PAUSE holds the producer at its next step boundary until
RESUME. A control can be missed while the stream is down, so the run itself is re-read where
that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from runstream._errors import RunCancelledError, RunstreamError, error_from_rpc
from runstream._types import ControlAction, Run, RunStatus

if TYPE_CHECKING:
    from runstream import _requests as rpc
    from runstream._report_stream import Signal

__all__ = ["RunControl"]

ABANDONED = "ABANDONED"
"""The error code of a run the server ended, its producer silent too long."""

_log = logging.getLogger("runstream.reporter")


class RunControl:
    """The cancel and pause state of one run, and the task a CANCEL cancels."""

    def __init__(
        self,
        run_id: str,
        signal: Signal,
        get_run: Callable[[str], Awaitable[Run]],
        *,
        paused: bool,
        cancel_task: bool,
    ) -> None:
        self._run_id = run_id
        self._signal = signal
        self._get_run = get_run
        self._cancel_task = cancel_task
        self._cancelled = False
        self._cancel_reason = ""
        self._by_server = False  # the server ended the run (abandoned), no operator
        self._paused = paused
        # The task inside `async with run:`, which a CANCEL cancels (cancel_task), and how
        # many cancellations it had already when it entered, to tell ours from others.
        self._owner: asyncio.Task[Any] | None = None
        self._owner_cancelling = 0
        self._owner_cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def cancel_reason(self) -> str:
        return self._cancel_reason

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def cancel_task(self) -> bool:
        return self._cancel_task

    def raise_if_cancelled(self) -> None:
        if self._cancelled:
            raise self.cancelled_error()

    def cancelled_error(self) -> RunCancelledError:
        """What a call on the cancelled run raises."""
        return RunCancelledError(self._run_id, self._cancel_reason, by_server=self._by_server)

    def apply(self, control: rpc.ReportControl) -> None:
        """Applies a control the server sent on the report stream."""
        if control.action == ControlAction.CANCEL:
            # FAILED: the server ended the run, its producer silent too long (abandoned).
            by_server = control.status == RunStatus.FAILED
            self.mark_cancelled(control.reason, by_server=by_server)
            said = "was ended by the server" if by_server else "was cancelled"
            _log.info("run %s %s%s", self._run_id, said, _why(control.reason))
        elif control.action == ControlAction.PAUSE:
            self._paused = True
            _log.info("run %s was paused%s", self._run_id, _why(control.reason))
        elif control.action == ControlAction.RESUME:
            self._paused = False
        self._signal.fire()

    def mark_cancelled(self, reason: str, *, by_server: bool = False) -> None:
        if not self._cancelled:
            self._cancelled = True
            self._cancel_reason = reason
            self._by_server = by_server
            self._cancel_owner()
        self._signal.fire()

    async def learn_cancellation(self) -> None:
        """Asks the run whether it was cancelled (or ended by the server as abandoned), for
        when the CANCEL control may not have reached this producer (its stream was
        reconnecting, or a closed decision overtook it)."""
        if self._cancelled:
            return
        with contextlib.suppress(RunstreamError):
            run = await self._get_run(self._run_id)
            if run.status == RunStatus.CANCELLED:
                self.mark_cancelled(run.cancel_reason)
            elif run.status == RunStatus.FAILED and run.error and run.error.code == ABANDONED:
                self.mark_cancelled(run.error.message, by_server=True)

    async def stream_error(self, exc: grpc.aio.AioRpcError) -> RunstreamError:
        """The error a report stream failed with means for the run: a batch refused as
        FAILED_PRECONDITION because the run was cancelled is RunCancelledError."""
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            # The cancel control may not have reached this stream (it was reconnecting), so
            # ask the run itself whether it ended by cancellation.
            await self.learn_cancellation()
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and self._cancelled:
            error: RunstreamError = self.cancelled_error()
        else:
            error = error_from_rpc(exc)
        error.__cause__ = exc
        return error

    async def recheck_pause(self) -> None:
        """After a reconnect while paused: a RESUME may have been missed meanwhile, so the
        run is re-read. Raises the read's RunstreamError."""
        if not self._paused:
            return
        run = await self._get_run(self._run_id)
        if run.status != RunStatus.PAUSED:
            self._paused = False
            self._signal.fire()

    # --- the task inside `async with run:` ---------------------------------------------------

    def adopt_owner(self) -> None:
        """Called on entering ``async with run:``: a CANCEL will cancel the current task.
        A run cancelled already is not cancelled here: the block meets RunCancelledError at
        its next report call."""
        task = asyncio.current_task()
        if self._cancel_task and task is not None:
            self._owner = task
            self._owner_cancelling = task.cancelling()
            self._owner_cancelled = False

    def release_owner(self, exc: BaseException | None) -> bool:
        """Called where ``async with run:`` ends: whether ``exc`` is the CancelledError of
        our own cancel, which the caller turns into RunCancelledError."""
        owner, self._owner = self._owner, None
        if owner is None or not self._owner_cancelled:
            return False
        self._owner_cancelled = False
        # Balance our cancel(); if nobody else cancelled the task too, the CancelledError
        # was ours and becomes what it means: the run was cancelled.
        return owner.uncancel() <= self._owner_cancelling and isinstance(
            exc, asyncio.CancelledError
        )

    def _cancel_owner(self) -> None:
        owner = self._owner
        if owner is None or owner.done() or self._owner_cancelled:
            return
        if owner is asyncio.current_task():
            return  # Already running; it meets RunCancelledError at its next report call.
        self._owner_cancelled = True
        owner.cancel(f"run {self._run_id} was cancelled")


def _why(reason: str) -> str:
    """ ": <reason>" to follow what happened in a log line; nothing when none was given."""
    return f": {reason}" if reason else ""
