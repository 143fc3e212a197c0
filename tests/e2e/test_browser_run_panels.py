"""The run page's metric tiles and model allocations, in real Chromium through real Envoy.

A run metric named like one of the page's own tiles ("artifacts") shows as one tile beside
the run's artifacts count, each under its own label, however many times the page redraws.
A model allocation the manager gave with its reasoning stays readable when an integration
later reports the model the agent actually called, without reasoning.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import Browser, browser

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


async def settled(page: Browser, expression: str, expected: Any, within: float = 20) -> Any:
    """The expression's value once it equals `expected`, or its last value after `within`
    seconds (for the assertion to show)."""
    for _ in range(int(within / 0.2)):
        if (value := await page.eval(expression)) == expected:
            return value
        await asyncio.sleep(0.2)
    return await page.eval(expression)


MODELS = (
    "Object.fromEntries([...document.querySelectorAll('.models .model-row')].map((r) =>"
    " [r.querySelector('.model-agent').textContent, [r.querySelector('.model-chip').textContent,"
    " r.querySelector('.model-chip').dataset.tier,"
    " r.querySelector('.model-reason').textContent]]))"
)


async def test_the_managers_reasoned_allocation_stays_beside_the_model_an_integration_reports(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: under LangGraph, "trade_mapper → o3, Complex trade analysis
    requires…" became "trade_mapper → GenericFakeChatModel" with no reasoning once the node
    called its model (the handler reports each model an agent calls, without reasoning), and
    the manager's reasoning, the point of the panel, was gone from it. The panel shows the
    model in use and keeps the reasoning, saying which model it chose; a later allocation
    that gives reasons of its own replaces it. A page opened after 250 more events reads the
    reasoning back."""
    why = "Complex trade analysis requires deep reasoning"
    expected = {
        # The node called another model than the manager chose: both show.
        "trade_mapper": ["GenericFakeChatModel", "none", f"o3 allocated: {why}"],
        # The same model reported again: the manager's reasoning and tier stay.
        "scope_analyzer": ["gpt-4o", "high", "Long documents need a big context"],
        # Reallocated with a reason of its own: that reason is the one shown.
        "estimator": ["haiku", "low", "Budget is nearly spent"],
    }
    async with (
        runstream.connect(server.target) as client,
        browser() as along,
        browser() as later,
    ):
        run = await client.start_run("manager", steps=["map"])
        await run.flush()
        await along.goto(web.run_url(run.run_id))
        await along.wait(run_view_is("RUNNING"))
        await run.model_allocation("trade_mapper", "o3", tier="high", reasoning=why)
        await run.model_allocation(
            "scope_analyzer", "gpt-4o", tier="high", reasoning="Long documents need a big context"
        )
        await run.model_allocation("estimator", "o3", tier="high", reasoning="Hard estimate")
        # As RunstreamCallbackHandler reports the models the nodes call: no reasoning.
        await run.model_allocation("trade_mapper", "GenericFakeChatModel")
        await run.model_allocation("scope_analyzer", "gpt-4o")
        await run.model_allocation(
            "estimator", "haiku", tier="low", reasoning="Budget is nearly spent"
        )
        await run.flush()
        await along.wait(f"Object.keys({MODELS}).length === 3")
        assert await settled(along, MODELS, expected) == expected
        await along.screenshot("models-reasoned.png", full_page=False)
        # A long run's page reads the allocations before its replayed events back.
        for n in range(250):
            await run.custom("page", {"n": n})
        await run.flush()
        await later.goto(web.run_url(run.run_id))
        await later.wait(run_view_is("RUNNING"))
        await later.wait(f"Object.keys({MODELS}).length === 3")
        assert await settled(later, MODELS, expected) == expected
        await run.close()
        assert await along.errors() == [] and await later.errors() == []
