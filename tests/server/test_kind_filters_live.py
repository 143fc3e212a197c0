"""Live watchers of one run with different kinds filters: the hub filters each commit once
per filter, and each watcher gets the events of its own kinds, each once, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf import duration_pb2
from runstream.v1 import event_pb2, run_service_pb2

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, ev


async def live_watch(stubs: Stubs, run_id: str, kinds: list[int]) -> Any:
    """A watch from after the run's create that has sent a heartbeat: it is level with the
    run's head, so what comes next comes from the hub."""
    stream = stubs.runs.WatchRun(
        run_service_pb2.WatchRunRequest(
            run_id=run_id,
            after_seq=1,
            kinds=kinds,
            heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
        )
    )
    first = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert first.HasField("heartbeat")
    return stream


async def received(stream: Any) -> list[tuple[int, str]]:
    return [(e.seq, e.WhichOneof("payload")) async for response in stream for e in response.events]


async def test_watchers_with_different_kinds_each_get_their_own_live(stubs: Stubs) -> None:
    run = await create_run(stubs)
    customs = await live_watch(stubs, run.run_id, [event_pb2.EVENT_KIND_CUSTOM])
    alerts = await live_watch(stubs, run.run_id, [event_pb2.EVENT_KIND_ALERT])
    both = await live_watch(
        stubs, run.run_id, [event_pb2.EVENT_KIND_ALERT, event_pb2.EVENT_KIND_CUSTOM]
    )
    alert = ev.RunEvent(alert=ev.Alert(message="slow"))
    for n in range(0, 9, 3):  # seqs 2-10: custom, alert, custom in each commit
        await append(stubs, run.run_id, custom(n), alert, custom(n + 2))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    got = await asyncio.wait_for(
        asyncio.gather(received(customs), received(alerts), received(both)), 10
    )
    every = [(seq, "alert" if seq % 3 == 0 else "custom") for seq in range(2, 11)]
    assert got == [
        [e for e in every if e[1] == "custom"],
        [e for e in every if e[1] == "alert"],
        every,
    ]
