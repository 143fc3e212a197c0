"""A decision's context of exactly six entries, in real Chromium through Envoy: the card lists
all six by name and no "+0 more".
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

SIX = {"zeta": 0, "theta": 1, "sigma": 2, "omega": 3, "kappa": 4, "alpha": 5}
CONTEXT = "[...document.querySelectorAll('.decision-context li')].map((li) => li.textContent)"


async def test_six_context_entries_are_listed_with_no_more(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        asking = asyncio.create_task(
            run.ask("Which source first?", ["wiki", "news"], context=SIX, decision_id="q1")
        )
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{CONTEXT}.length > 0")
        assert await page.eval(CONTEXT) == [
            "Alpha 5",
            "Kappa 4",
            "Omega 3",
            "Sigma 2",
            "Theta 1",
            "Zeta 0",
        ]
        assert await page.errors() == []
        asking.cancel()
        await run.complete()
        await run.close()
