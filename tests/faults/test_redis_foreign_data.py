"""A Redis this server can reach but not work with is refused at start, in one line; a run
whose record is not Runstream's is that run's problem alone (found in review: a 50-line
WRONGTYPE traceback at start; a user without scripts or pub/sub started SERVING, then every
write answered INTERNAL, and the log said the notice subscription was back every 0.5 s
though Redis had refused it)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import runstream

from tests.conftest import RedisProcess, serving_on
from tests.faults.storage import serve_refuses


def prefixed(redis: RedisProcess, prefix: str, user: str = "") -> str:
    base = redis.url if not user else redis.url.replace("redis://", f"redis://{user}@")
    return f"{base}?prefix={prefix}"


@pytest.fixture
async def client(redis_server: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(redis_server.url)
    try:
        yield redis
    finally:
        await redis.aclose()


def assert_one_line(stderr: str, *words: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runstream: "), stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("key", "kind"), [("runs", "string"), ("active", "hash"), ("limits:usage", "list")]
)
async def test_keys_of_another_program_under_the_prefix_are_refused_in_one_line(
    client: aioredis.Redis, redis_server: RedisProcess, key: str, kind: str
) -> None:
    prefix = f"foreign{secrets.token_hex(4)}"
    if kind == "string":
        await client.set(f"{prefix}:{key}", "x")
    elif kind == "hash":
        await client.hset(f"{prefix}:{key}", "a", "b")
    else:
        await client.rpush(f"{prefix}:{key}", "x")
    refusal = await asyncio.to_thread(serve_refuses, prefixed(redis_server, prefix))
    assert refusal.returncode == 1
    assert_one_line(refusal.stderr, f"{prefix}:{key} holds a {kind}", "?prefix=")


@pytest.mark.parametrize("taken", ["@scripting", "@pubsub"])
async def test_a_user_without_scripts_or_pub_sub_is_refused_in_one_line(
    client: aioredis.Redis, redis_server: RedisProcess, taken: str
) -> None:
    user, password = f"u{secrets.token_hex(4)}", secrets.token_hex(12)
    await client.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", f"-{taken}"
    )
    try:
        url = prefixed(redis_server, f"acl{secrets.token_hex(4)}", f"{user}:{password}")
        refusal = await asyncio.to_thread(serve_refuses, url)
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    assert refusal.returncode == 1
    assert_one_line(
        refusal.stderr, "refuses this server's user", "and scripts, PUBLISH and SUBSCRIBE on"
    )
    assert password not in refusal.stderr


async def least_privileged(client: aioredis.Redis) -> tuple[str, str, str]:
    """A user of the README's least-privilege line: its prefix's keys and database 0's notice
    channel; its name, password and prefix."""
    user, password = f"u{secrets.token_hex(4)}", secrets.token_hex(12)
    prefix = f"lp{secrets.token_hex(4)}"
    await client.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", f"~{prefix}:*", "resetchannels",
        f"&{prefix}:commits", "+@all",
    )  # fmt: skip
    return user, password, prefix


async def test_a_user_allowed_only_runstreams_own_keys_and_channel_is_served(
    client: aioredis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """A least-privilege user (its prefix's keys, its notice channel) works; the start check
    published on a channel of its own and refused it with a traceback (found in review)."""
    user, password, prefix = await least_privileged(client)
    try:
        url = prefixed(redis_server, prefix, f"{user}:{password}")
        async with serving_on(url, tmp_path) as server, runstream.connect(server.target) as sdk:
            run = await sdk.start_run("wf", steps=["a"])
            async with run:
                async with run.step("a"):
                    pass
                await run.complete()
            assert (await sdk.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED
        # Without its channel, every write would fail: refused at start, in one line.
        await client.execute_command("ACL", "SETUSER", user, "resetchannels")
        refusal = await asyncio.to_thread(serve_refuses, url)
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    assert refusal.returncode == 1
    assert_one_line(refusal.stderr, "refuses this server's user", "can't publish to the channel")
    assert f"SUBSCRIBE on &{prefix}:commits)" in refusal.stderr  # what to grant
    assert f"every command on ~{prefix}:*" in refusal.stderr
    assert password not in refusal.stderr


async def test_a_user_refused_info_is_served(
    client: aioredis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """INFO tells whether the URL names a node of a cluster; a user the ACL refuses it is
    served all the same (a key's MOVED reply would tell a cluster instead)."""
    user, password = f"u{secrets.token_hex(4)}", secrets.token_hex(12)
    await client.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-info"
    )
    try:
        url = prefixed(redis_server, f"ni{secrets.token_hex(4)}", f"{user}:{password}")
        async with serving_on(url, tmp_path) as server, runstream.connect(server.target) as sdk:
            run = await sdk.start_run("wf")
            async with run:
                await run.complete()
            assert (await sdk.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED
    finally:
        await client.execute_command("ACL", "DELUSER", user)


async def test_rights_taken_away_while_serving_are_named_with_what_to_give_back(
    client: aioredis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    """Writes refused at run time (an operator took -@write) said "an operator must grant it
    scripts and pub/sub", rights it still had (found in review)."""
    user, password, prefix = await least_privileged(client)
    try:
        url = prefixed(redis_server, prefix, f"{user}:{password}")
        async with (
            serving_on(url, tmp_path) as server,
            runstream.connect(server.target, reconnect_timeout=1) as sdk,
        ):
            await sdk.start_run("wf")
            await client.execute_command("ACL", "SETUSER", user, "-@write")
            with pytest.raises(runstream.UnavailableError) as refused:
                await sdk.start_run("wf")
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    said = refused.value.message
    assert "refuses this server's user" in said, said
    assert f"must give it back every command on ~{prefix}:* and its notice channel" in said
    assert password not in said


async def test_the_refusal_of_a_user_on_another_database_names_that_databases_channel(
    client: aioredis.Redis, redis_server: RedisProcess
) -> None:
    """The README's least-privilege line grants `&PREFIX:commits`, database 0's channel; on
    database 1 the store publishes on `PREFIX:db1:commits`, and the refusal named neither
    (found in review)."""
    user, password, prefix = await least_privileged(client)
    try:
        url = prefixed(redis_server, prefix, f"{user}:{password}").replace("/0?", "/1?")
        assert "/1?" in url
        refusal = await asyncio.to_thread(serve_refuses, url)
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    assert refusal.returncode == 1
    assert f"SUBSCRIBE on &{prefix}:db1:commits)" in refusal.stderr, refusal.stderr


async def test_a_run_whose_record_is_another_programs_answers_data_loss(
    client: aioredis.Redis, redis_server: RedisProcess, tmp_path: Path
) -> None:
    url = prefixed(redis_server, f"wrongtype{secrets.token_hex(4)}")
    async with serving_on(url, tmp_path) as server, runstream.connect(server.target) as sdk:
        good = await sdk.start_run("wf")
        await good.close()
        ghost = await sdk.start_run("wf")
        await ghost.close()
    prefix = url.rpartition("prefix=")[2]
    meta = f"{prefix}:{{{ghost.run_id}}}:meta"
    await client.delete(meta)
    await client.set(meta, "another program's")
    async with serving_on(url, tmp_path) as server, runstream.connect(server.target) as sdk:
        assert [run.run_id async for run in sdk.list_runs()] == [good.run_id]
        with pytest.raises(runstream.DataLossError, match="WRONGTYPE"):
            await sdk.get_run(ghost.run_id)


async def test_the_notice_subscription_is_back_only_once_redis_confirms_it(
    client: aioredis.Redis,
    redis_server: RedisProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = f"u{secrets.token_hex(4)}", secrets.token_hex(12)
    await client.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    url = prefixed(redis_server, f"sub{secrets.token_hex(4)}", f"{user}:{password}")
    caplog.set_level(logging.INFO, logger="runstream.store.redis")
    try:
        async with serving_on(url, tmp_path):
            # Its subscription is cut, and subscribing is refused from now on.
            await client.execute_command("ACL", "SETUSER", user, "-@pubsub")
            await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            for _ in range(100):
                if "lost the Redis notice subscription" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "lost the Redis notice subscription" in caplog.text
            await asyncio.sleep(2)  # attempts at 0.5, 1 and 2 s: each refused
            assert "subscription is back" not in caplog.text  # it said so at every attempt
            await client.execute_command("ACL", "SETUSER", user, "+@pubsub")
            for _ in range(200):
                if "subscription is back" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert caplog.text.count("subscription is back") == 1
    finally:
        await client.execute_command("ACL", "DELUSER", user)
    assert password not in caplog.text
