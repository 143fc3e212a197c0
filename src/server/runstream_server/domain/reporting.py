"""Group commit: a producer's small batches, queued while its previous commit was being made,
committed as one.

At a few thousand events a second a producer sends many batches of a few events, and each
commit costs about the same whatever its size, so grouping them is what keeps the server's
cost per event, and the fan-out's messages per event, low. Each batch is still acknowledged
on its own, in order, with its own events' results. A group the ledger refuses (nothing
stored) is made again one batch at a time by the caller, so that the refusal names its own
batch's event; one that may have been stored is not (see :func:`commit_together`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from runstream.v1 import event_pb2

from runstream_server.domain.commits import AppendResult, Mailbox
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
