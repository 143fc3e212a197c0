"""A full disk under a running server: writes answer UNAVAILABLE, health says NOT_SERVING,
the SDK keeps its events and delivers them once space is freed; nothing is lost or doubled.

Issue 8, items 12 (a full disk), 13 (write access lost while running: the same storage-fault
path) and 18 (the real cause is what is logged, not a failed ROLLBACK after it). The store is
on a real, small tmpfs that the test fills with a real file.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
import runstream
from grpc_health.v1 import health_pb2
from runstream import Custom, EventKind
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.errors import Unavailable
from runstream_server.store.base import StoredEvent
from runstream_server.store.sqlite import SqliteEventStore

from tests.clients.support import eventually
from tests.faults.storage import fill, health, small_filesystem, until_health
from tests.server.support import custom

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_a_full_disk_answers_unavailable_and_the_sdk_delivers_after_space_frees(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with small_filesystem("6m") as mount_point:
        server = RunstreamServer(
            ServerConfig(address="127.0.0.1:0", store_path=mount_point / "runstream.db")
        )
        await server.start()
        try:
            async with (
                runstream.connect(server.target, reconnect_timeout=None) as client,
                grpc.aio.insecure_channel(server.target) as channel,
            ):
                runs = run_service_pb2_grpc.RunServiceStub(channel)
                report = report_service_pb2_grpc.ReportServiceStub(channel)
                raw = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="raw"))).run
                run = await client.start_run("disk-full")
                for i in range(20):
                    await run.custom("before", {"i": i})
                await run.flush()
                assert await health(channel) == SERVING

                filler = fill(mount_point)
                # A write that needs space: UNAVAILABLE, saying the store is full. (A few
                # small writes may still fit in space SQLite already holds.)
                failure: grpc.aio.AioRpcError | None = None
                for n in range(200):
                    event = custom(n)
                    event.custom.data.update({"padding": "x" * 4000})
                    try:
                        await report.AppendEvents(
                            report_service_pb2.AppendEventsRequest(
                                run_id=raw.run_id, events=[event]
                            )
                        )
                    except grpc.aio.AioRpcError as exc:
                        failure = exc
                        break
                assert failure is not None, "the disk never filled up"
                assert failure.code() == grpc.StatusCode.UNAVAILABLE
                assert "the store is full" in (failure.details() or "")
                await until_health(channel, NOT_SERVING)

                # The producer goes on reporting; nothing can be stored, nothing is dropped.
                for i in range(30):
                    await run.custom("during", {"i": i, "padding": "y" * 2000})
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(run.flush(), 2.0)
                assert run.events_acknowledged < run.events_reported
                with pytest.raises(grpc.aio.AioRpcError) as again:
                    await report.AppendEvents(
                        report_service_pb2.AppendEventsRequest(
                            run_id=raw.run_id, events=[custom(999)]
                        )
                    )
                assert again.value.code() == grpc.StatusCode.UNAVAILABLE
                # Reads still work while writes cannot.
                assert (await client.get_run(run.run_id)).run_id == run.run_id

                filler.unlink()
                await asyncio.wait_for(run.flush(), 30)
                await until_health(channel, SERVING)
                await run.complete("space came back")
                events = [e async for e in client.watch(run.run_id)]
        finally:
            await server.stop(grace=0.5)

    ticks = [e.payload for e in events if e.kind == EventKind.CUSTOM]
    assert all(isinstance(t, Custom) for t in ticks)
    phases = [(t.type, int(t.data["i"])) for t in ticks if isinstance(t, Custom)]
    assert phases == [("before", i) for i in range(20)] + [("during", i) for i in range(30)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind == EventKind.RUN_COMPLETED

    store_log = [r.getMessage() for r in caplog.records if r.name == "runstream.store"]
    assert any("database or disk is full" in line for line in store_log), store_log
    assert any("takes writes again" in line for line in store_log), store_log
    assert "cannot rollback" not in caplog.text


async def test_a_deadline_that_passes_while_the_disk_is_full_still_closes_its_decision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's own writes retry too: a decision's deadline is not dropped because the
    store could not take the write when it passed."""
    caplog.set_level(logging.INFO)
    with small_filesystem("6m") as mount_point:
        server = RunstreamServer(
            ServerConfig(address="127.0.0.1:0", store_path=mount_point / "runstream.db")
        )
        await server.start()
        try:
            async with runstream.connect(server.target, reconnect_timeout=None) as client:
                run = await client.start_run("deadline")
                asking = asyncio.create_task(
                    run.ask("Go on?", ["yes", "no"], default="yes", timeout=3.0, decision_id="q")
                )
                for _ in range(400):
                    if [d.decision_id for d in await client.list_decisions(run.run_id)]:
                        break
                    await asyncio.sleep(0.01)
                filler = fill(mount_point)

                def deadline_failed() -> bool:
                    return any(
                        "closing decision q" in r.getMessage() and "retrying" in r.getMessage()
                        for r in caplog.records
                    )

                await eventually(deadline_failed)
                assert not asking.done()
                filler.unlink()
                result = await asyncio.wait_for(asking, 60)
                assert result.outcome == runstream.DecisionOutcome.DEFAULTED
                assert result.choice == "yes"
                await run.complete("ok")
        finally:
            await server.stop(grace=0.5)


async def test_a_batch_larger_than_the_page_cache_on_a_full_disk_is_refused_unavailable() -> None:
    """A batch of more than SQLite's page cache holds (2 MB) spills to the WAL while its
    events are inserted, so the full disk fails that statement, not the commit: the write is
    refused as a storage fault (UNAVAILABLE, retry later), not taken for a key the log holds
    (which the server answers by reading the log and trying again, or ABORTED), and nothing
    of it is stored."""
    with small_filesystem("6m") as mount_point:
        store = SqliteEventStore(mount_point / "runstream.db")
        await store.open()
        try:
            run = run_pb2.Run(run_id="r", workflow="w", last_seq=1)
            await store.append("r", [StoredEvent(1, 1, "", b"created")], run, expected_seq=0)
            fill(mount_point)
            big = [StoredEvent(seq, 1, f"k{seq}", bytes(8192)) for seq in range(2, 502)]
            run.last_seq = 501
            with pytest.raises(Unavailable) as refused:
                await store.append("r", big, run, expected_seq=1)
            assert refused.value.reason == "STORE_REFUSED_WRITE"
            assert "the store is full" in refused.value.message
            assert [e.seq for e in await store.read_events("r", 0, 10)] == [1]
        finally:
            await store.close()
