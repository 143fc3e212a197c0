"""The outbox of one run's reporter: its reported events from being queued until the server
settles them, acknowledged as durable or refused.

:class:`Outbox` stamps each queued event with its idempotency key, takes batches from the
queue (up to ``batch_size`` events and about 1 MiB each) and keeps them in flight until the
server acknowledges them, in order. After a broken stream it puts the unacknowledged events
back in front of the queue, in order and with their keys, so they go again; an event the
server refused is set aside while the rest of its batch goes on. It counts what is reported,
acknowledged and refused, which is what ``flush()`` and backpressure wait on. When and over
which stream the batches go is :mod:`runstream._report_stream`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runstream import _event_builders as builders
from runstream import _requests as rpc
from runstream._errors import DataLossError, RunstreamError

if TYPE_CHECKING:
    from runstream.v1 import event_pb2

RefusalTaker = Callable[["event_pb2.RunEvent", RunstreamError], None]

__all__ = ["ATTACH_BATCH_ID", "Batch", "Outbox"]

# Batch id 0 marks the attach-only message that opens a stream when nothing is queued; real
# batches count from 1.
ATTACH_BATCH_ID = 0
# Keeps each ReportRequest well under gRPC's default 4 MiB message limit.
_MAX_BATCH_BYTES = 1 << 20


@dataclass(slots=True)
class Batch:
    """Events sent as one ReportRequest, under the id their acknowledgement names."""

    batch_id: int
    events: list[event_pb2.RunEvent]
    size: int = 0
    """The events' encoded bytes."""


class Outbox:
    """The events of one run that wait to be sent or to be acknowledged, and their counts."""

    def __init__(self, run_id: str, *, key_prefix: str, last_seq: int, batch_size: int) -> None:
        self._run_id = run_id
        self._batch_size = max(1, batch_size)
        self.key_prefix = key_prefix
        self.next_key = 0
        """The counter of the next idempotency key (``"<key_prefix>:<next_key>"``)."""
        self._next_batch_id = ATTACH_BATCH_ID + 1
        self._unsent: deque[tuple[event_pb2.RunEvent, int]] = deque()
        self._calls: dict[str, str] = {}
        """The call that reported each event waiting whose kind's own call did not, by key."""
        self._takers: dict[str, RefusalTaker] = {}
        """Who takes the refusal of each event waiting that was queued under
        ``builders.REFUSALS_TO``, by key."""
        self._starts_taken: set[str] = set()
        """The keys among those of step starts (what a refusal may make an integration say
        before the run's end)."""
        self._inflight: deque[Batch] = deque()
        self.reported = 0
        """Events queued so far."""
        self.acked = 0
        """Events the server acknowledged as durable."""
        self.refused = 0
        """Events the server refused, each set aside while the others went on."""
        self.pending_bytes = 0
        """The encoded bytes of the events queued and not yet acknowledged or refused."""
        self.last_seq = last_seq

    @property
    def settled(self) -> int:
        """Events acknowledged or refused (always a prefix of the queued ones)."""
        return self.acked + self.refused

    @property
    def pending(self) -> int:
        """Events queued and not yet acknowledged or refused."""
        return self.reported - self.settled

    @property
    def unsent(self) -> int:
        """Events queued and not sent on the current stream."""
        return len(self._unsent)

    @property
    def batches_in_flight(self) -> int:
        """Batches sent and not acknowledged yet."""
        return len(self._inflight)

    @property
    def batch_full(self) -> bool:
        """Whether a whole batch waits to be sent."""
        return len(self._unsent) >= self._batch_size

    @property
    def oldest_batch_size(self) -> int:
        """How many events the oldest unacknowledged batch holds (0 when none is in flight).
        The server answers batches in order, so a refusal is about that batch."""
        return len(self._inflight[0].events) if self._inflight else 0

    def add(self, event: event_pb2.RunEvent, key: str | None = None) -> None:
        """Stamps the event with the next idempotency key (or ``key``, the counter left as
        it is) and queues it."""
        if key is None:
            rpc.set_idempotency_key(event, f"{self.key_prefix}:{self.next_key}")
            self.next_key += 1
        else:
            rpc.set_idempotency_key(event, key)
        size = rpc.event_size(event)
        self._unsent.append((event, size))
        self.reported += 1
        self.pending_bytes += size
        taker = builders.REFUSALS_TO.get()
        if taker is not None:
            self._takers[event.idempotency_key] = taker
            if event.HasField("step_started"):
                self._starts_taken.add(event.idempotency_key)

    def name_call(self, event: event_pb2.RunEvent, call: str) -> None:
        """Remembers, until it is acknowledged, that `call` reported the queued `event`."""
        self._calls[event.idempotency_key] = call

    def call_of(self, event: event_pb2.RunEvent) -> str | None:
        """The call `name_call` named for `event`, forgotten now (the event was refused)."""
        return self._calls.pop(event.idempotency_key, None) if self._calls else None

    @property
    def awaits_taken_starts(self) -> bool:
        """Whether a step start queued under ``builders.REFUSALS_TO`` waits for the server."""
        return bool(self._starts_taken)

    def refusal_taker(self, event: event_pb2.RunEvent) -> RefusalTaker | None:
        """Who takes the refusal of `event` (see ``builders.REFUSALS_TO``), forgotten now (the
        event was refused); None: the reporter raises it."""
        if not self._takers:
            return None
        self._starts_taken.discard(event.idempotency_key)
        return self._takers.pop(event.idempotency_key, None)

    def take_batch(self) -> Batch:
        """Takes the next batch from the queue and keeps it in flight until it is
        acknowledged. With nothing queued the batch is empty (an attach-only message) and
        nothing is in flight."""
        events: list[event_pb2.RunEvent] = []
        size = 0
        while self._unsent and len(events) < self._batch_size:
            event, event_size = self._unsent[0]
            if events and size + event_size > _MAX_BATCH_BYTES:
                break
            self._unsent.popleft()
            events.append(event)
            size += event_size
        batch = Batch(self._next_batch_id, events, size)
        self._next_batch_id += 1
        if events:
            self._inflight.append(batch)
        return batch

    def requeue_in_flight(self) -> None:
        """Puts every unacknowledged batch back in front of the unsent queue, in order."""
        while self._inflight:
            batch = self._inflight.pop()
            for event in reversed(batch.events):
                self._unsent.appendleft((event, rpc.event_size(event)))

    def set_aside(self, index: int) -> event_pb2.RunEvent:
        """Takes the event the server refused out of the oldest batch in flight and returns
        it; the rest of that batch, and every batch behind it, go again, in order and with
        their keys, when the next stream opens."""
        batch = self._inflight[0]
        event = batch.events.pop(index)
        size = rpc.event_size(event)
        batch.size -= size
        self.pending_bytes -= size
        self.refused += 1
        return event

    def settle(self, ack: rpc.ReportAck) -> list[tuple[event_pb2.RunEvent, int]]:
        """Forgets the batch the server acknowledged, and returns the events of it that the
        run already held under their keys, each with the seq it holds it at (nothing was
        stored for them: a replay after a restart).

        Raises DataLossError when the acknowledgement is not the oldest batch's, in full: the
        server answers batches in order, so events would otherwise be lost unnoticed.
        """
        if not self._inflight or self._inflight[0].batch_id != ack.batch_id:
            expected = self._inflight[0].batch_id if self._inflight else None
            raise DataLossError(
                f"report stream of run {self._run_id!r}: acknowledgement of batch "
                f"{ack.batch_id}, expected {expected}"
            )
        batch = self._inflight.popleft()
        if self._calls or self._takers:
            for event in batch.events:
                self._calls.pop(event.idempotency_key, None)
                self._takers.pop(event.idempotency_key, None)
                self._starts_taken.discard(event.idempotency_key)
        if ack.count != len(batch.events):
            raise DataLossError(
                f"report stream of run {self._run_id!r}: batch {ack.batch_id} of "
                f"{len(batch.events)} events acknowledged with {ack.count} results"
            )
        duplicates = [(batch.events[index], seq) for index, seq in ack.duplicates]
        self.acked += len(batch.events)
        self.pending_bytes -= batch.size
        self.last_seq = max(self.last_seq, ack.max_seq)
        return duplicates
