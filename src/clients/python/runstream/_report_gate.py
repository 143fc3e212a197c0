"""Admission of a producer's reported events to its run's report stream.

:class:`ReportGate` decides whether a reporting call may queue its event: not once the run
is cancelled, the stream failed with a status no retry fixes, the reporter is closing or the
run's end is already reported. It also holds the producer while ``max_buffered`` events, or
:data:`MAX_BUFFERED_BYTES` of them, are unacknowledged (backpressure, never dropping): a
server out of reach then costs the producer a bounded amount of memory whatever the events'
sizes. The stream itself is :mod:`runstream._report_stream`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runstream import _requests as rpc
from runstream._errors import FailedPreconditionError, raised_again

if TYPE_CHECKING:
    from runstream._outbox import Outbox
    from runstream._report_stream import ReportStream, Signal
    from runstream._run_control import RunControl
    from runstream.v1 import event_pb2

__all__ = ["MAX_BUFFERED_BYTES", "ReportGate"]

MAX_BUFFERED_BYTES = 64 << 20
"""How many bytes of unacknowledged events a reporter holds before reporting calls wait."""


class ReportGate:
    """Lets a run's reported events into its report stream while the run can take them."""

    def __init__(
        self,
        run_id: str,
        stream: ReportStream,
        outbox: Outbox,
        signal: Signal,
        control: RunControl,
        *,
        max_buffered: int,
    ) -> None:
        self._run_id = run_id
        self._stream = stream
        self._outbox = outbox
        self._signal = signal
        self._control = control
        self._max_buffered = max(1, max_buffered)
        self._max_buffered_bytes = MAX_BUFFERED_BYTES
        self._closing = False
        self.closed_with_client = False
        """Whether its client's close() closed the reporter (which the refusals then say)."""
        self._terminal_reported = False

    @property
    def closing(self) -> bool:
        """close() was called: nothing more is admitted."""
        return self._closing

    def begin_closing(self) -> None:
        self._closing = True
        self._signal.fire()

    def done_reporting(self) -> bool:
        return self._closing or self._terminal_reported

    def on_refused(self, event: event_pb2.RunEvent) -> None:
        """The server refused an event: when it was the run's end, the run did not end, and
        the producer may still end it."""
        kind = rpc.payload_kind(event)
        if kind is not None and kind.is_terminal:
            self._terminal_reported = False
            self._signal.fire()

    def can_report(self) -> bool:
        return not (
            self._control.cancelled
            or self._stream.failure is not None
            or self._closing
            or self._terminal_reported
        )

    def raise_if_failed(self) -> None:
        self._control.raise_if_cancelled()
        if self._stream.failure is not None:
            raise raised_again(self._stream.failure)

    def check_loop(self) -> None:
        """Refuses a call made in another event loop than the one the reporter started in,
        whose futures and tasks that loop cannot wait on."""
        loop = self._stream.loop
        if loop is not None and loop is not asyncio.get_running_loop():
            raise FailedPreconditionError(
                f"the reporter of run {self._run_id!r} was started in another event loop (each "
                "asyncio.run() has its own); report from the loop that started it"
            )

    def check_can_report(self) -> None:
        self.check_loop()
        self.raise_if_failed()
        why = ": the Runstream client was closed" if self.closed_with_client else ""
        if self._closing:
            raise FailedPreconditionError(f"the reporter of run {self._run_id!r} is closed{why}")
        if self._terminal_reported:
            raise FailedPreconditionError(
                f"run {self._run_id!r} was already reported complete or failed{why}"
            )

    async def admit(self, event: event_pb2.RunEvent, *, terminal: bool = False) -> None:
        """Queues the event, after waiting while too many are unacknowledged."""
        self.check_can_report()
        while (
            self._outbox.pending >= self._max_buffered
            or self._outbox.pending_bytes >= self._max_buffered_bytes
        ):
            await self._signal.wait()
            self.check_can_report()
        if terminal:
            self._terminal_reported = True
        self._stream.enqueue(event)
