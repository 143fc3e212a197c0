"""Must show: Envoy in front of two replicas; the dashboard's page survives killing one.

Real parts: a redis-server (AOF on), two `runstream serve` replicas on it, one real Envoy
balancing over both with gRPC health checks, the dashboard page in Debian's Chromium. The
producer's SDK knows both replicas; the replica it reports to is killed with SIGKILL
mid-run. The page carries on: it ends showing the run SUCCEEDED at its last seq, with no
activity-feed entry missing or shown twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import runstream
from runstream import ActivityType, StepSpec
from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream.dashboard.server import DashboardServer

from tests.conftest import ServerProcess, free_port

from .test_browser import CONNECTION, run_view_is
from .web_support import browser, require_chromium

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def gateway(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> AsyncIterator[tuple[DashboardServer, EnvoyProxy]]:
    require_chromium()
    envoy_port = free_port()
    page = DashboardServer(port=0, api_port=envoy_port)
    page.start()
    a, b = replicas
    envoy = EnvoyProxy(
        EnvoyConfig(
            upstream=f"{a.target},{b.target}",
            listen_port=envoy_port,
            allowed_origins=(page.url.rstrip("/"),),
        ),
        workdir=tmp_path / "envoy",
    )
    try:
        await envoy.start_async()
        yield page, envoy
    finally:
        envoy.close()
        page.stop()


async def test_the_page_survives_killing_the_replica_the_producer_reports_to(
    replicas: tuple[ServerProcess, ServerProcess],
    gateway: tuple[DashboardServer, EnvoyProxy],
) -> None:
    a, b = replicas
    page_server, _ = gateway
    stages = [StepSpec(f"stage-{n}", f"Stage {n}", agent=f"Agent {n}") for n in range(1, 7)]
    both = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"  # gRPC picks A while it answers
    async with runstream.connect(both) as client, browser() as page:
        run = await client.start_run(
            "replica-kill", steps=stages, display_name="A replica dies mid-run"
        )

        async def play(*numbers: int) -> int:
            for n in numbers:
                agent = f"Agent {n}"
                async with run.step(f"stage-{n}") as step:
                    await run.activity(agent, ActivityType.STARTED, f"Stage {n} picked up")
                    for percent in (30, 70):
                        await step.progress(percent, "working", detail=f"{percent}% of stage {n}")
                        await run.activity(agent, ActivityType.PROGRESS, f"{percent}% of stage {n}")
                    await run.activity(agent, ActivityType.COMPLETED, f"Stage {n} finished")
            await run.flush()
            return (await client.get_run(run.run_id)).last_seq

        await page.goto(f"{page_server.url}#/runs/{run.run_id}")
        head = await play(1, 2)
        await page.wait(f"{CONNECTION} === 'live' && {VIEW}.dataset.lastSeq === '{head}'")

        a.kill()  # the producer's replica, and maybe the page's: no goodbye to anyone
        await play(3, 4)  # the SDK resends through B
        await page.wait(f"{CONNECTION} === 'live'", within=30)
        await play(5, 6)
        await run.complete(summary="six stages, one replica fewer")
        await run.close()
        final = (await client.get_run(run.run_id)).last_seq
        await page.wait(run_view_is("SUCCEEDED", final), within=30)
        await page.screenshot("replica-killed-finished.png")

        shown: list[int] = await page.eval("window.__feedSeqs")
        kinds = set(
            (await page.eval("document.querySelector('.feed').dataset.feedKinds")).split(",")
        )
        expected = [
            event.seq async for event in client.watch(run.run_id) if event.kind.name in kinds
        ]
        assert shown == expected, (
            f"missing: {sorted(set(expected) - set(shown))}, "
            f"doubled: {sorted({s for s in shown if shown.count(s) > 1})}"
        )
        # Chromium logs the requests that failed while Envoy still sent some to the dead
        # replica (503 until its health check ejects it, or cut off); nothing else.
        errors = await page.errors()
        assert [e for e in errors if "Failed to load resource" not in e] == []


VIEW = "document.querySelector('#run-view')"
