"""The run manager's settings: plain values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits that protect the server from oversized or abusive input."""

    max_event_bytes: int = 256 * 1024
    max_batch_events: int = 1000
    max_steps: int = 1000
    max_labels: int = 64
    watch_page_events: int = 500
    watch_page_bytes: int = 1024 * 1024
    """A WatchRun message carries at most this much (and at least one event), far below
    the 4 MiB message limit whatever the events' sizes."""
    cached_ended_runs: int = 1000
    """Ended runs kept in memory with no one watching them; older ones are reloaded on use."""
    cached_runs: int = 10_000
    """Runs of any status kept in memory with no one using them, least recently used first;
    older ones are reloaded on use (a run that never ends does not stay forever)."""
    response_bytes: int = 512 * 1024
    """The most a list page, a WatchRuns message or each gathered part of GetRun carries
    (recent activity; open decisions); at least one item, whatever its size."""
    max_followed_runs: int = 1000
    """The runs one Interact stream follows, subscribed in one message or over several; a
    subscription past it is RESOURCE_EXHAUSTED (each followed run holds a place in memory)."""
    max_snapshot_bytes: int = 2 * 1024 * 1024
    """A producer batch that would grow a run's snapshot past this gets RESOURCE_EXHAUSTED
    (a batch that ends the run may go 512 KiB further), so that GetRun, WatchRun's snapshot
    and the store's copy always fit the 4 MiB message limit."""


MAX_RETENTION_DAYS = 36_500
"""The longest retention (``serve --retention-days``): a century. A retention pass subtracts
it from now, which a datetime cannot do past year 1 (about 739,000 days today)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished runs keep their event logs; None keeps them forever."""

    days: float | None = None
    """Purge the logs of runs that ended more than this many days ago (at most
    :data:`MAX_RETENTION_DAYS`)."""
    runs: int | None = None
    """Keep the logs of only this many most recently ended runs."""
    interval: float = 3600.0
    """Seconds between retention passes."""
