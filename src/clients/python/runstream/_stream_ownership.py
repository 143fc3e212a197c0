"""The reporter's side of its run's report stream.

:class:`RunStreamOwner` is the private part of :class:`~runstream.RunReporter` that its
:class:`~runstream._report_stream.ReportStream` deals with, the stream's
:class:`~runstream._report_stream.StreamOwner`: a separate object, so that what the stream
calls is no method of the reporter a producer could call. It routes what the server sends
back: controls to :mod:`runstream._run_control`, closed decisions and refused questions to
:mod:`runstream._run_decisions`; any other refused event is logged and set aside for the next
``flush()`` or ``close()`` to raise, each refusal named by the call that reported the event.
After a reconnect it re-reads what the broken stream may have missed (the decisions still
awaited, the pause), once the new stream is attached. It flushes, waiting until the stream
settled everything reported (starting the stream task again if something else cancelled it,
as asyncio.run does at exit) and raising the refusals set aside, and closes, stopping the
stream task and those re-reads. How a reported event travels, and what the reporter does with
the rest, is told in :mod:`runstream._reporter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from runstream import _event_builders as builders
from runstream import _requests as rpc
from runstream._errors import FailedPreconditionError, RunCancelledError, RunstreamError, about

if TYPE_CHECKING:
    import grpc

    from runstream._outbox import Outbox
    from runstream._report_gate import ReportGate
    from runstream._report_stream import ReportStream, Signal
    from runstream._run_control import RunControl
    from runstream._run_decisions import RunDecisions
    from runstream._types import Decision
    from runstream.v1 import event_pb2

__all__ = ["CLOSE_GRACE", "RunStreamOwner"]

_log = logging.getLogger("runstream.reporter")

CLOSE_GRACE = 5.0
"""How long close() waits for the server to end a half-closed stream before cutting it, and
how long a cancelled producer waits for its RunCancelled to be stored."""
# How long a resync after a reconnect waits for proof that the new stream is attached.
_ATTACH_GRACE = 0.5


class RunStreamOwner:
    """What a :class:`~runstream.RunReporter` does as its report stream's owner: answer what
    the stream asks, route what it hears, catch up after reconnects, flush and close it."""

    # The parts made after the owner, since they need the stream it is given to (serve()).
    _stream: ReportStream
    _gate: ReportGate
    _decisions: RunDecisions

    def __init__(self, run_id: str, signal: Signal, outbox: Outbox, control: RunControl) -> None:
        self._run_id = run_id
        self._signal = signal
        self._outbox = outbox
        self._control = control
        # The resyncs started after reconnects, cancelled when the stream task stops.
        self._side_tasks: set[asyncio.Task[None]] = set()
        # The errors of refused events, each raised once by a later flush() or close().
        self._refused: deque[RunstreamError] = deque()
        self._closed = False

    def serve(self, stream: ReportStream, gate: ReportGate, decisions: RunDecisions) -> None:
        """Takes the stream it owns, and the parts made with that stream, before it starts."""
        self._stream = stream
        self._gate = gate
        self._decisions = decisions

    # --- what the stream asks and tells the reporter (StreamOwner) --------------------------

    @property
    def cancelled(self) -> bool:
        return self._control.cancelled

    @property
    def closing(self) -> bool:
        return self._gate.closing

    def done_reporting(self) -> bool:
        return self._gate.done_reporting()

    def on_decision(self, decision: Decision) -> None:
        self._decisions.on_decision(decision)

    def on_control(self, control: rpc.ReportControl) -> None:
        self._control.apply(control)

    def on_refused(self, event: event_pb2.RunEvent, error: RunstreamError) -> None:
        # The server names the event by its place in a batch the producer never saw; the
        # call that reported it, and its step, is what the producer can find in its code.
        call = builders.reported_by(event, self._outbox.call_of(event))
        named = about(error, call)
        if self._decisions.on_refused(event, named):
            return  # ask() raises it
        self._gate.on_refused(event)
        taker = self._outbox.refusal_taker(event)
        if taker is not None:  # a framework integration's event: it logs the refusal
            taker(event, named)
            return
        self._refused.append(named)
        _log.warning(
            "run %s: the server refused %s, the others are reported: %s",
            self._run_id,
            call,
            error,
        )

    def on_duplicate(self, event: event_pb2.RunEvent, seq: int) -> None:
        self._decisions.on_duplicate(event, seq)

    def on_reconnect(self, attached: asyncio.Event) -> None:
        if self._decisions.awaiting or self._control.paused:
            self._spawn(self._resync(attached))

    async def error_for(self, exc: grpc.aio.AioRpcError) -> RunstreamError:
        """The error a failed stream surfaces; a batch refused because of a cancel is one."""
        return await self._control.stream_error(exc)

    # --- catching up after a reconnect -------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"runstream-resync-{self._run_id}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _resync(self, attached: asyncio.Event) -> None:
        """After a reconnect: catch up on what the broken stream may have missed.

        Reads only once the new stream is attached, so that whatever closes later is pushed
        to it. A response proves the attachment; an attach-only first message may get none,
        so after a short grace the read goes ahead anyway (the server attaches a stream
        as soon as it reads its first message).
        """
        with contextlib.suppress(TimeoutError):  # not wait_for: see ReportStream._hold
            async with asyncio.timeout(_ATTACH_GRACE):
                await attached.wait()
        try:
            await self._control.recheck_pause()
            await self._decisions.recheck()
        except RunstreamError as exc:
            # The stream that triggered this is probably gone again; the next reconnect
            # resyncs once more.
            _log.info("resync of run %s after reconnecting failed: %s", self._run_id, exc)

    # --- the refusals set aside, for flush() ------------------------------------------------

    def raise_refusal(self) -> None:
        """Raises the error of the earliest refused event not raised yet, if there is one."""
        if self._refused:
            raise self._refused.popleft()

    def drop_refusals(self) -> None:
        """Forgets the refusals not raised yet (each was logged as it came)."""
        self._refused.clear()

    # --- flushing and closing ----------------------------------------------------------------

    async def flush(self) -> None:
        """``RunReporter.flush()``: settles the stream, then raises a refusal not raised yet."""
        self._gate.check_loop()
        await self.settle()
        self.raise_refusal()

    async def close(self, *, wait: bool) -> None:
        """``RunReporter.close()``, idempotent; without `wait`, ends the stream at once, not
        waiting for what the server has not acknowledged (the run's end could not be reported
        in time)."""
        if wait:
            self._gate.check_loop()
        if self._closed:
            return
        self._gate.begin_closing()
        if not wait:
            self._stream.stop()
        try:
            if wait and not self._control.cancelled:
                await self.flush()
        except RunCancelledError:
            pass
        finally:
            self._closed = True
            await self.stop_stream()

    # --- settling and stopping the stream ----------------------------------------------------

    async def settle(self) -> None:
        """Waits until the server acknowledged or refused every event reported so far."""
        target = self._outbox.reported
        self._stream.send_now()
        while self._outbox.settled < target:
            self._gate.raise_if_failed()
            if self._stream.stopped and not self._stream.restart_if_cut():
                self._gate.raise_if_failed()
                raise FailedPreconditionError(
                    f"the reporter of run {self._run_id!r} stopped with "
                    f"{target - self._outbox.settled} events unacknowledged"
                )
            await self._signal.wait()

    async def stop_stream(self) -> None:
        """Stops the stream task for good, and the resyncs it started."""
        for side_task in list(self._side_tasks):
            side_task.cancel()
        task = self._stream.task
        if task is not None and not task.done():
            self._signal.fire()
            if self._stream.failure is None and not self._control.cancelled:
                # The task half-closes the stream once drained; give the server a moment to
                # end it.
                await asyncio.wait({task}, timeout=CLOSE_GRACE)
        self._stream.stop()  # For good: a flush() after close() does not start it again.
        if task is not None and not task.done():
            await asyncio.wait({task})  # Unlike `await task`, keeps a cancel of close() itself.
