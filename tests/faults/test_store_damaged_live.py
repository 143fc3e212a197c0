"""A store file damaged under the running server (cut short, or overwritten: `cp backup.db
runs.db` onto a live store) is answered UNAVAILABLE naming it, health turns NOT_SERVING, and
the log says so once. Found in review: every call got INTERNAL "see server logs" and wrote a
traceback (4,518 in a minute with a retrying client) while health stayed SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from grpc_health.v1 import health_pb2
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer, ServerConfig

from tests.faults.storage import until_health
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def bulky(n: int) -> event_pb2.RunEvent:
    """An event of 2 KB: 2,000 of them are more than SQLite's page cache holds."""
    event = custom(n)
    event.custom.data.update({"text": "x" * 2000})
    return event


async def stubs_of(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(
        channel,
        run_service_pb2_grpc.RunServiceStub(channel),
        report_service_pb2_grpc.ReportServiceStub(channel),
    )


class CutShort(NamedTuple):
    """A server whose store file was cut short under it, with what to ask it."""

    server: RunstreamServer
    stubs: Stubs
    past_the_cut: rs.ListEventsRequest
    """Reads the events of a run with 2,000 of them, written before the server started."""
    live_run_id: str
    """A run the server started before the cut."""


async def write_history(store: Path) -> run_pb2.Run:
    """A run of 2,000 bulky events (4 MB) in `store`, written and checkpointed into the
    file by a server's clean stop; returns the run as created."""
    first = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store))
    await first.start()
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stubs = await stubs_of(channel)
            old = await create_run(stubs)
            for batch in range(40):
                await append(stubs, old.run_id, *(bulky(batch * 50 + i) for i in range(50)))
    finally:
        await first.stop(grace=0.5)
    return old


@contextlib.asynccontextmanager
async def a_server_of_a_store_cut_short(store: Path) -> AsyncIterator[CutShort]:
    """A server whose store file is cut short under it once it runs."""
    config = ServerConfig(address="127.0.0.1:0", store_path=store)
    old = await write_history(store)
    server = RunstreamServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = await stubs_of(channel)
            live = await create_run(stubs)
            os.truncate(store, 64 * 1024)
            past_the_cut = rs.ListEventsRequest(run_id=old.run_id, page_size=1000)
            yield CutShort(server, stubs, past_the_cut, live.run_id)
    finally:
        await server.stop(grace=0.5)


async def test_a_store_cut_short_under_the_server_is_unavailable_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with a_server_of_a_store_cut_short(tmp_path / "runstream.db") as cut:
        stubs = cut.stubs
        for _ in range(3):  # a client that retries: one line in the log, not one each
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stubs.runs.ListEvents(cut.past_the_cut)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "the store file is damaged" in (refused.value.details() or "")
            assert "restarted" in (refused.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            request = report_service_pb2.AppendEventsRequest(
                run_id=cut.live_run_id, events=[custom(1)]
            )
            await stubs.report.AppendEvents(request)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await until_health(stubs.channel, NOT_SERVING)
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "damaged" in said[0].getMessage() and said[0].exc_info is None


async def test_the_cli_says_what_the_server_of_a_damaged_store_says_and_asks_nothing(
    tmp_path: Path,
) -> None:
    """The CLI added "(is a Runstream server running at ...?)" to the UNAVAILABLE a running
    server gave for its store (damaged, full, read-only), pointing the user at the wrong
    cause (found in review). It asks that only when nothing answered."""
    from tests.e2e.test_cli import runstream_cli

    async with a_server_of_a_store_cut_short(tmp_path / "runstream.db") as cut:
        with pytest.raises(grpc.aio.AioRpcError):
            await cut.stubs.runs.ListEvents(cut.past_the_cut)  # the server finds the damage
        past, target = cut.past_the_cut.run_id, cut.server.target
        said = await asyncio.to_thread(
            runstream_cli, "events", past, "--limit", "1000", "--target", target
        )
    assert said.returncode == 1, said.stderr
    assert "unavailable: the store file is damaged" in said.stderr, said.stderr
    assert "restarted" in said.stderr and "server running" not in said.stderr


async def test_nothing_is_written_once_the_damage_is_found(tmp_path: Path) -> None:
    """A write that touched no damaged page still went through after the damage was found:
    a CancelRun was answered as stored, the run CANCELLED, in a file the next start refuses
    (found in review). Once found, every write is UNAVAILABLE and the run stays as it was."""
    async with a_server_of_a_store_cut_short(tmp_path / "runstream.db") as cut:
        stubs = cut.stubs
        with pytest.raises(grpc.aio.AioRpcError):
            await stubs.runs.ListEvents(cut.past_the_cut)  # the server finds the damage
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=cut.live_run_id, reason="x"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the store file is damaged" in (refused.value.details() or "")
        got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=cut.live_run_id))
        assert got.run.status == run_pb2.RUN_STATUS_PENDING and got.run.last_seq == 1
