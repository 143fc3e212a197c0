"""The shared clock's sync (Redis TIME every 30 s): a read the store refused keeps the last
offset quietly, since the store's own calls say it is out of reach; a bug in the read is an
ERROR with its traceback, since the offset then stays stuck with no one told."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from runstream_server.errors import Unavailable
from runstream_server.store import clock
from runstream_server.store.clock import StoreClock

from tests.clients.support import eventually


@pytest.mark.parametrize("bug", [False, True], ids=["store error", "bug"])
async def test_a_failed_clock_read_is_an_error_only_when_a_bug_failed_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, bug: bool
) -> None:
    reads = 0

    async def read() -> float:
        nonlocal reads
        reads += 1
        if bug:
            raise TypeError("a bug in reading the clock")
        raise Unavailable("the Redis store is unreachable (ConnectionError)")

    monkeypatch.setattr(clock, "SYNC_INTERVAL", 0.01)
    caplog.set_level(logging.DEBUG, "runstream.store")
    syncing = asyncio.create_task(StoreClock(read).run_forever())
    try:
        await eventually(lambda: reads >= 3)  # it goes on after a failure
    finally:
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if bug:
        assert errors and errors[0].exc_info is not None
        assert "a bug in reading the clock" in str(errors[0].exc_info[1])
    else:
        assert not errors
        assert any(r.levelno == logging.DEBUG for r in caplog.records)


async def test_a_store_farther_away_than_a_quick_trip_still_moves_the_offset() -> None:
    """Reads whose trips took over 0.2 s were taken again, then the offset was held: a Redis
    that far away (another region, TLS through a proxy) kept its first offset for ever, the
    server's clock drifting unsaid (found in review). Its trips are compared with its own."""
    ahead = 5.0

    async def far_read() -> float:
        await asyncio.sleep(0.15)
        shared = time.time() + ahead
        await asyncio.sleep(0.15)
        return shared

    shared_clock = StoreClock(far_read)
    await shared_clock.sync()
    assert shared_clock.offset == pytest.approx(5.0, abs=0.1)
    ahead = 6.0  # the server's clock fell behind
    await shared_clock.sync()
    assert shared_clock.offset == pytest.approx(6.0, abs=0.1)
