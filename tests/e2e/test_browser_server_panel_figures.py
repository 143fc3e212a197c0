"""The overview's server panel follows the server as it changes, in real Chromium through
Envoy: on a server that has appended nothing it shows no append latency, and with a run
reporting and two watchers following it, the next poll shows the watchers, the producer and
the events delivered as GetStats gives them, each figure its own.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_server_panel import PANEL
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

FIGURES = (
    "JSON.stringify(Object.fromEntries([...document.querySelectorAll('.server-figure')]"
    ".map((f) => [f.dataset.figure, f.querySelector('.server-figure-value').textContent])))"
)


async def follow(client: runstream.Client, run_id: str, seen: list[int]) -> None:
    async for event in client.watch(run_id):
        seen.append(event.seq)


async def test_the_server_panel_follows_watchers_producers_and_deliveries(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        await page.goto(web.page.url)
        await page.wait(f"{PANEL} !== null && {PANEL}.dataset.state === 'live'")
        shown = json.loads(await page.eval(FIGURES))
        assert (shown["appended"], shown["latency"]) == ("0", "\u2013")
        run = await client.start_run("stats", steps=["s0"])
        seen: list[list[int]] = [[], []]
        watchers = [asyncio.create_task(follow(client, run.run_id, s)) for s in seen]
        try:
            for n in range(5):
                await run.custom("page", {"n": n})
            await run.flush()
            head = (await client.get_run(run.run_id)).last_seq
            for _ in range(200):
                if all(s and s[-1] == head for s in seen):
                    break
                await asyncio.sleep(0.05)
            stats = await client.get_stats()
            assert (stats.watchers, stats.producers) == (2, 1)
            assert stats.events_delivered_last_minute != stats.events_appended_last_minute
            expected = {
                "watchers": "2",
                "producers": "1",
                "appended": str(stats.events_appended_last_minute),
                "delivered": str(stats.events_delivered_last_minute),
            }
            # The next poll, within 5 s.
            await page.wait(
                f"(() => {{ const shown = JSON.parse({FIGURES}); const want = "
                f"{json.dumps(expected)}; return Object.keys(want)"
                ".every((k) => shown[k] === want[k]); })()",
                within=20,
            )
            assert json.loads(await page.eval(FIGURES))["latency"].endswith(" ms")
        finally:
            for task in watchers:
                task.cancel()
            await run.close()
        assert await page.errors() == []
