"""Retention's choice of ended runs on the Redis store, from the runs whose logs are kept.

``P:ended`` holds the ended runs whose logs are kept, by when their ends were stored
(:mod:`.redis_index` enters them, and sweeps the ends a crash left in ``P:active`` before each
pass), and ``P:ended:tenants`` each one's tenant, for a ``runs=N`` policy's newest N of each
tenant (a run ended by a release before it is looked up once, in its snapshot, and written
there). A run leaves both once retention purged its log, ``P:ended:tenants`` first: a crash
between the two leaves it in ``P:ended``, whose next pass meets it purged and takes it out.
Its snapshot stays, and so do its other entries: a purged run is listed still.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_snapshots import SNAPSHOT_BATCH, RunSnapshots

_TENANT_BATCH = 1000
"""Runs whose tenants retention reads in one round trip (from ``P:ended:tenants``)."""


class EndedRuns:
    """The ended runs whose logs are kept, of one store, on the client `client` returns at
    each call; `snapshots` reads the tenants ``P:ended:tenants`` lacks."""

    def __init__(self, keys: RedisKeys, client: Callable[[], Any], snapshots: RunSnapshots) -> None:
        self._keys = keys
        self._client = client
        self._snapshots = snapshots

    async def ended(self, *, ended_before_us: int | None, keep_newest: int | None) -> list[str]:
        """Ended runs whose logs are kept that ended before `ended_before_us` or are older
        than their tenant's newest `keep_newest` of them (hints: the caller re-checks each
        run, and :meth:`forget_ended` those it purged)."""
        chosen: dict[str, None] = {}
        if ended_before_us is not None:
            for member in await self._client().zrangebyscore(
                self._keys.ended, "-inf", f"({ended_before_us}"
            ):
                chosen[member.decode()] = None
        # Fewer runs kept than `keep_newest` in all: no tenant has more (nothing read).
        if keep_newest is not None and await self._client().zcard(self._keys.ended) > keep_newest:
            members = [m.decode() for m in await self._client().zrevrange(self._keys.ended, 0, -1)]
            await self._forget_stray_tenants(members)
            tenants = await self._tenants_of(members)
            kept: dict[str, int] = {}
            for run_id in members:  # newest first
                tenant = tenants.get(run_id)
                if tenant is None:  # no run under this entry: the caller takes it out
                    chosen[run_id] = None
                    continue
                kept[tenant] = kept.get(tenant, 0) + 1
                if kept[tenant] > keep_newest:
                    chosen[run_id] = None
        return list(chosen)

    async def _tenants_of(self, run_ids: list[str]) -> dict[str, str | None]:
        """Each run's tenant, from ``P:ended:tenants``; a run ended by a release before it
        is read in its snapshot once, and written there (None: no run under that id)."""
        tenants: dict[str, str | None] = {}
        for start in range(0, len(run_ids), _TENANT_BATCH):
            batch = run_ids[start : start + _TENANT_BATCH]
            found = await self._client().hmget(self._keys.ended_tenants, batch)
            for run_id, value in zip(batch, found, strict=True):
                if value is not None:
                    tenants[run_id] = value.decode()
        missing = [run_id for run_id in run_ids if run_id not in tenants]
        for start in range(0, len(missing), SNAPSHOT_BATCH):
            read = await self._snapshots.read(missing[start : start + SNAPSHOT_BATCH])
            learnt = {run_id: run.tenant for run_id, run in read if run is not None}
            if learnt:
                await self._client().hset(self._keys.ended_tenants, mapping=learnt)
            tenants.update((run_id, run.tenant if run else None) for run_id, run in read)
        return tenants

    async def _forget_stray_tenants(self, members: list[str]) -> None:
        """Takes out of ``P:ended:tenants`` the runs no longer in ``P:ended`` (`members`): a
        replica of an earlier release forgets runs without it, and on a cluster the two
        keys' writes are not one transaction. Read only when it holds more entries."""
        if await self._client().hlen(self._keys.ended_tenants) <= len(members):
            return
        kept = set(members)
        stray = [
            field
            async for field, _ in self._client().hscan_iter(self._keys.ended_tenants)
            if field.decode() not in kept
        ]
        for start in range(0, len(stray), _TENANT_BATCH):
            await self._client().hdel(
                self._keys.ended_tenants, *stray[start : start + _TENANT_BATCH]
            )

    async def forget_ended(self, run_ids: list[str]) -> None:
        """Takes runs whose logs are purged out of ``P:ended:tenants``, then ``P:ended``:
        retention never reads them again (a crash between the two leaves the run in
        ``P:ended``, whose next pass reads its tenant again and meets it purged). Harmless
        if one comes back (a sweep that met it in ``P:active``): the next pass meets it
        purged and takes it out again."""
        if run_ids:
            await self._client().hdel(self._keys.ended_tenants, *run_ids)
            await self._client().zrem(self._keys.ended, *run_ids)
