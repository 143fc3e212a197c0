"""A run whose stored snapshot cannot be read (a disk fault, another program writing under
Runstream's keys) is that run's problem alone: the server starts, lists and counts the other
runs, and answers DATA_LOSS naming the run for the damaged one (found in review: the start
died with a DecodeError traceback, and on Redis every ListRuns answered INTERNAL)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import runstream
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.conftest import ConfigFactory

DAMAGED = b"\xff\xff\xff garbage"


async def damage(config: ServerConfig, run_id: str) -> None:
    """Overwrites `run_id`'s stored snapshot with bytes that do not decode."""
    if config.store_url:
        url = parse_url(config.store_url)
        client = aioredis.from_url(url.url)
        try:
            assert await client.hset(RedisKeys(url.prefix).meta(run_id), "snap", DAMAGED) == 0
        finally:
            await client.aclose()
        return
    conn = sqlite3.connect(config.store_path)
    with conn:
        changed = conn.execute(
            "UPDATE runs SET snapshot = ? WHERE run_id = ?", (DAMAGED, run_id)
        ).rowcount
    conn.close()
    assert changed == 1


async def test_a_damaged_run_answers_data_loss_and_leaves_the_others_served(
    tmp_path: Path, server_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config = server_config(tmp_path / "runstream.db")
    first = RunstreamServer(config)
    await first.start()
    try:
        async with runstream.connect(first.target) as client:
            good = await client.start_run("wf", steps=["a"])
            await good.close()
            bad = await client.start_run("wf", steps=["a"])
            await bad.close()
    finally:
        await first.stop(grace=0.5)
    await damage(config, bad.run_id)

    second = RunstreamServer(config)
    await second.start()  # it died here with a DecodeError traceback
    try:
        async with runstream.connect(second.target) as client:
            listed = [run.run_id async for run in client.list_runs()]
            assert listed == [good.run_id]
            assert (await client.get_run(good.run_id)).run_id == good.run_id
            for call in (
                lambda: client.get_run(bad.run_id),
                lambda: client.list_steps(bad.run_id),
                lambda: client.list_events_page(bad.run_id),
                lambda: client.cancel_run(bad.run_id, reason="stop"),
            ):
                with pytest.raises(runstream.DataLossError) as lost:
                    await call()
                assert f"run {bad.run_id}: its stored snapshot cannot be read" in str(lost.value)
            with pytest.raises(runstream.DataLossError):
                async for _ in client.watch(bad.run_id):
                    pass
            # Still served after all that: nothing of the damage stuck to the good run.
            assert [run.run_id async for run in client.list_runs()] == [good.run_id]
            # A page of damaged runs alone (the newest run is the damaged one) still leads on
            # to the next: it ended the listing there, with no next page.
            assert [run.run_id async for run in client.list_runs(page_size=1)] == [good.run_id]
    finally:
        await second.stop(grace=0.5)
    # The store says which run it left out, once, as an ERROR (the API's rejection log
    # also names each refused call, at its own level).
    damaged = [
        r for r in caplog.records if r.name == "runstream.store" and r.levelno >= logging.WARNING
    ]  # (the first start's INFO says it created the store)
    assert [r.levelno for r in damaged] == [logging.ERROR]
    assert bad.run_id in damaged[0].getMessage()
    # And no WARNING per call on it (found in review: a viewer polling the run every half
    # second wrote 60 lines in 30 s, for as long as anyone polled).
    per_call = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "DATA_LOSS" in r.getMessage()
    ]
    assert per_call == [], per_call
