"""ListRuns and ListSteps: AIP pagination and filters; health and reflection always on."""

from __future__ import annotations

import re

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from runstream.v1 import run_service_pb2 as rs

from tests.server.support import append, create_run, custom, ev


async def all_pages(stubs, **fields) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    ids: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_token=token, **fields))
        ids += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            return ids, pages


async def test_list_runs_pages_newest_first_without_gaps(stubs) -> None:  # type: ignore[no-untyped-def]
    created = [
        (await create_run(stubs, "a", workflow="wf", run_id=f"run-{i:02}")).run_id for i in range(7)
    ]
    ids, pages = await all_pages(stubs, page_size=3)
    assert ids == created[::-1]
    assert pages == 3
    first = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=3))
    assert all(len(r.steps) == 0 for r in first.runs)  # steps come from ListSteps/GetRun


async def test_list_runs_filters(stubs) -> None:  # type: ignore[no-untyped-def]
    a = await create_run(stubs, workflow="campaign", labels={"team": "growth"})
    b = await create_run(stubs, workflow="campaign", labels={"team": "brand"})
    c = await create_run(stubs, workflow="story", labels={"team": "growth"})
    await append(stubs, a.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    await append(stubs, c.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))

    async def ids(filter_text: str) -> set[str]:
        return set((await all_pages(stubs, filter=filter_text))[0])

    assert await ids('workflow = "campaign"') == {a.run_id, b.run_id}
    assert await ids("status = RUNNING") == {a.run_id}
    assert await ids("status = RUN_STATUS_PENDING") == {b.run_id}
    assert await ids('labels.team = "growth"') == {a.run_id, c.run_id}
    assert await ids("labels.team = growth AND workflow = story") == {c.run_id}
    assert await ids('status=succeeded AND labels.team="growth"') == {c.run_id}
    assert await ids("") == {a.run_id, b.run_id, c.run_id}


@pytest.mark.parametrize(
    "bad",
    [
        "status = DANCING",
        "owner = bob",
        "status RUNNING",
        "labels.bad key = x",
        "workflow = a AND workflow = b",
        "labels.team = a AND labels.team = b",
    ],
)
async def test_bad_filter_is_invalid_argument(stubs, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListRuns(rs.ListRunsRequest(filter=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("filter:")


async def test_a_single_quoted_value_is_invalid_argument_saying_to_use_double_quotes(  # type: ignore[no-untyped-def]
    stubs,
) -> None:
    """`workflow = 'campaign'`, as a Python user writes it, took the quotes as part of the
    value and listed no runs, without a word."""
    await create_run(stubs, workflow="campaign", labels={"team": "growth"})
    for single, double in [
        ("workflow = 'campaign'", 'workflow = "campaign"'),
        ("labels.team = 'growth' AND status = PENDING", 'labels.team = "growth"'),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListRuns(rs.ListRunsRequest(filter=single))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().endswith(f"quote a value with double quotes, {double}")
    assert (
        len((await stubs.runs.ListRuns(rs.ListRunsRequest(filter="labels.team = o'brien"))).runs)
        == 0
    )


async def test_page_tokens_are_checked(stubs) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        await create_run(stubs, workflow="wf", run_id=f"r{i}")
    page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1, filter="workflow = wf"))
    for request in [
        rs.ListRunsRequest(page_token="garbage!!"),
        rs.ListRunsRequest(page_token=page.next_page_token, filter="workflow = other"),
        rs.ListRunsRequest(page_size=-1),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListRuns(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().split(":")[0] in ("page_token", "page_size")


async def test_a_page_size_over_1000_is_taken_as_1000(stubs) -> None:  # type: ignore[no-untyped-def]
    """As the contract says (and AIP-158 asks): more than the maximum is not an error; the
    page holds 1,000 and says where the rest begins."""
    run = await create_run(stubs)
    for start in (0, 600):
        await append(stubs, run.run_id, *(custom(n) for n in range(start, start + 600)))
    first = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, page_size=5000))
    assert [e.seq for e in first.events] == list(range(1, 1001))
    assert first.next_page_token
    rest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_size=5000, page_token=first.next_page_token)
    )
    assert [e.seq for e in rest.events] == list(range(1001, 1202))
    assert not rest.next_page_token


async def test_list_steps_pages_in_plan_order(stubs) -> None:  # type: ignore[no-untyped-def]
    names = [f"s{i:02}" for i in range(17)]
    run = await create_run(stubs, *names)
    got: list[str] = []
    token = ""
    while True:
        page = await stubs.runs.ListSteps(
            rs.ListStepsRequest(run_id=run.run_id, page_size=5, page_token=token)
        )
        got += [s.step_id for s in page.steps]
        token = page.next_page_token
        if not token:
            break
    assert got == names
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListSteps(rs.ListStepsRequest(run_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection_are_served(stubs) -> None:  # type: ignore[no-untyped-def]
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in ("", "runstream.v1.RunService", "runstream.v1.ReportService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)

    async def ask():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    services = set()
    async for reply in reflect.ServerReflectionInfo(ask()):
        services |= {s.name for s in reply.list_services_response.service}
    assert {
        "runstream.v1.RunService",
        "runstream.v1.ReportService",
        "grpc.health.v1.Health",
    } <= services


async def test_a_second_server_cannot_take_a_busy_port(server, tmp_path, server_config) -> None:  # type: ignore[no-untyped-def]
    from runstream_server.app import RunstreamServer

    second = RunstreamServer(server_config(tmp_path / "other.db", address=server.target))
    with pytest.raises(OSError, match=r"cannot listen"):
        await second.start()


async def test_a_server_that_cannot_listen_leaves_no_new_store(  # type: ignore[no-untyped-def]
    server, tmp_path, server_config, monkeypatch
) -> None:
    """A busy port is found before the store is opened; and should it be taken only after
    that look (here: the look sees nothing), the store this start created is removed with the
    directories made for it."""
    from runstream_server import app

    new = tmp_path / "new" / "deeper" / "runstream.db"
    busy = f"cannot listen on {server.target}: the port is in use"
    with pytest.raises(OSError, match=f"^{re.escape(busy)}$"):
        await app.RunstreamServer(server_config(new, address=server.target)).start()
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(app, "bind_error", lambda address: None)
    with pytest.raises(OSError, match=r"cannot listen"):
        await app.RunstreamServer(server_config(new, address=server.target)).start()
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept.db"  # a store that exists stays, with what it holds
    first = app.RunstreamServer(server_config(kept))
    await first.start()
    run = await first.runs.create_run(
        run_id="r", workflow="wf", display_name="", labels={}, steps=[]
    )
    await first.stop(grace=0)
    with pytest.raises(OSError, match=r"cannot listen"):
        await app.RunstreamServer(server_config(kept, address=server.target)).start()
    again = app.RunstreamServer(server_config(kept))
    await again.start()
    try:
        assert (await again.runs.get_run("r")).run_id == run.run_id
    finally:
        await again.stop(grace=0)


async def test_reflection_is_served_as_v1_too(stubs) -> None:  # type: ignore[no-untyped-def]
    """grpc.reflection.v1, which newer grpcurl, grpcui and Postman ask for first: a raw call
    on its method path lists the services and finds a service's file. (v1's messages are
    v1alpha's field for field, so v1alpha's classes encode and decode them.)"""
    info = stubs.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    asked = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="runstream.v1.RunService"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service"),
    ]
    listed, found, missing = [reply async for reply in info(iter(asked))]
    services = {s.name for s in listed.list_services_response.service}
    assert {"runstream.v1.RunService", "runstream.v1.ReportService"} <= services
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    [run_service] = [f for f in files if any(s.name == "RunService" for s in f.service)]
    assert run_service.package == "runstream.v1"
    [service] = run_service.service
    assert {"CreateRun", "GetRun", "WatchRun"} <= {m.name for m in service.method}
    assert found.original_request.file_containing_symbol == "runstream.v1.RunService"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
