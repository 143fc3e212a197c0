"""What the domain tells an observer (metrics, stats) about delivery, and nothing else.

The domain knows no metrics library: :class:`~runstream_server.domain.runs.RunManager` calls
these methods where only it can see what happened, and the server's observability layer
implements them. This process's commits are observed at the store boundary instead (every
durable write passes there), so the write path itself carries no observability code; other
replicas' commits, which reach it as notices, are told here, and so are the counts of the
whole store made again after a gap in those notices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from runstream.v1 import decision_pb2, run_pb2

from runstream_server.store.base import RunCounts, StoredEvent

__all__ = ["NO_OBSERVER", "DeliveryObserver"]


class DeliveryObserver(Protocol):
    """Told about what watchers receive; must be cheap and must not raise."""

    def delivered(self, events: int, behind: int) -> None:
        """A watcher was sent `events` events and is still `behind` events behind the head."""

    def overflowed(self) -> None:
        """A watcher fell so far behind that it catches up from the store instead."""

    def send_stalled(self) -> None:
        """A watch stream ended: a message of it waited the send timeout to be sent."""

    def committed_elsewhere(
        self, run_id: str, events: Sequence[StoredEvent], run: run_pb2.Run | None
    ) -> None:
        """Another replica committed `events` to the run; `run` is its state after them when
        this process holds it (None: only the events tell what changed)."""

    def recounting(self) -> None:
        """The store's runs and open questions are being counted again (after a gap in the
        other replicas' notices, which may have carried moves this process never heard)."""

    def recounted(
        self,
        counts: RunCounts | None,
        open_decisions: Sequence[tuple[str, decision_pb2.Decision]],
    ) -> None:
        """What that count found: the runs by status, and every open question with its run
        (None: the count failed)."""


class _NoObserver:
    def delivered(self, events: int, behind: int) -> None:
        pass

    def overflowed(self) -> None:
        pass

    def send_stalled(self) -> None:
        pass

    def committed_elsewhere(
        self, run_id: str, events: Sequence[StoredEvent], run: run_pb2.Run | None
    ) -> None:
        pass

    def recounting(self) -> None:
        pass

    def recounted(
        self,
        counts: RunCounts | None,
        open_decisions: Sequence[tuple[str, decision_pb2.Decision]],
    ) -> None:
        pass


NO_OBSERVER: DeliveryObserver = _NoObserver()
