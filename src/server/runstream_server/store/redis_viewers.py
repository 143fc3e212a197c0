"""How many watchers each replica has on a run, kept in Redis so every replica can show the
total: per run, a hash ``P:{run}:viewers`` from replica id to ``[count, expiry]``. A replica
refreshes its own counts while it lives; a dead replica's expire, and a count that changes
is told to the others in the same script (a viewers notice: :mod:`.redis_notices`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions as rex

from runstream_server.background import spawn_logged, stop_task
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_notices import VIEWERS_NOTICE, notice_channel, publish_command
from runstream_server.store.redis_url import RedisOptions

_FAILURES = (rex.RedisError, rex.RedisClusterException, OSError)
"""Redis failing (TimeoutError is an OSError): a count not written, never an error."""

VIEWERS_TTL_MS = 15_000
"""A replica's viewer counts expire this long after it last refreshed them (it died)."""

# KEYS: viewers. ARGV: replica, its [count, expiry] ('' to remove it), ttl, channel (''
# for none), the publish command, the notice. One round trip writes and tells the others.
_VIEWERS = """
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then redis.call(ARGV[5], ARGV[4], ARGV[6]) end
return 1
"""


class RedisViewerCounts:
    """This replica's viewer counts and the others', on the client `client` returns at each
    call. Redis failing costs a count, never an error: the counts are for display."""

    def __init__(
        self,
        options: RedisOptions,
        keys: RedisKeys,
        replica_id: str,
        client: Callable[[], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: the replicas' shared clock (seconds), which the counts' expiries are on."""
        self._options = options
        self._clock = clock
        self._keys = keys
        self._replica_id = replica_id
        self._client = client
        self._publish = publish_command(options)  # PUBLISH, or SPUBLISH on a cluster
        self._mine: dict[str, int] = {}
        self._writing: set[str] = set()  # runs whose count is being written now
        self._changed: set[str] = set()  # ... and changed meanwhile: written again after
        self._script: Any = None
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Registers the script and starts refreshing this replica's counts."""
        self._script = self._client().register_script(_VIEWERS)
        self._refresher = spawn_logged(self._refresh(), "runstream-redis-viewer-counts")

    async def stop(self) -> None:
        if self._refresher is not None:
            await stop_task(self._refresher)
        # A replica that stops gracefully takes its counts with it: its watchers resume on
        # another replica, where they would otherwise count twice until the 15 s expiry.
        mine, self._mine = list(self._mine), {}
        if mine:
            with contextlib.suppress(*_FAILURES):
                await asyncio.wait_for(
                    asyncio.gather(*(self._write(run_id, 0, tell=True) for run_id in mine)), 2
                )

    async def set(self, run_id: str, count: int) -> None:
        if count:
            self._mine[run_id] = count
        else:
            self._mine.pop(run_id, None)
        await self._flush(run_id, tell=True)

    async def _flush(self, run_id: str, *, tell: bool) -> None:
        """Writes the run's count as it is now, one write per run at a time. Two at once go
        on two connections and may land in either order: a watcher that came and went left
        its count on the others for the 15 s of its expiry, or a refresh wrote back the
        count before the last change. A change during a write is written after it."""
        if run_id in self._writing:
            if tell:
                self._changed.add(run_id)
            return  # a refresh: the write under way refreshes it
        self._writing.add(run_id)
        try:
            while True:
                self._changed.discard(run_id)
                with contextlib.suppress(*_FAILURES):
                    await self._write(run_id, self._mine.get(run_id, 0), tell=tell)
                if run_id not in self._changed:
                    return
                tell = True
        finally:
            self._writing.discard(run_id)

    async def _write(self, run_id: str, count: int, *, tell: bool) -> None:
        """Writes this replica's count (with its expiry); `tell` the others it changed."""
        expires = int(self._clock() * 1000) + VIEWERS_TTL_MS
        await self._script(
            keys=[self._keys.viewers(run_id)],
            args=[
                self._replica_id,
                json.dumps([count, expires]) if count else "",
                VIEWERS_TTL_MS * 2,
                notice_channel(self._options, run_id) if tell else "",
                self._publish,
                VIEWERS_NOTICE + f"{self._replica_id}\n{run_id}".encode(),
            ],
            client=self._client(),
        )

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(VIEWERS_TTL_MS / 3000)
            for run_id in list(self._mine):
                await self._flush(run_id, tell=False)

    async def others(self, run_ids: Sequence[str]) -> dict[str, int]:
        """Watchers of each run on every other live replica, in one round trip."""
        try:
            pipe = self._client().pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hgetall(self._keys.viewers(run_id))
            rows = await pipe.execute()
        except (rex.RedisError, OSError):
            return {}
        now = int(self._clock() * 1000)
        mine = self._replica_id.encode()
        totals: dict[str, int] = {}
        for run_id, entries in zip(run_ids, rows, strict=True):
            total = 0
            for replica, raw in entries.items():
                if replica == mine:
                    continue
                count, expires = json.loads(raw)
                if expires > now:
                    total += int(count)
            if total:
                totals[run_id] = total
        return totals
