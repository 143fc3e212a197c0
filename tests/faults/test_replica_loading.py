"""A replica that is still loading a run when another replica's commit notice arrives.

Real redis-server (the session's, under a key prefix of its own), two in-process replicas.
Loading a run takes a few store reads; a notice of a commit made after the first of them
must not be passed over because the run is not in memory yet: that replica would keep the
run as it was, and its watchers would wait for their next heartbeat, not even ending when
the commit was the run's last.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.following import Notices
from runstream_server.domain.ledger import RunLedger
from runstream_server.domain.state import RunState
from runstream_server.store.base import CommitNotice, Notice

from tests.conftest import RedisProcess, redis_store_url, replica_channels

UNKNOWN = "f" * 32  # a run id nobody created


@pytest.mark.parametrize("notice", ["applied", "lost-then-resync"])
async def test_a_commit_made_while_the_other_replica_loads_the_run_reaches_its_watcher(
    notice: str, redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`applied`: the commit's notice is applied while B loads the run. `lost-then-resync`:
    the notice is lost (a reconnect) and the resync after the gap runs while B loads it, and
    while B also loads a run that does not exist (asked for first, so resynced first)."""
    url = redis_store_url(redis_server, tmp_path)  # keys of this test's own
    target: list[str] = []  # the watched run, once created
    read = asyncio.Event()  # B has read the run from the store, and is still loading it
    noticed = asyncio.Event()  # B has begun applying the notice, or the resync
    unknown_loading = asyncio.Event()  # B is loading a run nobody created
    restore, on_notice = RunLedger.restore, Notices.on_notice
    apply, resync = Notices._apply, Notices._resync

    def after_load(commit: Notice) -> bool:
        return isinstance(commit, CommitNotice) and commit.run_id in target and read.is_set()

    async def slow_restore(self: RunLedger, run_id: str) -> RunState:
        if run_id == UNKNOWN:
            unknown_loading.set()
            await noticed.wait()
        state = await restore(self, run_id)
        if run_id in target and not read.is_set():
            read.set()
            await noticed.wait()  # the notice, or the resync, comes before the load is done
        return state

    def losing(self: Notices, commit: Notice) -> None:  # lost with the connection: a gap
        on_notice(self, None if after_load(commit) else commit)

    async def applying(self: Notices, commit: CommitNotice) -> None:
        if after_load(commit):
            noticed.set()
        await apply(self, commit)

    async def resyncing(self: Notices, since_us: int) -> None:
        if read.is_set():
            noticed.set()
        await resync(self, since_us)

    monkeypatch.setattr(RunLedger, "restore", slow_restore)
    if notice == "applied":
        monkeypatch.setattr(Notices, "_apply", applying)
    else:
        monkeypatch.setattr(Notices, "on_notice", losing)
        monkeypatch.setattr(Notices, "_resync", resyncing)
    async with replica_channels(url, tmp_path) as (on_a, on_b):
        created = await run_service_pb2_grpc.RunServiceStub(on_a).CreateRun(
            rs.CreateRunRequest(workflow="loading")
        )
        run_id = created.run.run_id
        target.append(run_id)
        runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
        seen: list[int] = []

        async def watch() -> None:  # no heartbeat (and so no head check) for 5 minutes
            request = rs.WatchRunRequest(
                run_id=run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
            )
            async for response in runs_b.WatchRun(request):
                seen.extend(e.seq for e in response.events)

        asking = asyncio.ensure_future(runs_b.GetRun(rs.GetRunRequest(run_id=UNKNOWN)))
        await asyncio.wait_for(unknown_loading.wait(), 10)
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(read.wait(), 10)
            report = report_service_pb2_grpc.ReportServiceStub(on_a)  # type: ignore[no-untyped-call]
            tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
            done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
            acked = await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick, tick, done])
            )
            # The run's last commit: only its notice can tell B the run ended. B's watcher
            # ends after the terminal event, and B answers with the run as it ended.
            await asyncio.wait_for(watcher, 10)
            assert seen == list(range(1, acked.last_seq + 1))
            run = (await runs_b.GetRun(rs.GetRunRequest(run_id=run_id))).run
            assert (run.status, run.last_seq) == (run_pb2.RUN_STATUS_SUCCEEDED, acked.last_seq)
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await asking
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            watcher.cancel()
            asking.cancel()
