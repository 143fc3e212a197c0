"""Watchers that fall behind and then vanish (a closed laptop lid, a killed tab) are no
server error. Found in review: each left an ERROR with a nine-line traceback in the server's
log, from grpcio ("ExecuteBatchError raised in core by servicer method [.../WatchRun]"): 20
such watchers, 20 tracebacks in one millisecond, and anyone alerting on ERROR paged for it.

A real `runstream serve`, a run with more history than the flow-control windows hold, and a
child process whose plain grpcio watchers read nothing and are killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from runstream.v1 import event_pb2, report_service_pb2, report_service_pb2_grpc
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc as rs_grpc

from tests.conftest import ServerProcess, free_port

STALLED = """
import asyncio, sys
import grpc
from runstream.v1 import run_service_pb2 as rs

async def main() -> None:
    channel = grpc.aio.insecure_channel(sys.argv[1])
    watch = channel.unary_stream(
        "/runstream.v1.RunService/WatchRun",
        request_serializer=rs.WatchRunRequest.SerializeToString,
    )
    calls = [watch(rs.WatchRunRequest(run_id=sys.argv[2])) for _ in range(10)]
    for call in calls:
        await call.wait_for_connection()
    print("open", flush=True)
    await asyncio.sleep(3600)  # reads nothing

asyncio.run(main())
"""


async def test_watchers_that_vanish_while_behind_leave_no_error_in_the_log(
    tmp_path: Path,
) -> None:
    server = ServerProcess(port=free_port(), store_path=tmp_path / "runstream.db")
    server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = rs_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            run_id = (await runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id
            for _ in range(10):  # 10 MB of history
                delta = event_pb2.TextDelta(agent_id="a", message_id="m", delta="x" * 1000)
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(
                        run_id=run_id,
                        events=[event_pb2.RunEvent(text_delta=delta) for _ in range(1000)],
                    )
                )
        stalled = subprocess.Popen(  # noqa: ASYNC220 - started, read once, killed
            [sys.executable, "-c", STALLED, server.target, run_id],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert stalled.stdout is not None
            assert await asyncio.to_thread(stalled.stdout.readline) == "open\n"
            await asyncio.sleep(2)
        finally:
            stalled.send_signal(signal.SIGKILL)
            stalled.wait()
            if stalled.stdout is not None:
                stalled.stdout.close()
        await asyncio.sleep(2)  # the server finds the streams gone
    finally:
        assert server.terminate() == 0
    log = server.store_path.with_suffix(".log").read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
