"""Durable storage for runs and their event logs, behind :class:`EventStore`."""

from runstream_server.store.base import EventStore, RunFilter, RunPage
from runstream_server.store.sqlite import SqliteEventStore

__all__ = ["EventStore", "RunFilter", "RunPage", "SqliteEventStore"]
