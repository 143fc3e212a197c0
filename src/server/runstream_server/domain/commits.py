"""The commit record, what an append answers, and the consumers that tell producers and
viewers what a commit did.

Every commit, made here or by another replica, produces one :class:`CommitRecord`: the run's
state after it and the events it added. The ledger
(:meth:`~runstream_server.domain.ledger.RunLedger.deliver`) hands it, under the run's lock, to
each consumer in turn: the event hub, the runs hub, the producer links and decision feeds
(:class:`Links`), the deadline timers and the stall tracker. What a producer is told (pause,
resume, cancel, a closed decision) is derived from the committed events and the committed
state, so it can never show a later state than the one that caused it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.domain.events import SERVER_ONLY_FIELDS, EncodedEvent
from runstream_server.domain.insight import ABANDONED, ABANDONED_KEY
from runstream_server.domain.state import RunState, copied


@dataclass(frozen=True, slots=True)
class EventAck:
    """The outcome of appending one event."""

    seq: int
    idempotency_key: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The acknowledgements of one batch and the run's last seq after it."""

    acks: list[EventAck]
    last_seq: int


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """What one commit to a run changed: every consumer's one input."""

    state: RunState
    """The run's derived state right after the commit."""
    events: list[EncodedEvent]
    """The committed events, in seq order, encoded once for every watcher."""
    decoded: list[event_pb2.RunEvent]
    """The same events, decoded."""

    @property
    def run_id(self) -> str:
        return self.state.run.run_id

    @property
    def producer_spoke(self) -> bool:
        """Whether the run's producer reported in this commit (not only the server)."""
        return any(e.WhichOneof("payload") not in SERVER_ONLY_FIELDS for e in self.decoded)


@dataclass(frozen=True, slots=True)
class ControlSignal:
    """An instruction for a run's producers: "cancel", "pause" or "resume"."""

    action: str
    reason: str
    status: int
    """The run's status as committed with the event that caused the signal."""
    seq: int
    """The seq of that event."""


T = TypeVar("T")


class Mailbox(asyncio.Queue[T]):
    """A FIFO queue that also sets `ready` when something is put in it: a stream's one task
    waits on several mailboxes sharing one `ready`, with no task forwarding each to it."""

    def __init__(self, maxsize: int = 0, *, ready: asyncio.Event | None = None) -> None:
        super().__init__(maxsize)
        self.ready = asyncio.Event() if ready is None else ready

    # The hooks asyncio.Queue's subclasses (PriorityQueue, LifoQueue) override.
    def _init(self, maxsize: int) -> None:
        self._queue: deque[T] = deque()

    def _put(self, item: T) -> None:
        self._queue.append(item)
        self.ready.set()

    def peek(self) -> T:
        """The next item, left in the queue (IndexError if empty)."""
        return self._queue[0]


Signal = ControlSignal | decision_pb2.Decision | None
"""What a producer link receives: a control, a closed decision, or None at shutdown."""


@dataclass(eq=False)
class ProducerLink:
    """A producer attached to a run: receives controls and the decisions that close."""

    run_id: str
    signals: Mailbox[Signal] = field(default_factory=Mailbox)


async def forwarded_first(queue: asyncio.Queue[Any]) -> None:
    """Lets the task that forwards `queue` to a stream take what a commit just queued there,
    before the caller answers on the same stream: a viewer's answer result comes after the
    closed decisions of the commit it acknowledges. (A Report stream needs no forwarder:
    its handler waits on its link's `Mailbox` and sends what a commit signalled first.)

    A commit runs in its caller's task (see ``uncancellable.uncancellable``), so without this the
    caller would answer first. The forwarder's wake-up was scheduled when the commit queued,
    so one turn of the event loop lets it run first; an empty queue costs nothing.
    """
    if not queue.empty():
        await asyncio.sleep(0)


RESYNC = ("resync", decision_pb2.Decision())
"""Queued in place of a DecisionFeed's dropped updates: read the current decisions again."""


@dataclass(eq=False)
class DecisionFeed:
    """A viewer's feed of open ("prompt") and closed ("closed") decisions of its runs.

    Bounded: past `limit` unread updates they are dropped and replaced by one RESYNC, after
    which nothing is queued until the reader calls ``resynced()`` and reads the current state
    (api/decision_service.py).
    """

    updates: asyncio.Queue[tuple[str, decision_pb2.Decision] | None] = field(
        default_factory=asyncio.Queue
    )
    run_ids: set[str] = field(default_factory=set)
    limit: int = 1024
    _resync_pending: bool = False
    _closed: bool = False

    def close(self) -> None:
        """Ends the feed (server shutdown): the reader gets None after what is queued."""
        self._closed = True
        self.updates.put_nowait(None)

    def put(self, what: str, decision: decision_pb2.Decision) -> None:
        if self._closed or self._resync_pending:
            return  # the resync reads the current state, this change included
        if self.updates.qsize() >= self.limit:
            while not self.updates.empty():
                self.updates.get_nowait()
            self._resync_pending = True
            self.updates.put_nowait(RESYNC)
            return
        self.updates.put_nowait((what, copied(decision)))

    def resynced(self) -> None:
        """The reader took RESYNC and reads the current state from here: queue again."""
        self._resync_pending = False


def control_for(event: event_pb2.RunEvent) -> ControlSignal | None:
    """The control signal a committed event means for the run's producers, if any, with the
    status that event left the run in (a commit record may hold later events too: another
    replica's commits folded at once)."""
    if event.HasField("run_cancelled"):
        cancelled = run_pb2.RUN_STATUS_CANCELLED
        return ControlSignal("cancel", event.run_cancelled.reason, cancelled, event.seq)
    if event.HasField("run_failed") and event.idempotency_key == ABANDONED_KEY:
        # Ended by the server, its producer silent: one that is only slow stops at once.
        failed = run_pb2.RUN_STATUS_FAILED
        return ControlSignal("cancel", event.run_failed.error.message, failed, event.seq)
    if event.HasField("run_status_changed"):
        change = event.run_status_changed
        if change.status == run_pb2.RUN_STATUS_PAUSED:
            return ControlSignal("pause", change.reason, change.status, event.seq)
        if change.previous_status == run_pb2.RUN_STATUS_PAUSED:
            return ControlSignal("resume", change.reason, change.status, event.seq)
    return None


def as_asked(decision: decision_pb2.Decision) -> decision_pb2.Decision:
    """The decision as its DecisionRequested left it: open, though a later event of the same
    commit record (the run's end, another replica's answer folded at once) closed it."""
    if decision.state == decision_pb2.DECISION_STATE_OPEN:
        return decision
    asked = copied(decision)
    asked.state = decision_pb2.DECISION_STATE_OPEN
    for name in ("outcome", "choice", "answered_by", "resolve_time", "resolved_seq"):
        asked.ClearField(name)
    return asked


def initial_control(state: RunState) -> ControlSignal | None:
    """What a producer attaching now must know at once: the run is paused, cancelled, or
    was ended by the server as abandoned."""
    run = state.run
    if run.status == run_pb2.RUN_STATUS_PAUSED:
        return ControlSignal("pause", "run is paused", run.status, state.last_seq)
    if run.status == run_pb2.RUN_STATUS_CANCELLED:  # cancelled while it was away
        return ControlSignal("cancel", run.cancel_reason, run.status, state.last_seq)
    if run.status == run_pb2.RUN_STATUS_FAILED and run.error.code == ABANDONED:
        return ControlSignal("cancel", run.error.message, run.status, state.last_seq)
    return None


class Links:
    """The producers and decision viewers attached to runs on this process."""

    def __init__(self) -> None:
        self._producers: dict[str, set[ProducerLink]] = {}
        self._feeds: dict[str, set[DecisionFeed]] = {}
        self.releases = 0
        """How many times a run lost its last producer or feed (the run cache's eviction)."""

    def feeds(self, run_id: str) -> set[DecisionFeed]:
        """The decision feeds following the run."""
        return self._feeds.get(run_id, set())

    def in_use(self, run_id: str) -> bool:
        return run_id in self._producers or run_id in self._feeds

    def attach(self, state: RunState) -> ProducerLink:
        """Links a producer; call with the committed state, with no await in between."""
        link = ProducerLink(state.run.run_id)
        self._producers.setdefault(link.run_id, set()).add(link)
        signal = initial_control(state)
        if signal is not None:
            link.signals.put_nowait(signal)
        return link

    def detach(self, link: ProducerLink) -> None:
        links = self._producers.get(link.run_id)
        if links is not None:
            links.discard(link)
            if not links:
                del self._producers[link.run_id]
                self.releases += 1

    def follow(self, feed: DecisionFeed, state: RunState) -> None:
        """Subscribes a feed to a run: its open decisions now, then every change."""
        run_id = state.run.run_id
        if run_id in feed.run_ids:
            return
        feed.run_ids.add(run_id)
        self._feeds.setdefault(run_id, set()).add(feed)
        for decision in state.open_decisions():
            feed.put("prompt", decision)

    def unfollow(self, feed: DecisionFeed) -> None:
        for run_id in feed.run_ids:
            feeds = self._feeds.get(run_id)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[run_id]
                    self.releases += 1

    def on_commit(self, record: CommitRecord) -> None:
        """Tells producers and viewers what the commit did, in the order it did it."""
        run_id = record.run_id
        feeds = self._feeds.get(run_id, ())
        producers = self._producers.get(run_id, ())
        if not feeds and not producers:
            return
        state = record.state
        for event in record.decoded:
            if event.HasField("decision_requested"):
                asked = as_asked(state.decisions[event.decision_requested.decision_id])
                for feed in feeds:
                    feed.put("prompt", asked)
            elif event.HasField("decision_resolved"):
                closed = state.decisions[event.decision_resolved.decision_id]
                for feed in feeds:
                    feed.put("closed", closed)
                for link in producers:
                    link.signals.put_nowait(copied(closed))
            else:
                signal = control_for(event)
                if signal is not None:
                    for link in producers:
                        link.signals.put_nowait(signal)

    def close(self) -> None:
        """Ends every producer link and feed (shutdown)."""
        for links in self._producers.values():
            for link in links:
                link.signals.put_nowait(None)
        for feeds in self._feeds.values():
            for feed in feeds:
                feed.close()
