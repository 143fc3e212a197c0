"""The SDK retries by status code alone: UNAVAILABLE yes; ABORTED never; INTERNAL and UNKNOWN
never when the server sent them (marked with its google.rpc.Status trailer), always when grpc
made them up for a transport that broke under the call (no trailer).

Issue 8, item 10: the SDK retried ABORTED, against its own rule, and recognised retryable
errors by matching detail strings (which change across grpc versions), so a server bug whose
message happened to contain "stream removed" was retried until the reconnect timeout.

The real Runstream server cannot be made to answer these codes on purpose, so these tests run
a real grpc.aio server on port 0 that implements RunService by answering the status under
test, and count the calls it receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import runstream
from google.rpc import status_pb2
from runstream._retry import Backoff
from runstream.v1 import event_pb2, run_pb2, run_service_pb2, run_service_pb2_grpc

# What a Runstream server's own INTERNAL/UNKNOWN answers carry (rpc/errors.py).
MARKED = "marked"
# A call that the server holds without answering.
HOLD = "hold"


class ScriptedRunService(run_service_pb2_grpc.RunServiceServicer):
    """Answers each call with the next scripted status; OK streams two events and ends."""

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        self.script = script
        self.calls = 0

    async def _next(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.calls += 1
        code, details, *how = self.script[min(self.calls, len(self.script)) - 1]
        if code == grpc.StatusCode.OK:
            return
        if how == [HOLD]:
            await asyncio.Event().wait()  # never answers: the call stays out
        trailer: tuple[tuple[str, bytes], ...] = ()
        if how == [MARKED]:
            status = status_pb2.Status(code=code.value[0], message=details)
            trailer = (("grpc-status-details-bin", status.SerializeToString()),)
        await context.abort(code, details, trailing_metadata=trailer)

    async def WatchRun(
        self, request: run_service_pb2.WatchRunRequest, context: Any
    ) -> AsyncIterator[run_service_pb2.WatchRunResponse]:
        await self._next(context)
        for seq in (1, 2):
            event = event_pb2.RunEvent(run_id=request.run_id, seq=seq)
            event.custom.type = "tick"
            yield run_service_pb2.WatchRunResponse(events=[event])

    async def CreateRun(
        self, request: run_service_pb2.CreateRunRequest, context: Any
    ) -> run_service_pb2.CreateRunResponse:
        await self._next(context)
        return run_service_pb2.CreateRunResponse(
            run=run_pb2.Run(run_id=request.run_id, workflow=request.workflow)
        )

    async def GetRun(
        self, request: run_service_pb2.GetRunRequest, context: Any
    ) -> run_service_pb2.GetRunResponse:
        await self._next(context)
        return run_service_pb2.GetRunResponse(run=run_pb2.Run(run_id=request.run_id))

    async def CancelRun(
        self, request: run_service_pb2.CancelRunRequest, context: Any
    ) -> run_service_pb2.CancelRunResponse:
        await self._next(context)
        return run_service_pb2.CancelRunResponse(run=run_pb2.Run(run_id=request.run_id))


async def run_against(
    script: list[tuple[Any, ...]],
    action: Callable[[runstream.Client], Any],
    reconnect_timeout: float | None = 30,
) -> tuple[Any, int]:
    service = ScriptedRunService(script)
    server = grpc.aio.server()
    run_service_pb2_grpc.add_RunServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with runstream.connect(
            f"127.0.0.1:{port}", reconnect_timeout=reconnect_timeout
        ) as client:
            try:
                result = await action(client)
            except runstream.RunstreamError as exc:
                result = exc
        return result, service.calls
    finally:
        await server.stop(0)


async def watch_all(client: runstream.Client) -> list[int]:
    return [event.seq async for event in client.watch("r1")]


async def start(client: runstream.Client) -> runstream.RunReporter:
    run = await client.start_run("wf", run_id="r1")
    await run.close()
    return run


@pytest.mark.parametrize(
    ("code", "details", "error"),
    [
        (grpc.StatusCode.ABORTED, "another answer won", runstream.AbortedError),
        # Texts the SDK used to take for a lost connection, sent by a server as its answer.
        (grpc.StatusCode.INTERNAL, "Stream removed while saving", runstream.InternalError),
        (grpc.StatusCode.UNKNOWN, "connection reset by the backend", runstream.UnknownError),
    ],
)
async def test_a_watch_is_not_retried_on_a_status_that_is_not_retryable(
    code: grpc.StatusCode, details: str, error: type[runstream.RunstreamError]
) -> None:
    result, calls = await run_against([(code, details, MARKED)], watch_all)
    assert isinstance(result, error)
    assert result.message == details
    assert calls == 1


async def test_start_run_is_not_retried_on_aborted() -> None:
    result, calls = await run_against(
        [(grpc.StatusCode.ABORTED, "conflict")], lambda c: c.start_run("wf", run_id="r1")
    )
    assert isinstance(result, runstream.AbortedError)
    assert calls == 1


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN])
async def test_an_unmarked_internal_or_unknown_is_a_broken_transport_and_is_retried(
    code: grpc.StatusCode,
) -> None:
    # grpc's own "Internal error from Core" for a connection cut under a stream has no trailer;
    # the watcher must resume rather than give up (whatever the text says).
    broken = (code, "anything at all")
    result, calls = await run_against([broken, broken, (grpc.StatusCode.OK, "")], watch_all)
    assert result == [1, 2]
    assert calls == 3


async def test_unavailable_is_retried_until_the_server_answers() -> None:
    busy = (grpc.StatusCode.UNAVAILABLE, "the store is full (no space left on its disk)")
    result, calls = await run_against([busy, busy, (grpc.StatusCode.OK, "")], watch_all)
    assert result == [1, 2]
    assert calls == 3


@pytest.mark.parametrize("reconnect_timeout", [30, None])  # None: streams retry for ever
async def test_a_read_is_tried_again_while_the_server_is_out_of_reach(
    reconnect_timeout: float | None,
) -> None:
    """A read right after a restart got UNAVAILABLE at once (the channel waiting out its
    reconnect backoff), which every caller had to retry by hand."""
    gone = (grpc.StatusCode.UNAVAILABLE, "connection refused")
    result, calls = await run_against(
        [gone, gone, (grpc.StatusCode.OK, "")], lambda c: c.get_run("r1"), reconnect_timeout
    )
    assert (result.run_id, calls) == ("r1", 3)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((grpc.StatusCode.UNAVAILABLE, "connection refused"), id="between-tries"),
        pytest.param((grpc.StatusCode.UNAVAILABLE, "", HOLD), id="call-out"),
    ],
)
async def test_a_read_when_its_client_closes_ends_as_the_sdk_says(
    answer: tuple[Any, ...],
) -> None:
    """Closing the client ends a read waiting to try again, or cancels the call it has out;
    either way the caller, whom no one cancelled, gets the SDK's error, not a CancelledError
    that looks like its own cancellation."""

    async def closed_under(client: runstream.Client) -> Any:
        reading = asyncio.create_task(client.get_run("r1"))
        await asyncio.sleep(0.3)  # a few tries in, or the call held by the server
        await client.close()
        return await reading

    result, _ = await run_against([answer], closed_under)
    assert isinstance(result, runstream.FailedPreconditionError), result


async def test_a_read_gives_up_after_a_few_seconds_and_never_retries_a_verdict() -> None:
    gone = (grpc.StatusCode.UNAVAILABLE, "connection refused")
    result, calls = await run_against([gone], lambda c: c.get_run("r1"))
    assert isinstance(result, runstream.UnavailableError)
    assert 3 <= calls <= 20  # backing off over UNARY_RETRY_FOR, not one call, not a spin
    result, calls = await run_against(
        [(grpc.StatusCode.ABORTED, "conflict")], lambda c: c.get_run("r1")
    )
    assert (type(result), calls) == (runstream.AbortedError, 1)


async def test_a_cancel_is_not_sent_twice() -> None:
    """A cancel whose first try may have landed would report its own effect as a failure
    (the run already ended) if tried again."""
    gone = (grpc.StatusCode.UNAVAILABLE, "connection reset")
    result, calls = await run_against(
        [gone, (grpc.StatusCode.OK, "")], lambda c: c.cancel_run("r1")
    )
    assert (type(result), calls) == (runstream.UnavailableError, 1)


def test_reconnects_back_off_to_at_most_two_seconds_and_start_over_once_connected() -> None:
    """The delays between attempts double from 50 ms up to 2 s and stay there, however long
    the outage (a reporter or a watch must find its server within 2 s of its return), and
    start from 50 ms again after a connection worked."""
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(40)]
    assert all(0.025 <= delay <= 2.0 for delay in delays), delays
    assert all(delay >= 1.0 for delay in delays[-10:])  # jitter: from half the delay
    backoff.reset()
    assert backoff.next_delay() <= 0.05
