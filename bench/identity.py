"""What authentication costs: the same calls with auth off and with RS256 tokens verified.

    .venv/bin/python bench/identity.py            # about 30 s
    .venv/bin/python bench/identity.py --quick

Server and client share one process and event loop (in-process grpc.aio server on
127.0.0.1), so the figures are relative: each pair is measured back to back, rounds
alternate, and medians are printed. Unary: sequential GetRun calls per second (each one
verifies its token: parse, RS256 signature, claims). Stream: one WatchRun replaying a stored
run of N events, events per second received (the token is checked once; what remains per
message is the expiry guard around the stream). The append-rate limit is off for the bulk
load that sets the run up.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from runstream._auth import auth_interceptors
from runstream.v1 import event_pb2, report_service_pb2_grpc, run_service_pb2, run_service_pb2_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.auth.edge import SecurityConfig
from runstream_server.auth.limits import CallerLimits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.identity import Keys, rs256_auth


async def measure(
    security: SecurityConfig, token: str | None, calls: int, events: int
) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="rs-bench-identity-"))
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=folder / "r.db",
            sqlite_synchronous="NORMAL",
            security=security,
        )
    )
    await server.start()
    try:
        channel = grpc.aio.insecure_channel(server.target, interceptors=auth_interceptors(token))
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = (
            await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="bench"))
        ).run.run_id
        for start in range(0, events, 500):
            batch = []
            for i in range(start, min(events, start + 500)):
                event = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
                event.idempotency_key = f"k{i}"
                batch.append(event)
            await report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=batch))
        request = run_service_pb2.GetRunRequest(run_id=run_id)
        began = time.perf_counter()
        for _ in range(calls):
            await runs.GetRun(request)
        unary = calls / (time.perf_counter() - began)
        received = 0
        began = time.perf_counter()
        async for response in runs.WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id, keep_open=False)
        ):
            received += len(response.events)
            if received >= events:
                break
        stream = received / (time.perf_counter() - began)
        await channel.close(grace=None)
        return unary, stream
    finally:
        await server.stop(grace=0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, events, rounds = (300, 5_000, 2) if args.quick else (1_500, 40_000, 3)
    keys = Keys.make(Path(tempfile.mkdtemp(prefix="rs-bench-keys-")))
    token = keys.token(["admin"])
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for _ in range(rounds):
        off.append(await measure(SecurityConfig(), None, calls, events))
        # The append-rate limit (2,000 events/s by default) would throttle the setup's bulk
        # load; it is not what is measured here.
        unlimited = dataclasses.replace(
            rs256_auth(keys), limits=CallerLimits(append_events_per_second=0)
        )
        on.append(await measure(unlimited, token, calls, events))

    def median(samples: list[tuple[float, float]], i: int) -> float:
        return statistics.median(s[i] for s in samples)

    print(f"{'':34}{'auth off':>12}{'RS256 auth':>12}{'ratio':>8}")
    for i, name in enumerate(("GetRun calls/s (sequential)", "WatchRun replay events/s")):
        a, b = median(off, i), median(on, i)
        print(f"{name:34}{a:12,.0f}{b:12,.0f}{b / a:8.2f}")
    print(f"({rounds} alternating rounds, medians; {calls} calls, {events} events per round)")


if __name__ == "__main__":
    asyncio.run(main())
