"""The Redis store driven directly: its append script's checks, its reads of long logs, what
its purge frees, and the errors it does not take for an outage.

The script checks the head the writer expected, that a create finds no run, and that the
events' seqs follow the head, all before it writes anything: a script that fails halfway keeps
its earlier writes, so a refusal must leave the run exactly as it was. Through a server one
process folds each run's writes in order, so these refusals are reached only when replicas race
(or a writer's bookkeeping goes wrong); here the store is driven directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from runstream.v1 import run_pb2
from runstream_server.errors import AlreadyExists
from runstream_server.store.base import HeadMoved, StoredEvent
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.conftest import RedisProcess, redis_store_url


def _snapshot(run_id: str, last_seq: int) -> run_pb2.Run:
    run = run_pb2.Run(run_id=run_id, workflow="w", last_seq=last_seq)
    run.create_time.FromMicroseconds(1)
    return run


def _event(seq: int) -> StoredEvent:
    return StoredEvent(seq, 1, f"k{seq}", f"event {seq}".encode())


@pytest.fixture
async def store(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[RedisEventStore]:
    """A store with run "r" holding seqs 1 and 2."""
    store = RedisEventStore(redis_store_url(redis_server, tmp_path / "store"))
    await store.open()
    try:
        for seq in (1, 2):
            await store.append("r", [_event(seq)], _snapshot("r", seq), expected_seq=seq - 1)
        yield store
    finally:
        await store.close()


async def _unchanged(store: RedisEventStore) -> None:
    """Run "r" as the fixture left it: head 2, its snapshot's, and a log of seqs 1 and 2."""
    assert await store.heads(["r"]) == {"r": 2}
    run = await store.load_run("r")
    assert run is not None and run.last_seq == 2
    assert [e.seq for e in await store.read_events("r", 0, 10)] == [1, 2]
    assert await store.find_keys("r", ["k3", "k4"]) == {}


async def test_a_write_expecting_an_older_head_is_refused_naming_the_head(
    store: RedisEventStore,
) -> None:
    """A replica that folded the run at seq 1 while the other stored seq 2: its write is
    refused with the head there is (ABORTED: reload and retry), and stores nothing."""
    other = StoredEvent(2, 1, "", b"another seq 2")  # no key: the key check is not the catch
    with pytest.raises(HeadMoved) as moved:
        await store.append("r", [other], _snapshot("r", 2), expected_seq=1)
    assert moved.value.actual == 2
    await _unchanged(store)


async def test_a_create_of_a_stored_run_is_refused_and_leaves_it_as_it_was(
    store: RedisEventStore,
) -> None:
    """Two replicas creating one run id: the second create is refused, not stored over the
    first run's head and snapshot."""
    with pytest.raises(AlreadyExists):
        await store.append("r", [_event(1)], _snapshot("r", 1), expected_seq=0)
    await _unchanged(store)


async def test_events_whose_seqs_do_not_follow_the_head_are_refused_before_any_write(
    store: RedisEventStore,
) -> None:
    """Seqs that skip one, or repeat one, are refused as a moved head, and nothing of the
    batch is kept: not the events before the bad seq (XADD would have refused the repeat
    only after storing the first), nor their idempotency keys."""
    with pytest.raises(HeadMoved):
        await store.append("r", [_event(4)], _snapshot("r", 4), expected_seq=2)
    with pytest.raises(HeadMoved):
        await store.append("r", [_event(3), _event(3)], _snapshot("r", 4), expected_seq=2)
    await _unchanged(store)


async def _long_log(store: RedisEventStore, run_id: str, events: int) -> None:
    """`run_id` with `events` events, kinds 1 and 2 in turn, in batches of 100."""
    for first in range(1, events + 1, 100):
        batch = [
            StoredEvent(seq, 1 + seq % 2, "", f"event {seq}".encode())
            for seq in range(first, min(first + 100, events + 1))
        ]
        last = batch[-1].seq
        await store.append(run_id, batch, _snapshot(run_id, last), expected_seq=first - 1)


async def test_reads_across_pages_of_a_long_log_give_each_event_once(
    store: RedisEventStore,
) -> None:
    """The store reads a log 1,000 entries per round trip: a read that crosses pages, oldest
    or newest first, every kind or one, gives every event once, in order, and no more events
    than asked for."""
    await _long_log(store, "long", 2500)
    every = list(range(1, 2501))
    assert [e.seq for e in await store.read_events("long", 0, 2500)] == every
    newest = await store.read_events_before("long", None, 2500)
    assert [e.seq for e in newest] == every[::-1]
    evens = [seq for seq in every if seq % 2 == 0]
    assert [e.seq for e in await store.read_events("long", 0, 2500, [1])] == evens
    newest_evens = await store.read_events_before("long", None, 2500, [1])
    assert [e.seq for e in newest_evens] == evens[::-1]
    for limit in (1, 999, 1001):
        assert [e.seq for e in await store.read_events("long", 0, limit)] == every[:limit]
        newest_few = await store.read_events_before("long", None, limit)
        assert [e.seq for e in newest_few] == every[::-1][:limit]
        assert [e.seq for e in await store.read_events("long", 0, limit, [1])] == evens[:limit]
        newest_few = await store.read_events_before("long", None, limit, [1])
        assert [e.seq for e in newest_few] == evens[::-1][:limit]


async def test_a_purge_frees_the_runs_log_and_its_idempotency_keys(
    store: RedisEventStore, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Retention frees what an ended run's log held: the stream and the hash of its
    idempotency keys (as large as the log, for a producer that keys every event), not the
    stream alone; the snapshot stays, naming the purge."""
    ended = _snapshot("r", 3)
    ended.status = run_pb2.RUN_STATUS_SUCCEEDED
    ended.end_time.FromMicroseconds(2)
    await store.append("r", [_event(3)], ended, expected_seq=2)
    assert await store.purge_events(ended_before_us=None, keep_newest=0) == ["r"]
    assert await store.find_keys("r", ["k1", "k2", "k3"]) == {}
    url = parse_url(redis_store_url(redis_server, tmp_path / "store"))
    client = aioredis.from_url(url.url)
    try:
        meta, log, keys = RedisKeys(url.prefix).run("r")
        assert await client.exists(log, keys) == 0
        assert await client.exists(meta) == 1
    finally:
        await client.aclose()
    run = await store.load_run("r")
    assert run is not None and run.purged_seq == 3


@pytest.mark.parametrize("error", [AttributeError, RuntimeError])
async def test_a_bug_of_ours_in_a_store_read_is_raised_as_it_is_not_called_an_outage(
    store: RedisEventStore, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """The errors redis-py raises when a connection closes under a command are UNAVAILABLE
    (retried); the same errors raised by Runstream's own code are bugs, and stay so: taken
    for an outage, they would be retried for ever and reported as Redis being away."""

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise error("a bug of ours")

    monkeypatch.setattr(store._log, "read", broken)
    with pytest.raises(error, match="a bug of ours"):
        await store.read_events("r", 0, 10)
