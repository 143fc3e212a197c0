"""The overview's server panel in a real browser: Chromium, real Envoy, a real server.

After a finished run, the panel shows the figures the server itself reports through
GetStats: the run counted as succeeded, the events it appended in the last minute, no
producer left open. A screenshot of the overview goes to test-artifacts/server-panel.png.
"""

from __future__ import annotations

import json

import pytest
import runstream
from runstream import RunStatus
from runstream_server.app import RunstreamServer

from tests.e2e.test_stats import finished_run

from .conftest import Web
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

PANEL = "document.querySelector('.server-panel')"


def figure(name: str) -> str:
    return f"{PANEL}.querySelector('[data-figure=\"{name}\"]')"


async def test_the_server_panel_shows_what_get_stats_says(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        done = await finished_run(client, steps=3)
        assert done.status is RunStatus.SUCCEEDED
        stats = await client.get_stats()
        assert stats.events_appended_last_minute > 0
        await page.goto(web.page.url)
        # The first poll is immediate; later ones every 5 s.
        await page.wait(
            f"{PANEL} !== null && !{PANEL}.hidden && {PANEL}.dataset.state === 'live'"
            f" && {figure('appended')}.dataset.value"
            f" === '{stats.events_appended_last_minute}'",
            within=20,
        )
        pills = await page.eval(
            f"[...{PANEL}.querySelectorAll('.server-runs li')]"
            ".map(li => [li.dataset.status, Number(li.dataset.count), li.textContent])"
        )
        assert pills == [["SUCCEEDED", 1, "Succeeded 1"]]
        assert stats.runs_by_status == {RunStatus.SUCCEEDED: 1}
        shown = json.loads(
            await page.eval(
                "JSON.stringify(Object.fromEntries([...document.querySelectorAll("
                "'.server-figure')].map(f => [f.dataset.figure, [f.dataset.value,"
                " f.querySelector('.server-figure-value').textContent]])))"
            )
        )
        assert shown["producers"] == [str(stats.producers), str(stats.producers)] == ["0", "0"]
        assert shown["appended"][1] == str(stats.events_appended_last_minute)
        uptime_ms = int(shown["uptime"][0])  # under a second old: shown in ms
        assert uptime_ms > 0 and shown["uptime"][1].endswith(" s" if uptime_ms >= 1000 else " ms")
        assert int(shown["store-size"][0]) > 0 and shown["store-size"][1].endswith("B")
        p50, p99 = (float(v) for v in shown["latency"][0].split("/"))
        assert 0 < p50 <= p99 and " ms" in shown["latency"][1]
        meta = await page.eval(f"{PANEL}.querySelector('.server-meta').textContent")
        assert meta == f"v{stats.server_version} · sqlite"
        await page.screenshot("server-panel.png")
        assert await page.errors() == []
