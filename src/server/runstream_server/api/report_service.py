"""ReportService: the producers' bidirectional Report stream and unary AppendEvents.

A Report stream commits the small batches it received while its previous commit was being
made as one commit: at a few thousand events a second a producer sends many batches of a
few events, and each commit costs about the same whatever its size, so grouping them is what
keeps the server's cost per event, and the fan-out's messages per event, low. Each batch is
still acknowledged on its own, in order, with its own events' seqs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from grpc import aio
from runstream.v1 import event_pb2, report_service_pb2_grpc
from runstream.v1 import report_service_pb2 as pb

from runstream_server.domain.runs import (
    AppendResult,
    ControlSignal,
    ProducerLink,
    RunManager,
    forwarded_first,
)
from runstream_server.errors import InvalidArgument, RunstreamError, Unavailable

Context = aio.ServicerContext[Any, Any]

# Batches that wait while a commit is made are committed together, up to this many events.
# Bigger batches gain little from grouping, and a group costs a copy of its events.
_GROUP_EVENTS = 100

_ACTIONS = {
    "cancel": pb.CONTROL_ACTION_CANCEL,
    "pause": pb.CONTROL_ACTION_PAUSE,
    "resume": pb.CONTROL_ACTION_RESUME,
}


def _acks(result: AppendResult, start: int = 0, end: int | None = None) -> list[pb.EventAck]:
    return [
        pb.EventAck(seq=a.seq, idempotency_key=a.idempotency_key, duplicate=a.duplicate)
        for a in result.acks[start:end]
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

        A receiver task queues requests as they arrive; a committer task commits what has
        queued up (see the module docstring); acknowledgements and controls share one outbox.
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
        # Bounded too: a producer that sends faster than commits are made is slowed the same way.
        inbox: asyncio.Queue[pb.ReportRequest | BaseException | None] = asyncio.Queue(64)

        async def receive() -> None:
            try:
                await inbox.put(first)
                async for request in requests:
                    await inbox.put(request)
                await inbox.put(None)
            except Exception as exc:  # the stream broke: after what was received
                await inbox.put(exc)

        def belongs(request: pb.ReportRequest) -> pb.ReportRequest:
            if request.run_id and request.run_id != run_id:
                raise InvalidArgument(
                    "run_id", f"{request.run_id!r}: this stream reports on {run_id!r}"
                )
            return request

        async def commit_batches() -> None:
            try:
                item = await inbox.get()
                while item is not None:
                    if isinstance(item, BaseException):
                        raise item
                    request = belongs(item)
                    if not request.events:  # attach only: acknowledged, so the producer knows
                        run = await self._runs.get_run(run_id)
                        ack = pb.AppendAck(batch_id=request.batch_id, last_seq=run.last_seq)
                        await outbox.put(pb.ReportResponse(ack=ack))
                        item = await inbox.get()
                        continue
                    group, size = [request], len(request.events)
                    later: pb.ReportRequest | BaseException | None = None
                    held = False
                    while not inbox.empty():
                        queued = inbox.get_nowait()
                        if (
                            isinstance(queued, pb.ReportRequest)
                            and queued.events
                            and (not queued.run_id or queued.run_id == run_id)
                            and size + len(queued.events) <= _GROUP_EVENTS
                        ):
                            group.append(queued)
                            size += len(queued.events)
                        else:
                            later, held = queued, True
                            break
                    await self._append_group(run_id, group, link, outbox)
                    item = later if held else await inbox.get()
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

        tasks = [
            asyncio.create_task(receive()),
            asyncio.create_task(commit_batches()),
            asyncio.create_task(forward_signals()),
        ]
        try:
            while (item := await outbox.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._runs.detach_producer(link)

    async def _append_group(
        self,
        run_id: str,
        group: Sequence[pb.ReportRequest],
        link: ProducerLink,
        outbox: asyncio.Queue[pb.ReportResponse | BaseException | None],
    ) -> None:
        """Commits the batches as one, then acknowledges each with its own events' results."""
        if len(group) > 1:
            # Copies: a commit numbers and stamps its events, and a refused group is retried
            # from the originals.
            events = []
            for request in group:
                for original in request.events:
                    event = event_pb2.RunEvent()
                    event.CopyFrom(original)
                    events.append(event)
            try:
                result = await self._runs.append(run_id, events)
            except RunstreamError:
                pass  # nothing was stored; one by one, the refusal names its own batch's event
            else:
                await forwarded_first(link.signals)  # what the commit signalled, then the acks
                start = 0
                for request in group:
                    end = start + len(request.events)
                    ack = pb.AppendAck(
                        batch_id=request.batch_id,
                        events=_acks(result, start, end),
                        last_seq=result.last_seq,
                    )
                    await outbox.put(pb.ReportResponse(ack=ack))
                    start = end
                return
        for request in group:
            await self._append(run_id, request.batch_id, request.events, link, outbox)

    async def _append(
        self,
        run_id: str,
        batch_id: int,
        events: Sequence[event_pb2.RunEvent],
        link: ProducerLink,
        outbox: asyncio.Queue[pb.ReportResponse | BaseException | None],
    ) -> None:
        result = await self._runs.append(run_id, list(events))
        await forwarded_first(link.signals)  # what the commit signalled, then the ack
        ack = pb.AppendAck(batch_id=batch_id, events=_acks(result), last_seq=result.last_seq)
        await outbox.put(pb.ReportResponse(ack=ack))
