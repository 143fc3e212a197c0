"""SIGKILL the server mid-append: every acknowledged event survives, at the seq it was given."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import report_service_pb2_grpc, run_service_pb2, run_service_pb2_grpc

from tests.conftest import ServerProcess
from tests.server.support import custom, ev


async def test_acknowledged_events_survive_sigkill(server_process: ServerProcess) -> None:
    server_process.start()
    producers, batches_each, batch_size = 4, 400, 5
    acked: dict[str, int] = {}
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="crash"))).run

        async def produce(p: int) -> None:
            for b in range(batches_each):
                events = [custom(0, key=f"p{p}-b{b}-e{i}") for i in range(batch_size)]
                try:
                    reply = await report.AppendEvents(
                        rp.AppendEventsRequest(run_id=run.run_id, events=events), timeout=5
                    )
                except grpc.aio.AioRpcError:
                    return  # the server is gone; whatever was not acked may or may not be stored
                acked.update({a.idempotency_key: a.seq for a in reply.events})

        tasks = [asyncio.create_task(produce(p)) for p in range(producers)]
        while len(acked) < 500:  # noqa: ASYNC110 - polling a plain dict the producers fill
            await asyncio.sleep(0.01)
        server_process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(acked) >= 500

    server_process.start()
    async with grpc.aio.insecure_channel(server_process.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        stored: dict[str, int] = {}
        last = 0
        request = run_service_pb2.WatchRunRequest(run_id=run.run_id, keep_open=False)
        snapshot = (await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
        stream = runs.WatchRun(request)
        async for response in stream:
            for event in response.events:
                assert event.seq == last + 1  # contiguous, no gap, no repeat
                last = event.seq
                if event.idempotency_key:
                    stored[event.idempotency_key] = event.seq
            if last == snapshot.last_seq:
                stream.cancel()
                break
        for key, seq in acked.items():
            assert stored.get(key) == seq, f"acknowledged event {key} lost or moved"

        # The producers resend everything they are unsure of; nothing is stored twice.
        every = [
            f"p{p}-b{b}-e{i}"
            for p in range(producers)
            for b in range(batches_each)
            for i in range(batch_size)
        ]
        unsure = [k for k in every if k not in acked]
        for start in range(0, len(unsure), 500):
            events = [custom(0, key=k) for k in unsure[start : start + 500]]
            await report.AppendEvents(rp.AppendEventsRequest(run_id=run.run_id, events=events))
        await report.AppendEvents(
            rp.AppendEventsRequest(
                run_id=run.run_id, events=[ev.RunEvent(run_completed=ev.RunCompleted())]
            )
        )
        keys = [e.idempotency_key async for r in runs.WatchRun(request) for e in r.events]
    server_process.kill()
    keyed = [k for k in keys if k]
    assert sorted(keyed) == sorted(every)
    assert len(keys) == len(every) + 2  # plus run_created and run_completed
