"""ReportService: the producers' bidirectional Report stream and unary AppendEvents.

A Report stream commits the small batches it received while its previous commit was being
made as one commit (group commit: :mod:`runstream_server.domain.reporting`, whose
:class:`~runstream_server.domain.reporting.ReportSession` makes the commits and says what to
answer). Each batch is still acknowledged on its own, in order, with its own events' seqs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio
from runstream.v1 import report_service_pb2 as pb
from runstream.v1 import report_service_pb2_grpc

from runstream_server.auth.streams import end_for_its_token
from runstream_server.domain.reporting import Acked, Received, ReportSession, take_group
from runstream_server.domain.runs import (
    AppendResult,
    ControlSignal,
    Mailbox,
    RunManager,
    Signal,
)
from runstream_server.errors import InvalidArgument, Unavailable
from runstream_server.principal import end_at_expiry

Context = aio.ServicerContext[Any, Any]

_Received = pb.ReportRequest | BaseException | None
"""What a Report stream's receiver queues: a request, how the stream broke, or its end."""

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


def _ack(request: pb.ReportRequest, result: AppendResult) -> pb.ReportResponse:
    ack = pb.AppendAck(batch_id=request.batch_id, events=_acks(result), last_seq=result.last_seq)
    return pb.ReportResponse(ack=ack)


def _control(signal: ControlSignal) -> pb.ReportResponse:
    return pb.ReportResponse(
        control=pb.Control(
            action=_ACTIONS[signal.action],
            reason=signal.reason,
            status=signal.status,  # type: ignore[arg-type]
            seq=signal.seq,
        )
    )


def _signalled(signal: Signal) -> pb.ReportResponse:
    if signal is None:
        raise Unavailable("server is shutting down; reconnect to resume", reason="SHUTTING_DOWN")
    if isinstance(signal, ControlSignal):
        return _control(signal)
    return pb.ReportResponse(decision=signal)


def _answer(said: Received | Acked[pb.ReportRequest]) -> pb.ReportResponse:
    """What a :class:`ReportSession` says, as the stream says it."""
    if isinstance(said, Acked):
        return _ack(said.batch, said.result)
    return _signalled(said)


def _elsewhere(request: pb.ReportRequest, run_id: str) -> bool:
    """Whether the request names another run than the stream's (refused when its turn comes)."""
    return bool(request.run_id) and request.run_id != run_id


def _belongs(request: pb.ReportRequest, run_id: str) -> pb.ReportRequest:
    if _elsewhere(request, run_id):
        raise InvalidArgument("run_id", f"{request.run_id!r}: this stream reports on {run_id!r}")
    return request


class ReportServicer(report_service_pb2_grpc.ReportServiceServicer):
    """Translates ReportService calls to :class:`RunManager` calls."""

    def __init__(self, runs: RunManager) -> None:
        self._runs = runs

    async def AppendEvents(
        self, request: pb.AppendEventsRequest, context: Context
    ) -> pb.AppendEventsResponse:
        result = await self._runs.append(request.run_id, request.events[:])
        return pb.AppendEventsResponse(events=_acks(result), last_seq=result.last_seq)

    async def Report(
        self, request_iterator: AsyncIterator[pb.ReportRequest], context: Context
    ) -> AsyncIterator[pb.ReportResponse]:
        """Acks batches in order as they become durable; interleaves control signals.

        A receiver task queues requests as they arrive; this handler commits what has queued
        up (see the module docstring) and answers, and forwards the link's signals in between:
        one hand-off per request, whatever the stream carries.
        """
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        run_id = first.run_id
        if not run_id:
            raise InvalidArgument("run_id", "is required on the first message of a Report stream")
        link = await self._runs.attach_producer(run_id)
        signals = link.signals
        session: ReportSession[pb.ReportRequest] = ReportSession(self._runs, run_id, signals)
        expired: str | None = None  # the token ended: the status detail to end with

        def expire(detail: str) -> None:  # end once the commit under way is acknowledged
            nonlocal expired
            expired = detail
            signals.ready.set()

        end_at_expiry(expire)
        # Bounded: a producer that sends faster than commits are made is slowed down by HTTP/2
        # flow control, instead of growing this queue without end. It wakes this handler as
        # the link's signals do.
        inbox: Mailbox[_Received] = Mailbox(64, ready=signals.ready)

        async def receive() -> None:
            try:
                await inbox.put(first)
                async for request in requests:
                    await inbox.put(request)
                await inbox.put(None)
            except Exception as exc:  # the stream broke: after what was received
                await inbox.put(exc)

        def joins(queued: _Received) -> bool:  # a batch that can join a group (take_group)
            return (
                isinstance(queued, pb.ReportRequest)
                and bool(queued.events)
                and not _elsewhere(queued, run_id)
            )

        receiver = asyncio.create_task(receive())
        try:
            while True:
                if not signals.empty():
                    yield _signalled(signals.get_nowait())
                    continue
                if expired is not None:
                    await end_for_its_token(context, expired)
                if inbox.empty():
                    signals.ready.clear()  # both checked empty since the last await
                    await signals.ready.wait()
                    continue
                item = inbox.get_nowait()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                request = _belongs(item, run_id)
                if not request.events:  # attach only: acknowledged, so the producer knows
                    run = await self._runs.get_run(run_id)
                    yield pb.ReportResponse(
                        ack=pb.AppendAck(batch_id=request.batch_id, last_seq=run.last_seq)
                    )
                    continue
                group = take_group(request, inbox, joins)
                async with contextlib.aclosing(session.commit(group)) as told:
                    async for said in told:
                        yield _answer(said)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
            self._runs.detach_producer(link)
