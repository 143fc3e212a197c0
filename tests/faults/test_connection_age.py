"""--max-connection-age: the server makes clients reconnect (so long-lived watchers rebalance
across replicas), and neither a watcher nor a producer notices more than a reconnect: every
event arrives exactly once, in order, and every reported event is stored once."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import runstream
from prometheus_client.parser import text_string_to_metric_families
from runstream import RunStatus
from runstream_server.app import RunstreamServer, ServerConfig


def watch_calls(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "runstream_grpc_requests_total"
        and sample.labels["method"] == "runstream.v1.RunService/WatchRun"
    )


async def test_watchers_and_producers_ride_through_connection_age_limits(tmp_path: Path) -> None:
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=tmp_path / "runstream.db",
            metrics_address="127.0.0.1:0",
            max_connection_age=1.0,
            max_connection_age_grace=0.3,
        )
    )
    await server.start()
    try:
        async with (
            runstream.connect(server.target) as producer,
            runstream.connect(server.target) as viewer,
        ):
            run = await producer.start_run("aging", steps=["work"])
            seen: list[int] = []

            async def follow() -> None:
                async for event in viewer.watch(run.run_id):
                    seen.append(event.seq)

            watching = asyncio.create_task(follow())
            async with run:
                async with run.step("work") as step:
                    for n in range(40):  # about 4 s: several connection lifetimes
                        await step.progress(n * 2.5, f"item {n}")
                        await asyncio.sleep(0.1)
                await run.complete()
            await asyncio.wait_for(watching, 60)
            final = await viewer.get_run(run.run_id)
        assert final.status == RunStatus.SUCCEEDED
        assert seen == list(range(1, final.last_seq + 1))  # each event once, in order
        events = [e async for e in viewer_events(server.target, run.run_id)]
        progress = [e for e in events if e.kind == runstream.EventKind.STEP_PROGRESS]
        assert len(progress) == 40  # the producer's resends were stored once
        # The watcher was made to reconnect: more than one WatchRun call served it.
        assert await asyncio.to_thread(watch_calls, server.metrics_port) >= 2
    finally:
        await server.stop(grace=0.5)


async def viewer_events(target: str, run_id: str) -> AsyncIterator[runstream.Event]:
    async with runstream.connect(target) as client:
        async for event in client.list_events(run_id):
            yield event
