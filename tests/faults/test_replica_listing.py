"""ListRuns across replicas: a run created on one replica is listed on another, in its
tenant's lists and no one else's; a create cut short by a crash lists nothing, and the
producer's retry creates the run.

Two real grpc.aio servers with tenants on one real redis-server. The crash is the one the
Redis store guards against by its order of writes: the new run's index entries are written,
then the server dies before the script that stores the run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from runstream._auth import auth_interceptors
from runstream.v1 import event_pb2 as ev
from runstream.v1 import report_service_pb2, report_service_pb2_grpc, run_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.conftest import RedisProcess, index_entries_only, redis_store_url, serving_on
from tests.identity import Keys, rs256_auth


class Caller:
    """A tenant's stubs on one replica (its token sent on every call)."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, interceptors=auth_interceptors(token))
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.report = report_service_pb2_grpc.ReportServiceStub(self.channel)

    async def listed(self, filter_text: str = "") -> list[str]:
        response = await self.runs.ListRuns(rs.ListRunsRequest(filter=filter_text))
        return [r.run_id for r in response.runs]


class Deployment:
    """Two replicas on one Redis; acme's producer on A, and on B acme's operator, globex's
    operator and an admin."""

    def __init__(self, url: str, a: RunstreamServer, b: RunstreamServer, keys: Keys) -> None:
        self.url = url
        self.producer = Caller(a.target, keys.token(["producer", "operator"], sub="bot"))
        self.acme_on_a = Caller(a.target, keys.token(["operator"], sub="alice"))
        self.acme = Caller(b.target, keys.token(["producer", "operator"], sub="carol"))
        self.globex = Caller(b.target, keys.token(["operator"], sub="mallory", tenant="globex"))
        self.admin = Caller(b.target, keys.token(["admin"], sub="root", tenant="ops"))
        self.callers = [self.producer, self.acme_on_a, self.acme, self.globex, self.admin]


@pytest.fixture
async def deployment(
    tmp_path: Path, redis_server: RedisProcess, keys: Keys
) -> AsyncIterator[Deployment]:
    url = redis_store_url(redis_server, tmp_path / "shared")
    async with (
        serving_on(url, tmp_path / "a", security=rs256_auth(keys)) as a,
        serving_on(url, tmp_path / "b", security=rs256_auth(keys)) as b,
    ):
        deployment = Deployment(url, a, b, keys)
        try:
            yield deployment
        finally:
            for caller in deployment.callers:
                await caller.channel.close()


async def test_a_run_created_on_one_replica_is_in_its_tenants_lists_on_the_other(
    deployment: Deployment,
) -> None:
    d = deployment
    run_id = (await d.producer.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id

    assert await d.acme.listed() == [run_id]
    assert await d.acme.listed("status = PENDING") == [run_id]
    assert await d.admin.listed() == [run_id]
    assert await d.admin.listed("status = PENDING") == [run_id]
    assert await d.globex.listed() == []
    assert await d.globex.listed("status = PENDING") == []

    done = ev.RunEvent(run_completed=ev.RunCompleted())
    await d.producer.report.AppendEvents(
        report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done])
    )
    assert await d.acme.listed() == [run_id]
    assert await d.acme.listed("status = PENDING") == []
    assert await d.acme.listed("status = SUCCEEDED") == [run_id]
    assert await d.globex.listed("status = SUCCEEDED") == []


async def test_a_create_cut_short_after_its_index_entries_lists_nothing_and_the_retry_creates_it(
    deployment: Deployment,
) -> None:
    d = deployment
    earlier = (await d.producer.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id
    # What a replica killed between the index entries and the script leaves behind.
    await index_entries_only(d.url, "cut-short", "acme", int(time.time() * 1_000_000))

    for caller in (d.acme, d.acme_on_a):
        assert await caller.listed() == [earlier]
        assert await caller.listed("status = PENDING") == [earlier]
    assert await d.admin.listed() == [earlier]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await d.acme.runs.GetRun(rs.GetRunRequest(run_id="cut-short"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # The producer retries its CreateRun, here on the other replica.
    retried = await d.acme.runs.CreateRun(rs.CreateRunRequest(run_id="cut-short", workflow="wf"))
    assert retried.run.run_id == "cut-short"
    for caller in (d.acme, d.acme_on_a):
        assert sorted(await caller.listed()) == sorted([earlier, "cut-short"])
        assert sorted(await caller.listed("status = PENDING")) == sorted([earlier, "cut-short"])
    assert await d.globex.listed() == []


async def test_paging_lists_a_retried_create_once_where_its_first_attempt_put_it(
    deployment: Deployment,
) -> None:
    # A retried create keeps its first attempt's place in the index (ZADD NX), which is
    # earlier than the create time the run is stored with: paging must follow the index.
    d = deployment

    async def create(run_id: str = "") -> str:
        run = await d.acme.runs.CreateRun(rs.CreateRunRequest(run_id=run_id, workflow="wf"))
        return run.run.run_id

    oldest = await create()
    first_attempt = int(time.time() * 1_000_000)
    newer = [await create(), await create()]
    await index_entries_only(d.url, "retried", "acme", first_attempt)
    await create("retried")

    for filter_text in ("", "status = PENDING"):
        pages: list[list[str]] = []
        token = ""
        while len(pages) < 10:  # the old cursor went round in circles
            page = await d.acme_on_a.runs.ListRuns(
                rs.ListRunsRequest(filter=filter_text, page_size=1, page_token=token)
            )
            pages.append([r.run_id for r in page.runs])
            token = page.next_page_token
            if not token:
                break
        assert pages == [[newer[1]], [newer[0]], ["retried"], [oldest]], filter_text
