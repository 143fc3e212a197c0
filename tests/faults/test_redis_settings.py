"""Redis's own settings, checked as the Redis store opens: on every master of a cluster, and
said to be unchecked, rather than passed over, where Redis will not show them (review 61,
findings 1 and 3: a Redis that evicts keys, has AOF off or too few replicas for `?wait=N`
was taken without a word). What `runstream serve` prints: tests/e2e/test_serve_redis.py.

Real redis-server processes: a cluster of three masters, and a Redis of its own whose ACL
refuses INFO to the server's user."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import runstream
from runstream_server.store.base import StoreUnusable
from runstream_server.store.redis import RedisEventStore

from tests.conftest import RedisProcess, redis_cli, redis_cluster, redis_store_url, serving_on


async def opened(url: str) -> str:
    """Opens the Redis store at `url` and closes it; what it found keeps its events across a
    restart of Redis, as the server's startup line says it."""
    store = RedisEventStore(url)
    await store.open()
    await store.close()
    return store.persistence


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_every_master_of_a_cluster_is_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runstream.store.redis")
    with redis_cluster(tmp_path) as nodes:
        first, second, third = (f"127.0.0.1:{node.port}" for node in nodes)
        url = f"{nodes[0].url}?cluster=1&prefix=settings"
        # No master has a replica: wait=1 is short on each, said for each.
        assert await opened(f"{url}&wait=1") == "AOF on"
        assert warnings(caplog) == [
            f"the Redis store {url}&wait=1 has fewer replicas than ?wait=1 asks for "
            f"(connected: 0 on {first}, 0 on {second}, 0 on {third}): writes are answered "
            "UNAVAILABLE until enough connect; check wait= and the replicas"
        ]
        caplog.clear()
        # AOF off on one master, not the one the URL names: warned, naming it.
        redis_cli("-p", str(nodes[2].port), "config", "set", "appendonly", "no")
        persistence = await opened(url)
        assert persistence == f"AOF off on {third}: a restart of Redis keeps only its last RDB save"
        assert warnings(caplog) == [
            f"the Redis store {url} runs with appendonly no on {third}: a restart of Redis "
            "loses every event it acknowledged since its last RDB save; set appendonly yes "
            "(CONFIG SET, and in redis.conf)"
        ]
        # An evicting policy on another master: refused, naming it.
        redis_cli("-p", str(nodes[1].port), "config", "set", "maxmemory-policy", "allkeys-lfu")
        with pytest.raises(StoreUnusable) as refused:
            await opened(url)
    assert str(refused.value) == (
        f"the Redis store {url} evicts keys when its memory is full (maxmemory-policy "
        f"allkeys-lfu on {second}), which would delete events this server acknowledged as "
        "stored: set maxmemory-policy noeviction (CONFIG SET, and in redis.conf or the "
        "provider's settings)"
    )


async def test_settings_redis_will_not_show_are_said_to_be_unchecked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user refused INFO (or a managed Redis that hides it) cannot be checked: the store
    still opens, and says what it could not check and what Redis needs."""
    caplog.set_level(logging.WARNING, logger="runstream.store.redis")
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        user, password = f"u{secrets.token_hex(4)}", secrets.token_hex(12)
        async with aioredis.from_url(redis.url) as admin:
            await admin.execute_command(
                "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-info"
            )
        url = f"redis://{user}:{password}@127.0.0.1:{redis.port}/0?prefix=hidden&wait=2"
        assert await opened(url) == "AOF unchecked"
    finally:
        redis.stop()
    shown = f"redis://{user}:***@127.0.0.1:{redis.port}/0?prefix=hidden&wait=2"
    assert warnings(caplog) == [
        f"could not check the maxmemory-policy, appendonly and replicas of the Redis store "
        f"{shown} (INFO memory refused: this user has no permissions to run the 'info' "
        "command): make sure it runs with maxmemory-policy noeviction, appendonly yes and 2 "
        "connected replicas"
    ]
    assert password not in caplog.text


async def test_no_record_log_or_index_of_the_store_has_a_ttl(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """What makes the volatile-* policies safe, which the start check accepts: they evict
    only keys with a TTL, and only a replica's shared counts have one."""
    url = redis_store_url(redis_server, tmp_path)
    async with serving_on(url, tmp_path) as server, runstream.connect(server.target) as sdk:
        run = await sdk.start_run("wf", steps=["a"], labels={"team": "x"})
        async with run:
            async with run.step("a") as step:
                await step.progress(0.5)
                await step.metrics({"loss": 0.1})
            await run.complete()
    prefix = url.rpartition("prefix=")[2]
    async with aioredis.from_url(redis_server.url) as client:
        keys = [key.decode() async for key in client.scan_iter(f"{prefix}:*")]
        with_ttl = [key for key in keys if await client.pttl(key) >= 0]
    assert f"{prefix}:{{{run.run_id}}}:log" in keys and len(keys) > 5, keys
    assert [k for k in with_ttl if not k.endswith((":viewers", ":limits:usage"))] == []


async def test_a_redis_still_loading_its_data_is_checked_once_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Restarted with a million keys to load, Redis 7.0 says aof_enabled:0 until the load
    ends: the check after the outage warned "appendonly no" of a Redis with AOF on, on every
    replica at every such restart (found by a soak). It waits for the load instead."""
    redis = RedisProcess(tmp_path / "redis", "--enable-debug-command", "yes")
    redis.start()
    store = RedisEventStore(redis_store_url(redis, tmp_path / "store"))
    try:
        await store.open()
        redis_cli("-p", str(redis.port), "debug", "populate", "1000000", "ballast")
        redis_cli("-p", str(redis.port), "bgrewriteaof")  # the keys, in the AOF the load reads
        await until_said(redis, "aof_rewrite_in_progress:0")
        redis.stop()
        caplog.set_level(logging.WARNING, logger="runstream.store.redis")
        starting = asyncio.create_task(asyncio.to_thread(redis.start))  # returns once loaded
        await until_said(redis, "loading:1")
        await store._settings_again()
        await starting
        assert store.persistence == "AOF on"
        assert warnings(caplog) == []
    finally:
        await store.close()
        redis.stop()


async def until_said(redis: RedisProcess, line: str) -> None:
    """Until Redis's INFO persistence has `line` (a Redis not listening yet has none)."""
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(subprocess.CalledProcessError):
                if line in redis_cli("-p", str(redis.port), "info", "persistence"):
                    return
            await asyncio.sleep(0.01)
