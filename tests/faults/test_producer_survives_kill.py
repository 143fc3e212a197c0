"""Must show: durability. The SDK's producer carries on across a SIGKILLed, restarted server."""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream import Custom, EventKind

from tests.clients.support import eventually
from tests.conftest import ServerProcess

EVENTS = 3000


async def test_producer_survives_server_sigkill_without_gaps_or_duplicates(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("durability")

        async def produce() -> None:
            for i in range(EVENTS):
                await run.custom("tick", {"i": i})
                if i % 10 == 0:
                    await asyncio.sleep(0.005)  # a workflow that reports as it goes
            await run.complete("survived")

        producer = asyncio.create_task(produce())
        # A live watcher rides through the kill too: it reconnects and resumes by itself.
        watcher = asyncio.create_task(_all_events(client, run.run_id))
        await eventually(lambda: run.events_acknowledged >= 500)
        server_process.kill()
        acked_before_kill = run.events_acknowledged
        reported_at_kill = run.events_reported
        assert reported_at_kill < EVENTS, "the producer finished before the kill; slow it down"

        await asyncio.sleep(0.3)  # the producer keeps reporting into its buffer meanwhile
        await asyncio.to_thread(server_process.start)  # same store file, same port
        await asyncio.wait_for(producer, 30)
        await run.close()
        assert run.events_acknowledged == run.events_reported == EVENTS + 2

        events = await asyncio.wait_for(_all_events(client, run.run_id), 20)
        watched = await asyncio.wait_for(watcher, 20)
    assert [e.seq for e in watched] == [e.seq for e in events]

    # The log is exactly 1..N: nothing lost, nothing stored twice, in the order reported.
    assert [e.seq for e in events] == list(range(1, EVENTS + 4))
    ticks = [e for e in events if e.kind == EventKind.CUSTOM]
    assert [e.payload.data["i"] for e in ticks if isinstance(e.payload, Custom)] == list(
        range(EVENTS)
    )
    keys = [e.idempotency_key for e in events[1:]]
    assert len(set(keys)) == len(keys) == EVENTS + 2
    # What was acknowledged before the kill is still there, at the seq it was given: the
    # reporter's events are acknowledged in order, so they are the first ones after seq 1.
    assert acked_before_kill >= 500
    for event in events[2 : acked_before_kill + 1]:
        assert isinstance(event.payload, Custom)
        assert event.seq == event.payload.data["i"] + 3
    assert events[-1].kind == EventKind.RUN_COMPLETED
    snapshot = await _get_run(server_process.target, run.run_id)
    assert snapshot.status == runstream.RunStatus.SUCCEEDED


async def _all_events(client: runstream.Client, run_id: str) -> list[runstream.Event]:
    return [event async for event in client.watch(run_id)]


async def _get_run(target: str, run_id: str) -> runstream.Run:
    async with runstream.connect(target) as client:
        return await client.get_run(run_id)


async def test_start_run_waits_for_a_server_that_is_still_starting(
    server_process: ServerProcess,
) -> None:
    async with runstream.connect(server_process.target) as client:
        starting = asyncio.create_task(asyncio.to_thread(server_process.start))
        run = await asyncio.wait_for(client.start_run("early-bird"), 20)
        await starting
        await run.complete()
        await run.close()
        assert (await client.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED


async def test_producer_and_watcher_give_up_after_the_reconnect_timeout(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target, reconnect_timeout=0.5) as client:
        run = await client.start_run("abandoned")
        await run.flush()
        server_process.kill()
        await run.custom("never delivered")
        with pytest.raises(runstream.UnavailableError):
            await asyncio.wait_for(run.flush(), 20)
        with pytest.raises(runstream.UnavailableError):
            await run.custom("refused: the reporter failed")
        with pytest.raises(runstream.UnavailableError):
            await asyncio.wait_for(_all_events(client, run.run_id), 20)
