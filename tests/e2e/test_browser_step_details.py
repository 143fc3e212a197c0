"""What each row of the run page's step list says under the step's name, in real Chromium
through Envoy: a done step its summary, a failed one its error, a skipped one why, the one at
work what it is doing (sub-step, detail, operation and model), one to come what it does and
what it waits for.
"""

from __future__ import annotations

import pytest
import runstream
from runstream import StepSpec, SubStepDetails
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

DETAILS = (
    "Object.fromEntries([...document.querySelectorAll('.steps > .step')]"
    ".map((li) => [li.dataset.stepId, li.querySelector('.step-detail').textContent]))"
)


async def test_each_step_row_says_what_its_status_calls_for(
    server: RunstreamServer, web: Web
) -> None:
    steps = [
        StepSpec("fetch", "Fetch"),
        StepSpec("parse", "Parse"),
        StepSpec("translate", "Translate"),
        StepSpec("rank", "Rank"),
        StepSpec("publish", "Publish", description="Post the ranking", depends_on=("rank",)),
    ]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("ranking", steps=steps)
        async with run.step("fetch") as step:
            step.set_summary("212 pages fetched")
        async with run.step("parse") as step:
            await step.fail("page 17 is not HTML")
        await run.skip_step("translate", "every page is in English")
        rank = await run.start_step("rank")
        details = SubStepDetails(operation="pairwise_compare", model="o3")
        await rank.progress(40, "comparing", detail="pair 80 of 200", details=details)
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(DETAILS) == {
            "fetch": "212 pages fetched",
            "parse": "page 17 is not HTML",
            "translate": "Skipped: every page is in English",
            "rank": "comparing — pair 80 of 200 — pairwise compare · o3",
            "publish": "Post the ranking · after rank",
        }
        await run.close()
        assert await page.errors() == []
