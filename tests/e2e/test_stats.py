"""GetStats, through the README's grpcurl recipe and through `runstream stats`, against real
servers that have done real work."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import runstream
from runstream import RunStatus
from runstream_server.app import RunstreamServer

from tests.clients.support import eventually, until
from tests.conftest import ServerProcess, free_port
from tests.e2e.test_grpcurl import json_messages, recipe_argv, run_grpcurl


async def finished_run(client: runstream.Client, steps: int = 3) -> runstream.Run:
    run = await client.start_run("stats-test", steps=[f"s{i}" for i in range(steps)])
    async with run:
        for i in range(steps):
            async with run.step(f"s{i}"):
                pass
        await run.complete()
    return await client.get_run(run.run_id)


async def test_get_stats_through_grpcurl_counts_what_the_server_did(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        done = await finished_run(client)
        running = await client.start_run("stats-test", steps=["a"])
        await running.flush()  # its RunStarted is stored
        watch = aiter(client.watch(running.run_id))
        await anext(watch)  # the watch is open and has its first event
        telemetry = server.telemetry
        assert telemetry is not None
        await eventually(lambda: telemetry.open_streams["WatchRun"] == 1)
        running_seq = (await client.get_run(running.run_id)).last_seq
        [answer] = json_messages(await run_grpcurl(recipe_argv("get-stats", server.target)))
        stats = answer["stats"]
        # grpcurl prints proto field names; int64 values are strings in protobuf's JSON.
        by_status = {s["status"]: int(s["count"]) for s in stats["runs_by_status"]}
        assert by_status == {"RUN_STATUS_SUCCEEDED": 1, "RUN_STATUS_RUNNING": 1}
        assert stats["watchers"] == 1
        assert int(stats["events_appended_total"]) == done.last_seq + running_seq
        assert int(stats["events_appended_last_minute"]) == done.last_seq + running_seq
        assert int(stats["events_delivered_total"]) >= 1
        assert stats["store_kind"] == "sqlite"
        assert int(stats["store_size_bytes"]) > 0
        assert stats["uptime"].endswith("s") and "start_time" in stats
        assert stats["append_latency_p99"].endswith("s")
        assert stats["server_version"]
        await watch.aclose()  # type: ignore[attr-defined]


async def test_runstream_stats_prints_the_figures(tmp_path: Path) -> None:
    server = ServerProcess(port=free_port(), store_path=tmp_path / "runstream.db")
    server.start()
    try:

        def stats(*flags: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "runstream.cli.main",
                    "stats",
                    "--target",
                    server.target,
                    *flags,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        async with runstream.connect(server.target) as client:
            done = await finished_run(client, steps=2)
            assert done.status == RunStatus.SUCCEEDED
            # A person in the loop keeps an Interact stream open while the operator looks.
            async with client.interact([done.run_id], viewer="ana"):

                async def interact_stream_open() -> bool:
                    return (await client.get_stats()).interact_streams == 1

                await until(interact_stream_open)
                as_json = await asyncio.to_thread(stats, "--json")
                table = await asyncio.to_thread(stats)
        assert as_json.returncode == 0, as_json.stderr
        figures = json.loads(as_json.stdout)
        assert figures["runs_by_status"] == {"SUCCEEDED": 1}
        assert figures["events_appended_total"] == done.last_seq
        assert figures["watchers"] == figures["producers"] == 0
        assert figures["interact_streams"] == 1
        assert figures["append_latency_p50_seconds"] <= figures["append_latency_p99_seconds"]
        assert table.returncode == 0, table.stderr
        assert "SUCCEEDED 1" in table.stdout
        assert f"{done.last_seq} events" in table.stdout
        assert re.search(r"^Interact streams +1 *$", table.stdout, re.MULTILINE), table.stdout
        assert "sqlite" in table.stdout and "append p50 / p99" in table.stdout
    finally:
        assert server.terminate() == 0
