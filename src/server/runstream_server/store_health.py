"""Readiness follows the store: grpc.health.v1 says NOT_SERVING while the store cannot serve,
and a shared store out of reach for long also ends the replica's watch streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from grpc_health.v1 import health_pb2

from runstream_server.api.introspection import HealthService
from runstream_server.background import spawn_logged
from runstream_server.domain.runs import RunManager
from runstream_server.store.base import EventStore

log = logging.getLogger("runstream.server")

STORE_LOST_GRACE = 5.0
"""Seconds a shared store may be out of a replica's reach before its watch streams end (a blip
ends none)."""


class StoreHealth:
    """The readiness of `names` (and the overall "") in `health`, kept to what `store` can
    do; `runs`: the watch streams to end when a shared store is lost."""

    def __init__(
        self,
        health: HealthService,
        names: Sequence[str],
        store: EventStore,
        runs: RunManager | None,
    ) -> None:
        self._health = health
        self._names = ("", *names)
        self._store = store
        self._runs = runs

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._names:
            await self._health.set(name, status)

    async def follow(self, interval: float = 0.5, grace: float = STORE_LOST_GRACE) -> None:
        """Health follows the store: NOT_SERVING while it is unreachable (a shared store) or
        cannot take writes (a full disk under the SQLite file), so load balancers send
        clients to a replica that can serve them. A shared store out of reach for `grace`
        seconds also ends this replica's watch streams (UNAVAILABLE), so that their watchers
        resume on a replica that hears the others' events: health protects new clients only."""
        store, runs = self._store, self._runs
        serving, streams_ended = True, False
        loop = asyncio.get_running_loop()
        lost_at = loop.time()
        while True:
            await asyncio.sleep(interval)
            reachable = await store.ping()
            if reachable != serving:
                serving = reachable
                if reachable:  # the end of an outage is news, not a warning
                    log.info("store reachable again" if store.shared else "store serving again")
                else:
                    # Once per outage, in the store's words: a full disk or a damaged file
                    # under SQLite is no Redis out of reach (the store's ERROR says more).
                    log.warning("store not serving: %s", store.outage)
                    lost_at = loop.time()
                await self.set_serving(serving)
            if runs is None or not store.shared or serving != streams_ended:
                continue
            if serving:
                runs.store_lost(None)
                streams_ended = False
            elif loop.time() - lost_at >= grace:
                log.warning("store out of reach for %gs: ending this replica's watches", grace)
                runs.store_lost(
                    "the store is out of this replica's reach; resume on another replica"
                )
                streams_ended = True

    def unfollowed(self, _: BaseException) -> None:
        """Health no longer follows the store (its watcher died, which is logged): a server
        that cannot tell whether it can serve says it cannot, rather than the last SERVING."""
        spawn_logged(self.set_serving(False), "runstream-store-health-lost")
