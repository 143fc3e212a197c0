"""A workflow's history (what its estimates and stall checks learn from) costs the store a
few reads, whatever the store holds.

Found in review: each commit of a workflow not yet learned asked for its newest runs that
succeeded with a ListRuns filter, which Redis answers by reading every stored run's
snapshot until it finds enough (a new workflow, or one whose runs never succeed: all of
them); 16 runs of a new workflow starting together each read it, 64 s a commit at 106,000
stored runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from runstream.v1 import event_pb2, run_pb2
from runstream_server.api.run_service import frame_event
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import RunManager
from runstream_server.store import redis_index
from runstream_server.store.base import EventStore
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.sqlite import SqliteEventStore

from tests.conftest import RedisProcess, redis_store_url


def started() -> event_pb2.RunEvent:  # a new message each time: a commit stamps its events
    return event_pb2.RunEvent(run_started=event_pb2.RunStarted())


def completed() -> event_pb2.RunEvent:
    return event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())


class CountingHistoryReads:
    """A store that counts the reads of a workflow's history, either way it is asked."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        self.reads += 1
        await asyncio.sleep(0.05)  # a store that takes a moment: the others arrive meanwhile
        return await self.inner.succeeded_runs(tenant, workflow, limit)

    async def list_runs(self, run_filter: Any, page_size: int, cursor: Any) -> Any:
        if run_filter.statuses == {run_pb2.RUN_STATUS_SUCCEEDED}:
            self.reads += 1
            await asyncio.sleep(0.05)
        return await self.inner.list_runs(run_filter, page_size, cursor)


@contextlib.asynccontextmanager
async def counted_histories(
    tmp_path: Path, **policy: Any
) -> AsyncIterator[tuple[RunManager, CountingHistoryReads]]:
    """A RunManager over a SQLite store whose history reads are counted (`policy`: the
    InsightPolicy's settings)."""
    store = SqliteEventStore(tmp_path / "h.db")
    await store.open()
    counting = CountingHistoryReads(store)
    manager = RunManager(counting, policy=InsightPolicy(**policy), frame=frame_event)  # type: ignore[arg-type]
    try:
        yield manager, counting
    finally:
        manager.shutdown()
        await store.close()


async def create(manager: RunManager, workflow: str) -> str:
    run = await manager.create_run(
        run_id="", workflow=workflow, display_name="", labels={}, steps=[]
    )
    return run.run_id


async def test_runs_of_a_new_workflow_starting_together_read_its_history_once(
    tmp_path: Path,
) -> None:
    store = SqliteEventStore(tmp_path / "h.db")
    await store.open()
    counting = CountingHistoryReads(store)
    manager = RunManager(counting, frame=frame_event)  # type: ignore[arg-type]
    try:
        runs = await asyncio.gather(*(create(manager, "fresh") for _ in range(16)))
        await asyncio.gather(*(manager.append(run_id, [started()]) for run_id in runs))
        assert counting.reads == 1
    finally:
        manager.shutdown()
        await store.close()


async def test_histories_kept_are_bounded_the_least_recently_used_read_again(
    tmp_path: Path,
) -> None:
    """The scale review's finding 9: a process kept every workflow's history for ever
    (2,500 workflow names: 17 MB). Now `history_workflows` at most: with 2 kept, five
    workflows leave two, and the one dropped first is read again at its next commit."""
    async with counted_histories(tmp_path, history_workflows=2) as (manager, counting):
        for name in ("a", "b", "c", "d", "e"):
            await manager.append(await create(manager, name), [started()])
        assert counting.reads == 5
        assert len(manager._ledger.histories) == 2  # was 5: one per workflow, for ever
        await manager.append(await create(manager, "e"), [started()])  # held: no read
        assert counting.reads == 5
        await manager.append(await create(manager, "a"), [started()])
        assert counting.reads == 6


def dated(event: event_pb2.RunEvent, moment: datetime) -> event_pb2.RunEvent:
    event.event_time.FromDatetime(moment)
    return event


async def ran(manager: RunManager, seconds: float) -> None:
    """A run of the "timed" workflow that succeeded after `seconds`, ending now."""
    run_id = await create(manager, "timed")
    now = datetime.now(UTC)
    await manager.append(run_id, [dated(started(), now - timedelta(seconds=seconds))])
    await manager.append(run_id, [dated(completed(), now)])


async def test_a_history_read_from_the_store_lets_its_oldest_run_go_first(
    tmp_path: Path,
) -> None:
    """With a window of 2 runs, a process that read the 10 s and 20 s runs from the store
    and then saw a 40 s run succeed estimates from the 20 s and 40 s ones (30 s), as a
    process that saw all three would: the 10 s run, the oldest, left the window."""
    policy = InsightPolicy(history_runs=2)
    path = tmp_path / "h.db"
    for seconds in (10, 20):  # each by a process of its own
        store = SqliteEventStore(path)
        await store.open()
        manager = RunManager(store, policy=policy, frame=frame_event)
        await ran(manager, seconds)
        manager.shutdown()
        await store.close()
    store = SqliteEventStore(path)
    await store.open()
    manager = RunManager(store, policy=policy, frame=frame_event)
    try:
        await ran(manager, 40)  # its first event reads the history: the 10 s and 20 s runs
        run_id = await create(manager, "timed")
        await manager.append(run_id, [dated(started(), datetime.now(UTC))])
        remaining = (await manager.get_run(run_id)).estimate.remaining.ToNanoseconds() / 1e9
        assert 28 <= remaining <= 30, remaining  # not 25 s: the 10 s and 40 s runs
    finally:
        manager.shutdown()
        await store.close()


@pytest.fixture
async def redis_url(redis_server: RedisProcess, tmp_path: Path) -> str:
    return redis_store_url(redis_server, tmp_path)


@pytest.fixture
async def redis(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def snapshot_reads(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hget", {}).get("calls", 0))


@contextlib.asynccontextmanager
async def replica(url: str) -> AsyncIterator[tuple[RunManager, RedisEventStore]]:
    """A replica's RunManager on the store (a new process, as far as the store can tell)."""
    store = RedisEventStore(url)
    await store.open()
    manager = RunManager(store, frame=frame_event)
    try:
        yield manager, store
    finally:
        manager.shutdown()
        await store.close()


async def test_a_new_workflow_on_redis_reads_no_more_than_a_bounded_part_of_the_store(
    redis_url: str, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_index, "HISTORY_SCAN", 50, raising=False)
    async with replica(redis_url) as (manager, _):
        for _ in range(3):  # 150 runs of another workflow, none of "fresh"
            await asyncio.gather(*(create(manager, "busy") for _ in range(50)))
        before = await snapshot_reads(redis)
        run_id = await create(manager, "fresh")
        await manager.append(run_id, [started()])
        # A scan of every run read 150 snapshots and more; the history's fallback at most
        # the tenant's newest 50 (HISTORY_SCAN here), once.
        assert await snapshot_reads(redis) - before < 80


async def test_a_workflows_history_on_redis_includes_runs_that_succeeded_before_its_key(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """Runs that succeeded under an earlier release (no history key) are found once and
    entered; runs that succeed later are entered as they end."""
    async with replica(redis_url) as (manager, store):
        for _ in range(3):
            run_id = await create(manager, "nightly")
            await manager.append(run_id, [started()])
            await manager.append(run_id, [completed()])
        key = store._keys.succeeded("", "nightly")
        assert await redis.zcard(key) == 3
        await redis.delete(key)  # as an earlier release left the store
    for learned in (3, 4):  # found by looking once, then from the key
        async with replica(redis_url) as (manager, _):
            run_id = await create(manager, "nightly")
            await manager.append(run_id, [started()])
            assert (await manager.get_run(run_id)).estimate.history_runs == learned
            await manager.append(run_id, [completed()])
            assert await redis.zcard(key) == learned + 1
