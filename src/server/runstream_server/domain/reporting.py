"""Group commit: a producer's small batches, queued while its previous commit was being made,
committed as one.

At a few thousand events a second a producer sends many batches of a few events, and each
commit costs about the same whatever its size, so grouping them is what keeps the server's
cost per event, and the fan-out's messages per event, low. Each batch is still acknowledged
on its own, in order, with its own events' results. A group the ledger refuses (nothing
stored) is made again one batch at a time, so that the refusal names its own batch's event;
one that may have been stored is not (see :func:`commit_together`). A :class:`ReportSession`
makes a stream's commits so, and tells it what to say in between: the acks, and before them
the signals its producer's link received (a cancel, a decision closed).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from runstream.v1 import decision_pb2, event_pb2

from runstream_server.domain.commits import AppendResult, ControlSignal, Mailbox, Signal
from runstream_server.domain.runs import RunManager
from runstream_server.errors import NothingStored, RunstreamError, Unavailable

GROUP_EVENTS = 100
"""Batches that wait while a commit is made are committed together, up to this many events.
Bigger batches gain little from grouping, and a group costs a copy of its events."""


class Batch(Protocol):
    """One batch of a producer's events (a Report stream's request)."""

    @property
    def events(self) -> Sequence[event_pb2.RunEvent]: ...


_B = TypeVar("_B", bound=Batch)


def take_group(first: _B, queue: Mailbox[Any], joins: Callable[[Any], bool]) -> list[_B]:
    """`first` and the batches queued behind it that can be committed with it, taken off the
    `queue` while the next one `joins` (a batch of events for the same run) and the group
    stays within :data:`GROUP_EVENTS`; what cannot join stays first in line."""
    group, size = [first], len(first.events)
    while not queue.empty():
        queued = queue.peek()
        if not (joins(queued) and size + len(queued.events) <= GROUP_EVENTS):
            break
        queue.get_nowait()  # the one peeked at
        group.append(queued)
        size += len(queued.events)
    return group


async def commit_together(
    runs: RunManager, run_id: str, group: Sequence[Batch]
) -> list[AppendResult] | None:
    """Commits the batches as one and answers each with its own events' results; None if
    the commit was refused (nothing was stored), to be made one batch at a time.

    An UNAVAILABLE that leaves open whether the batches were stored (Redis ran the script
    and the reply was lost, or fewer replicas than ``wait=N`` confirmed it) is raised
    instead: an event without an idempotency key written again would be stored twice. The
    producer resends what was not acknowledged, and the log's keys tell its resends apart."""
    # Copies: a commit numbers and stamps its events, and a refused group is retried from
    # the originals.
    events = []
    for batch in group:
        for original in batch.events[:]:  # a list: see RunSteps.recompute_progress
            event = event_pb2.RunEvent()
            event.CopyFrom(original)
            events.append(event)
    try:
        result = await runs.append(run_id, events)
    except NothingStored:
        return None
    except Unavailable:
        raise
    except RunstreamError:
        return None
    results, start = [], 0
    for batch in group:
        end = start + len(batch.events)
        results.append(AppendResult(result.acks[start:end], result.last_seq))
        start = end
    return results


Received = ControlSignal | decision_pb2.Decision
"""What a producer's link received and its stream passes on: a control or a closed decision."""


@dataclass(frozen=True, slots=True)
class Acked(Generic[_B]):
    """A batch made durable (or answered as a resend), with its own events' results."""

    batch: _B
    result: AppendResult


class ReportSession(Generic[_B]):
    """The commits of one Report stream on run `run_id`, whose producer's link receives
    `signals`: each group of batches is committed as one and acknowledged batch by batch."""

    def __init__(self, runs: RunManager, run_id: str, signals: Mailbox[Signal]) -> None:
        self._runs = runs
        self._run_id = run_id
        self._signals = signals

    async def commit(self, group: Sequence[_B]) -> AsyncGenerator[Received | Acked[_B], None]:
        """Commits the `group` (of :func:`take_group`) and yields what the stream says, in
        order: what the link received meanwhile, then each batch's ack.

        A group refused as a whole is made again one batch at a time, each acknowledged as
        it is stored; one that may have been stored is not (:func:`commit_together`). An
        error is raised after what the link received, which may explain it (a cancel)."""
        try:
            results = (
                await commit_together(self._runs, self._run_id, group) if len(group) > 1 else None
            )
        except Unavailable:  # maybe stored: not again one by one (see there)
            for signal in self._drained():
                yield signal
            raise
        if results is not None:
            for signal in self._drained():  # signalled, then the acks
                yield signal
            for batch, result in zip(group, results, strict=True):
                yield Acked(batch, result)
            return
        for batch in group:  # one by one: a refusal names its own batch's event
            try:
                result = await self._runs.append(self._run_id, batch.events[:])
            except RunstreamError:  # what the link received (a cancel) explains it
                for signal in self._drained():
                    yield signal
                raise
            for signal in self._drained():  # signalled, then the ack
                yield signal
            yield Acked(batch, result)

    def _drained(self) -> Iterator[Received]:
        """What the link received so far, one at a time; on the stream before the ack of a
        commit it follows. It stops at a shutdown, left in the mailbox: the ack of the commit
        just made goes out first (a producer told only UNAVAILABLE would send the batch again,
        twice stored without idempotency keys), then the stream's next turn ends it."""
        signals = self._signals
        for _ in range(signals.qsize()):
            signal = signals.peek()
            if signal is None:
                return
            signals.get_nowait()  # the one peeked at
            yield signal
