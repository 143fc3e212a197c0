"""The run page's phase bar, in real Chromium through Envoy: the stages before the current one
are done, the current one is current and the ones after it still to come; once the run has
succeeded, every stage is done.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

PHASES = "[...document.querySelectorAll('.phases li')].map((e) => [e.innerText, e.dataset.state])"


async def test_the_phase_bar_marks_the_stages_done_current_and_to_come(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("crawl", steps=["crawl"])
        await run.workflow_state(
            "phase_transition", current_stage="Rank", stages=("Crawl", "Rank", "Ship")
        )
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{PHASES}.length === 3")
        assert await page.eval(PHASES) == [
            ["Crawl", "done"],
            ["Rank", "current"],
            ["Ship", "next"],
        ]
        await run.complete()
        await run.close()
        await page.wait(run_view_is("SUCCEEDED"))
        await page.wait(f"{PHASES}.every(([, state]) => state === 'done')")
        assert await page.errors() == []
