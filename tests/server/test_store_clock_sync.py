"""The shared clock's sync as an operator sees it: a read the store answered late is read
again within the same sync, so that the store's clock moving is followed at once; and a
server's clock off the store's is warned of once, and its return said, not every 30 s."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from runstream_server.store.clock import StoreClock


class StoresClock:
    """The store's clock, `ahead` of this server's, read in the round trips `trips` lists
    (seconds, one per read; then 0)."""

    def __init__(self) -> None:
        self.ahead = 0.0
        self.trips: list[float] = []

    async def read(self) -> float:
        trip = self.trips.pop(0) if self.trips else 0.0
        await asyncio.sleep(trip / 2)
        shared = time.time() + self.ahead
        await asyncio.sleep(trip / 2)
        return shared


async def test_a_sync_whose_first_read_came_late_takes_the_offset_of_a_quick_one() -> None:
    store = StoresClock()
    shared_clock = StoreClock(store.read)
    await shared_clock.sync()
    assert shared_clock.offset == pytest.approx(0.0, abs=0.05)
    store.ahead, store.trips = 5.0, [0.5]  # the store's clock moved; its first answer late
    await shared_clock.sync()
    assert shared_clock.offset == pytest.approx(5.0, abs=0.05)


async def test_a_clock_off_the_stores_is_warned_of_once_and_its_return_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "runstream.store")
    store = StoresClock()
    shared_clock = StoreClock(store.read)
    store.ahead = -5.0  # this server's clock 5 s ahead
    for _ in range(3):
        await shared_clock.sync()
    store.ahead = 0.0
    await shared_clock.sync()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        (
            "WARNING",
            "this server's clock is +5.0s off the store's (Redis TIME); times are taken from "
            "the store's clock, but check this machine's time sync (NTP)",
        ),
        ("INFO", "this server's clock is back within 1s of the store's"),
    ]


async def test_every_reading_of_the_shared_clock_is_the_stores() -> None:
    """Now as a datetime, in seconds and in microseconds (what the Redis indexes stamp runs
    moved on): each by the store's clock, 5 s ahead of this server's."""
    store = StoresClock()
    store.ahead = 5.0
    shared_clock = StoreClock(store.read)
    await shared_clock.sync()
    now = time.time() + 5.0
    assert shared_clock().timestamp() == pytest.approx(now, abs=0.05)
    assert shared_clock.time() == pytest.approx(now, abs=0.05)
    assert shared_clock.time_us() / 1e6 == pytest.approx(now, abs=0.05)
