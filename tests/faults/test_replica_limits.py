"""Per-principal limits across replicas: a principal's watch streams and appended events count
on every replica of a shared store, not on each alone.

Two real grpc.aio servers with auth on one real redis-server, exchanging usage every 50 ms.
Before the limits were shared, each replica gave a principal its full allowance: N replicas,
N times the limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.exceptions
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.auth.limits import CallerLimits
from runstream_server.store import redis_usage

from tests.clients.support import eventually
from tests.conftest import RedisProcess, redis_store_url, serving_on
from tests.identity import Keys, rs256_auth
from tests.server.support import Caller, custom, opened, retry_info

LIMITS = CallerLimits(
    watch_streams_per_principal=2,
    append_events_per_second=0.2,  # hardly refills while the test runs
    append_burst=10,
    share_interval=0.05,
)


@pytest.fixture
async def replicas(
    tmp_path: Path, redis_server: RedisProcess, keys: Keys
) -> AsyncIterator[tuple[str, str]]:
    url = redis_store_url(redis_server, tmp_path)
    security = dataclasses.replace(rs256_auth(keys), limits=LIMITS)
    async with (
        serving_on(url, tmp_path / "a", security=security) as a,
        serving_on(url, tmp_path / "b", security=security) as b,
    ):
        yield a.target, b.target


@pytest.fixture
async def callers(replicas: tuple[str, str], keys: Keys) -> AsyncIterator[dict[str, Caller]]:
    a, b = replicas
    alice = keys.token(["viewer"], sub="alice")
    bot = keys.token(["producer", "viewer"], sub="bot")
    everyone = {
        "alice on a": Caller(a, alice),
        "alice on b": Caller(b, alice),
        "bob on b": Caller(b, keys.token(["viewer"], sub="bob")),
        "bot on a": Caller(a, bot),
        "bot on b": Caller(b, bot),
    }
    try:
        yield everyone
    finally:
        for caller in everyone.values():
            await caller.channel.close()


async def _refused_within(open_one: Any, seconds: float = 10.0) -> grpc.aio.AioRpcError:
    """Opens streams until one is refused (the replica learns the other's count within an
    exchange or two); each one that opens is closed again."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        stream = open_one()
        try:
            await opened(stream)
        except grpc.aio.AioRpcError as exc:
            return exc
        stream.cancel()
        await asyncio.sleep(0.05)
    raise AssertionError(f"no stream refused within {seconds:g}s")


async def _opened_within(open_one: Any, seconds: float = 10.0) -> None:
    """Opens a stream, again while it is refused for the limit, until one opens."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            await opened(open_one())
            return
        except grpc.aio.AioRpcError as still:
            assert still.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, still.details()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still refused after {seconds:g}s") from None
            await asyncio.sleep(0.05)


async def test_a_principals_watch_streams_count_on_every_replica(
    callers: dict[str, Caller],
) -> None:
    on_a, on_b = callers["alice on a"], callers["alice on b"]
    first = on_a.runs.WatchRuns(rs.WatchRunsRequest())
    second = on_b.runs.WatchRuns(rs.WatchRunsRequest())
    await opened(first)
    await opened(second)
    # One open on each replica: the limit of 2 is reached, on B as on A.
    exc = await _refused_within(lambda: on_b.runs.WatchRuns(rs.WatchRunsRequest()))
    assert "2 watch streams are open for alice" in (exc.details() or "")
    assert retry_info(exc) > 0
    exc = await _refused_within(lambda: on_a.runs.WatchRuns(rs.WatchRunsRequest()))
    assert "2 watch streams are open for alice" in (exc.details() or "")
    await opened(callers["bob on b"].runs.WatchRuns(rs.WatchRunsRequest()))  # unaffected
    # Closing the stream on A frees a place on B once B hears of it.
    first.cancel()
    await _opened_within(lambda: on_b.runs.WatchRuns(rs.WatchRunsRequest()))
    second.cancel()


async def test_a_producers_appends_count_on_every_replica(callers: dict[str, Caller]) -> None:
    on_a, on_b = callers["bot on a"], callers["bot on b"]
    run_id = (await on_a.runs.CreateRun(rs.CreateRunRequest(workflow="limits"))).run.run_id
    burst = [custom(i) for i in range(LIMITS.append_burst)]
    await on_a.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=burst))
    # A took the whole burst; B refuses once it learns so, instead of granting a second one.
    accepted = 0
    for i in range(200):
        try:
            await on_b.report.AppendEvents(
                rp.AppendEventsRequest(run_id=run_id, events=[custom(100 + i)])
            )
        except grpc.aio.AioRpcError as exc:
            assert retry_info(exc) > 0
            break
        accepted += 1
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("B never refused")
    assert accepted < LIMITS.append_burst // 2, accepted
    # Nothing refused was stored; what was accepted on either replica was.
    run = (await on_b.runs.GetRun(rs.GetRunRequest(run_id=run_id))).run
    assert run.last_seq == 1 + LIMITS.append_burst + accepted


async def test_a_stopped_replicas_streams_stop_counting_once_its_usage_expires(
    tmp_path: Path, redis_server: RedisProcess, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_usage, "USAGE_TTL_MS", 500)
    url = redis_store_url(redis_server, tmp_path)
    security = dataclasses.replace(rs256_auth(keys), limits=LIMITS)
    alice = keys.token(["viewer"], sub="alice")
    async with serving_on(url, tmp_path / "b", security=security) as b:
        on_b = Caller(b.target, alice)
        try:
            async with serving_on(url, tmp_path / "a", security=security) as a:
                on_a = Caller(a.target, alice)
                try:
                    await opened(on_a.runs.WatchRuns(rs.WatchRunsRequest()))
                    await opened(on_a.runs.WatchRuns(rs.WatchRunsRequest()))
                    await _refused_within(lambda: on_b.runs.WatchRuns(rs.WatchRunsRequest()))
                finally:
                    await on_a.channel.close()
            # A stopped without a last word: its usage still says 2 streams, until it expires.
            await _opened_within(lambda: on_b.runs.WatchRuns(rs.WatchRunsRequest()))
        finally:
            await on_b.channel.close()


async def test_a_tenants_active_runs_count_on_every_replica(
    tmp_path: Path, redis_server: RedisProcess, keys: Keys
) -> None:
    """Creates one after another, each on the other replica: the tenant's fourth active run
    is refused on either (found in review: each replica counted the store once a second and
    only its own creates since, so two replicas admitted 5 runs against a limit of 3)."""
    url = redis_store_url(redis_server, tmp_path)
    limits = dataclasses.replace(LIMITS, active_runs_per_tenant=3)
    security = dataclasses.replace(rs256_auth(keys), limits=limits)
    bot = keys.token(["producer", "viewer", "operator"], sub="bot")
    async with (
        serving_on(url, tmp_path / "a", security=security) as a,
        serving_on(url, tmp_path / "b", security=security) as b,
    ):
        on = [Caller(a.target, bot), Caller(b.target, bot)]
        try:
            created = []
            for i in range(3):
                request = rs.CreateRunRequest(workflow="limits")
                created.append((await on[i % 2].runs.CreateRun(request)).run.run_id)
            for caller in on:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await caller.runs.CreateRun(rs.CreateRunRequest(workflow="limits"))
                assert "tenant 'acme' has 3 active runs, the most allowed" in (
                    info.value.details() or ""
                )
                assert retry_info(info.value) > 0
            listed = await on[1].runs.ListRuns(rs.ListRunsRequest())
            assert sorted(r.run_id for r in listed.runs) == sorted(created)
            # A run that ends on one replica frees its place on the other at once.
            await on[0].runs.CancelRun(rs.CancelRunRequest(run_id=created[0]))
            await on[1].runs.CreateRun(rs.CreateRunRequest(workflow="limits"))
        finally:
            for caller in on:
                await caller.channel.close()


async def test_appends_on_one_replica_are_charged_once_on_the_other(
    callers: dict[str, Caller],
) -> None:
    """Half the burst spent on A leaves the other half on B, however many exchanges pass
    before B is used: B learns of A's 5 events once (charged at each of ten exchanges,
    they put B 40 events in debt, some 200 s at 0.2 events a second)."""
    on_a, on_b = callers["bot on a"], callers["bot on b"]
    run_id = (await on_a.runs.CreateRun(rs.CreateRunRequest(workflow="limits"))).run.run_id
    half = LIMITS.append_burst // 2
    events = [custom(i) for i in range(1, half + 1)]
    await on_a.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=events))
    await asyncio.sleep(10 * LIMITS.share_interval)  # ten exchanges or so
    rest = [custom(i) for i in range(half + 1, LIMITS.append_burst)]  # one short: no race
    accepted = await on_b.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=rest))
    assert accepted.last_seq == LIMITS.append_burst


@pytest.mark.parametrize("bug", [False, True], ids=["store error", "bug"])
async def test_a_failing_exchange_says_whether_the_store_or_a_bug_failed_it(
    tmp_path: Path,
    redis_server: RedisProcess,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bug: bool,
) -> None:
    """Redis refusing the exchange is one WARNING line (the last exchange holds); a bug in
    it is an ERROR with its traceback, never filed as the store being out of reach."""

    async def failing(self: redis_usage.UsageShare, mine: object) -> object:
        if bug:
            raise KeyError("a bug in the exchange")
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(redis_usage.UsageShare, "share", failing)
    caplog.set_level(logging.WARNING, "runstream.limits")
    security = dataclasses.replace(rs256_auth(keys), limits=LIMITS)
    url = redis_store_url(redis_server, tmp_path)
    async with serving_on(url, tmp_path, security=security):
        await eventually(lambda: any("cannot share" in r.getMessage() for r in caplog.records))
        await asyncio.sleep(5 * LIMITS.share_interval)  # more exchanges fail: said once
    said = [r for r in caplog.records if "cannot share" in r.getMessage()]
    assert len(said) == 1
    if bug:
        assert said[0].levelno == logging.ERROR and said[0].exc_info is not None
        assert "a bug in the exchange" in str(said[0].exc_info[1])
    else:
        assert said[0].levelno == logging.WARNING and said[0].exc_info is None
        assert "the Redis store is unreachable" in said[0].getMessage()
