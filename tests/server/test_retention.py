"""Retention across passes, restarts and stores written by the previous layout: which logs
go (the newest N ended runs kept, and/or those ended before the cutoff purged), and that a
pass reads only the runs it purges, never again those whose logs earlier passes purged.

Before, every pass re-read and parsed every ended run ever stored (SQLite: every terminal
run's snapshot, in the writer, so every append waited; Redis: one round trip per entry of
``P:ended``, which no purged run ever left), so its cost grew with the store's history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import timestamp_pb2
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain import monitors
from runstream_server.domain.runs import Retention
from runstream_server.store import base, redis, sqlite
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.conftest import ConfigFactory
from tests.identity import Keys, rs256_auth
from tests.server import support
from tests.server.conftest import Stubs
from tests.server.support import Caller, append, custom, ev, on_clock

NOW = datetime.now(UTC)


class ServersClock:
    """The servers' clock: the real one, except while :func:`ended` ends a run at a moment of
    the test's choosing (the server stamps what it receives then with that moment)."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        return self.at or datetime.now(UTC)


SERVERS_CLOCK = ServersClock()


@contextlib.asynccontextmanager
async def serving(config: ServerConfig) -> AsyncIterator[tuple[RunstreamServer, Stubs]]:
    """A server on :data:`SERVERS_CLOCK`, and stubs."""
    async with support.serving(config) as (server, stubs):
        on_clock(server, SERVERS_CLOCK)
        yield server, stubs


def _in_retention(frame: FrameType | None) -> bool:
    """Whether this frame runs on behalf of a retention pass (on the event loop, or in a
    function of it on a store thread), or of the SQLite store's upgrade to its index."""
    while frame is not None:
        name = frame.f_code.co_qualname
        if "purge_events" in name or "_add_retained_column" in name:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def parses_of(run_ids: set[str]) -> Iterator[list[str]]:
    """The ids among `run_ids` whose stored snapshots retention parses meanwhile, once per
    parse (both stores read snapshots through ``decode_run``); other reads (ListRuns, the
    counts at start) are not retention's."""
    met: list[str] = []
    decode = base.decode_run

    def counting(run_id: str, data: bytes) -> run_pb2.Run:
        if run_id in run_ids and _in_retention(sys._getframe(1)):
            met.append(run_id)
        return decode(run_id, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "decode_run", counting)
        patch.setattr(redis, "decode_run", counting)
        yield met


async def ended(
    stubs: Stubs | Caller, run_id: str, end: datetime, dated: datetime | None = None
) -> None:
    """A run of a few events whose end (completed) the server receives at `end`, by its
    clock; its producer dates the end `dated`, if given."""
    SERVERS_CLOCK.at = end
    try:
        await stubs.runs.CreateRun(rs.CreateRunRequest(run_id=run_id, workflow="wf"))
        await append(stubs, run_id, *(custom(n) for n in range(3)))
        done = ev.RunEvent(run_completed=ev.RunCompleted())
        if dated is not None:
            done.event_time.CopyFrom(timestamp_pb2.Timestamp())
            done.event_time.FromDatetime(dated)
        await append(stubs, run_id, done)
    finally:
        SERVERS_CLOCK.at = None


async def ended_in_turn(stubs: Stubs, count: int) -> list[str]:
    """Runs r00, r01, ... ended a minute apart, in that order; their ids."""
    ids = [f"r{i:02}" for i in range(count)]
    for i, run_id in enumerate(ids):
        await ended(stubs, run_id, at(i))
    return ids


async def purged(stubs: Stubs, run_ids: list[str]) -> set[str]:
    """Which of `run_ids` have their logs purged, by their snapshots (each still readable)."""
    gone = set()
    for run_id in run_ids:
        run = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run_id))).run
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
        if run.purged_seq:
            assert run.purged_seq == run.last_seq
            gone.add(run_id)
    return gone


async def settled(stubs: Stubs, run_ids: list[str], expected: set[str]) -> None:
    """Waits (5 s at most) for the purges of a restarted server's first pass, which runs as
    it starts: until exactly `expected` of `run_ids` are purged."""
    deadline = asyncio.get_running_loop().time() + 5
    while (now := await purged(stubs, run_ids)) != expected:
        assert asyncio.get_running_loop().time() < deadline, sorted(now ^ expected)
        await asyncio.sleep(0.05)


def at(minutes: int) -> datetime:
    return NOW - timedelta(hours=1) + timedelta(minutes=minutes)


async def test_the_newest_n_keep_their_logs_across_passes_and_a_restart(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """runs=2: each pass purges exactly the ended runs beyond the newest two (by when the
    server stored their ends, by its clock, whatever the order of arrival), and only once;
    purged runs stay readable as snapshots; a restarted server goes on from there."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=2, interval=3600))
    ids = [f"r{i}" for i in range(8)]
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        for i in (0, 2, 1, 3, 4):  # r2 ends before r1 does, at the later time
            await ended(stubs, ids[i], at(i))
        assert sorted(await server.runs.apply_retention()) == ["r0", "r1", "r2"]
        assert await server.runs.apply_retention() == []
        await ended(stubs, "r5", at(5))
        assert await server.runs.apply_retention() == ["r3"]
        # Ends last, at a time before r4 and r5 (the server's clock was set back meanwhile):
        # beyond the newest two.
        await ended(stubs, "r6", at(4) - timedelta(seconds=1))
        assert await server.runs.apply_retention() == ["r6"]
        assert await purged(stubs, ids[:7]) == {"r0", "r1", "r2", "r3", "r6"}
        kept = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id="r5"))
        assert kept.events[0].seq == 1
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        await settled(stubs, ids[:7], {"r0", "r1", "r2", "r3", "r6"})
        await ended(stubs, "r7", at(7))
        await server.runs.apply_retention()
        assert await purged(stubs, ids) == {"r0", "r1", "r2", "r3", "r4", "r6"}
        assert await server.runs.apply_retention() == []


@contextlib.asynccontextmanager
async def two_tenants(
    config: ServerConfig, keys: Keys
) -> AsyncIterator[tuple[RunstreamServer, Caller, Caller]]:
    """A server with auth, and producers of tenants acme and globex."""
    async with serving(config) as (server, _):
        acme = Caller(server.target, keys.token(["producer"]))
        globex = Caller(server.target, keys.token(["producer"], tenant="globex"))
        try:
            yield server, acme, globex
        finally:
            for caller in (acme, globex):
                await caller.channel.close()


def with_tenants(tmp_path: Path, server_config: ConfigFactory, keys: Keys, runs: int) -> Any:
    retention = Retention(runs=runs, interval=3600)
    return server_config(tmp_path / "r.db", security=rs256_auth(keys), retention=retention)


async def test_each_tenant_keeps_its_own_newest_n(
    tmp_path: Path, server_config: ConfigFactory, keys: Keys
) -> None:
    """runs=2 counted every tenant's ended runs together: a busy tenant's new runs purged a
    quiet tenant's only log. Now each tenant keeps its own newest two."""
    config = with_tenants(tmp_path, server_config, keys, runs=2)
    async with two_tenants(config, keys) as (server, acme, globex):
        assert server.runs is not None
        await ended(globex, "quiet", at(0))
        for i in range(1, 5):
            await ended(acme, f"busy{i}", at(i))
        assert sorted(await server.runs.apply_retention()) == ["busy1", "busy2"]
        await ended(globex, "quiet2", at(5))
        await ended(globex, "quiet3", at(6))
        assert await server.runs.apply_retention() == ["quiet"]
        assert await purged(acme, ["busy1", "busy2", "busy3", "busy4"]) == {"busy1", "busy2"}
        assert await purged(globex, ["quiet", "quiet2", "quiet3"]) == {"quiet"}


async def test_runs_ended_by_an_earlier_release_are_counted_under_their_tenants(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str, keys: Keys
) -> None:
    """Redis: a run ended by a release before ``P:ended:tenants`` has no tenant there; the
    first pass that counts it reads its snapshot once and writes the tenant down, and the
    entries of runs purged (or forgotten elsewhere) leave it."""
    if store_kind != "redis":
        pytest.skip("SQLite reads the tenant from the runs table")
    config = with_tenants(tmp_path, server_config, keys, runs=1)
    url = parse_url(config.store_url)
    async with two_tenants(config, keys) as (server, acme, globex):
        assert server.runs is not None
        await ended(globex, "g1", at(0))
        await ended(acme, "a1", at(1))
        await ended(acme, "a2", at(2))
        client = aioredis.from_url(url.url)
        try:
            await client.delete(RedisKeys(url.prefix).ended_tenants)  # the earlier release
            with parses_of({"g1", "a1", "a2"}) as met:
                assert await server.runs.apply_retention() == ["a1"]
                # Each read once for its tenant, and a1 once more by its purge.
                assert sorted(met) == ["a1", "a1", "a2", "g1"]
                await ended(globex, "g2", at(3))
                # An entry of a run no longer among the kept (an earlier release forgot it
                # without its tenant): taken out by the next pass that reads the tenants.
                await client.hset(RedisKeys(url.prefix).ended_tenants, "forgotten", "acme")
                assert await server.runs.apply_retention() == ["g1"]
                assert sorted(met) == ["a1", "a1", "a2", "g1", "g1"]  # g1: its purge only
            tenants = await client.hgetall(RedisKeys(url.prefix).ended_tenants)
        finally:
            await client.aclose()
    assert {k.decode(): v.decode() for k, v in tenants.items()} == {"a2": "acme", "g2": "globex"}


async def test_age_and_count_purge_the_union_across_passes(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """days=1 and runs=3: a run that ended more than a day ago goes even when it is among
    the newest three; one beyond the newest three goes however recent. Both by the server's
    clock: a run its producer ended just now with a clock a day behind keeps its log (it was
    purged at once)."""
    config = server_config(tmp_path / "r.db", retention=Retention(days=1, runs=3, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        await ended(stubs, "old1", NOW - timedelta(days=3))
        await ended(stubs, "old2", NOW - timedelta(days=2))
        assert sorted(await server.runs.apply_retention()) == ["old1", "old2"]
        for i in range(4):
            await ended(stubs, f"new{i}", at(i))
        assert await server.runs.apply_retention() == ["new0"]
        behind = NOW - timedelta(days=1, minutes=1)
        await ended(stubs, "late", at(3) + timedelta(seconds=1), dated=behind)
        assert await server.runs.apply_retention() == ["new1"]  # not late: among the three
        await ended(stubs, "new4", at(4))
        assert await server.runs.apply_retention() == ["new2"]
        everything = ["old1", "old2", "late", *(f"new{i}" for i in range(5))]
        assert await purged(stubs, everything) == {"old1", "old2", "new0", "new1", "new2"}


async def test_replicas_whose_passes_overlap_purge_each_run_once(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str
) -> None:
    """Replicas deployed together run their passes together: each purged the runs both
    chose, every purge done twice and counted twice in their logs (found in review: 1,106
    of 1,200 runs). A run another replica purged meanwhile is left alone."""
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    async with serving(config) as (a, stubs), serving(config) as (b, _):
        assert a.runs is not None and b.runs is not None
        ids = [f"r{i:02}" for i in range(21)]
        for i, run_id in enumerate(ids):
            await ended(stubs, run_id, at(i))
        by_a, by_b = await asyncio.gather(a.runs.apply_retention(), b.runs.apply_retention())
        assert sorted(by_a + by_b) == ids[:20]  # each once, by one replica or the other
        assert await purged(stubs, ids) == set(ids[:20])


async def test_a_pass_reads_none_of_the_runs_whose_logs_earlier_passes_purged(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str
) -> None:
    """The cost of a pass follows what it purges, not the store's history: with 30 runs
    purged before, the next pass parses none of their snapshots (it parsed all 30 each
    pass before: SQLite read every terminal run, Redis every entry of ``P:ended``)."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=2, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        ids = await ended_in_turn(stubs, 32)
        assert sorted(await server.runs.apply_retention()) == ids[:30]
        await ended(stubs, "r32", at(32))
        with parses_of(set(ids[:30])) as met:
            assert await server.runs.apply_retention() == ["r30"]
            assert await server.runs.apply_retention() == []
        assert met == []
        if store_kind == "redis":  # a purged run leaves the index retention chooses from
            url = parse_url(config.store_url)
            client = aioredis.from_url(url.url)
            try:
                left = await client.zrange(RedisKeys(url.prefix).ended, 0, -1)
            finally:
                await client.aclose()
            assert sorted(m.decode() for m in left) == ["r31", "r32"]


async def test_a_pass_holds_one_batch_of_the_runs_it_purges_at_a_time(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scale review's finding 5: SQLite read and parsed the snapshot of every run a pass
    would purge before purging any (97,510 runs: 380 MB of RSS); now a batch at a time."""
    if store_kind == "redis":
        pytest.skip("Redis reads the snapshots of each batch in one pipelined round trip")
    monkeypatch.setattr(sqlite, "_PURGE_BATCH", 4)
    parsed_before_write: list[int] = []
    purge = sqlite._purge

    def counting(conn: sqlite3.Connection, runs: list[tuple[str, run_pb2.Run]]) -> Any:
        parsed_before_write.append(len(met))
        return purge(conn, runs)

    monkeypatch.setattr(sqlite, "_purge", counting)
    config = server_config(tmp_path / "r.db", retention=Retention(runs=2, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        ids = await ended_in_turn(stubs, 12)
        with parses_of(set(ids)) as met:
            assert sorted(await server.runs.apply_retention()) == ids[:10]
        assert await purged(stubs, ids) == set(ids[:10])
    assert parsed_before_write == [4, 8, 10]  # was [10, 10, 10]: all parsed up front


async def test_a_long_log_goes_a_chunk_per_transaction_and_is_never_read_half_gone(
    tmp_path: Path,
    server_config: ConfigFactory,
    store_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The scale review's finding 4: SQLite deleted a whole log in one writer transaction
    (1,000,007 events: the appends of every run waited up to 4.1 s). Now at most
    ``_PURGE_ROWS`` events go per transaction; the run is refused to readers before any goes,
    so a pass cut short (its third chunk fails) leaves no partial log to read, across a
    restart too, and the next pass deletes the rest."""
    if store_kind == "redis":
        pytest.skip("Redis drops each log at once (UNLINK)")
    monkeypatch.setattr(sqlite, "_PURGE_ROWS", 10)
    deleted: list[int] = []  # events deleted by each writer transaction of retention
    chunks = [0]
    fail_at = [3]
    caplog.set_level(logging.INFO, "runstream.monitors")

    def counted(fn: Any) -> Any:
        def run(conn: sqlite3.Connection, arg: Any) -> Any:
            before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            if fn is delete_events:
                chunks[0] += 1
                if chunks[0] == fail_at[0]:
                    raise sqlite3.OperationalError("disk I/O error (the test's)")
            try:
                return fn(conn, arg)
            finally:
                deleted.append(before - conn.execute("SELECT count(*) FROM events").fetchone()[0])

        return run

    purge, delete_events = sqlite._purge, sqlite._delete_events
    monkeypatch.setattr(sqlite, "_purge", counted(purge))
    monkeypatch.setattr(sqlite, "_delete_events", counted(delete_events))
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    refused = "removed by the retention policy"
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        await stubs.runs.CreateRun(rs.CreateRunRequest(run_id="long", workflow="wf"))
        await append(stubs, "long", *(custom(n) for n in range(40)))
        await append(stubs, "long", ev.RunEvent(run_completed=ev.RunCompleted()))
        await ended(stubs, "newer", datetime.now(UTC))
        with pytest.raises(sqlite3.OperationalError):
            await server.runs.apply_retention()
        with pytest.raises(grpc.aio.AioRpcError, match=refused):
            await stubs.runs.ListEvents(rs.ListEventsRequest(run_id="long"))
    fail_at[0] = 0
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        with pytest.raises(grpc.aio.AioRpcError, match=refused):
            await stubs.runs.ListEvents(rs.ListEventsRequest(run_id="long"))
        assert await server.runs.apply_retention() == []  # told by the pass cut short
        assert await purged(stubs, ["long", "newer"]) == {"long"}
    # Nor by the pass the restart runs at once, which deletes the rest of the log.
    assert "retention purged" not in caplog.text
    with contextlib.closing(sqlite3.connect(tmp_path / "r.db")) as conn:
        left = conn.execute("SELECT count(*) FROM events WHERE run_id = 'long'").fetchone()[0]
    assert left == 0
    assert sum(deleted) == 42 and max(deleted) <= 10, deleted  # was [42]: all in one


async def test_a_log_of_whole_chunks_is_read_by_no_later_pass(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long log whose length is a whole number of chunks (20 events, chunks of 10): its
    last chunk, the one that reaches seq 1, takes the run out of what retention chooses
    from, so the passes after it never read the run again."""
    if store_kind == "redis":
        pytest.skip("Redis drops each log at once (UNLINK)")
    monkeypatch.setattr(sqlite, "_PURGE_ROWS", 10)
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        await stubs.runs.CreateRun(rs.CreateRunRequest(run_id="long", workflow="wf"))
        await append(stubs, "long", *(custom(n) for n in range(18)))
        await append(stubs, "long", ev.RunEvent(run_completed=ev.RunCompleted()))
        assert (await stubs.runs.GetRun(rs.GetRunRequest(run_id="long"))).run.last_seq == 20
        await ended(stubs, "newer", datetime.now(UTC))
        assert await server.runs.apply_retention() == ["long"]
        with parses_of({"long"}) as met:
            assert await server.runs.apply_retention() == []
        assert met == []
        assert await purged(stubs, ["long", "newer"]) == {"long"}


async def test_short_logs_purged_together_go_a_chunk_per_transaction_too(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound on what one writer transaction deletes holds across the runs of a batch:
    three logs of a few events each, chunks of 10, go at most 10 events per transaction, so
    appends never wait for a batch of many short logs at once."""
    if store_kind == "redis":
        pytest.skip("Redis drops each log at once (UNLINK)")
    monkeypatch.setattr(sqlite, "_PURGE_ROWS", 10)
    deleted: list[int] = []  # events deleted by each writer transaction of retention

    def counted(fn: Any) -> Any:
        def run(conn: sqlite3.Connection, arg: Any) -> Any:
            before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            result = fn(conn, arg)
            deleted.append(before - conn.execute("SELECT count(*) FROM events").fetchone()[0])
            return result

        return run

    monkeypatch.setattr(sqlite, "_purge", counted(sqlite._purge))
    monkeypatch.setattr(sqlite, "_delete_events", counted(sqlite._delete_events))
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        ids = await ended_in_turn(stubs, 4)
        logs = [(await stubs.runs.GetRun(rs.GetRunRequest(run_id=r))).run.last_seq for r in ids]
        assert sorted(await server.runs.apply_retention()) == ids[:3]
        assert await purged(stubs, ids) == set(ids[:3])
    assert sum(deleted) == sum(logs[:3]) > 10 and max(deleted) <= 10, deleted


async def test_a_store_written_by_the_previous_layout_goes_on_with_the_same_policy(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str
) -> None:
    """A store whose purged runs the previous version left where retention chooses from (a
    SQLite file without the ``retained_end_us`` column, a Redis ``P:ended`` holding purged
    runs) keeps the same runs' logs after the upgrade, and its purged runs are read at
    most once more (SQLite: not even once; its upgrade reads the kept runs only)."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=2, interval=3600))
    ids = [f"r{i:02}" for i in range(14)]
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        for i, run_id in enumerate(ids[:12]):
            await ended(stubs, run_id, at(i))
        assert sorted(await server.runs.apply_retention()) == ids[:10]
        for i, run_id in enumerate(ids[12:], 12):  # ended, not yet purged at the upgrade
            await ended(stubs, run_id, at(i))
    if store_kind == "redis":
        url = parse_url(config.store_url)
        client = aioredis.from_url(url.url)
        try:  # what the previous version left: its purged runs in P:ended
            back = {run_id: int(at(i).timestamp() * 1e6) for i, run_id in enumerate(ids[:10])}
            await client.zadd(RedisKeys(url.prefix).ended, back)
        finally:
            await client.aclose()
    else:
        with contextlib.closing(sqlite3.connect(tmp_path / "r.db")) as conn:
            conn.execute("DROP INDEX runs_retained")
            conn.execute("DROP INDEX runs_retained_by_tenant")
            conn.execute("ALTER TABLE runs DROP COLUMN retained_end_us")
            conn.commit()
    with parses_of(set(ids[:10])) as met:
        async with serving(config) as (server, stubs):
            assert server.runs is not None
            await settled(stubs, ids[10:], {"r10", "r11"})  # the pass at start purges them
            await server.runs.apply_retention()
            assert await purged(stubs, ids[10:]) == {"r10", "r11"}
            first = len(met)
            await ended(stubs, "r14", at(14))
            assert await server.runs.apply_retention() == ["r12"]
            assert len(met) == first  # the runs purged before are read no more
    # Redis: each met once by the pass at start (twice if the test's own pass overlapped
    # it), then taken out of P:ended; SQLite: never, not even by the upgrade.
    assert len(met) <= 20 if store_kind == "redis" else met == []
    if store_kind == "redis":
        client = aioredis.from_url(url.url)
        try:
            left = await client.zrange(RedisKeys(url.prefix).ended, 0, -1)
        finally:
            await client.aclose()
        assert sorted(m.decode() for m in left) == ["r13", "r14"]
    async with serving(config) as (server, stubs):
        assert await purged(stubs, [*ids, "r14"]) == set(ids[:13])


async def test_a_step_of_the_wall_clock_pauses_retention_for_a_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's clock stepped an hour forward (an NTP correction, a clock set by hand):
    the next pass purged the logs of runs that had ended minutes before under a retention of
    a quarter of an hour. A pass that finds the wall clock moved apart from the monotonic one
    skips, saying so, so that a clock set right before the next pass purges nothing early."""
    monotonic, step = [1000.0], [0.0]
    passes: list[int | None] = []

    class Store:
        async def purge_events(
            self, *, ended_before_us: int | None, keep_newest: int | None, **_: object
        ) -> list[str]:
            passes.append(ended_before_us)
            return []

    async def sleep(seconds: float) -> None:
        monotonic[0] += seconds
        step[0] = 3600.0  # stepped during the first interval, and stays so
        if len(passes) >= 2:
            raise asyncio.CancelledError

    def wall() -> datetime:
        return datetime.fromtimestamp(1.7e9 + monotonic[0] + step[0], UTC)

    async def purged(run_id: str) -> None:
        pass

    monkeypatch.setattr(monitors.time, "monotonic", lambda: monotonic[0])
    monkeypatch.setattr(monitors.asyncio, "sleep", sleep)
    retention = Retention(days=0.01, interval=60)
    with pytest.raises(asyncio.CancelledError):
        await monitors.RetentionPasses(Store(), retention, wall, purged).run_forever()  # type: ignore[arg-type]
    # Pass 1 at once, pass 2 (after the step) skipped, pass 3 a minute after that.
    assert [before is not None for before in passes] == [True, True]
    assert monotonic[0] == 1000.0 + 3 * 60
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["the wall clock stepped by +3600s; retention paused for one pass"]
