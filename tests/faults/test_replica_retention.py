"""A retention purge on one replica reaches the others: resuming into trimmed history on any
replica is the precise FAILED_PRECONDITION, never an empty or partial stream.

Two real grpc.aio servers on one real redis-server. Replica B holds the ended run in memory
(it was read there) when replica A purges its log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import (
    decision_service_pb2_grpc,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import event_pb2 as ev
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.following import Notices
from runstream_server.domain.runs import Retention
from runstream_server.store.base import Notice, PurgedNotice

from tests.conftest import RedisProcess, redis_store_url


@pytest.fixture
async def two_servers(
    tmp_path: Path, redis_server: RedisProcess
) -> AsyncIterator[tuple[RunstreamServer, RunstreamServer]]:
    url = redis_store_url(redis_server, tmp_path / "shared")
    servers = [
        RunstreamServer(
            ServerConfig(
                address="127.0.0.1:0",
                store_path=tmp_path / f"{name}.db",
                store_url=url,
                # Every ended run is past the policy; passes run when the test says so.
                retention=Retention(runs=0, interval=3600),
            )
        )
        for name in ("a", "b")
    ]
    started: list[RunstreamServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
        yield servers[0], servers[1]
    finally:
        for server in started:
            await server.stop(grace=0.5)


async def test_a_purge_on_replica_a_is_the_precise_error_on_replica_b(
    two_servers: tuple[RunstreamServer, RunstreamServer],
) -> None:
    a, b = two_servers
    async with (
        grpc.aio.insecure_channel(a.target) as on_a,
        grpc.aio.insecure_channel(b.target) as on_b,
    ):
        runs_a = run_service_pb2_grpc.RunServiceStub(on_a)
        report_a = report_service_pb2_grpc.ReportServiceStub(on_a)
        runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
        run_id = (await runs_a.CreateRun(run_service_pb2.CreateRunRequest(workflow="r"))).run.run_id
        events = [
            ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}") for n in range(5)
        ]
        events.append(ev.RunEvent(run_completed=ev.RunCompleted()))
        done = await report_a.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=events)
        )
        head = done.last_seq
        # B reads the whole run, so it holds it in memory, as it was before the purge.
        whole = runs_b.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id))
        assert [e.seq async for r in whole for e in r.events] == list(range(1, head + 1))

        assert await a.runs.apply_retention() == [run_id]  # A purges; B did nothing

        expected = (
            f"events 3..{head} of run {run_id!r} were removed by the retention policy; "
            "read the run's snapshot instead"
        )
        resumed = runs_b.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id, after_seq=2))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async with asyncio.timeout(30):  # a stream that stays open and empty: the bug
                async for response in resumed:
                    raise AssertionError(f"B streamed {response} from a purged log")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details().startswith(f"after_seq: {expected}")

        with pytest.raises(grpc.aio.AioRpcError) as listed:
            await runs_b.ListEvents(run_service_pb2.ListEventsRequest(run_id=run_id))
        assert listed.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # B's snapshot says so too, and the snapshot path still works there.
        got = await runs_b.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
        assert got.run.purged_seq == head
        snap = runs_b.WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id, include_snapshot=True)
        )
        responses = [r async for r in snap]
        assert responses[0].snapshot.last_seq == head
        assert [e for r in responses for e in r.events] == []


@pytest.fixture
def deaf_to_purges(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replicas started after this drop every purge notice (lost, or not applied yet)."""
    on_notice = Notices.on_notice

    def not_hearing_purges(self: Notices, notice: Notice) -> None:
        if not isinstance(notice, PurgedNotice):
            on_notice(self, notice)

    monkeypatch.setattr(Notices, "on_notice", not_hearing_purges)


async def test_decisions_purged_on_replica_a_are_the_precise_error_on_replica_b_before_it_hears(
    deaf_to_purges: None, two_servers: tuple[RunstreamServer, RunstreamServer]
) -> None:
    """B holds the run, its decisions included, and has not heard of A's purge (the notice is
    lost, or not applied yet): its decision answers still say that retention took them."""
    a, b = two_servers
    assert a.runs is not None
    await a.runs.create_run(run_id="r", workflow="d", display_name="", labels={}, steps=[])
    asked = ev.DecisionRequested(
        decision_id="go", prompt="Go?", options=[ev.DecisionOption(value="yes")]
    )
    await a.runs.append("r", [ev.RunEvent(decision_requested=asked)])
    async with grpc.aio.insecure_channel(b.target) as on_b:
        decisions_b = decision_service_pb2_grpc.DecisionServiceStub(on_b)
        answer = ds.SubmitDecisionRequest(run_id="r", decision_id="go", choice="yes")
        await decisions_b.SubmitDecision(answer)  # B holds the run from here on
        done = await a.runs.append("r", [ev.RunEvent(run_completed=ev.RunCompleted())])
        # B's stream ends with the run, once B has folded the end in from A's notice.
        whole = run_service_pb2_grpc.RunServiceStub(on_b).WatchRun(
            run_service_pb2.WatchRunRequest(run_id="r")
        )
        async with asyncio.timeout(10):
            assert [e.seq async for r in whole for e in r.events][-1] == done.last_seq
        listed = await decisions_b.ListDecisions(ds.ListDecisionsRequest(run_id="r"))
        assert [d.choice for d in listed.decisions] == ["yes"]

        assert await a.runs.apply_retention() == ["r"]  # A purges; B is not told

        for call in (
            decisions_b.ListDecisions(ds.ListDecisionsRequest(run_id="r")),
            decisions_b.GetDecision(ds.GetDecisionRequest(run_id="r", decision_id="go")),
            decisions_b.SubmitDecision(answer),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.value.details().startswith(
                f"run_id: events 1..{done.last_seq} of run 'r' were removed by the retention policy"
            )


async def test_newest_first_on_replica_b_before_it_hears_of_a_purge_is_the_precise_error(
    deaf_to_purges: None, two_servers: tuple[RunstreamServer, RunstreamServer]
) -> None:
    """B holds the run and has not heard of A's purge: listing newest first there finds no
    events, asks the store why, and says that retention took them, as in seq order, rather
    than answering with an empty page that reads as a run without events."""
    a, b = two_servers
    assert a.runs is not None
    await a.runs.create_run(run_id="r", workflow="n", display_name="", labels={}, steps=[])
    ticks = [ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}") for n in range(5)]
    done = await a.runs.append("r", [*ticks, ev.RunEvent(run_completed=ev.RunCompleted())])
    async with grpc.aio.insecure_channel(b.target) as on_b:
        runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
        # B reads the run, so it holds it in memory, as it was before the purge.
        whole = runs_b.WatchRun(run_service_pb2.WatchRunRequest(run_id="r"))
        async with asyncio.timeout(10):
            assert [e.seq async for r in whole for e in r.events][-1] == done.last_seq
        first = await runs_b.ListEvents(
            run_service_pb2.ListEventsRequest(run_id="r", page_size=2, order_by="seq desc")
        )
        assert [e.seq for e in first.events] == [done.last_seq, done.last_seq - 1]

        assert await a.runs.apply_retention() == ["r"]  # A purges; B is not told

        removed = f"events 1..{done.last_seq} of run 'r' were removed by the retention policy"
        for request, field in [
            (run_service_pb2.ListEventsRequest(run_id="r", order_by="seq desc"), "run_id"),
            (
                run_service_pb2.ListEventsRequest(
                    run_id="r", order_by="seq desc", page_token=first.next_page_token
                ),
                "page_token",
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs_b.ListEvents(request)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert refused.value.details().startswith(f"{field}: {removed}")
