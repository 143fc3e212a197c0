"""ReportService: the producers' bidirectional Report stream and unary AppendEvents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from grpc import aio
from runstream.v1 import event_pb2, report_service_pb2_grpc
from runstream.v1 import report_service_pb2 as pb

from runstream_server.domain.runs import AppendResult, ControlSignal, RunManager
from runstream_server.errors import InvalidArgument, Unavailable

Context = aio.ServicerContext[Any, Any]

_ACTIONS = {
    "cancel": pb.CONTROL_ACTION_CANCEL,
    "pause": pb.CONTROL_ACTION_PAUSE,
    "resume": pb.CONTROL_ACTION_RESUME,
}


def _acks(result: AppendResult) -> list[pb.EventAck]:
    return [
        pb.EventAck(seq=a.seq, idempotency_key=a.idempotency_key, duplicate=a.duplicate)
        for a in result.acks
    ]


def _control(signal: ControlSignal) -> pb.ReportResponse:
    return pb.ReportResponse(
        control=pb.Control(
            action=_ACTIONS[signal.action],
            reason=signal.reason,
            status=signal.status,  # type: ignore[arg-type]
            seq=signal.seq,
        )
    )


class ReportServicer(report_service_pb2_grpc.ReportServiceServicer):
    """Translates ReportService calls to :class:`RunManager` calls."""

    def __init__(self, runs: RunManager) -> None:
        self._runs = runs

    async def AppendEvents(
        self, request: pb.AppendEventsRequest, context: Context
    ) -> pb.AppendEventsResponse:
        result = await self._runs.append(request.run_id, list(request.events))
        return pb.AppendEventsResponse(events=_acks(result), last_seq=result.last_seq)

    async def Report(
        self, request_iterator: AsyncIterator[pb.ReportRequest], context: Context
    ) -> AsyncIterator[pb.ReportResponse]:
        """Acks batches in order as they become durable; interleaves control signals.

        A reader task appends batches one after another (the SDK batches while an ack is
        outstanding, so this pipelines); acknowledgements and controls share one outbox.
        """
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        run_id = first.run_id
        if not run_id:
            raise InvalidArgument("run_id", "is required on the first message of a Report stream")
        link = await self._runs.attach_producer(run_id)
        # Bounded: a producer that sends without reading its acks is slowed down by HTTP/2
        # flow control on the acks, instead of growing this queue without end.
        outbox: asyncio.Queue[pb.ReportResponse | BaseException | None] = asyncio.Queue(64)

        async def read_batches() -> None:
            try:
                request: pb.ReportRequest | None = first
                while request is not None:
                    if request.run_id and request.run_id != run_id:
                        raise InvalidArgument(
                            "run_id", f"{request.run_id!r}: this stream reports on {run_id!r}"
                        )
                    if request.events:
                        await self._append(run_id, request.batch_id, request.events, outbox)
                    else:  # attach only: acknowledged, so the producer knows it is attached
                        run = await self._runs.get_run(run_id)
                        ack = pb.AppendAck(batch_id=request.batch_id, last_seq=run.last_seq)
                        await outbox.put(pb.ReportResponse(ack=ack))
                    request = await anext(requests, None)
                await outbox.put(None)
            except Exception as exc:  # RunstreamError: its status; anything else: INTERNAL
                await outbox.put(exc)

        async def forward_signals() -> None:
            while (signal := await link.signals.get()) is not None:
                if isinstance(signal, ControlSignal):
                    await outbox.put(_control(signal))
                else:
                    await outbox.put(pb.ReportResponse(decision=signal))
            await outbox.put(Unavailable("server is shutting down; reconnect to resume"))

        reader = asyncio.create_task(read_batches())
        signals = asyncio.create_task(forward_signals())
        try:
            while (item := await outbox.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in (reader, signals):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._runs.detach_producer(link)

    async def _append(
        self,
        run_id: str,
        batch_id: int,
        events: Sequence[event_pb2.RunEvent],
        outbox: asyncio.Queue[pb.ReportResponse | BaseException | None],
    ) -> None:
        result = await self._runs.append(run_id, list(events))
        ack = pb.AppendAck(batch_id=batch_id, events=_acks(result), last_seq=result.last_seq)
        await outbox.put(pb.ReportResponse(ack=ack))
