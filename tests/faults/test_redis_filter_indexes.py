"""ListRuns by workflow, label or one ended status on Redis reads the runs that have it, not
every stored run: the store's filter indexes and its indexes of the ended runs by status, on
a real redis-server behind real grpc.aio servers, also for runs stored (or ended) before the
indexes existed and for runs a replica of an earlier release creates (or ends) during a
rollout. Without the index, `status = FAILED` with no failed run read every stored run
(5.8-9.3 s among 50,000, review scale60 finding 3).

What a listing read is counted at the store's one reader of run snapshots: without the
indexes a rare workflow's page read every stored run (3.7 s for a label matching nothing
among 101,000 runs, README, Replicas on Redis).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from runstream._auth import auth_interceptors
from runstream.v1 import event_pb2 as ev
from runstream.v1 import run_pb2, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.store.base import RunFilter
from runstream_server.store.redis import RedisEventStore
from runstream_server.store.redis_filters import FilterIndexes
from runstream_server.store.redis_index import TERMINAL
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.clients.support import eventually, until
from tests.conftest import RedisProcess, ServerProcess, free_port, redis_store_url, serving_on
from tests.faults.test_rolling_upgrade import earlier_release
from tests.identity import Keys, rs256_auth


def by_name(run_filter: RunFilter) -> bool:
    return run_filter.workflow is not None or bool(run_filter.labels)


class Reads:
    """Counts the run snapshots read by a server's listings by workflow or label (or by what
    `counted` says): the test's (the server's own, such as the stall checks' of the pending
    runs, go by statuses not ended)."""

    def __init__(
        self, server: RunstreamServer, counted: Callable[[RunFilter], bool] = by_name
    ) -> None:
        store = redis_store(server)
        self.snapshots, self.listing = store._snapshots, store._listing
        self.count = 0
        listing: contextvars.ContextVar[bool] = contextvars.ContextVar("listing", default=False)
        read, list_runs = self.snapshots.read, self.listing.list_runs

        async def reading(run_ids: list[str]) -> Any:
            if listing.get():
                self.count += len(run_ids)
            return await read(run_ids)

        async def listed(run_filter: RunFilter, *args: Any, **kwargs: Any) -> Any:
            token = listing.set(counted(run_filter))  # in the calling task's context only
            try:
                return await list_runs(run_filter, *args, **kwargs)
            finally:
                listing.reset(token)

        self.snapshots.read = reading  # type: ignore[method-assign]
        self.listing.list_runs = listed  # type: ignore[method-assign]

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


async def listed(runs: run_service_pb2_grpc.RunServiceStub, text: str, size: int = 0) -> list[str]:
    """Every run ListRuns lists for the filter `text`, page after page of `size`."""
    ids: list[str] = []
    token = ""
    while True:
        page = await runs.ListRuns(
            rs.ListRunsRequest(filter=text, page_size=size, page_token=token)
        )
        ids += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            return ids


async def has(listing: Awaitable[list[str]], runs: list[str]) -> bool:
    return await listing == runs


async def create(
    runs: run_service_pb2_grpc.RunServiceStub, run_id: str, workflow: str, **labels: str
) -> None:
    await runs.CreateRun(rs.CreateRunRequest(run_id=run_id, workflow=workflow, labels=labels))


@pytest.fixture
async def store_url(tmp_path: Path, redis_server: RedisProcess) -> str:
    return redis_store_url(redis_server, tmp_path / "store")


@pytest.fixture
async def redis(store_url: str) -> AsyncIterator[tuple[Any, RedisKeys]]:
    options = parse_url(store_url)
    client = aioredis.from_url(options.url)
    try:
        yield client, RedisKeys(options.prefix)
    finally:
        await client.aclose()


def redis_store(server: RunstreamServer) -> RedisEventStore:
    store = server._store.inner  # type: ignore[union-attr]
    assert isinstance(store, RedisEventStore)
    return store


async def ready(server: RunstreamServer) -> None:
    """Waits for the server's first walk over the stored runs (started with the store)."""
    filters = redis_store(server)._filters
    await eventually(lambda: filters.ready, 10)


async def test_a_workflow_or_label_filter_reads_only_the_runs_that_have_it(
    store_url: str, tmp_path: Path
) -> None:
    async with serving_on(store_url, tmp_path / "a") as server:
        await ready(server)
        reads = Reads(server)
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            for n in range(120):
                await create(runs, f"common-{n}", "campaign", team="growth")
            for n in range(3):
                await create(runs, f"rare-{n}", "discovery", team="sales", tier="gold")
            await create(runs, "rare-3", "discovery")
            reads.taken()

            rare = ["rare-3", "rare-2", "rare-1", "rare-0"]
            assert await listed(runs, 'workflow = "discovery"') == rare
            assert reads.taken() <= len(rare) + 1  # the page's runs (and one past it)
            assert await listed(runs, 'labels.team = "sales"') == rare[1:]
            assert reads.taken() <= 4
            both = 'workflow = "discovery" AND labels.tier = "gold" AND status = PENDING'
            assert await listed(runs, both, size=2) == rare[1:]
            assert reads.taken() <= 6
            assert await listed(runs, 'labels.team = "nobody"') == []
            assert reads.taken() == 0
            # A common label: its index is no smaller than the workflow's runs.
            common = await listed(runs, 'workflow = "campaign" AND labels.team = "growth"', 50)
            assert common == [f"common-{n}" for n in reversed(range(120))]


async def test_runs_stored_before_the_indexes_existed_are_entered_by_the_first_walk(
    store_url: str, tmp_path: Path, redis: tuple[Any, RedisKeys], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, keys = redis
    async with (
        serving_on(store_url, tmp_path / "a") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        for n in range(30):
            await create(runs, f"old-{n}", "campaign" if n % 10 else "discovery", team="t")
    # What a store of an earlier release holds: the runs, without their filter entries.
    await client.delete(keys.filters, keys.workflow_runs("campaign"))
    await client.delete(keys.workflow_runs("discovery"), keys.label_runs("team", "t"))
    for n in range(30):
        await client.hdel(keys.meta(f"old-{n}"), "ix")

    walk_goes_on = asyncio.Event()  # the first walk is held until the test lets it go on
    enter = FilterIndexes._enter_unmarked

    async def held(self: FilterIndexes, scored: Any) -> int:
        await walk_goes_on.wait()
        return await enter(self, scored)

    monkeypatch.setattr(FilterIndexes, "_enter_unmarked", held)
    async with (
        serving_on(store_url, tmp_path / "b") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        expected = ["old-20", "old-10", "old-0"]
        # While the walk is under way (the indexes not whole yet) and after, the listing is.
        assert await listed(runs, 'workflow = "discovery"') == expected
        walk_goes_on.set()
        await ready(server)
        reads = Reads(server)
        assert await listed(runs, 'workflow = "discovery"') == expected
        assert reads.taken() <= 4
        assert len(await listed(runs, 'labels.team = "t"', 7)) == 30
    assert await client.hget(keys.meta("old-7"), "ix") == b"1"


async def test_a_run_an_earlier_release_creates_during_a_rollout_is_listed_by_its_filters(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica of the release before the filter indexes creates a run (no entries, no
    mark); this one's walk enters it, and the filtered listings find it."""
    monkeypatch.setattr(FilterIndexes, "EVERY", 0.2)
    old = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "old.db",
        store_url=store_url,
        pythonpath=earlier_release(tmp_path / "earlier"),
    )
    async with serving_on(store_url, tmp_path / "new") as new:
        await ready(new)
        old.start()
        try:
            async with (
                grpc.aio.insecure_channel(old.target) as on_old,
                grpc.aio.insecure_channel(new.target) as on_new,
            ):
                await create(
                    run_service_pb2_grpc.RunServiceStub(on_old), "by-old", "rollout", team="x"
                )
                runs = run_service_pb2_grpc.RunServiceStub(on_new)
                await create(runs, "by-new", "rollout")
                both = ["by-new", "by-old"]
                await until(lambda: has(listed(runs, 'workflow = "rollout"'), both), 10)
                assert await listed(runs, 'labels.team = "x"') == ["by-old"]
        finally:
            old.kill()


async def test_a_run_stored_after_a_walk_passed_its_create_time_is_entered_by_the_next(
    store_url: str, tmp_path: Path, redis: tuple[Any, RedisKeys]
) -> None:
    """An earlier release's create whose ``P:runs`` entry a walk met before its run was
    stored (the walk leaves it to the next), with newer runs after it: the next walk starts
    a margin before where the last one ended, not at its newest run, so it enters that run
    too, and the run's workflow lists it."""
    client, keys = redis
    async with (
        serving_on(store_url, tmp_path / "a") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        await ready(server)
        await create(runs, "late", "straggler")
        await create(runs, "newer", "other")
        # "late" as an earlier release leaves it while its create is in flight: its P:runs
        # entry only (no filter entries, no mark), its run not stored yet.
        await client.zrem(keys.workflow_runs("straggler"), "late")
        await client.hdel(keys.meta("late"), "ix")
        await client.rename(keys.meta("late"), keys.meta("late") + ":in-flight")
        filters = redis_store(server)._filters
        await filters.catch_up()  # ends at "newer", leaving "late" to the next walk
        await client.rename(keys.meta("late") + ":in-flight", keys.meta("late"))  # stored
        assert await filters.catch_up() == 1
        assert await listed(runs, 'workflow = "straggler"') == ["late"]


async def test_an_active_only_listing_leaves_the_ended_runs_it_passes_as_they_are(
    store_url: str, tmp_path: Path, redis: tuple[Any, RedisKeys], keys: Keys
) -> None:
    """Read through a smaller index than the runs not ended (here the tenant's own), an
    active-only listing met the tenant's ended runs and wrote each as just ended again (in
    ``P:moved``, which tells the other replicas to read it again), at every listing."""
    client, names = redis
    async with serving_on(store_url, tmp_path / "a", security=rs256_auth(keys)) as server:
        acme = grpc.aio.insecure_channel(
            server.target, interceptors=auth_interceptors(keys.token(["producer", "operator"]))
        )
        globex = grpc.aio.insecure_channel(
            server.target,
            interceptors=auth_interceptors(keys.token(["producer"], sub="g", tenant="globex")),
        )
        async with acme, globex:
            runs = run_service_pb2_grpc.RunServiceStub(acme)
            for n in range(5):
                await create(run_service_pb2_grpc.RunServiceStub(globex), f"busy-{n}", "other")
            await create(runs, "done", "rare")
            await runs.CancelRun(rs.CancelRunRequest(run_id="done"))
            await create(runs, "live", "rare")
            moved = await client.zscore(names.moved, "done")
            assert moved is not None
            for text in ("status = PENDING", 'workflow = "rare" AND status = PENDING'):
                await asyncio.sleep(0.002)
                assert await listed(runs, text) == ["live"]
                assert await client.zscore(names.moved, "done") == moved


# --- the ended runs by status ----------------------------------------------------------


def by_ended_status(run_filter: RunFilter) -> bool:
    return bool(run_filter.statuses & TERMINAL)


async def end(server: RunstreamServer, run_id: str, event: ev.RunEvent) -> None:
    runs = server.runs
    assert runs is not None
    await runs.create_run(run_id=run_id, workflow="wf", display_name="", labels={}, steps=[])
    await runs.append(run_id, [event])


def failed() -> ev.RunEvent:
    return ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="no")))


def succeeded() -> ev.RunEvent:
    return ev.RunEvent(run_completed=ev.RunCompleted(summary="ok"))


async def test_an_ended_status_filter_reads_only_the_runs_of_that_status(
    store_url: str, tmp_path: Path
) -> None:
    async with serving_on(store_url, tmp_path / "a") as server:
        for n in range(2):
            await end(server, f"broke-{n}", failed())
        for n in range(60):
            await end(server, f"done-{n}", succeeded())
        reads = Reads(server, by_ended_status)
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            # Each listing reads its own runs and no other (before: all 62, every time).
            for status, expected in (("FAILED", ["broke-1", "broke-0"]), ("CANCELLED", [])):
                assert await listed(runs, f"status = {status}") == expected
                assert reads.taken() == len(expected)
            done = await listed(runs, "status = SUCCEEDED", 7)
            assert done == [f"done-{n}" for n in reversed(range(60))]


async def test_runs_ended_before_the_indexes_existed_are_entered_at_start(
    store_url: str, tmp_path: Path, redis: tuple[Any, RedisKeys]
) -> None:
    client, keys = redis
    async with serving_on(store_url, tmp_path / "a") as server:
        for n in range(3):
            await end(server, f"broke-{n}", failed())
        for n in range(30):
            await end(server, f"done-{n}", succeeded())
    # What a store of an earlier release holds: ended runs, no index of them by status.
    await client.hdel(keys.filters, "statuses", "statuses_upto")
    await client.delete(*[keys.ended_runs(status) for status in TERMINAL])

    async with serving_on(store_url, tmp_path / "b") as server:
        reads = Reads(server, by_ended_status)
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            assert await listed(runs, "status = FAILED") == ["broke-2", "broke-1", "broke-0"]
            assert reads.taken() <= 3
    assert await client.zcard(keys.ended_runs(run_pb2.RUN_STATUS_SUCCEEDED)) == 30

    # A run that a replica of an earlier release ended with its end dated back, or that
    # retention purged, before any walk met it: in no index of ended runs read since.
    await client.zrem(keys.ended_runs(run_pb2.RUN_STATUS_FAILED), "broke-1")
    await client.zrem(keys.moved, "broke-1")
    await client.zrem(keys.ended, "broke-1")
    async with (
        serving_on(store_url, tmp_path / "c") as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        assert await listed(runs, "status = FAILED") == ["broke-2", "broke-1", "broke-0"]


async def test_a_run_an_earlier_release_ends_during_a_rollout_is_listed_by_its_status(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica of a release before the indexes by status cancels a run (no entry); this
    one's walk enters it, and the listing by its status finds it."""
    monkeypatch.setattr(FilterIndexes, "EVERY", 0.2)
    old = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "old.db",
        store_url=store_url,
        pythonpath=earlier_release(tmp_path / "earlier"),
    )
    async with serving_on(store_url, tmp_path / "new") as new:
        old.start()
        try:
            async with (
                grpc.aio.insecure_channel(old.target) as on_old,
                grpc.aio.insecure_channel(new.target) as on_new,
            ):
                runs = run_service_pb2_grpc.RunServiceStub(on_new)
                await create(runs, "by-old", "rollout")
                await create(runs, "by-new", "rollout")
                on_old_runs = run_service_pb2_grpc.RunServiceStub(on_old)
                await on_old_runs.CancelRun(rs.CancelRunRequest(run_id="by-old"))
                await runs.CancelRun(rs.CancelRunRequest(run_id="by-new"))
                both = ["by-new", "by-old"]
                await until(lambda: has(listed(runs, "status = CANCELLED"), both), 10)
        finally:
            old.kill()
