"""Live fan-out: durable events to each run's watchers, run-level changes to WatchRuns.

What one commit costs per watcher is what decides how many watchers a core serves, so the
path is kept short. :meth:`Hub.publish` runs once per commit, right after the commit is
durable: it encodes the batch once (a WatchRunResponse's ``events`` field is the
concatenation of its pre-framed events) and, in one loop over the run's subscriptions, hands
the bytes to each one and wakes its stream if it sleeps. A stream that is still sending its
previous message finds everything that arrived meanwhile waiting for it, and sends it as one
message: events coalesce under load without any added delay when the stream is idle.

Publishing never blocks and never waits for a watcher. A subscription holds at most
``max_pending`` events and ``max_pending_bytes`` of them (events may be 256 KiB each, so a
count alone let one watcher that stopped reading pin a gigabyte); beyond that (or when a
batch does not follow on from its cursor) it drops what it holds and falls *behind*: its
stream then reads what it missed from the store, which has every event already, since the
hub only ever sees durable events. While behind, a subscription is skipped by publish
altogether, so a catching-up watcher costs nothing here.

Idle streams need heartbeats. Instead of a timer per stream, one :class:`HeartbeatClock` per
server keeps a heap of when each stream would next be due, and one event-loop timer for the
earliest; a stream's deadline moves only when the clock comes to it, so a delivery costs one
attribute write, not a timer reset. A stream that ends lets go of what it held at once; its
entry leaves the heap when the clock comes to it, or sooner once ended streams are half of it.

The same clock ends a stream whose client stopped reading. Its last message then waits in
gRPC's write, held by HTTP/2 flow control, for as long as the client lets it, and the stream
with all it holds (its buffer, its run in memory) would wait with it. The stream's writer
counts its sends (:class:`Sends`: two integers per message, no timer); the clock, as it comes
to the stream anyway, looks whether a send is under way and whether it is the one it saw last
time, and ends the stream once one send has stood still for the send timeout (as Centrifugo
and NATS disconnect a slow consumer rather than buffer for it without end). A stream idle for
longer than that is looked at every quarter of the timeout, so the end comes between one and
one and a half timeouts after the send stood still.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

from runstream.v1 import run_pb2

from runstream_server.domain.events import EncodedEvent
from runstream_server.domain.state import TERMINAL_STATUSES

# Heartbeats fire this many seconds early rather than wait for another turn of the clock.
_BEAT_SLACK = 0.002
# The clock's heap is rebuilt without the streams that ended once they are more than half of
# it, and more than this many (as asyncio does with its cancelled timers).
_MIN_DETACHED = 100
# A stream's sends are looked at this many times per send timeout at least.
_SEND_LOOKS = 4

SEND_TIMEOUT_SECONDS = (1.0, 86_400.0)
"""The send timeouts a server takes (``serve --watch-send-timeout``), besides 0 (never): a
shorter one would end streams over a client's ordinary pause, and have the clock look at
every stream's sends several times a second."""


class Chunk(NamedTuple):
    """Encoded events ready to go into one WatchRunResponse: the `events` field's bytes."""

    data: bytes
    events: int
    last_seq: int


class Sends:
    """A stream's messages as its writer hands them to the transport: how many it began to
    send and how many of those the transport took. The writer counts (``started`` before a
    write, ``finished`` after it) in its own task, whose ``task`` the heartbeat clock cancels
    when a send stands still for its send timeout (see the module docstring)."""

    __slots__ = ("finished", "started", "task")

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.task = asyncio.current_task()


class _WakeableStream:
    """What a stream sleeps on: woken for news, for a due heartbeat, or when the hub closes.
    The base of :class:`Subscription` and :class:`RunsSubscription`, which keep the news.

    Never blocks the sender. ``active_at`` is the loop time of the stream's last sign of
    life; the heartbeat clock reads it lazily. With `sends`, the clock also ends the stream
    when one of them stands still (``stalled`` is then the send timeout).
    """

    __slots__ = (
        "_send_seen",
        "_send_seen_at",
        "_waiter",
        "active_at",
        "closed_code",
        "closed_reason",
        "detached",
        "heartbeat_due",
        "interval",
        "sends",
        "stalled",
    )

    def __init__(self, interval: float, now: float, sends: Sends | None = None) -> None:
        self.closed_reason: str | None = None
        self.closed_code = "SHUTTING_DOWN"
        self.heartbeat_due = False
        self.detached = False
        self.interval = interval
        self.active_at = now
        self.sends = sends
        self.stalled = 0.0
        self._send_seen = 0  # the send under way when the clock last looked
        self._send_seen_at = now
        self._waiter: asyncio.Future[None] | None = None

    def _has_news(self) -> bool:
        raise NotImplementedError

    def _let_go(self) -> None:
        """Drops what the stream held for sending: it ended."""
        raise NotImplementedError

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self, reason: str, code: str = "SHUTTING_DOWN") -> None:
        """Ends the stream: `reason` is the status message, `code` its ErrorInfo reason."""
        self.closed_reason = reason
        self.closed_code = code
        self.wake()

    def beat(self, now: float) -> None:
        """Called by the clock: the stream has been idle for its interval."""
        self.heartbeat_due = True
        self.active_at = now
        self.wake()

    def look_at_sends(self, sends: Sends, now: float, timeout: float) -> None:
        """Called by the clock: ends the stream once the same send has been under way for
        `timeout` seconds (the client stopped reading; flow control holds the write)."""
        started = sends.started
        if started == sends.finished or self.closed_reason is not None:
            return
        if started != self._send_seen:
            self._send_seen, self._send_seen_at = started, now
        elif now - self._send_seen_at >= timeout:
            self.stalled = timeout
            self.close(f"a message waited {timeout:g}s to be sent", "SEND_STALLED")
            if sends.task is not None:
                # Its writer's wait ends (see Sends); what the stream held goes as it unwinds.
                sends.task.cancel()

    def take_heartbeat(self) -> bool:
        """Whether a heartbeat is due; clears it."""
        due, self.heartbeat_due = self.heartbeat_due, False
        return due

    async def wait(self) -> None:
        """Returns once there is news, a heartbeat is due or the hub closed (maybe at once)."""
        if self._has_news() or self.heartbeat_due or self.closed_reason is not None:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None


class HeartbeatClock:
    """One timer for every stream's heartbeats: wakes a stream idle for its interval, and
    ends one whose send stood still for `send_timeout` seconds (0: never)."""

    def __init__(self, send_timeout: float = 0.0) -> None:
        self.send_timeout = send_timeout
        self._due: list[tuple[float, int, _WakeableStream]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._detached = 0  # entries in the heap whose stream ended

    def now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def add(self, stream: _WakeableStream) -> None:
        self._push(
            self._next_look(stream, stream.active_at + stream.interval, stream.active_at), stream
        )

    def _next_look(self, stream: _WakeableStream, idle_until: float, now: float) -> float:
        """When the clock comes to `stream` next: at its heartbeat, or sooner to look at its
        sends."""
        if stream.sends is None or not self.send_timeout:
            return idle_until
        return min(idle_until, now + self.send_timeout / _SEND_LOOKS)

    def remove(self, stream: _WakeableStream) -> None:
        """The stream ended: what it held goes now, its entry in the heap soon."""
        if stream.detached:
            return
        stream.detached = True
        stream._let_go()
        self._detached += 1
        due = self._due
        if self._detached > _MIN_DETACHED and 2 * self._detached > len(due):
            due[:] = [entry for entry in due if not entry[2].detached]
            heapq.heapify(due)
            self._detached = 0

    def _push(self, due: float, stream: _WakeableStream) -> None:
        heapq.heappush(self._due, (due, next(self._order), stream))
        if self._timer is None or due < self._timer_at:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer = loop.call_at(due, self._tick)
        self._timer_at = due

    def _tick(self) -> None:
        self._timer = None
        now = self.now()
        due = self._due
        while due and due[0][0] <= now + _BEAT_SLACK:
            _, _, stream = heapq.heappop(due)
            if stream.detached:
                self._detached -= 1
                continue
            idle_until = stream.active_at + stream.interval
            if idle_until <= now + _BEAT_SLACK:
                stream.beat(now)
                idle_until = now + stream.interval
            if stream.sends is not None and self.send_timeout:
                stream.look_at_sends(stream.sends, now, self.send_timeout)
            heapq.heappush(
                due, (self._next_look(stream, idle_until, now), next(self._order), stream)
            )
        if due:
            self._arm(due[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._detached = 0


class Subscription(_WakeableStream):
    """One watcher of one run: its position, and the encoded messages waiting to be sent.

    ``cursor`` is the seq of the last event handed to this subscription (sent, waiting, or
    filtered out). It starts *behind*: the stream reads the store first, then calls
    :meth:`go_live` once it is level with the run's head.
    """

    __slots__ = (
        "_bytes",
        "_chunks",
        "_max_bytes",
        "_max_pending",
        "_pending",
        "behind",
        "cursor",
        "kinds",
        "lost",
        "overflowed",
        "run_id",
        "sent",
    )

    def __init__(
        self,
        run_id: str,
        kinds: frozenset[int] | None,
        max_pending: int,
        max_bytes: int,
        interval: float,
        now: float,
        sends: Sends | None = None,
    ) -> None:
        super().__init__(interval, now, sends)
        self.run_id = run_id
        self.kinds = kinds
        self.cursor = 0
        self.sent = 0  # the cursor as of the last message taken for sending
        self.behind = True
        self.overflowed = False  # behind because the buffer was full (not a gap)
        self.lost = False  # closed because the store lost events it may have been sent
        self._chunks: list[Chunk] = []
        self._pending = 0
        self._max_pending = max_pending
        self._bytes = 0  # of the waiting chunks
        self._max_bytes = max_bytes

    def _has_news(self) -> bool:
        return bool(self._chunks) or self.behind

    def _let_go(self) -> None:
        self._chunks.clear()
        self._pending = self._bytes = 0

    @property
    def level(self) -> bool:
        """Live with nothing waiting: everything up to the cursor was sent (``sent`` is it)."""
        return not self._chunks and not self.behind

    def go_live(self, cursor: int) -> None:
        """The stream has sent everything up to `cursor`; publish may deliver from here."""
        self.cursor = self.sent = cursor
        self.behind = self.overflowed = False

    def deliver(
        self, chunks: Sequence[Chunk], events: int, size: int, last_seq: int, now: float
    ) -> None:
        """Queues `chunks` (`events` events, `size` bytes in all) that bring the cursor to
        `last_seq`."""
        # Bytes count only on top of what waits: a watcher that keeps up takes a commit of
        # any size (a Report stream's commit of batches that queued up may pass the budget).
        if self._pending + events > self._max_pending or (
            self._bytes and self._bytes + size > self._max_bytes
        ):
            self.overflowed = True
            self.fall_behind()
            return
        if chunks:
            self._chunks.extend(chunks)
            self._pending += events
            self._bytes += size
            self.active_at = now  # a message goes out: the stream is not idle
        elif not self._chunks:
            self.sent = last_seq  # nothing this watcher wants, nothing waiting: level again
        self.cursor = last_seq
        self.wake()  # also with nothing to send: the commit may have ended the run

    def fall_behind(self) -> None:
        """Drops what is waiting; the stream re-reads it from the store, from `sent`."""
        self._chunks.clear()
        self._pending = self._bytes = 0
        self.cursor = self.sent
        self.behind = True
        self.wake()

    def take(self, max_events: int, max_bytes: int) -> Chunk | None:
        """The waiting events as one message (within the limits), or None."""
        chunks = self._chunks
        if not chunks:
            return None
        if len(chunks) == 1:
            chunk = chunks.pop()
            self._pending = self._bytes = 0
            self.sent = self.cursor
            return chunk
        count = size = taken = 0
        for chunk in chunks:
            if taken and (count + chunk.events > max_events or size + len(chunk.data) > max_bytes):
                break
            count += chunk.events
            size += len(chunk.data)
            taken += 1
        data = b"".join(chunk.data for chunk in chunks[:taken])
        last_seq = chunks[taken - 1].last_seq
        self.sent = last_seq if taken < len(chunks) else self.cursor
        del chunks[:taken]
        self._pending -= count
        self._bytes -= size
        return Chunk(data, count, last_seq)


def encode(events: Sequence[EncodedEvent], max_events: int, max_bytes: int) -> list[Chunk]:
    """Events as message-sized chunks: at most `max_events` and `max_bytes` (or one event)."""
    if len(events) == 1:
        event = events[0]
        return [Chunk(event.framed, 1, event.seq)]
    chunks: list[Chunk] = []
    page: list[bytes] = []
    size = 0
    last_seq = 0
    for event in events:
        framed = event.framed
        if page and (len(page) >= max_events or size + len(framed) > max_bytes):
            chunks.append(Chunk(b"".join(page), len(page), last_seq))
            page, size = [], 0
        page.append(framed)
        size += len(framed)
        last_seq = event.seq
    if page:
        chunks.append(Chunk(b"".join(page), len(page), last_seq))
    return chunks


class Hub:
    """Routes each run's newly durable events to that run's subscriptions."""

    def __init__(
        self,
        max_pending: int = 4096,
        *,
        max_pending_bytes: int = 4 * 1024 * 1024,
        page_events: int = 500,
        page_bytes: int = 1024 * 1024,
        send_timeout: float = 0.0,
    ) -> None:
        """`send_timeout`: seconds a send may stand still before its stream ends (0: no
        end; see the module docstring)."""
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.page_events = page_events
        self.page_bytes = page_bytes
        self.clock = HeartbeatClock(send_timeout)
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._closed_reason: str | None = None
        self.releases = 0
        """How many times a run lost its last watcher here (the run cache's eviction)."""

    def subscribe(
        self,
        run_id: str,
        *,
        kinds: frozenset[int] | None = None,
        heartbeat_interval: float,
        sends: Sends | None = None,
    ) -> Subscription:
        sub = Subscription(
            run_id,
            kinds,
            self.max_pending,
            self.max_pending_bytes,
            heartbeat_interval,
            self.clock.now(),
            sends,
        )
        if self._closed_reason is not None:
            sub.close(self._closed_reason)
        self._subscriptions.setdefault(run_id, set()).add(sub)
        self.clock.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.clock.remove(sub)
        subs = self._subscriptions.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscriptions[sub.run_id]
                self.releases += 1

    def publish(self, run_id: str, events: Sequence[EncodedEvent]) -> None:
        """Hands a durable batch (consecutive seqs) to every live subscription of the run."""
        subs = self._subscriptions.get(run_id)
        if not subs or not events:
            return
        first, last = events[0].seq, events[-1].seq
        shared: list[Chunk] | None = None
        shared_size = 0
        filtered: dict[frozenset[int], tuple[list[Chunk], int, int]] = {}
        now = self.clock.now()
        for sub in subs:
            if sub.behind:
                continue  # reading the store, which has these events already
            if first != sub.cursor + 1:
                if last > sub.cursor:
                    sub.fall_behind()  # a gap (or an overlap): the store sorts it out
                else:  # read from the store already; the run's head caught up (maybe ended)
                    sub.wake()
                continue
            kinds = sub.kinds
            if kinds is None:
                if shared is None:
                    shared = encode(events, self.page_events, self.page_bytes)
                    shared_size = sum(len(chunk.data) for chunk in shared)
                sub.deliver(shared, len(events), shared_size, last, now)
                continue
            matching = filtered.get(kinds)
            if matching is None:
                wanted = [e for e in events if e.kind in kinds]
                chunks = encode(wanted, self.page_events, self.page_bytes) if wanted else []
                size = sum(len(chunk.data) for chunk in chunks)
                matching = filtered[kinds] = (chunks, len(wanted), size)
            sub.deliver(*matching, last, now)

    def lose(self, run_id: str, reason: str) -> None:
        """Ends the run's subscriptions with DATA_LOSS, dropping what waits to be sent: the
        store lost events they may have sent (see ``StoreChecks.refresh``)."""
        for sub in self._subscriptions.get(run_id, ()):
            sub._let_go()
            sub.lost = True
            sub.close(reason)

    def watcher_count(self, run_id: str) -> int:
        return len(self._subscriptions.get(run_id, ()))

    def close(self, reason: str) -> None:
        """Ends every subscription, e.g. at shutdown, so watchers resume elsewhere."""
        self._closed_reason = reason
        self.end_streams(reason, "SHUTTING_DOWN")

    def end_streams(self, reason: str, code: str) -> None:
        """Ends every subscription there is now (not those to come)."""
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.close(reason, code)
        self.clock.close()


class RunsSubscription(_WakeableStream):
    """One WatchRuns stream: the latest state of each changed run, coalesced per run."""

    __slots__ = ("known", "matches", "missed_since", "open", "pending")

    def __init__(
        self,
        matches: Callable[[run_pb2.Run], bool],
        interval: float,
        now: float,
        sends: Sends | None = None,
    ) -> None:
        super().__init__(interval, now, sends)
        self.matches = matches
        self.pending: dict[str, run_pb2.Run] = {}
        self.known: dict[str, int] = {}
        """The matching runs the stream was told of, each with the last seq it was told."""
        self.open: set[str] = set()
        """Those of them it was told of as not ended."""
        self.missed_since: int | None = None
        """Changes since then (epoch microseconds) may have been missed, in a gap in
        notices: the stream reads the runs that may have changed since from the store."""

    def _has_news(self) -> bool:
        return bool(self.pending) or self.missed_since is not None

    def _let_go(self) -> None:
        self.pending.clear()
        self.known.clear()
        self.open.clear()

    def told(self, run: run_pb2.Run) -> bool:
        """Notes that the stream is told of the run (as it is now); False when it neither
        matches nor was told of it before, so it is not to be told."""
        run_id = run.run_id
        if self.matches(run):
            self.known[run_id] = run.last_seq
            if run.status in TERMINAL_STATUSES:
                self.open.discard(run_id)
            else:
                self.open.add(run_id)
            return True
        self.open.discard(run_id)
        return self.known.pop(run_id, None) is not None

    def offer(self, run: run_pb2.Run, now: float) -> None:
        """Queues the run if it matches, or if it just stopped matching (sent once more)."""
        if not self.told(run):
            return
        self.pending[run.run_id] = run
        self.active_at = now
        self.wake()

    def take(self) -> list[run_pb2.Run]:
        runs = list(self.pending.values())
        self.pending.clear()
        return runs


class RunsHub:
    """Routes run-level changes to WatchRuns streams; never blocks the writer."""

    def __init__(self, clock: HeartbeatClock) -> None:
        self._clock = clock
        self._subscriptions: set[RunsSubscription] = set()
        self._closed_reason: str | None = None

    @property
    def active(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(
        self,
        matches: Callable[[run_pb2.Run], bool],
        *,
        heartbeat_interval: float,
        sends: Sends | None = None,
    ) -> RunsSubscription:
        sub = RunsSubscription(matches, heartbeat_interval, self._clock.now(), sends)
        if self._closed_reason is not None:
            sub.close(self._closed_reason)
        self._subscriptions.add(sub)
        self._clock.add(sub)
        return sub

    def unsubscribe(self, sub: RunsSubscription) -> None:
        self._clock.remove(sub)
        self._subscriptions.discard(sub)

    def publish(self, run: run_pb2.Run) -> None:
        now = self._clock.now()
        for sub in self._subscriptions:
            sub.offer(run, now)

    def missed(self, since_us: int) -> None:
        """After a gap in notices, changes since `since_us` may have been missed: every
        stream reads the runs that may have changed since from the store."""
        for sub in self._subscriptions:
            if sub.missed_since is None or since_us < sub.missed_since:
                sub.missed_since = since_us
            sub.wake()

    def close(self, reason: str) -> None:
        self._closed_reason = reason
        self.end_streams(reason, "SHUTTING_DOWN")

    def end_streams(self, reason: str, code: str) -> None:
        """Ends every subscription there is now (not those to come)."""
        for sub in self._subscriptions:
            sub.close(reason, code)
