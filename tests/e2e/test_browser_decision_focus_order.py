"""Where focus goes after answering a decision in the middle of the open ones, in real
Chromium through Envoy: on to the next open decision below the one answered, not back to the
first open one above it.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_decisions import FOCUSED_CARD, OPTIONS, option, state
from .web_support import browser

pytestmark = pytest.mark.timeout(120)


async def test_answering_a_middle_decision_moves_focus_to_the_one_below(
    server: RunstreamServer, web: Web
) -> None:
    ids = ["d0", "d1", "d2"]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        asks = {
            i: asyncio.create_task(run.ask(f"Approve asset {i}?", OPTIONS, decision_id=i))
            for i in ids
        }
        await page.goto(web.run_url(run.run_id))
        await page.wait(" && ".join(f"{state(i)} === 'open'" for i in ids))
        await page.click(option("d1", "approve"))
        assert (await asyncio.wait_for(asks["d1"], 20)).choice == "approve"
        await page.wait(f"{state('d1')} === 'resolved'")
        # The click put focus on d1's option; the answer moves it on.
        await page.wait(f"{FOCUSED_CARD} !== 'd1'")
        assert await page.eval(FOCUSED_CARD) == "d2"
        assert await page.eval("document.activeElement.dataset.choice") == "approve"
        for i in ("d0", "d2"):
            await client.submit_decision(run.run_id, i, "reject", answered_by="dana")
            await asyncio.wait_for(asks[i], 20)
        await run.close()
        assert await page.errors() == []
