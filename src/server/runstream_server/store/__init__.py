"""Durable storage for runs and their event logs, behind :class:`EventStore`."""

from runstream_server.store.base import (
    CommitNotice,
    EventStore,
    HeadMoved,
    PurgedNotice,
    RunFilter,
    RunPage,
    StoredEvent,
    StoreUnusable,
    ViewersNotice,
)
from runstream_server.store.sqlite import SqliteEventStore

__all__ = [
    "CommitNotice",
    "EventStore",
    "HeadMoved",
    "PurgedNotice",
    "RunFilter",
    "RunPage",
    "SqliteEventStore",
    "StoreUnusable",
    "StoredEvent",
    "ViewersNotice",
]
