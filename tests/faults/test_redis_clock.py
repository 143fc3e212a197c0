"""The shared clock read from a Redis that answered late: frozen (SIGSTOP) while a replica read
its TIME, it answered as it woke, and the midpoint of that long round trip set the replica's
clock seconds ahead of the others' for the 30 s until the next sync, so its decisions' deadlines
fired late and it warned to "check NTP" on a machine whose clocks agreed (found by a soak)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runstream_server.store.redis import RedisEventStore

from tests.conftest import RedisProcess, redis_store_url


@pytest.fixture
async def frozen_at_will(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, RedisEventStore]]:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    store = RedisEventStore(redis_store_url(redis, tmp_path / "store"))
    try:
        await store.open()
        yield redis, store
    finally:
        await store.close()
        redis.stop()


async def test_a_clock_read_that_redis_answered_late_is_read_again(
    frozen_at_will: tuple[RedisProcess, RedisEventStore], caplog: pytest.LogCaptureFixture
) -> None:
    redis, store = frozen_at_will
    assert redis.process is not None
    assert abs(store.clock.offset) < 0.5  # one machine: one clock
    caplog.set_level(logging.WARNING, "runstream.store")
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        syncing = asyncio.create_task(store.clock.sync())
        await asyncio.sleep(3)
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    await syncing
    assert abs(store.clock.offset) < 0.5  # 1.5 s ahead, by the late answer
    assert not [r for r in caplog.records if "clock" in r.getMessage()]
