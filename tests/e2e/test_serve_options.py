"""`runstream serve` options reach the server: retention purges at startup, for real."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

from tests.conftest import ServerProcess, free_port


async def finished_run(target: str) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))).run.run_id
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done])
        )
        return run_id


async def test_retention_runs_purges_older_logs_at_startup(tmp_path: Path) -> None:
    plain = ServerProcess(port=free_port(), store_path=tmp_path / "r.db")
    plain.start()
    try:
        old = await finished_run(plain.target)
        new = await finished_run(plain.target)
    finally:
        plain.terminate()

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "runstream.cli.main",
        "serve",
        "--address",
        f"127.0.0.1:{port}",
        "--store",
        str(tmp_path / "r.db"),
        "--retention-runs",
        "1",
        "--sync",
        "normal",
    ]
    process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts the server and returns at once
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            for _ in range(100):
                snap = (await runs.GetRun(run_service_pb2.GetRunRequest(run_id=old))).run
                if snap.purged_seq:
                    break
                await asyncio.sleep(0.05)
            assert snap.purged_seq == snap.last_seq
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=old)):
                    pass
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            kept = [
                e
                async for r in runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=new))
                for e in r.events
            ]
            assert [e.seq for e in kept] == [1, 2]
    finally:
        process.terminate()
        assert process.wait(20) == 0


def _serve(port: int, store: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", f"127.0.0.1:{port}"]
    return subprocess.run(
        [*argv, "--store", str(store)], capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_on_a_busy_port_says_so_in_one_line_and_leaves_no_store(tmp_path: Path) -> None:
    """The address is tried before the store is opened: a busy port gets one line naming it
    (no gRPC log line), exit status 1, and no new store file or directory; an existing store
    is left as it was."""
    existing = ServerProcess(port=free_port(), store_path=tmp_path / "old.db")
    existing.start()
    assert existing.terminate() == 0
    before = (tmp_path / "old.db").read_bytes()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for store in (tmp_path / "new" / "runs.db", tmp_path / "old.db"):
            result = _serve(port, store)
            assert result.returncode == 1, result.stderr
            said = [line for line in result.stderr.splitlines() if "INFO" not in line]
            assert said == [f"runstream: cannot listen on 127.0.0.1:{port}: the port is in use"]
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "old.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db", "old.log"]
