"""How a producer's run ends, when the producer does not say so itself.

:class:`RunEnd` is the part of :class:`~runstream.RunReporter` that owns ``async with run:``
and the run's end. A run's end waits for the reporting calls the framework integrations
queued before it (``OrderedReports``). An exception escaping the block reports the run
failed; a cancellation, Ctrl-C or a clean ``sys.exit()`` reports it cancelled by its producer,
waiting at most :data:`~runstream._stream_ownership.CLOSE_GRACE` for that to be stored; a
CANCEL from an operator that cancelled the block's task becomes RunCancelledError where the
block ends (:mod:`runstream._run_control`). A client closed while a block is still open in
another task reports that run cancelled rather than leave it RUNNING with nobody to end it.
The body's exception is what the caller sees: a failure to report the end is logged, once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from runstream import _event_builders as builders
from runstream._arguments import TEXT_CHARS
from runstream._errors import RunCancelledError, RunstreamError
from runstream._stream_ownership import CLOSE_GRACE

if TYPE_CHECKING:
    from runstream._outbox import Outbox
    from runstream._report_gate import ReportGate
    from runstream._report_stream import ReportStream
    from runstream._run_control import RunControl
    from runstream._stream_ownership import RunStreamOwner
    from runstream.v1 import event_pb2

__all__ = ["QueuedReports", "RunEnd", "describe"]

_log = logging.getLogger("runstream.reporter")

# What a run cancelled by its own producer's task records.
PRODUCER_CANCEL_REASON = "producer task cancelled"
PRODUCER = "producer"
# What a run whose block its client's close() cut records.
CLIENT_CLOSED_REASON = "the client was closed"


class QueuedReports(Protocol):
    """Reporting calls a framework integration queued for the run (``OrderedReports``)."""

    def makes_calls_in(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` is the one making the queued calls."""
        ...

    async def drain(self) -> None:
        """Waits until every call queued so far was made."""
        ...


class RunEnd:
    """The block of one run's reporter (``async with run:``), and how the run ends."""

    def __init__(
        self,
        run_id: str,
        *,
        control: RunControl,
        gate: ReportGate,
        stream: ReportStream,
        outbox: Outbox,
        owner: RunStreamOwner,
    ) -> None:
        self._run_id = run_id
        self._control = control
        self._gate = gate
        self._stream = stream
        self._outbox = outbox
        self._owner = owner
        # The framework integrations' queues of calls, made before the run's end is queued.
        self._queues: weakref.WeakSet[QueuedReports] = weakref.WeakSet()
        # The task inside ``async with run:``, while the block is open.
        self._block: asyncio.Task[Any] | None = None

    # --- before the end is queued -----------------------------------------------------------

    def ends_after(self, queue: QueuedReports) -> None:
        """The run's end waits for the calls ``queue`` holds then."""
        self._queues.add(queue)

    async def before_end(self) -> None:
        """Waits for what must be queued before the run's end: the integrations' queued calls
        (unless the end is reported by one of them), and the refusals still to come of steps
        an integration started that found no room, which it may have to tell first."""
        task = asyncio.current_task()
        for queue in list(self._queues):
            if not queue.makes_calls_in(task):
                await queue.drain()
        if self._outbox.awaits_taken_starts:
            await self._owner.settle()

    # --- the block ----------------------------------------------------------------------------

    def enter_block(self) -> None:
        self._control.adopt_owner()
        self._block = asyncio.current_task()

    async def exit_block(self, exc: BaseException | None) -> None:
        """Where ``async with run:`` ends: closes the reporter, having reported the run failed
        or cancelled when ``exc`` ended the block."""
        self._block = None
        if self._control.release_owner(exc):
            await self.close_quietly()
            raise self._control.cancelled_error() from exc
        if exc is None:
            await self._owner.close(wait=True)
            return
        # The body's exception is what the caller must see; reporting problems are secondary
        # (refused events were logged as they were refused).
        if self._gate.can_report():
            stopped = _stopped_by(exc)
            try:
                if stopped is not None:  # the run did not fail, it was stopped
                    await self._report_cancelled(stopped)
                else:
                    await self._report_end(
                        builders.run_failed_event(describe(exc), type(exc).__name__, None)
                    )
            except RunCancelledError as cancelled:
                # Cancelled: as this producer just reported, or by an operator meanwhile.
                _log.debug("run %s ended cancelled: %s", self._run_id, cancelled)
            except (TimeoutError, asyncio.CancelledError) as cut:
                # Still undelivered when the grace ended, or when the task was cancelled again
                # (a second Ctrl-C): close() would wait for them up to the reconnect timeout.
                _log.warning(
                    "could not report how run %s ended %s; %d reported events were not delivered",
                    self._run_id,
                    "before it was cancelled again"
                    if isinstance(cut, asyncio.CancelledError)
                    else f"within {CLOSE_GRACE} s",
                    self._outbox.pending,
                )
                self._owner.drop_refusals()
                await self._owner.close(wait=False)
                if isinstance(cut, asyncio.CancelledError):
                    raise
                return
            except RunstreamError as report_error:
                _log.log(
                    self._unless_said(report_error),
                    "could not report how run %s ended: %r",
                    self._run_id,
                    report_error,
                )
        self._owner.drop_refusals()
        await self.close_quietly()

    async def close_with_client(self) -> None:
        """``close()``, as its client closes. A run whose block is still open in another task
        (a web app's background task at the app's shutdown) could report nothing more, its end
        included: it is reported cancelled first (within the grace a cancelled block has), with
        a warning, rather than left RUNNING with nobody to end it."""
        self._gate.closed_with_client = True
        block = self._block
        if (
            block is not None
            and block is not asyncio.current_task()
            and not block.done()
            and self._gate.can_report()
        ):
            try:
                await self._report_cancelled(CLIENT_CLOSED_REASON)
            except RunCancelledError as exc:
                # The server answers a stored cancellation with its control, which fails the
                # wait for the acknowledgement: this one's (or another's) end was stored.
                if exc.reason != CLIENT_CLOSED_REASON or exc.by_server:
                    _log.info("run %s ended before its client closed: %s", self._run_id, exc)
                else:
                    self._warn_reported_cancelled()
            except (RunstreamError, TimeoutError) as exc:
                _log.warning(
                    "run %s: its client was closed while a task still reported in its block, "
                    "and it could not be reported cancelled (%s); it stays RUNNING",
                    self._run_id,
                    exc
                    if isinstance(exc, RunstreamError)
                    else f"not stored within {CLOSE_GRACE} s",
                )
            else:
                self._warn_reported_cancelled()
        await self._owner.close(wait=True)

    def _warn_reported_cancelled(self) -> None:
        _log.warning(
            "run %s reported cancelled: its client was closed while a task still "
            "reported in its block (async with run:); close the client after that task",
            self._run_id,
        )

    # --- reporting the end ----------------------------------------------------------------------

    async def _report_end(self, event: event_pb2.RunEvent) -> None:
        """Reports how the run ended where the body's exception is what the caller sees."""
        await self.before_end()
        await self._gate.admit(event, terminal=True)
        await self._owner.settle()

    async def _report_cancelled(self, reason: str) -> None:
        """Reports the run cancelled by its producer, and waits until it is stored for at most
        CLOSE_GRACE (TimeoutError then): a producer that stops is expected to stop promptly."""
        cancelled = builders.run_cancelled_event(reason, PRODUCER)
        await asyncio.wait_for(self._report_end(cancelled), CLOSE_GRACE)

    async def close_quietly(self) -> None:
        """``close()``, logging its failure instead of raising it."""
        try:
            await self._owner.close(wait=True)
        except RunstreamError as close_error:
            _log.log(
                self._unless_said(close_error),
                "closing the reporter of run %s failed: %s",
                self._run_id,
                close_error,
            )

    def _unless_said(self, error: RunstreamError) -> int:
        """WARNING for a failure not logged yet; DEBUG for the one the stream stopped on,
        which it logged as it stopped (one cause, one warning)."""
        stopped = self._stream.failure
        same = stopped is not None and (error is stopped or error.message == stopped.message)
        return logging.DEBUG if same else logging.WARNING


def _stopped_by(exc: BaseException) -> str | None:
    """Why the producer stopped, when ``exc`` stopped it rather than failed it: its task was
    cancelled (Ctrl-C under asyncio.run, a timeout, a shutdown), Ctrl-C was raised in it (under
    ``loop.run_until_complete``, as IPython runs code), or it exited without an error."""
    if isinstance(exc, asyncio.CancelledError):
        return PRODUCER_CANCEL_REASON
    if isinstance(exc, KeyboardInterrupt):
        return "producer interrupted (KeyboardInterrupt)"
    if isinstance(exc, SystemExit) and exc.code in (0, None):
        return f"producer exited ({describe(exc)})"
    return None


def describe(exc: BaseException) -> str:
    """An exception as the message of the failure it reports, cut to what the server takes
    (an LLM client's error may hold a whole response)."""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(described) > TEXT_CHARS:
        described = described[: TEXT_CHARS - 1] + "\u2026"
    return described
