"""What the domain tells an observer (metrics, stats) about delivery, and nothing else.

The domain knows no metrics library: :class:`~runstream_server.domain.runs.RunManager` calls
these two methods where only it can see what happened, and the server's observability layer
implements them. Commits are observed at the store boundary instead (every durable write
passes there), so the write path itself carries no observability code.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_OBSERVER", "DeliveryObserver"]


class DeliveryObserver(Protocol):
    """Told about what watchers receive; must be cheap and must not raise."""

    def delivered(self, events: int, behind: int) -> None:
        """A watcher was sent `events` events and is still `behind` events behind the head."""

    def overflowed(self) -> None:
        """A watcher fell so far behind that it catches up from the store instead."""


class _NoObserver:
    def delivered(self, events: int, behind: int) -> None:
        pass

    def overflowed(self) -> None:
        pass


NO_OBSERVER: DeliveryObserver = _NoObserver()
