"""The report stream of one run: the task that owns the bidirectional ReportService.Report
stream and takes the run's outbox to the server over it.

:class:`ReportStream` sends the batches of its :class:`~runstream._outbox.Outbox` (what waits
to be sent, what is in flight) with up to ``max_in_flight`` unacknowledged, hands the
acknowledgements to the outbox, and reconnects with backoff when the connection breaks,
resending every unacknowledged event in order with its original key. A batch the server
refuses for one of its events (it names the event first, ``events[3].step_started: ...``,
and stores nothing of the batch) goes again at once without that event, whose error goes to
the owner: one bad event costs one new stream, not the reporter. With a ``linger``, a batch
waits up to that long after its first event for more to share its message (fewer messages,
less CPU per event at low rates, for that much latency), unless it fills or the producer
flushes (as ``close()`` and the run's end do). What the server sends back besides
acknowledgements (controls, closed decisions), what a failed stream means for the run, and
what to re-read after a reconnect are its owner's, the
:class:`~runstream._stream_ownership.RunStreamOwner` of a :class:`~runstream.RunReporter` (see
``_reporter.py`` for the whole story).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import grpc

from runstream import _requests as rpc
from runstream._auth import is_stream_cut_at_its_expiry
from runstream._errors import (
    RunCancelledError,
    RunstreamError,
    StatusCode,
    UnavailableError,
    raised_again,
)
from runstream._outbox import ATTACH_BATCH_ID
from runstream._retry import (
    Backoff,
    ConnectionLost,
    Outage,
    OutageLog,
    end_requests,
    is_retryable,
    send,
)
from runstream._types import Decision
from runstream._unreachable import Diagnosis

if TYPE_CHECKING:
    from runstream._outbox import Outbox
    from runstream.v1 import event_pb2, report_service_pb2

    ReportCall = grpc.aio.StreamStreamCall[
        report_service_pb2.ReportRequest, report_service_pb2.ReportResponse
    ]
    ReportMethod = grpc.aio.StreamStreamMultiCallable[
        report_service_pb2.ReportRequest, report_service_pb2.ReportResponse
    ]

__all__ = ["ReportStream", "Signal", "StreamOwner"]

_log = logging.getLogger("runstream.reporter")

EXIT_GRACE = 5.0
"""How long a report stream task cancelled from outside (asyncio.run ending) keeps sending."""
# What the server refuses a batch with when one of its events is at fault; the message then
# names that event first, by its position in the batch.
_EVENT_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_REFUSED_EVENT = re.compile(r"events\[(\d+)\]")


class Signal:
    """Wakes every coroutine waiting for the reporter's state to change.

    Waiters re-check their condition after each wake-up, so a spurious wake-up is harmless and
    ``fire()`` can be called from anywhere, including ``finally`` blocks and callbacks.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, max_wait: float | None = None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            if max_wait is None:
                await waiter
            else:
                with contextlib.suppress(TimeoutError):  # not wait_for: see ReportStream._hold
                    async with asyncio.timeout(max_wait):
                        await waiter
        finally:
            self._waiters.discard(waiter)


class _StreamEnded(Exception):
    """The server ended the Report stream with OK before the reporter closed it."""


class StreamOwner(Protocol):
    """What the stream asks of the reporter that owns it."""

    @property
    def cancelled(self) -> bool:
        """The run was cancelled: nothing more is sent."""
        ...

    @property
    def closing(self) -> bool:
        """close() was called: the stream ends once everything is acknowledged."""
        ...

    def done_reporting(self) -> bool:
        """Closing, or the run's end reported: nothing more will be queued."""
        ...

    def on_control(self, control: rpc.ReportControl) -> None: ...

    def on_decision(self, decision: Decision) -> None: ...

    def on_reconnect(self, attached: asyncio.Event) -> None:
        """A new stream replaced a broken one; `attached` is set once the server attached it."""
        ...

    def on_refused(self, event: event_pb2.RunEvent, error: RunstreamError) -> None:
        """The server refused this event (nothing of it was stored); the others go on."""
        ...

    def on_duplicate(self, event: event_pb2.RunEvent, seq: int) -> None:
        """The run already held an event under this event's key, at `seq`: nothing was
        stored (a replay after a restart)."""
        ...

    async def error_for(self, exc: grpc.aio.AioRpcError) -> RunstreamError:
        """The failure a status no retry fixes means for the run."""
        ...


class ReportStream:
    """The task that takes one run's outbox to the server, over one stream after another."""

    def __init__(
        self,
        owner: StreamOwner,
        signal: Signal,
        outbox: Outbox,
        *,
        run_id: str,
        report_rpc: ReportMethod,
        metadata: Sequence[tuple[str, str]],
        reconnect_timeout: float | None,
        max_in_flight: int,
        linger: float = 0.0,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        """``diagnosis``: the client's, which says the likely cause when the stream gives up
        (see runstream._unreachable)."""
        self._owner = owner
        self._signal = signal
        self._outbox = outbox
        self._run_id = run_id
        self._report_rpc: ReportMethod | None = report_rpc
        """None once stopped for good: the method holds the client's channel (see stop())."""
        self._metadata = tuple(metadata)
        self._reconnect_timeout = reconnect_timeout
        self._max_in_flight = max(1, max_in_flight)
        self._linger = max(0.0, linger)
        self._diagnosis = diagnosis
        self._hold_until = 0.0
        """While lingering: the loop time the queued events leave at, at the latest."""
        self._hold_cut: asyncio.Future[None] | None = None
        self.failure: RunstreamError | None = None
        """Why the stream gave up (a status no retry fixes, or the reconnect timeout)."""
        self.attached_once = False
        """Whether the server has attached a stream of this reporter to the run."""
        self._out_of_reach = Outage(reconnect_timeout)
        self._said = OutageLog(_log, f"report stream of run {run_id}")
        self._unreachable: UnavailableError | None = None
        """Set once no stream attached for longer than the reconnect timeout, events waiting
        or not: calls that wait on the stream (an attach, an answer, a resume) give up."""
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        """Whether the owner stopped the stream task for good (``stop()``)."""
        self._draining = False
        """Whether the task, cancelled from outside, is delivering what waits before it ends."""
        self._streams_opened = 0

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def stopped(self) -> bool:
        """No stream task runs (never started, or ended): nothing queued will be sent."""
        return self._task is None or self._task.done()

    def raise_if_unreachable(self) -> None:
        """UnavailableError once the server has been out of reach longer than the reconnect
        timeout: for a call waiting on the stream, which may have no events waiting (the
        stream itself goes on reconnecting; only events waiting make it give up)."""
        if self._unreachable is not None:
            raise raised_again(self._unreachable)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the stream task runs in (None before it started)."""
        return self._task.get_loop() if self._task is not None else None

    def start(self) -> None:
        self._draining = False
        self._task = asyncio.create_task(
            self._run_stream(), name=f"runstream-report-{self._run_id}"
        )

    def stop(self) -> None:
        """Cancels the stream task, if it still runs, for good: the reporter is closed. Lets go
        of the Report method, hence of the channel: a closed reporter, kept by its program or
        in a reference cycle until the collector runs, must not keep gRPC in use when the
        program forks (a forked child cannot use gRPC then, see ``_connection.py``)."""
        self._stopped = True
        self._report_rpc = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def restart_if_cut(self) -> bool:
        """Starts the stream task again if something other than its owner cancelled it, and
        says whether it did.

        ``asyncio.run`` cancels every task left when the program leaves it through an
        exception (``sys.exit()``, KeyboardInterrupt) raised in a task other than the one
        inside ``async with run:``, the stream task with the rest; that block, cancelled
        too, then reports the run's end into a queue nobody sends. The new task reconnects
        like after a broken connection: the unacknowledged events go again with their keys.
        """
        if self._stopped or self._task is None or not self._task.cancelled():
            return False
        _log.info("the report stream task of run %s was cancelled; restarting it", self._run_id)
        self.start()
        return True

    # --- queueing ---------------------------------------------------------------------------

    def enqueue(self, event: event_pb2.RunEvent, key: str | None = None) -> None:
        """Queues the event in the outbox (see ``Outbox.add``): the first one to wait starts
        the linger, and a full batch ends it."""
        if self._linger and not self._outbox.unsent:
            self._hold_until = asyncio.get_running_loop().time() + self._linger
        self._outbox.add(event, key)
        if self._outbox.batch_full:
            self.send_now()
        self._signal.fire()

    def send_now(self) -> None:
        """Ends the linger: what is queued leaves at once (a flush, a full batch)."""
        self._hold_until = 0.0
        if self._hold_cut is not None and not self._hold_cut.done():
            self._hold_cut.set_result(None)

    async def _hold(self) -> None:
        """Lingers until ``_hold_until`` unless :meth:`send_now` comes first. It does not
        wake for each event queued meanwhile: one wake-up per message is the point."""
        delay = self._hold_until - asyncio.get_running_loop().time()
        if delay <= 0:
            return
        self._hold_cut = asyncio.get_running_loop().create_future()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # (the reporter closing) that arrives as what it waits for completes.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._hold_cut
        finally:
            self._hold_cut = None

    def _finished(self) -> bool:
        """Whether the stream has nothing left to do: closing, or the run ended, and all acked."""
        return (self._owner.done_reporting() or self._draining) and self._outbox.pending == 0

    def _closing(self) -> bool:
        """Whether nothing more will be queued that this task must wait for."""
        return self._owner.closing or self._draining

    def _fail(self, error: RunstreamError) -> None:
        if self.failure is None:
            self.failure = error
            # A cancelled run is an expected end, raised to the producer as RunCancelledError.
            level = logging.INFO if isinstance(error, RunCancelledError) else logging.WARNING
            _log.log(level, "reporter of run %s stopped: %s", self._run_id, error)
        self._signal.fire()

    # --- the stream task -------------------------------------------------------------------

    async def _run_stream(self) -> None:
        backoff = Backoff()
        outage = Outage(self._reconnect_timeout)
        last_error: BaseException | None = None
        try:
            while True:
                acked_before = self._outbox.acked
                try:
                    if await self._stream_once(backoff):
                        return
                except (grpc.aio.AioRpcError, ConnectionLost) as exc:
                    if not is_retryable(exc):
                        assert isinstance(exc, grpc.aio.AioRpcError)
                        if await self._stops_on(exc):
                            return
                        continue  # the rest goes again at once: nothing is wrong with the link
                    if self._finished():
                        return
                    last_error = exc
                    backoff.hold(exc)
                    self._said.lost(
                        _describe_connection_error(exc),
                        "reconnecting",
                        renewing=is_stream_cut_at_its_expiry(exc),
                    )
                except _StreamEnded as exc:
                    last_error = exc
                except RunstreamError as exc:
                    self._fail(exc)
                    return
                if self._owner.cancelled or self._finished():
                    return
                described = f"last error: {_describe_connection_error(last_error)}"
                what = f"the report stream of run {self._run_id!r}"
                if error := self._out_of_reach.exceeded(what, described, last_error):
                    self._unreachable = error
                    self._signal.fire()  # what waits on the stream gives up
                # The stream's own outage counts only while events wait to be delivered.
                if self._outbox.acked > acked_before or self._outbox.pending == 0:
                    outage.recovered()
                if self._outbox.pending and (
                    error := outage.exceeded(
                        f"could not deliver {self._outbox.pending} events of run {self._run_id!r}",
                        described,
                        last_error,
                    )
                ):
                    if self._diagnosis is not None:
                        error = await self._diagnosis.given_up(error, last_error)
                    self._fail(error)
                    return
                await self._sleep(backoff.next_delay())
        except asyncio.CancelledError:
            if self._cut_with_events_waiting():
                await self._deliver_before_exit()
            raise
        except Exception as exc:  # A bug must surface to the caller, not hang flush().
            crashed = RunstreamError(f"reporter crashed: {exc!r}", code=StatusCode.INTERNAL)
            crashed.__cause__ = exc
            self._fail(crashed)
        finally:
            self._signal.fire()

    def _cut_with_events_waiting(self) -> bool:
        """Whether something other than the owner cancelled this task (not a call that the
        channel's closing cancelled) while events wait to be delivered."""
        task = asyncio.current_task()
        cut = task is not None and task.cancelling() > 0
        return cut and not self._stopped and not self._draining and self._outbox.pending > 0

    async def _deliver_before_exit(self) -> None:
        """Sends what waits, for up to EXIT_GRACE seconds, after something other than the
        owner cancelled this task: ``asyncio.run`` does, to every task left when ``main()``
        returns or raises, so a program that never closed its reporter would otherwise lose
        the events it reported last (reporting calls return before the events leave). The
        cancellation is raised afterwards, so an owner that closes the reporter meanwhile
        still starts the task again (:meth:`restart_if_cut`) for what it reports then."""
        _log.info(
            "the report stream task of run %s was cancelled with %d events not delivered; "
            "sending them before it ends",
            self._run_id,
            self._outbox.pending,
        )
        self._draining = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(EXIT_GRACE):
                await self._run_stream()
        if self._outbox.pending:
            _log.warning(
                "run %s: %d reported events were not delivered before the program ended; "
                "close the reporter (await run.close(), or async with run:) to wait for them",
                self._run_id,
                self._outbox.pending,
            )

    async def _sleep(self, delay: float) -> None:
        """Sleeps ``delay`` seconds, waking early only when close() leaves nothing to do."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            if self._closing() and self._outbox.pending == 0:
                return
            await self._signal.wait(remaining)

    async def _stream_once(self, backoff: Backoff) -> bool:
        """Runs one Report stream. True when it ended because the reporter is done."""
        if self._report_rpc is None:
            return True  # stopped for good (a cancellation that something turned aside)
        if self._outbox.batches_in_flight:
            self._hold_until = 0.0  # they lingered once already
        self._outbox.requeue_in_flight()
        self._streams_opened += 1
        reconnected = self._streams_opened > 1
        call: ReportCall = self._report_rpc(None, metadata=self._metadata)
        stream_attached = asyncio.Event()
        reader = asyncio.create_task(self._read_responses(call, backoff, stream_attached))
        attached = False
        try:
            while True:
                while not reader.done() and self.failure is None:
                    if not attached:
                        break
                    if self._outbox.unsent and self._outbox.batches_in_flight < self._max_in_flight:
                        break
                    if self._finished():
                        break
                    await self._signal.wait()
                if reader.done() or self.failure is not None:
                    break
                if attached and self._finished():
                    # Closing, or the run's end is acknowledged: nothing more will go.
                    await call.done_writing()
                    await reader
                    return True
                if self._hold_until and attached and not self._closing():
                    await self._hold()
                    if reader.done() or self.failure is not None:
                        break
                batch = self._outbox.take_batch()
                if not self._outbox.unsent:
                    self._hold_until = 0.0  # the next event starts a new linger
                batch_id = batch.batch_id if batch.events else ATTACH_BATCH_ID
                request = rpc.report_request(
                    "" if attached else self._run_id, batch.events, batch_id
                )
                first_write = not attached
                attached = True
                try:
                    await send(call, request)
                except asyncio.InvalidStateError:
                    break  # The call already finished; the reader knows how.
                if first_write and reconnected:
                    self._owner.on_reconnect(stream_attached)
            await reader  # Raises the stream's error, if it failed.
            if self.failure is not None:
                return True
            raise _StreamEnded("the server ended the report stream")
        finally:
            call.cancel()
            if not reader.done():
                reader.cancel()
            # Wait for the reader without letting its exception (already surfaced, or moot)
            # replace the one in flight, and without swallowing a cancellation of this task.
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.exception()
            await end_requests(call)

    async def _read_responses(
        self, call: ReportCall, backoff: Backoff, attached: asyncio.Event
    ) -> None:
        try:
            async for response in call:
                # Any response proves the server attached this stream to the run.
                if not attached.is_set():
                    attached.set()
                    self._out_of_reach.recovered()
                    self._said.back()
                    self._unreachable = None
                if not self.attached_once:
                    self.attached_once = True
                    self._signal.fire()  # attach_run waits for this, maybe nothing more comes
                message = rpc.parse_report_response(response)
                if isinstance(message, rpc.ReportAck):
                    self._on_ack(message)
                    backoff.reset()
                elif isinstance(message, rpc.ReportControl):
                    self._owner.on_control(message)
                elif isinstance(message, rpc.ReportDecision):
                    self._owner.on_decision(message.decision)
        finally:
            self._signal.fire()

    async def _stops_on(self, exc: grpc.aio.AioRpcError) -> bool:
        """Whether a status no retry fixes ends the stream task: it does, failing the
        reporter, unless the server refused the batch for one of its events, which is set
        aside (its error goes to the owner) while the rest goes again."""
        index = self._refused_event(exc)
        if index is None and self._finished():
            return True
        error = await self._owner.error_for(exc)
        if index is None or isinstance(error, RunCancelledError):
            self._fail(error)
            return True
        self._owner.on_refused(self._outbox.set_aside(index), error)
        self._signal.fire()
        return self._owner.cancelled or self._finished()

    def _refused_event(self, exc: grpc.aio.AioRpcError) -> int | None:
        """The position, in the first unacknowledged batch, of the event the server refused
        that batch for, if it refused it for one event. The server answers batches in order,
        so the refused one is the first not acknowledged."""
        if exc.code() not in _EVENT_REFUSALS:
            return None
        named = _REFUSED_EVENT.match(exc.details() or "")
        if named is None:
            return None  # the run or the stream is at fault (the run ended, a limit, ...)
        index = int(named[1])
        return index if index < self._outbox.oldest_batch_size else None

    def _on_ack(self, ack: rpc.ReportAck) -> None:
        if ack.batch_id == ATTACH_BATCH_ID and ack.count == 0:
            return  # The acknowledgement of an attach-only message.
        for event, seq in self._outbox.settle(ack):
            self._owner.on_duplicate(event, seq)
        self._signal.fire()


def _describe_connection_error(exc: BaseException | None) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
