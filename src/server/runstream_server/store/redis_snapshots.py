"""The Redis store's one reader of run snapshots: by id, and an index's runs newest first.

A run's snapshot is the ``snap`` field of its meta hash (``P:{run}:meta``, :mod:`.redis`).
Every read of the run indexes (:mod:`.redis_index` and the modules it names) goes through
here, since the indexes are hints: an entry whose run has no snapshot is passed over, and a
damaged snapshot, or a key of another type than Runstream's, is logged and left out. Reads
of many snapshots are paced by their sizes (HSTRLEN), a round trip per
:data:`SNAPSHOT_BYTES`, never a page of large snapshots all at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from runstream.v1 import run_pb2

from runstream_server.store.base import left_out, readable_run, stop_if_cancelled
from runstream_server.store.redis_keys import RedisKeys

SNAPSHOT_BATCH = 256
"""Snapshots read in one round trip where many are read by id (the tenants of runs an
earlier release ended, the runs active at start)."""
SNAPSHOT_BYTES = 1024 * 1024
"""Snapshot bytes a listing reads per round trip (one snapshot at least): a page of 200 runs
of 2 MiB snapshots is read a few at a time, by their sizes (HSTRLEN), not all at once."""


class RunSnapshots:
    """The run snapshots of one store, on the client `client` returns at each call."""

    def __init__(self, keys: RedisKeys, client: Callable[[], Any]) -> None:
        self._keys = keys
        self._client = client

    async def read(self, run_ids: list[str]) -> list[tuple[str, run_pb2.Run | None]]:
        """The snapshots of `run_ids`, in one round trip (on a cluster, one to each master
        holding some of them): None for a run not stored; a damaged one, or a key of
        another type than Runstream's (another program's data under the run's name), is
        logged and left out (:func:`~.base.readable_run`, :func:`~.base.left_out`)."""
        pipe = self._client().pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hget(self._keys.meta(run_id), "snap")
        found: list[tuple[str, run_pb2.Run | None]] = []
        for run_id, snap in zip(run_ids, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(snap, Exception):
                if "WRONGTYPE" not in str(snap):
                    raise snap
                left_out(run_id, f"run {run_id}: its stored record is not Runstream's")
                continue
            if snap is None:
                found.append((run_id, None))
                continue
            run = readable_run(run_id, snap)
            if run is not None:
                found.append((run_id, run))
        return found

    async def _sizes(self, run_ids: list[str]) -> list[int]:
        """The size of each run's stored snapshot, in one round trip (0: none, or a key
        that is not Runstream's, which :meth:`read` then leaves out)."""
        pipe = self._client().pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hstrlen(self._keys.meta(run_id), "snap")
        found = await pipe.execute(raise_on_error=False)
        return [size if isinstance(size, int) else 0 for size in found]

    async def newest_first(
        self,
        index: str,
        cursor: tuple[int, str] | None,
        after: int | None = None,
        before: int | None = None,
        *,
        page: int = 200,
    ) -> AsyncIterator[tuple[int, run_pb2.Run, int]]:
        """Runs of an index, each with its score and its snapshot's size, by (score, id)
        descending, strictly after `cursor` (a score is the run's create time, or its first
        attempt's), with scores between `after` and `before` (exclusive) when given:
        create_time bounds read by score, so a create retried after a crash is bounded, as
        it is paged, by the time of its first attempt (its stored create_time is the
        retry's, some moments later)."""
        highest = [cursor[0]] if cursor is not None else []
        highest += [before - 1] if before is not None else []
        top = str(min(highest)) if highest else "+inf"
        bottom = "-inf" if after is None else f"({after}"
        skip = 0  # entries scored `top` already met: the next fetch starts after them
        while True:
            stop_if_cancelled()  # a caller that left: redis-py may have swallowed its cancel
            rows = await self._client().zrevrangebyscore(
                index, top, bottom, start=skip, num=page, withscores=True
            )
            if not rows:
                return
            ids = [member.decode() for member, _ in rows]
            sizes = await self._sizes(ids)
            start = 0
            while start < len(ids):  # the snapshots, a round trip per SNAPSHOT_BYTES
                end, held = start + 1, sizes[start]
                while end < len(ids) and held + sizes[end] <= SNAPSHOT_BYTES:
                    held += sizes[end]
                    end += 1
                runs = dict(await self.read(ids[start:end]))
                for run_id, (_, score), size in zip(
                    ids[start:end], rows[start:end], sizes[start:end], strict=True
                ):
                    at = int(score)
                    if str(at) == top:
                        skip += 1
                    else:
                        top, skip = str(at), 1
                    if cursor is not None and (at, run_id) >= cursor:
                        continue
                    # None or missing: an entry written before a crash stopped the create,
                    # or a record that is damaged or not Runstream's (logged).
                    run = runs.get(run_id)
                    if run is not None:
                        yield at, run, size
                start = end
            if len(rows) < page:
                return
