"""``start_run(linger=...)``: events reported within the linger leave in one message.

A live watcher reads the run through the raw WatchRun stream, so each message it gets is one
commit on the server, which is one Report message from the producer: the messages show what
the producer sent together. Without a linger each event spaced out in time leaves on its own;
with one, they leave together. ``flush()``, ``close()`` and the run's end never wait for it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
import runstream
from runstream import Client, InvalidArgumentError
from runstream.v1 import event_pb2, run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer

from tests.clients.support import eventually

SPACING = 0.02  # between reported events: each would leave alone without a linger


async def messages_after(
    server: RunstreamServer,
    run_id: str,
    after_seq: int,
    events: int,
    messages: list[list[str]] | None = None,
) -> list[list[str]]:
    """The live WatchRun messages after `after_seq` until `events` events came: each
    message as its custom events' types (a RunCompleted shows as "completed"), added to
    `messages` as they come when it is given."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        call = run_service_pb2_grpc.RunServiceStub(channel).WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id, after_seq=after_seq)
        )
        messages = [] if messages is None else messages
        async for response in call:
            if response.events:
                messages.append([_name(e) for e in response.events])
            if sum(map(len, messages)) >= events:
                call.cancel()
                return messages
    raise AssertionError(f"the stream ended after {messages}")


def _name(event: event_pb2.RunEvent) -> str:
    return event.custom.type if event.HasField("custom") else event.WhichOneof("payload") or ""


async def report_spaced(run: runstream.RunReporter, count: int) -> None:
    for i in range(count):
        await run.custom(f"e{i}")
        await asyncio.sleep(SPACING)


async def test_events_reported_within_the_linger_leave_in_one_message(
    client: Client, server: RunstreamServer
) -> None:
    run = await client.start_run("tokens", linger=5.0)
    await run.flush()
    watching = asyncio.create_task(messages_after(server, run.run_id, run.last_seq, 5))
    await asyncio.sleep(0.2)  # the watcher is attached and caught up
    await report_spaced(run, 5)
    assert run.events_acknowledged < run.events_reported  # still lingering
    messages = await asyncio.wait_for(watching, 15)
    assert messages == [["e0", "e1", "e2", "e3", "e4"]]
    await run.close()


async def test_without_a_linger_each_event_leaves_as_it_is_reported(
    client: Client, server: RunstreamServer
) -> None:
    """Off by default: an event reported alone reaches a watcher with no flush and no
    other event after it (a linger would hold it for its length, here longer than the
    wait), each in its own message."""
    run = await client.start_run("tokens")
    await run.flush()
    messages: list[list[str]] = []
    watching = asyncio.create_task(messages_after(server, run.run_id, run.last_seq, 3, messages))
    await asyncio.sleep(0.2)  # the watcher is attached and caught up
    for i in range(3):
        await run.custom(f"e{i}")
        await eventually(lambda: sum(map(len, messages)) == i + 1, within=4)  # noqa: B023
    await asyncio.wait_for(watching, 10)
    assert messages == [["e0"], ["e1"], ["e2"]]
    await run.close()


async def test_flush_sends_at_once_what_lingers(client: Client, server: RunstreamServer) -> None:
    run = await client.start_run("tokens", linger=600)
    await run.flush()
    await report_spaced(run, 3)
    await asyncio.wait_for(run.flush(), 10)  # not the 600 s linger
    assert run.events_acknowledged == run.events_reported
    assert (await client.get_run(run.run_id)).last_seq == run.last_seq
    await run.close()


async def test_the_runs_end_sends_at_once_what_lingers(
    client: Client, server: RunstreamServer
) -> None:
    run = await client.start_run("tokens", linger=600)
    await run.flush()
    watching = asyncio.create_task(messages_after(server, run.run_id, run.last_seq, 3))
    await asyncio.sleep(0.2)
    await report_spaced(run, 2)
    await run.complete()  # it flushes: what lingers leaves with the end, at once
    messages = await asyncio.wait_for(watching, 10)
    assert messages == [["e0", "e1", "run_completed"]]
    assert (await client.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED
    await run.close()


async def test_a_linger_ends_on_its_own(client: Client, server: RunstreamServer) -> None:
    run = await client.start_run("tokens", linger=0.3)
    await run.flush()
    watching = asyncio.create_task(messages_after(server, run.run_id, run.last_seq, 1))
    await asyncio.sleep(0.2)
    await run.custom("e0")  # no flush: it leaves when the linger ends
    assert await asyncio.wait_for(watching, 10) == [["e0"]]
    await run.close()


@pytest.mark.parametrize("linger", [-1.0, float("nan"), float("inf")])
async def test_a_bad_linger_is_refused_before_the_run_is_created(
    client: Client, linger: float
) -> None:
    with pytest.raises(InvalidArgumentError, match="linger: must be a number of seconds"):
        await client.start_run("tokens", run_id="never", linger=linger)
    with pytest.raises(runstream.NotFoundError):
        await client.get_run("never")


async def test_a_full_batch_leaves_without_waiting_for_the_linger(client: Client) -> None:
    run = await client.start_run("tokens", linger=600)
    await run.flush()
    for i in range(500):  # the reporter's batch size
        await run.custom("tick", {"i": i})
    await eventually(lambda: run.events_acknowledged == run.events_reported)
    await run.custom("tick", {"i": 500})  # the next one lingers again
    await asyncio.sleep(0.5)
    assert run.events_reported - run.events_acknowledged == 1
    await run.close()
