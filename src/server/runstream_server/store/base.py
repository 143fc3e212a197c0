"""The storage interface every backend implements (SQLite now, Redis Streams next).

It is deliberately small: an append-only, per-run event log with idempotency keys, plus the
latest derived snapshot of each run stored in the same atomic write, so a restart needs no
replay. A backend must make :meth:`EventStore.append` durable before it returns: the server
acknowledges events to producers only after that.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runstream.v1 import run_pb2

from runstream_server.domain.events import EncodedEvent


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs ListRuns returns: every given criterion must match."""

    statuses: frozenset[int] = frozenset()
    workflow: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, newest first, and the cursor of the next page (None at the end)."""

    runs: list[run_pb2.Run]
    next_cursor: tuple[int, str] | None


class EventStore(Protocol):
    """Durable run logs. All methods are coroutines safe to call from the event loop."""

    async def open(self) -> None:
        """Creates or opens the storage."""

    async def close(self) -> None:
        """Flushes and releases the storage."""

    async def append(
        self,
        run_id: str,
        events: Sequence[EncodedEvent],
        snapshot: run_pb2.Run,
        *,
        create: bool = False,
    ) -> None:
        """Atomically and durably adds `events` to the run's log and replaces its snapshot.

        With `create`, the run must not exist yet (raises AlreadyExists). Seqs are assigned
        by the caller and must continue the log without gaps.
        """

    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        """The run's latest snapshot, or None when the run does not exist."""

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, int]:
        """The seqs of those idempotency keys the run's log already holds."""

    async def read_events(
        self, run_id: str, after_seq: int, limit: int, kinds: Collection[int] = ()
    ) -> list[EncodedEvent]:
        """Up to `limit` events with seq > after_seq (of the given kinds, if any), in order."""

    async def read_last_events(
        self, run_id: str, kinds: Collection[int], limit: int
    ) -> list[EncodedEvent]:
        """The run's last `limit` events of the given kinds, oldest first."""

    async def purge_events(
        self, *, ended_before_us: int | None, keep_newest: int | None
    ) -> list[str]:
        """Deletes the event logs of ended runs that ended before `ended_before_us` (epoch
        microseconds) or are older than the newest `keep_newest` ended runs, keeping their
        snapshots with ``purged_seq`` set. Returns the ids of the runs purged."""

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, cursor: tuple[int, str] | None
    ) -> RunPage:
        """Runs matching the filter, newest first, starting after `cursor`."""
