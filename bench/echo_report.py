"""The floor of taking events in: a bare grpc.aio server of Runstream's own Report stream.

Each ReportRequest is decoded and answered at once with an ack numbering its events; nothing
is checked, stored or delivered. CreateRun answers a run without storing it. Beside
Runstream, it shows what the streaming alone costs per event, and beside baseline_grpc.py,
which takes each event in as a unary call of raw bytes, what a stream saves. Usage: PORT
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from baseline_grpc import run, serve_until_sigterm
from runstream.v1 import (
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)


class Runs(run_service_pb2_grpc.RunServiceServicer):
    async def CreateRun(
        self, request: run_service_pb2.CreateRunRequest, context: Any
    ) -> run_service_pb2.CreateRunResponse:
        return run_service_pb2.CreateRunResponse(run=run_pb2.Run(run_id="echo"))


class Report(report_service_pb2_grpc.ReportServiceServicer):
    async def Report(
        self, request_iterator: AsyncIterator[report_service_pb2.ReportRequest], context: Any
    ) -> AsyncIterator[report_service_pb2.ReportResponse]:
        seq = 1
        async for request in request_iterator:
            acks = []
            for event in request.events:
                seq += 1
                acks.append(
                    report_service_pb2.EventAck(seq=seq, idempotency_key=event.idempotency_key)
                )
            ack = report_service_pb2.AppendAck(batch_id=request.batch_id, events=acks, last_seq=seq)
            yield report_service_pb2.ReportResponse(ack=ack)


async def main(port: int) -> None:
    server = grpc.aio.server()
    run_service_pb2_grpc.add_RunServiceServicer_to_server(Runs(), server)
    report_service_pb2_grpc.add_ReportServiceServicer_to_server(Report(), server)
    await serve_until_sigterm(server, port)


if __name__ == "__main__":
    run(main)
