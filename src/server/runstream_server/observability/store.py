"""The store, observed: every durable commit and every store failure passes through here.

Wrapping the :class:`~runstream_server.store.base.EventStore` the run manager writes to is
the one hook on the write path: whatever code commits events (a producer's batch, an answer,
a deadline, a stall, a new run), it commits them through ``append``, and what ``append``
returned without raising is durable. The wrapper times it, hands the committed events and the
run's new snapshot to :class:`~runstream_server.observability.telemetry.Telemetry`, and
counts failures of each operation by name but ``close`` and ``follow`` (with Redis: the
replica's errors talking to Redis), lost races to another replica (:class:`HeadMoved`,
retried by the caller), failed health pings, and reconnects of the notice subscription that
``follow`` keeps (each gap notice).

Commits made by other replicas reach this one as notices, not appends: the figures here are
this replica's own, as Prometheus expects of each scraped target.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TypeVar

from runstream.v1 import run_pb2

from runstream_server.errors import AlreadyExists
from runstream_server.observability.telemetry import Telemetry
from runstream_server.store.base import (
    EventStore,
    HeadMoved,
    HeldKey,
    Notice,
    NoticeHandler,
    RunCounts,
    RunFilter,
    RunPage,
    StoredEvent,
    Usage,
)

__all__ = ["ObservedStore"]

_T = TypeVar("_T")


class ObservedStore:
    """An :class:`EventStore` that reports to `telemetry` and otherwise does what `inner` does.

    Every member of the protocol is defined here, so that none escapes being observed;
    backend-specific extras (a file path, backups) are the caller's to reach through `inner`.
    """

    def __init__(self, inner: EventStore, telemetry: Telemetry) -> None:
        self.inner = inner
        self.shared = inner.shared
        self.clock = inner.clock
        self._telemetry = telemetry

    @property
    def persistence(self) -> str:
        return self.inner.persistence

    async def _observed(self, operation: str, call: Awaitable[_T]) -> _T:
        """What `call` returns; counts its failure under `operation`'s name."""
        try:
            return await call
        except Exception:
            self._telemetry.store_failed(operation)
            raise

    async def ping(self) -> bool:
        reachable = await self.inner.ping()
        if not reachable:
            self._telemetry.store_failed("ping")
        return reachable

    @property
    def outage(self) -> str:
        return self.inner.outage

    async def open(self) -> None:
        await self._observed("open", self.inner.open())

    async def close(self) -> None:
        await self.inner.close()

    async def append(
        self,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: bytes | None = None,
    ) -> None:
        started = time.perf_counter()
        try:
            await self.inner.append(
                run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded
            )
        except AlreadyExists:  # the caller's mistake (a run id in use), not the store's
            raise
        except HeadMoved:  # another replica wrote first; the caller reloads and retries
            self._telemetry.store_conflict()
            raise
        except Exception:
            self._telemetry.store_failed("append")
            raise
        self._telemetry.committed(snapshot, events, time.perf_counter() - started)

    async def confirm(self, run_id: str) -> None:
        await self._observed("confirm", self.inner.confirm(run_id))

    async def load_run(self, run_id: str) -> run_pb2.Run | None:
        return await self._observed("load_run", self.inner.load_run(run_id))

    async def heads(self, run_ids: Sequence[str]) -> dict[str, int]:
        return await self._observed("heads", self.inner.heads(run_ids))

    async def load_runs(self, run_ids: Sequence[str]) -> list[run_pb2.Run]:
        return await self._observed("load_runs", self.inner.load_runs(run_ids))

    async def changed_since(self, since_us: int) -> list[str] | None:
        return await self._observed("changed_since", self.inner.changed_since(since_us))

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, HeldKey]:
        return await self._observed("find_keys", self.inner.find_keys(run_id, keys))

    async def read_events(
        self,
        run_id: str,
        after_seq: int,
        limit: int,
        kinds: Collection[int] = (),
        *,
        before_seq: int | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        read = self.inner.read_events(
            run_id, after_seq, limit, kinds, before_seq=before_seq, max_bytes=max_bytes
        )
        return await self._observed("read_events", read)

    async def read_events_before(
        self,
        run_id: str,
        before_seq: int | None,
        limit: int,
        kinds: Collection[int] = (),
        *,
        after_seq: int = 0,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        read = self.inner.read_events_before(
            run_id, before_seq, limit, kinds, after_seq=after_seq, max_bytes=max_bytes
        )
        return await self._observed("read_events_before", read)

    async def purge_events(
        self,
        *,
        ended_before_us: int | None,
        keep_newest: int | None,
        marked: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> list[str]:
        purge = self.inner.purge_events(
            ended_before_us=ended_before_us, keep_newest=keep_newest, marked=marked
        )
        return await self._observed("purge_events", purge)

    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        listing = self.inner.list_runs(run_filter, page_size, cursor, max_bytes=max_bytes)
        return await self._observed("list_runs", listing)

    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        read = self.inner.succeeded_runs(tenant, workflow, limit)
        return await self._observed("succeeded_runs", read)

    async def follow(self, handler: NoticeHandler) -> None:
        telemetry = self._telemetry
        subscribed = False

        def observed(notice: Notice) -> None:
            nonlocal subscribed
            if notice is None:  # each (re)subscription; the first one is no reconnect
                if subscribed:
                    telemetry.store_reconnected()
                subscribed = True
            handler(notice)

        await self.inner.follow(observed)

    async def set_viewers(self, run_id: str, count: int) -> None:
        await self._observed("set_viewers", self.inner.set_viewers(run_id, count))

    async def viewers(self, run_ids: Sequence[str]) -> dict[str, int]:
        return await self._observed("viewers", self.inner.viewers(run_ids))

    async def share_usage(self, mine: Mapping[str, Usage]) -> dict[str, dict[str, Usage]]:
        return await self._observed("share_usage", self.inner.share_usage(mine))

    async def count_runs(self) -> RunCounts:
        return await self._observed("count_runs", self.inner.count_runs())

    async def tally_runs(self) -> None:
        """Tallies every stored run by status, once at start, from the store's count (the
        ended runs by an index, without their snapshots)."""
        self._telemetry.runs.recounted(await self.count_runs())
