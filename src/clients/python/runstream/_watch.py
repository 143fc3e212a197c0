"""Watchers: a resuming async iterator over a run's WatchRun stream, and one over WatchRuns.

The iterator remembers the seq of the last event it yielded (its cursor). When the stream
breaks because the server or the connection went away, it reconnects with exponential
backoff and asks for the events after the cursor, so the caller sees every event exactly
once, in order, across any number of reconnects. Without a kind filter it checks that each
event's seq is exactly the cursor plus one and raises DataLossError if the server ever breaks
that promise, rather than silently skipping or repeating events.

A watch stream only receives, so a link that goes silent (a pulled cable, a NAT that forgot
the flow, a host gone without a word) would show only at gRPC's next keepalive ping, 10 to
40 s later, while the watch said LIVE and the run seemed to stand still. Each watch asks the
server for a heartbeat every ``heartbeat_interval`` (DEFAULT_HEARTBEAT unless the caller
says) and takes SILENT_HEARTBEATS intervals without any message as a lost stream: it cancels
the call, says RECONNECTING and resumes after the cursor, as after any other loss.

:class:`RunWatching` is the watching part of :class:`~runstream.Client`: ``watch()`` and
``watch_runs()`` start these iterators on the client's connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc

from runstream import _arguments as arguments
from runstream import _requests as rpc
from runstream._auth import is_stream_cut_at_its_expiry
from runstream._connection import raise_if_closed_under
from runstream._errors import (
    DataLossError,
    InvalidArgumentError,
    RunstreamError,
    UnavailableError,
    about,
    error_from_rpc,
)
from runstream._events import EventKind
from runstream._retry import Backoff, Outage, OutageLog, is_retryable, retry_after
from runstream._types import Event, LinkState, Run, RunsUpdate, WatchLink
from runstream._unreachable import Diagnosis

if TYPE_CHECKING:
    from runstream._connection import Connection
    from runstream.v1 import run_service_pb2

    WatchMethod = grpc.aio.UnaryStreamMultiCallable[
        run_service_pb2.WatchRunRequest, run_service_pb2.WatchRunResponse
    ]
    WatchRunsMethod = grpc.aio.UnaryStreamMultiCallable[
        run_service_pb2.WatchRunsRequest, run_service_pb2.WatchRunsResponse
    ]

__all__ = ["RunWatching", "watch_run", "watch_runs"]

_log = logging.getLogger("runstream.watch")

OnLink = Callable[[WatchLink], object]


def checked_on_link(on_link: OnLink | None) -> OnLink | None:
    """``on_link`` as given, refused before the stream opens when it cannot serve: an
    ``async def`` returns a coroutine nobody awaits (a relay never heard LIVE, and Python
    said only "coroutine was never awaited"), and what is not callable failed at the first
    change of the stream. An object whose ``__call__`` is an async def is one too: Python
    3.11's iscoroutinefunction looks at functions only, so its class's ``__call__`` is asked."""
    if on_link is None:
        return None
    if not callable(on_link):
        raise InvalidArgumentError(f"on_link: must be a function, got {on_link!r:.60}")
    if inspect.iscoroutinefunction(on_link) or inspect.iscoroutinefunction(type(on_link).__call__):
        raise InvalidArgumentError(
            "on_link: must be a plain function, called on the watch's task: an async def "
            "is never awaited (start a task from a plain function to do async work)"
        )
    return on_link


DEFAULT_HEARTBEAT = 5.0
"""Seconds of idle before the server sends a watch a heartbeat, unless the caller asks
otherwise: a silent link shows within 12.5 s, close to the 10 s a reporter takes (its writes
go unacknowledged). The server's own default, 15 s, would take 37.5 s, hardly better than
gRPC's keepalive (10 to 40 s). A heartbeat is a few dozen bytes and about 90 us of the
server's CPU: 20,000 idle watches cost it a third of a core at 5 s, an eighth at 15 s."""
SILENT_HEARTBEATS = 2.5
"""Heartbeat intervals without any message after which a watch takes its stream as lost:
one late heartbeat is not a loss, two missed in a row are."""
_FEWEST_SECONDS = 0.1
"""The shortest heartbeat interval a server grants; a shorter one is refused, and the watch
must live long enough to hear the refusal."""
_MOST_STRETCH = 8
"""A stream cut for silence gives the next one twice as long, up to this many times the
bound, until a message comes: a message too big to arrive within the bound on a slow link
(a page of 1 MiB at under 0.7 Mbit/s) is let through rather than cut and asked for again."""


def heartbeat_and_bound(heartbeat_interval: timedelta | float | None) -> tuple[timedelta, float]:
    """The heartbeat interval a watch asks for (DEFAULT_HEARTBEAT when None), and the seconds
    it waits for a message before it takes its stream as lost."""
    asked = arguments.duration("heartbeat_interval", heartbeat_interval)
    interval = asked if asked is not None else timedelta(seconds=DEFAULT_HEARTBEAT)
    return interval, SILENT_HEARTBEATS * max(interval.total_seconds(), _FEWEST_SECONDS)


class Silence:
    """Cancels a watch's call once the stream has been waited on for ``bound`` seconds with
    no message: the server sends a heartbeat on an idle stream, so a silent one is lost.

    The time a caller spends with an event the watch yielded (``hold()`` until ``heard()``)
    is not the stream's silence: a slow consumer leaves messages waiting in gRPC's buffers,
    not missing. A message moves one attribute, not a timer: the timer is set again only
    when it fires early.
    """

    __slots__ = ("_bound", "_call", "_held", "_loop", "_since", "_timer", "fired")

    def __init__(self, call: grpc.aio.Call, bound: float) -> None:
        self._call = call
        self._bound = bound
        self._loop = asyncio.get_running_loop()
        self._since = self._loop.time()
        self._held = False
        self.fired = False
        """Whether the stream was cut for its silence (its read then raises CancelledError)."""
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self._since + bound, self._check
        )

    def heard(self) -> None:
        """A message came, or the caller is back for the next one: the silence starts now."""
        self._since = self._loop.time()
        self._held = False

    def hold(self) -> None:
        """The caller has an event: its time until ``heard()`` is not the stream's."""
        self._held = True

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        now = self._loop.time()
        if self._held:
            due = now + self._bound
        elif now - self._since >= self._bound:
            self._timer = None
            self.fired = True
            self._call.cancel()
            return
        else:
            due = self._since + self._bound
        self._timer = self._loop.call_at(due, self._check)


async def opened(
    call: grpc.aio.Call,
    outage: Outage,
    on_link: OnLink | None,
    cursor: int,
    diagnosis: Diagnosis | None = None,
) -> None:
    """Once the server accepted the stream (its response headers came: a server sends them
    as it accepts a watch, an older one with its first message; not as the end of a call it
    refused), the outage is over, the client has reached a server (`diagnosis`) and `on_link`
    hears LIVE. A watch that was LIVE and is lost again gets the whole reconnect_timeout
    again, though no message came meanwhile."""
    await call.initial_metadata()
    if not call.done() or await call.code() == grpc.StatusCode.OK:
        outage.recovered()
        if diagnosis is not None:
            diagnosis.reached()
        if on_link is not None:
            on_link(WatchLink(LinkState.LIVE, cursor))


def lost_link(
    on_link: OnLink | None,
    cursor: int,
    exc: grpc.aio.AioRpcError | RunstreamError | None,
    delay: float,
) -> None:
    """Tells `on_link` the stream was lost (`exc`; None: the server ended it) and when the
    next attempt comes."""
    if on_link is not None:
        error = error_from_rpc(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
        on_link(WatchLink(LinkState.RECONNECTING, cursor, error, delay))


class SilenceBound:
    """How long each of a watch's streams may go without a message: ``bound`` seconds, twice
    that after a stream cut for its silence, up to _MOST_STRETCH times, until a message
    comes."""

    def __init__(self, what: str, bound: float) -> None:
        self._what = what
        self._bound = bound
        self._stretch = 1

    def watch(self, call: grpc.aio.Call) -> Silence:
        """The Silence that cuts `call` when it has been quiet for too long."""
        return Silence(call, self._bound * self._stretch)

    def heard(self) -> None:
        """A message came: the next stream gets the bound again."""
        self._stretch = 1

    def cut(self, silence: Silence, outage: Outage) -> tuple[UnavailableError, str]:
        """In the handler of a CancelledError: the error a stream that `silence` cut is lost
        with, and why in a few words for the log; the CancelledError again when it is not the
        call's (the watch's task, or its client closed under it), or the outage's error once
        it lasted too long."""
        task = asyncio.current_task()
        if not silence.fired or (task is not None and task.cancelling()):
            raise_if_closed_under(self._what)
            raise  # the CancelledError being handled
        waited = self._bound * self._stretch
        self._stretch = min(2 * self._stretch, _MOST_STRETCH)
        silent = UnavailableError(
            f"{self._what}: the server sent nothing for {waited:g}s, not even a heartbeat; the "
            "link may have gone silent"
        )
        if error := outage.exceeded(self._what, silent.message, silent):
            raise error from silent
        return silent, f"nothing for {waited:g}s, not even a heartbeat"


class Reconnects:
    """The reconnect policy of one watch, across its streams: the backoff between attempts,
    the outage against ``reconnect_timeout``, each stream's silence bound, the log's few lines
    and what ``on_link`` hears. The loop itself (open a stream, read it, sleep) is the watch's.

    Each attempt: ``watch(call)`` as it starts, ``await opened(...)``, ``heard(silence)`` on
    each message; when the stream is lost, the delay before the next attempt comes from
    ``ended()`` (the server ended it), ``failed()`` (an RPC error) or ``cut()`` (in the handler
    of a CancelledError), each of which raises instead when the watch must give up.
    """

    def __init__(
        self,
        what: str,
        logged_as: str,
        bound: float,
        reconnect_timeout: float | None,
        on_link: OnLink | None,
        *,
        diagnosis: Diagnosis | None = None,
        warns_of_limits: bool = False,
    ) -> None:
        """``what`` names the watch in errors, ``logged_as`` in the log; ``diagnosis``, the
        client's, says why it cannot connect (at once when certain, see
        runstream._unreachable); ``warns_of_limits``: a wait a limit asks for (its RetryInfo)
        is a warning of its own, with the server's reason, rather than a line of the
        outage."""
        self._what = what
        self._logged_as = logged_as
        self._quiet = SilenceBound(what, bound)
        self._said = OutageLog(_log, logged_as)
        self._backoff = Backoff()
        self._outage = Outage(reconnect_timeout)
        self._on_link = checked_on_link(on_link)
        self._diagnosis = diagnosis
        self._warns_of_limits = warns_of_limits

    def connecting(self, cursor: int) -> None:
        """Before the first attempt: ``on_link`` hears CONNECTING."""
        if self._on_link is not None:
            self._on_link(WatchLink(LinkState.CONNECTING, cursor))

    def watch(self, call: grpc.aio.Call) -> Silence:
        """The Silence that cuts this attempt's `call` when it has been quiet for too long."""
        return self._quiet.watch(call)

    async def opened(self, call: grpc.aio.Call, silence: Silence, cursor: int) -> None:
        """Once the server accepted the stream: LIVE (see :func:`opened`)."""
        await opened(call, self._outage, self._on_link, cursor, self._diagnosis)
        silence.heard()

    def heard(self, silence: Silence) -> None:
        """A message came: the stream works, and the next loss starts from scratch."""
        silence.heard()
        self._quiet.heard()
        self._outage.recovered()
        self._said.back()  # on a message, not the headers: a stream accepted may still fail
        self._backoff.reset()

    def ended(self, cursor: int, then: str) -> float:
        """The server ended the stream: the delay before the next attempt."""
        self._said.lost("the server ended it", then)
        return self._lost(cursor, None)

    async def failed(self, exc: grpc.aio.AioRpcError, cursor: int, then: str) -> float:
        """The stream failed with `exc`: the delay before the next attempt; the error to give
        up with when `exc` is the server's verdict, why the client cannot connect is certain,
        or the outage lasted too long (then with its likely cause)."""
        if not is_retryable(exc):
            raise error_from_rpc(exc) from exc
        if self._diagnosis is not None and (error := await self._diagnosis.at_once(exc)):
            raise about(error, self._what) from exc
        self._backoff.hold(exc)
        detail = f"{exc.code().name}: {exc.details()}"
        if error := self._outage.exceeded(self._what, detail, exc):
            if self._diagnosis is not None:
                error = await self._diagnosis.given_up(error, exc)
            raise error from exc
        waits = retry_after(exc) if self._warns_of_limits else None
        if waits is not None:  # a limit: said, as nothing else shows why nothing comes
            _log.warning("%s waits %gs: %s", self._logged_as, waits, exc.details())
        else:
            self._said.lost(exc.code().name, then, renewing=is_stream_cut_at_its_expiry(exc))
        return self._lost(cursor, exc)

    def cut(self, silence: Silence, cursor: int, then: str) -> float:
        """In the handler of a CancelledError: the delay before the next attempt when
        `silence` cut the stream; else the CancelledError again (see SilenceBound.cut)."""
        silent, why = self._quiet.cut(silence, self._outage)
        self._said.lost(why, then)
        return self._lost(cursor, silent)

    def _lost(self, cursor: int, exc: grpc.aio.AioRpcError | RunstreamError | None) -> float:
        delay = self._backoff.next_delay()
        lost_link(self._on_link, cursor, exc, delay)
        return delay


async def watch_run(
    watch_rpc: WatchMethod,
    run_id: str,
    *,
    after_seq: int,
    kinds: Iterable[EventKind] | None,
    heartbeat_interval: timedelta | float | None,
    keep_open: bool,
    metadata: Sequence[tuple[str, str]],
    reconnect_timeout: float | None,
    check_open: Callable[[str], None],
    on_link: OnLink | None = None,
    diagnosis: Diagnosis | None = None,
) -> AsyncGenerator[Event, None]:
    """Yields the run's events after ``after_seq``, resuming across reconnects (see module);
    each attempt first calls ``check_open``, which raises once the client is closed.
    ``on_link`` hears of each change of the stream (CONNECTING, LIVE, RECONNECTING);
    ``diagnosis``, the client's, says why it cannot connect (see runstream._unreachable)."""
    kind_filter = rpc.event_kinds(kinds)
    interval, bound = heartbeat_and_bound(heartbeat_interval)
    what = f"watch of run {run_id!r}"
    reconnects = Reconnects(
        what,
        f"watch of run {run_id}",
        bound,
        reconnect_timeout,
        on_link,
        diagnosis=diagnosis,
        warns_of_limits=True,
    )
    cursor = after_seq
    reconnects.connecting(cursor)
    while True:
        check_open(what)
        request = rpc.watch_request(run_id, cursor, kind_filter, interval, keep_open)
        call = watch_rpc(request, metadata=metadata)
        silence = reconnects.watch(call)
        try:
            await reconnects.opened(call, silence, cursor)
            async for response in call:
                reconnects.heard(silence)
                events, head_seq = rpc.parse_watch_response(response, run_id)
                for event in events:
                    if kind_filter:
                        if event.seq <= cursor:
                            raise DataLossError(f"{what}: seq {event.seq} after {cursor}")
                    elif event.seq != cursor + 1:
                        raise DataLossError(f"{what}: expected seq {cursor + 1}, got {event.seq}")
                    cursor = event.seq
                    silence.hold()
                    yield event
                    silence.heard()
                # A filtered watcher skips the events it does not want; the heartbeat says
                # how far it has seen. An unfiltered watcher's cursor comes from events only,
                # so a heartbeat can never make it skip one.
                if kind_filter and head_seq is not None and head_seq > cursor:
                    cursor = head_seq
            return
        except grpc.aio.AioRpcError as exc:
            delay = await reconnects.failed(exc, cursor, f"resuming after seq {cursor}")
        except asyncio.CancelledError:
            delay = reconnects.cut(silence, cursor, f"resuming after seq {cursor}")
        finally:
            silence.stop()
            call.cancel()
        await asyncio.sleep(delay)


async def watch_runs(
    watch_runs_rpc: WatchRunsMethod,
    *,
    filter: str,
    heartbeat_interval: timedelta | float | None,
    initial_ended_limit: int | None,
    metadata: Sequence[tuple[str, str]],
    reconnect_timeout: float | None,
    check_open: Callable[[str], None],
    on_link: OnLink | None = None,
    diagnosis: Diagnosis | None = None,
) -> AsyncGenerator[RunsUpdate, None]:
    """Yields the matching runs' state, then their changes, reconnecting as needed.

    The server opens every stream with the current state of each matching run; the SDK
    gathers it into one ``RunsUpdate(initial=True)``, so a reconnect hands the caller a
    complete table to replace its own with, rather than a mix of old and new rows.
    """
    interval, bound = heartbeat_and_bound(heartbeat_interval)
    request = rpc.watch_runs_request(filter, interval, initial_ended_limit)
    what = "watch of runs"
    reconnects = Reconnects(what, what, bound, reconnect_timeout, on_link, diagnosis=diagnosis)
    reconnects.connecting(0)
    while True:
        check_open(what)
        call = watch_runs_rpc(request, metadata=metadata)
        silence = reconnects.watch(call)
        initial: dict[str, Run] = {}
        in_initial_state = True
        try:
            await reconnects.opened(call, silence, 0)
            async for response in call:
                reconnects.heard(silence)
                runs, initial_complete, heartbeat = rpc.parse_watch_runs_response(response)
                if heartbeat:
                    continue
                if in_initial_state:
                    # A run that changed while the initial state was being sent comes twice;
                    # the later copy is the newer one.
                    for run in runs:
                        initial.pop(run.run_id, None)
                        initial[run.run_id] = run
                    if initial_complete:
                        in_initial_state = False
                        silence.hold()
                        yield RunsUpdate(
                            runs=tuple(initial.values()),
                            initial=True,
                            ended_runs_left_out=response.ended_runs_left_out,
                        )
                        silence.heard()
                elif runs:
                    silence.hold()
                    yield RunsUpdate(runs=tuple(runs), initial=False)
                    silence.heard()
            delay = reconnects.ended(0, "reconnecting")
        except grpc.aio.AioRpcError as exc:
            delay = await reconnects.failed(exc, 0, "reconnecting")
        except asyncio.CancelledError:
            delay = reconnects.cut(silence, 0, "reconnecting")
        finally:
            silence.stop()
            call.cancel()
        await asyncio.sleep(delay)


class RunWatching:
    """Follows a run's events, or every matching run's state, live and resuming."""

    _connection: Connection

    def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        kinds: Iterable[EventKind] | None = None,
        heartbeat_interval: timedelta | float | None = None,
        keep_open: bool = False,
        on_link: OnLink | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Streams the run's events after ``after_seq``, live, until the run ends.

        Reconnects with exponential backoff when the server or the connection goes away and
        resumes after the last event seen, so no event is lost or repeated. Raises
        NotFoundError for an unknown run, OutOfRangeError when ``after_seq`` is beyond the
        run's last event, UnavailableError when the server stays unreachable longer than the
        client's ``reconnect_timeout``.

        Args:
            run_id: The run to watch.
            after_seq: Start after this seq: 0 for the whole log, the last seq seen to resume.
            kinds: Deliver only these kinds of events (all when None or empty); a value that
                is not an EventKind ("milestone") is InvalidArgumentError.
            heartbeat_interval: How long the stream may be idle before the server sends a
                heartbeat (seconds or timedelta; 5 s when None). The watch takes 2.5
                intervals without any message as a lost stream (a link gone silent) and
                resumes on a new one: 12.5 s by default.
            keep_open: Keep watching after the run's terminal event, until the caller stops.
            on_link: Called (on the watch's task; it must not block) with a WatchLink at
                each change of the stream: CONNECTING first, LIVE each time the server has
                accepted the stream, RECONNECTING with the error and the wait each time it
                was lost, for a relay to show "Live" or "Reconnecting". What it raises ends
                the watch. A link that goes silent without a word is found by the missing
                heartbeats (``heartbeat_interval``).

        Close the iterator when stopping early (``contextlib.aclosing``, or ``break`` in an
        ``async for`` inside it) so the stream is cancelled promptly.
        """
        self._connection.open()
        return watch_run(
            self._connection.run_service.WatchRun,
            run_id,
            after_seq=after_seq,
            kinds=kinds,
            heartbeat_interval=heartbeat_interval,
            keep_open=keep_open,
            metadata=self._connection.call_metadata(),
            reconnect_timeout=self._connection.reconnect_timeout,
            check_open=self._connection.check_open,
            on_link=on_link,
            diagnosis=self._connection.diagnosis,
        )

    def watch_runs(
        self,
        filter: str = "",
        *,
        heartbeat_interval: timedelta | float | None = None,
        initial_ended_limit: int | None = None,
        on_link: OnLink | None = None,
    ) -> AsyncGenerator[RunsUpdate, None]:
        """Follows every run matching ``filter``: their current state, then their changes.

        The first update has ``initial=True`` and holds every matching run (without steps);
        later ones hold the runs whose status, progress, estimate, health or viewers changed,
        including runs created after the watch began. Reconnects on its own with exponential
        backoff; after a reconnect another ``initial=True`` update brings the complete state
        again. Runs until the caller stops iterating.

        Args:
            filter: As for ``list_runs``, e.g. ``workflow = "campaign-generator"``; "" for all.
            heartbeat_interval: How long the stream may be idle before the server sends a
                heartbeat (kept internal; 5 s when None): as for ``watch()``, 2.5 intervals
                without any message are taken as a lost stream.
            initial_ended_limit: At most this many of the matching runs that ended (the
                most recently created) in each ``initial=True`` update, 1 to 100,000; every
                run not ended is in it whatever the limit. None: every matching run, which
                reads the store's whole history of runs at each (re)connect.
            on_link: As for ``watch()`` (``after_seq`` is always 0 here).
        """
        self._connection.open()
        return watch_runs(
            self._connection.run_service.WatchRuns,
            filter=filter,
            heartbeat_interval=heartbeat_interval,
            initial_ended_limit=initial_ended_limit,
            metadata=self._connection.call_metadata(),
            reconnect_timeout=self._connection.reconnect_timeout,
            check_open=self._connection.check_open,
            on_link=on_link,
            diagnosis=self._connection.diagnosis,
        )
