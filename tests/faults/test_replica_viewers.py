"""``viewer_count`` counts the watchers of every replica, in GetRun, ListRuns and WatchRuns.

Two real `runstream serve` replicas on one real redis-server; watchers on both. Each replica
keeps its own count in Redis and tells the others when it changes, so a WatchRuns stream on
either replica follows the total live, and lists read every replica's counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from runstream.v1 import run_pb2, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain import viewers
from runstream_server.domain.following import Notices
from runstream_server.errors import Unavailable
from runstream_server.store.base import CommitNotice, Notice
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url
from runstream_server.store.redis_viewers import RedisViewerCounts

from tests.clients.support import eventually, until
from tests.conftest import RedisProcess, ServerProcess, redis_store_url, replicas_serving


@pytest.fixture
async def stubs(
    replicas: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[run_service_pb2_grpc.RunServiceStub, ...]]:
    a, b = replicas
    async with (
        grpc.aio.insecure_channel(a.target) as on_a,
        grpc.aio.insecure_channel(b.target) as on_b,
    ):
        yield run_service_pb2_grpc.RunServiceStub(on_a), run_service_pb2_grpc.RunServiceStub(on_b)


class RunsView:
    """A WatchRuns stream read in the background: each run's latest viewer_count."""

    def __init__(self, stub: run_service_pb2_grpc.RunServiceStub) -> None:
        self.counts: dict[str, int] = {}
        self.statuses: dict[str, list[int]] = {}  # each run's status in each update
        self.initial: dict[str, int] | None = None
        self._call = stub.WatchRuns(rs.WatchRunsRequest())
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self._call:
            for run in response.runs:
                self.counts[run.run_id] = run.viewer_count
                self.statuses.setdefault(run.run_id, []).append(run.status)
            if response.initial_state_complete:
                self.initial = dict(self.counts)

    def close(self) -> None:
        self._call.cancel()
        self._task.cancel()


async def listed(stub: run_service_pb2_grpc.RunServiceStub) -> dict[str, int]:
    page = await stub.ListRuns(rs.ListRunsRequest(page_size=50))
    return {run.run_id: run.viewer_count for run in page.runs}


async def counted(stub: run_service_pb2_grpc.RunServiceStub, run_id: str) -> int:
    return int((await stub.GetRun(rs.GetRunRequest(run_id=run_id))).run.viewer_count)


async def test_viewer_count_adds_up_the_watchers_of_both_replicas_and_drops_as_they_leave(
    stubs: tuple[run_service_pb2_grpc.RunServiceStub, run_service_pb2_grpc.RunServiceStub],
) -> None:
    on_a, on_b = stubs
    watched = (await on_a.CreateRun(rs.CreateRunRequest(workflow="viewers"))).run.run_id
    unwatched = (await on_b.CreateRun(rs.CreateRunRequest(workflow="viewers"))).run.run_id
    views = [RunsView(on_a), RunsView(on_b)]
    await eventually(lambda: all(v.initial is not None for v in views))
    assert all(v.initial == {watched: 0, unwatched: 0} for v in views)

    watchers = []
    for stub in (on_a, on_a, on_b, on_b, on_b):  # two watchers on A, three on B
        call = stub.WatchRun(rs.WatchRunRequest(run_id=watched))
        first = await call.read()  # the stream has its subscription once it sends
        assert [e.seq for e in first.events] == [1]
        watchers.append(call)
    try:
        # WatchRuns on either replica follows the total live.
        await eventually(lambda: all(v.counts[watched] == 5 for v in views))
        for stub in (on_a, on_b):
            await until(lambda s=stub: _is(listed(s), {watched: 5, unwatched: 0}))
            assert await counted(stub, watched) == 5
        late = [RunsView(on_a), RunsView(on_b)]  # a first state read now counts them all
        await eventually(lambda: all(v.initial is not None for v in late))
        assert all(v.initial == {watched: 5, unwatched: 0} for v in late)
        views += late

        for call in watchers[1:]:  # one A watcher and all of B's leave
            call.cancel()
        await eventually(lambda: all(v.counts[watched] == 1 for v in views))
        for stub in (on_a, on_b):
            await until(lambda s=stub: _is(listed(s), {watched: 1, unwatched: 0}))
            assert await counted(stub, watched) == 1
    finally:
        for call in watchers:
            call.cancel()
        for view in views:
            view.close()


async def watching(stub: run_service_pb2_grpc.RunServiceStub, run_id: str, n: int) -> list[Any]:
    """`n` watch streams of the run, each past its first message (subscribed)."""
    calls = []
    for _ in range(n):
        call = stub.WatchRun(rs.WatchRunRequest(run_id=run_id))
        calls.append(call)
        await call.read()
    return calls


async def _is(reading: Awaitable[dict[str, int]], expected: dict[str, int]) -> bool:
    return await reading == expected


async def test_the_watchers_of_a_replica_that_died_stop_counting(
    replicas: tuple[ServerProcess, ServerProcess],
    stubs: tuple[run_service_pb2_grpc.RunServiceStub, run_service_pb2_grpc.RunServiceStub],
) -> None:
    on_a, on_b = stubs
    watched = (await on_a.CreateRun(rs.CreateRunRequest(workflow="viewers"))).run.run_id
    view = RunsView(on_a)
    watchers: list[Any] = []
    try:
        watchers += await watching(on_b, watched, 2)
        await eventually(lambda: view.counts.get(watched) == 2)
        replicas[1].kill()  # SIGKILL: B takes its counts with it, telling nobody
        # B's counts expire in Redis 15 s after its last refresh; A reads them again every
        # 5 s and sends the run to WatchRuns when its count changed.
        await eventually(lambda: view.counts[watched] == 0, within=60)
        assert await listed(on_a) == {watched: 0}
        assert await counted(on_a, watched) == 0
    finally:
        for call in watchers:
            call.cancel()
        view.close()


async def test_a_run_created_on_one_replica_appears_at_once_in_watch_runs_on_the_other(
    stubs: tuple[run_service_pb2_grpc.RunServiceStub, run_service_pb2_grpc.RunServiceStub],
) -> None:
    on_a, on_b = stubs
    view = RunsView(on_b)
    try:
        await eventually(lambda: view.initial is not None)
        # Created and nothing more: B holds no state of it, only A's notice tells it.
        run_id = (await on_a.CreateRun(rs.CreateRunRequest(workflow="elsewhere"))).run.run_id
        await eventually(lambda: run_id in view.counts, within=10)
    finally:
        view.close()


async def test_a_count_read_while_the_run_ends_here_does_not_send_its_older_state(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B's WatchRuns hears that A's count of a run B does not hold changed, and reads the
    run from the store to send it with the new count; a cancel on B ends the run before
    that read returns. The stream's last word on the run is its end, not the state read
    before it (found in review: it was the state read before the cancel, and nothing followed)."""
    url = redis_store_url(redis_server, tmp_path)
    # B never hears of A's commits, so it never holds the run (a commit notice applied while
    # B's WatchRuns stream is open loads it): only the count's read brings it the run.
    on_notice = Notices.on_notice

    def counts_only(self: Notices, notice: Notice) -> None:
        if not isinstance(notice, CommitNotice):
            on_notice(self, notice)

    monkeypatch.setattr(Notices, "on_notice", counts_only)
    async with replicas_serving(url, tmp_path) as ((_, channel_a), (b, channel_b)):
        on_a = run_service_pb2_grpc.RunServiceStub(channel_a)
        on_b = run_service_pb2_grpc.RunServiceStub(channel_b)
        run_id = (await on_a.CreateRun(rs.CreateRunRequest(workflow="race"))).run.run_id
        view = RunsView(on_b)  # B lists the run from the store and holds none of it
        store = b._store
        assert store is not None
        load_run, reading, release = store.load_run, asyncio.Event(), asyncio.Event()

        async def read_then_wait(wanted: str) -> Any:
            run = await load_run(wanted)
            if not reading.is_set():  # the count's read, not the cancel's
                reading.set()
                await release.wait()
            return run

        monkeypatch.setattr(store, "load_run", read_then_wait)
        # B's first listing counted 0 watchers: the watch on A below is a change it hears of.
        await eventually(lambda: view.initial is not None)
        # keep_open: the watcher stays after the cancel, so A's count stays 1.
        watch = on_a.WatchRun(rs.WatchRunRequest(run_id=run_id, keep_open=True))
        try:
            await watch.read()  # A's count changes: B reads the run to send it on
            await asyncio.wait_for(reading.wait(), 10)
            await on_b.CancelRun(rs.CancelRunRequest(run_id=run_id, reason="race"))
            statuses = view.statuses[run_id]
            await eventually(lambda: statuses[-1] == run_pb2.RUN_STATUS_CANCELLED)
            told = len(statuses)
            release.set()  # the count's read returns: B sends the run with its new count
            await eventually(lambda: len(statuses) > told)
            assert statuses[-1] == run_pb2.RUN_STATUS_CANCELLED
            assert view.counts[run_id] == 1
        finally:
            release.set()
            watch.cancel()
            view.close()


@pytest.mark.parametrize("watchers", [1, 0], ids=["from-1", "from-0"])
async def test_counts_are_read_again_after_the_store_failed_a_read(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watchers: int
) -> None:
    """A shows a run B holds, and reading it to send B's new count fails (Redis
    unreachable): the count goes out with the next read. From 1: A learns B's counts only by
    reading them again every few seconds (B's notices are lost to A here, as from a replica
    that died without a word), and that one failed read stopped those reads for good, so a
    replica that died after it kept its watchers in A's WatchRuns for ever. From 0: A hears
    of B's first watcher by its notice, and the count, not sent, was lost (found in review)."""
    monkeypatch.setattr(viewers, "REREAD_INTERVAL", 0.2)
    on_notice = Notices.on_notice

    def dropped(self: Notices, notice: Notice) -> None:  # A never holds the run
        if watchers == 0 and not isinstance(notice, CommitNotice):
            on_notice(self, notice)

    monkeypatch.setattr(Notices, "on_notice", dropped)
    url = redis_store_url(redis_server, tmp_path)
    async with replicas_serving(url, tmp_path) as ((a, channel_a), (_, channel_b)):
        on_a = run_service_pb2_grpc.RunServiceStub(channel_a)
        on_b = run_service_pb2_grpc.RunServiceStub(channel_b)
        run_id = (await on_b.CreateRun(rs.CreateRunRequest(workflow="reread"))).run.run_id
        calls = [on_b.WatchRun(rs.WatchRunRequest(run_id=run_id)) for _ in range(watchers)]
        for call in calls:
            await call.read()
        await until(lambda: _is(listed(on_a), {run_id: watchers}))
        view = RunsView(on_a)
        store = a._store
        assert store is not None
        load_run = store.load_run

        async def unreachable(wanted: str) -> Any:
            raise Unavailable("the Redis store is unreachable (ConnectionError)")

        try:
            await eventually(lambda: view.initial == {run_id: watchers})
            monkeypatch.setattr(store, "load_run", unreachable)
            calls.append(on_b.WatchRun(rs.WatchRunRequest(run_id=run_id)))
            await calls[-1].read()  # B has one more; A's read of the run to send it fails
            await asyncio.sleep(1)
            assert view.counts[run_id] == watchers
            monkeypatch.setattr(store, "load_run", load_run)  # Redis is back
            await eventually(lambda: view.counts[run_id] == watchers + 1, within=10)
            for call in calls:
                call.cancel()
            await eventually(lambda: view.counts[run_id] == 0, within=10)
        finally:
            for call in calls:
                call.cancel()
            view.close()


async def test_a_watcher_that_came_and_went_leaves_no_count_when_the_first_write_is_slow(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """A watcher opens and closes at once on replica A: two count writes, 1 then 0. Sent at
    once on two connections, the 1 could land last and show a watcher on B for the 15 s
    of its expiry (found in review). Here the first write is held back on its way."""
    options = parse_url(redis_store_url(redis_server, tmp_path))
    client = aioredis.Redis.from_url(options.url)
    keys = RedisKeys(options.prefix)
    on_a = RedisViewerCounts(options, keys, "replica-a", lambda: client)
    on_b = RedisViewerCounts(options, keys, "replica-b", lambda: client)
    on_a.start()
    script, first = on_a._script, [True]

    async def slow_first(*args: Any, **kwargs: Any) -> Any:
        if first:
            first.clear()
            await asyncio.sleep(0.2)
        return await script(*args, **kwargs)

    on_a._script = slow_first
    try:
        await asyncio.gather(on_a.set("run-1", 1), on_a.set("run-1", 0))
        await asyncio.sleep(0.3)  # anything still on its way has landed
        assert await on_b.others(["run-1"]) == {}
        await on_a.set("run-1", 2)
        assert await on_b.others(["run-1"]) == {"run-1": 2}
    finally:
        await on_a.stop()
        await client.aclose()


async def test_the_watchers_of_a_replica_that_stops_stop_counting_at_once(
    replicas: tuple[ServerProcess, ServerProcess],
    stubs: tuple[run_service_pb2_grpc.RunServiceStub, run_service_pb2_grpc.RunServiceStub],
) -> None:
    """Found in review: a replica stopped with SIGTERM (every deploy) left its watchers'
    count for the 15 s of its expiry, so each watcher that resumed on another replica
    counted twice meanwhile. A replica that stops takes its counts with it."""
    on_a, on_b = stubs
    watched = (await on_a.CreateRun(rs.CreateRunRequest(workflow="viewers"))).run.run_id
    watchers: list[Any] = []
    try:
        watchers += await watching(on_b, watched, 2)
        await until(lambda: _counts(on_a, watched, 2))
        assert replicas[1].terminate() == 0  # SIGTERM: a graceful stop
        await until(lambda: _counts(on_a, watched, 0), within=5)  # not 15 s
    finally:
        for call in watchers:
            call.cancel()


async def _counts(stub: run_service_pb2_grpc.RunServiceStub, run_id: str, expected: int) -> bool:
    return await counted(stub, run_id) == expected
