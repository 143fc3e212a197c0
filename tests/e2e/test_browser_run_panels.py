"""The run page's metric tiles and model allocations, in real Chromium through real Envoy.

A run metric named like one of the page's own tiles ("artifacts") shows as one tile beside
the run's artifacts count, each under its own label, however many times the page redraws.
A model allocation the manager gave with its reasoning stays readable when an integration
later reports the model the agent actually called, without reasoning.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

TILES = (
    "[...document.querySelectorAll('.tiles .tile')].map((t) =>"
    " [t.querySelector('.tile-label').textContent, t.querySelector('.tile-value').textContent])"
)


async def test_a_metric_named_artifacts_is_one_tile_beside_the_artifacts_count(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a campaign reporting `run.metrics({"artifacts": n})` shared the key
    of the page's Artifacts tile, and the page grew two more tiles on every redraw (about 40
    "Artifacts" tiles by mid-run, with different numbers)."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("campaign", steps=["copy"])
        async with run.step("copy") as step:
            await step.artifact("headlines.md", kind="markdown")
            await step.artifact("body.md", kind="markdown")
            # And one whose label would read like the run's own tile: it goes by its name.
            await run.metrics({"artifacts": 7, "completed_steps": 1, "artifacts_produced": 3})
            await run.flush()
            await page.goto(web.run_url(run.run_id))
            await page.wait(run_view_is("RUNNING"))
            await page.wait(f"{TILES}.length >= 4")
            # The page redraws every second and on every event: the tiles stay four.
            for n in range(8, 11):
                await run.metrics({"artifacts": n})
                await run.flush()
                await asyncio.sleep(0.6)
            await page.wait(f"{TILES}.some(([label, value]) => value === '10')")
            await asyncio.sleep(1.5)
            tiles = await page.eval(TILES)
            assert sorted(tiles) == [
                ["Artifacts", "10"],  # the producer's metric
                ["Artifacts produced", "2"],  # the run's own count
                ["Completed steps", "1"],
                ["artifacts_produced", "3"],
            ], tiles
            assert (
                await page.eval(
                    "document.querySelector('[data-metric=\"artifacts\"] .tile-value').textContent"
                )
                == "10"
            )
            await page.screenshot("metric-named-artifacts.png", full_page=False)
        await run.complete()
        await run.close()
        assert await page.errors() == []
