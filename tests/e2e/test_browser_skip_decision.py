"""Skipping a decision from the run page, in real Chromium through Envoy: the Skip button of a
decision that may be skipped closes it as skipped, which the asking agent is told, and the
card says so.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_decisions import state
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

OUTCOME = "document.querySelector('[data-decision-id=\"q1\"] .decision-outcome').textContent"


async def test_the_skip_button_skips_the_decision(server: RunstreamServer, web: Web) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("launch", steps=["draft"])
        await page.goto(web.run_url(run.run_id))
        asked = asyncio.create_task(
            run.ask("Add a subtitle?", ["yes", "no"], can_skip=True, decision_id="q1")
        )
        await page.wait(f"{state('q1')} === 'open'")
        await page.click('[data-decision-id="q1"] .skip')
        result = await asyncio.wait_for(asked, 20)
        assert result.outcome is runstream.DecisionOutcome.SKIPPED
        await page.wait(f"{state('q1')} === 'resolved'")
        assert (await page.eval(OUTCOME)).startswith("Skipped")
        await run.close()
        assert await page.errors() == []
