"""The store wrapper that counts store failures defines every operation of the store
protocol itself: a method it lacked was reached through ``__getattr__``, its failures never
counted, and mypy took the wrapper for an EventStore whatever it lacked (found in review:
load_runs and changed_since). Their counting is checked on Redis, where they are used:
tests/faults/test_redis_metrics.py."""

from __future__ import annotations

from runstream_server.observability.store import ObservedStore
from runstream_server.store.base import EventStore


def test_every_store_operation_is_defined_on_the_wrapper_itself() -> None:
    protocol = {name for name in vars(EventStore) if not name.startswith("_")}
    protocol |= set(EventStore.__annotations__)  # its attributes: shared, clock
    defined = set(vars(ObservedStore)) | {"shared", "clock"}  # those two set in __init__
    assert sorted(protocol - defined) == []
    assert not hasattr(ObservedStore, "__getattr__")  # a missing one would fail, not pass on
