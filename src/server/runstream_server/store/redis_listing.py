"""ListRuns on the Redis store: a page of the runs a filter matches, read from one index.

A listing reads the smallest index that holds every run its filter can match (of
``P:active``, an ended status's, the tenant's, the workflow's and each label's; ``P:runs``
when none applies: :meth:`RunListing._smallest`), newest first, a page at a time, and checks
each run against the whole filter on its snapshot (:mod:`.redis_snapshots`): the indexes are
hints (:mod:`.redis_index`). A page's cursor is a position in the index it read, (score, id),
every index being scored as ``P:runs`` is, so the next page may read another. A run met ended
in ``P:active`` (an end cut short by a crash) is moved to ``P:ended`` then, and left out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runstream.v1 import run_pb2

from runstream_server.store.base import RunFilter, RunPage
from runstream_server.store.redis_filters import FilterIndexes
from runstream_server.store.redis_index import TERMINAL, RunIndex
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_snapshots import RunSnapshots
from runstream_server.store.redis_statuses import StatusIndexes


class RunListing:
    """ListRuns over the run indexes of one store, on the client `client` returns at each
    call: `snapshots` reads the runs, `filters` and `statuses` say which of their indexes
    are whole, and `index` moves the ended runs met in ``P:active``."""

    def __init__(
        self,
        keys: RedisKeys,
        client: Callable[[], Any],
        snapshots: RunSnapshots,
        filters: FilterIndexes,
        statuses: StatusIndexes,
        index: RunIndex,
    ) -> None:
        self._keys = keys
        self._client = client
        self._snapshots = snapshots
        self._filters = filters
        self._statuses = statuses
        self._index = index

    async def list_runs(
        self,
        run_filter: RunFilter,
        page_size: int,
        cursor: tuple[int, str] | None,
        *,
        max_bytes: int | None = None,
    ) -> RunPage:
        only_active = bool(run_filter.statuses) and not (run_filter.statuses & TERMINAL)
        index = await self._smallest(run_filter, only_active)
        page: list[tuple[int, run_pb2.Run]] = []
        held = 0  # snapshot bytes of the page
        more = False
        created = (run_filter.created_after_us, run_filter.created_before_us)
        async for at, run, size in self._snapshots.newest_first(index, cursor, *created):
            if index == self._keys.active and run.status in TERMINAL:
                # Left there by a crash before mark_ended: moved now, as the sweep would.
                await self._index.mark_ended(run.run_id, run)
                continue
            if run_filter.matches(run):
                past = max_bytes is not None and bool(page) and held + size > max_bytes
                if len(page) >= page_size or past:
                    more = True  # one more run matches
                    break
                page.append((at, run))
                held += size
        # Positions in the index, not create times: the two differ for a run whose first
        # create was cut short after its entries (a retry keeps the first attempt's score),
        # and a cursor off the index's order would list runs again.
        positions = [(at, run.run_id) for at, run in page]
        return RunPage([run for _, run in page], positions, more)

    async def _smallest(self, run_filter: RunFilter, only_active: bool) -> str:
        """The index to read for `run_filter`: of those that hold every run it can match
        (the runs not ended for an active-only filter, the status's for one ended status,
        the tenant's, the workflow's, each
        label's), the one with the fewest entries; every run when none of them applies.
        Every other index is part of ``P:runs``, so that one is read only alone. Read the
        other way round, a tenant's few runs (the active-runs limit counts them at each
        CreateRun) meant reading every tenant's active runs, and a rare label every run."""
        candidates = [self._keys.active] if only_active else []
        statuses = run_filter.statuses
        if self._statuses.ready and len(statuses) == 1 and statuses <= TERMINAL:
            candidates.append(self._keys.ended_runs(next(iter(statuses))))
        if run_filter.tenant is not None:
            candidates.append(self._keys.tenant_runs(run_filter.tenant))
        candidates += self._filters.indexes_for(run_filter)
        if len(candidates) < 2:
            return candidates[0] if candidates else self._keys.runs
        pipe = self._client().pipeline(transaction=False)
        for index in candidates:
            pipe.zcard(index)
        sizes = await pipe.execute()
        return min(zip(sizes, range(len(candidates)), candidates, strict=True))[2]
