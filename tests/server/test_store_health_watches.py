"""When a store out of reach ends a replica's watch streams: a shared store (Redis) lost for
longer than the grace, at each such outage, and never for a blip, however long the server has
been up; a store of the server's own (SQLite with a full disk) never, there being no other
replica to resume on. The store and the run manager are the test's (only what health reads of
them), on a clock-free schedule: checks every 10 ms, a grace of 0.4 s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from runstream_server.api.introspection import HealthService
from runstream_server.store_health import StoreHealth

CHECKS, GRACE = 0.01, 0.4
LOST = "the store is out of this replica's reach; resume on another replica"


class Store:
    outage = "the store is unreachable"

    def __init__(self, shared: bool) -> None:
        self.shared, self.reachable = shared, True

    async def ping(self) -> bool:
        return self.reachable


class Runs:
    def __init__(self) -> None:
        self.told: list[str | None] = []  # each store_lost: why the watches end, None: back

    def store_lost(self, why: str | None) -> None:
        self.told.append(why)


@contextlib.asynccontextmanager
async def followed(store: Store) -> AsyncIterator[Runs]:
    runs = Runs()
    health = StoreHealth(HealthService(), ["runstream.v1.RunService"], store, runs)  # type: ignore[arg-type]
    following = asyncio.create_task(health.follow(interval=CHECKS, grace=GRACE))
    try:
        yield runs
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following


async def away(store: Store, seconds: float) -> None:
    store.reachable = False
    await asyncio.sleep(seconds)
    store.reachable = True
    await asyncio.sleep(20 * CHECKS)


async def test_a_shared_store_ends_the_watches_at_each_long_outage_and_never_at_a_blip() -> None:
    store = Store(shared=True)
    async with followed(store) as runs:
        await asyncio.sleep(2 * GRACE)  # up for longer than the grace
        await away(store, GRACE / 8)
        assert runs.told == []
        for _ in range(2):
            await away(store, 2 * GRACE)
        assert runs.told == [LOST, None, LOST, None]


async def test_a_store_of_the_servers_own_ends_no_watches() -> None:
    store = Store(shared=False)
    async with followed(store) as runs:
        await away(store, 2 * GRACE)
        assert runs.told == []
