"""Where the run page's step list starts folding, in real Chromium through Envoy: a plan of 50
steps is shown whole, with no "Show all"; one of 51 folds its long stretches.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .test_browser_steps import TOGGLE
from .web_support import browser

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(("planned", "rows"), [(50, 50), (51, 9)])
async def test_a_plan_of_fifty_steps_is_shown_whole_and_one_more_folds(
    server: RunstreamServer, web: Web, planned: int, rows: int
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("crawl", steps=[f"page-{n}" for n in range(planned)])
        for n in range(10):
            async with run.step(f"page-{n}"):
                pass
        await run.start_step("page-10")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        # Folded: a line and three done, the one at work, three to come and a line.
        assert await page.eval("document.querySelectorAll('.steps > li').length") == rows
        assert await page.eval(f"{TOGGLE}.hidden") == (planned == 50)
        await run.close()
        assert await page.errors() == []
