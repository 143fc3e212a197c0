"""A watch stream whose client stopped reading ends once one message has waited the send
timeout to be sent (``watch_send_timeout``): RESOURCE_EXHAUSTED, reason SEND_STALLED, with
what it held let go at once; the watcher resumes from its last seq and misses nothing.

The clients here are real gRPC channels with HTTP/2's window left at its 64 KiB
(``grpc.http2.bdp_probe`` off: gRPC would otherwise grow it to megabytes as it measures the
link), so a stream of 200 KB events fills it with its first event, and the server's next
write waits on flow control for as long as the client does not read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import (
    append,
    create_run,
    ev,
    get_run,
    retry_info,
    scrape,
    seqs,
    serving,
    status_detail,
    value,
)

# The send timeout: the commit path changes nothing here.
STORES = BOTH_STORES

TIMEOUT = 1.0
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 8 << 20)]


@pytest.fixture
async def server(tmp_path: Path, server_config: ConfigFactory) -> AsyncIterator[RunstreamServer]:
    config = server_config(
        tmp_path / "runstream.db", watch_send_timeout=TIMEOUT, metrics_address="127.0.0.1:0"
    )
    async with serving(config) as (srv, _):
        yield srv


@pytest.fixture
async def slow(server: RunstreamServer) -> AsyncIterator[run_service_pb2_grpc.RunServiceStub]:
    """A RunService stub on a connection of its own whose window stays at 64 KiB."""
    async with grpc.aio.insecure_channel(server.target, options=SMALL_WINDOW) as channel:
        yield run_service_pb2_grpc.RunServiceStub(channel)


def big(n: int) -> ev.RunEvent:
    event = ev.RunEvent(custom=ev.Custom(type="big"), idempotency_key=f"big-{n}")
    event.custom.data.update({"n": n, "blob": "x" * 200_000})
    return event


async def within(seconds: float, condition: Callable[[], Awaitable[bool]]) -> float:
    """Waits until `condition` holds; how long that took (the test fails past `seconds`)."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < seconds, "not within the time given"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def read_until_refused(stream: Any) -> tuple[list[int], grpc.aio.AioRpcError]:
    received: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stream:
            received += [e.seq for e in response.events]
    return received, info.value


async def test_a_watcher_that_stops_reading_is_ended_and_resumes_exactly_once(
    server: RunstreamServer, stubs: Stubs, slow: run_service_pb2_grpc.RunServiceStub
) -> None:
    run = await create_run(stubs)
    stream = slow.WatchRun(run_service_pb2.WatchRunRequest(run_id=run.run_id))
    await stream.initial_metadata()  # the watch is accepted, and never read from here
    assert (await get_run(stubs, run.run_id)).viewer_count == 1
    for n in range(1, 21):  # 4 MB, one event to a commit: the stream's buffer holds them
        await append(stubs, run.run_id, big(n))

    async def let_go() -> bool:
        return (await get_run(stubs, run.run_id)).viewer_count == 0

    # Its write stood still from the second event on; the stream ended, and with it the
    # subscription that held the events it had not sent (the run's count of watchers).
    took = await within(15, let_go)
    assert took < 1.5 * TIMEOUT + 2  # a heavily loaded machine gets 2 s more
    await append(stubs, run.run_id, big(21))  # live commits reach no one now

    received, refusal = await read_until_refused(stream)
    assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.details() == (
        "a message waited 1s to be sent: the watcher stopped reading; "
        "watch again with after_seq set to the last seq it received"
    )
    info = status_detail(refusal, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == "SEND_STALLED"
    assert retry_info(refusal) < 0.001  # the SDK's watch resumes by itself, unheld
    # What the stream had taken for sending still came, the refused one included: all of
    # them, in order, from the first.
    assert received == list(range(1, len(received) + 1))
    assert 2 <= len(received) < 21

    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    resume = run_service_pb2.WatchRunRequest(run_id=run.run_id, after_seq=received[-1])
    resumed = [r async for r in stubs.runs.WatchRun(resume)]
    assert received + seqs(resumed) == list(range(1, 24))  # every event once: 1 + 21 + end

    samples = await scrape(server)
    assert value(samples, "runstream_watch_sends_stalled_total") == 1
    requests = "runstream_grpc_requests_total"
    method = "runstream.v1.RunService/WatchRun"
    assert value(samples, requests, method=method, code="RESOURCE_EXHAUSTED") == 1
    assert value(samples, "runstream_watchers") == 0


async def test_a_watcher_that_reads_slowly_or_idles_is_never_ended(
    server: RunstreamServer, stubs: Stubs, slow: run_service_pb2_grpc.RunServiceStub
) -> None:
    """Each of its sends goes within the timeout, however long the stream: only a send that
    stands still counts, not the stream's time, nor time with nothing to send."""
    run = await create_run(stubs)
    beat = duration_pb2.Duration(nanos=200_000_000)
    stream = slow.WatchRun(
        run_service_pb2.WatchRunRequest(run_id=run.run_id, heartbeat_interval=beat)
    )
    received: list[int] = []
    heartbeats = 0

    async def read() -> None:
        nonlocal heartbeats
        async for response in stream:
            received.extend(e.seq for e in response.events)
            heartbeats += response.HasField("heartbeat")
            await asyncio.sleep(0.3)  # a slow reader: a send waits up to 0.3 s

    reading = asyncio.create_task(read())
    for n in range(1, 11):  # 3 s and more of sending, at most 0.3 s each
        await append(stubs, run.run_id, big(n))

    async def all_sent() -> bool:
        return len(received) == 11

    await within(15, all_sent)
    await asyncio.sleep(3 * TIMEOUT)  # idle, heartbeats only
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    await asyncio.wait_for(reading, 15)
    assert received == list(range(1, 13))
    assert heartbeats >= 3
    assert value(await scrape(server), "runstream_watch_sends_stalled_total") == 0


async def test_a_watch_runs_stream_that_stops_reading_is_ended(
    server: RunstreamServer, stubs: Stubs, slow: run_service_pb2_grpc.RunServiceStub
) -> None:
    labels = {f"label{i}": "v" * 250 for i in range(64)}
    for _ in range(20):  # 20 runs of 16 KB of labels: the initial state passes the window
        await create_run(stubs, labels=labels)
    stream = slow.WatchRuns(run_service_pb2.WatchRunsRequest())
    await stream.initial_metadata()

    async def counted() -> bool:
        stalled = value(await scrape(server), "runstream_watch_sends_stalled_total")
        return stalled == 1

    await within(15, counted)
    runs: set[str] = set()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stream:
            runs.update(r.run_id for r in response.runs)
    refusal = info.value
    assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.details().endswith("watch again (the initial state comes anew)")
    detail = status_detail(refusal, error_details_pb2.ErrorInfo)
    assert detail is not None and detail.reason == "SEND_STALLED"

    again = stubs.runs.WatchRuns(run_service_pb2.WatchRunsRequest())
    every: set[str] = set()
    async for response in again:
        every.update(r.run_id for r in response.runs)
        if response.initial_state_complete:
            break
    again.cancel()
    assert len(every) == 20 and runs <= every
