"""A step's cost under a cent, on the run page in real Chromium through Envoy: shown to four
places ("$0.0031"), not rounded to "$0.00" as if the step cost nothing.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .test_browser_steps import METRICS
from .web_support import browser

pytestmark = pytest.mark.timeout(120)


async def test_a_cost_under_a_cent_is_shown_to_four_places(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("campaign", steps=["draft", "review"])
        async with run.step("draft") as step:
            await step.metrics({"cost_usd": 0.0031})
        await run.start_step("review")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        await page.wait(f"{METRICS.format('draft')} !== null")
        assert await page.eval(f"{METRICS.format('draft')}.textContent") == "Cost $0.0031"
        await run.close()
        assert await page.errors() == []
