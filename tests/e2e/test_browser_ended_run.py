"""A run's page as its run ends (succeeded or cancelled), in real Chromium through Envoy: the
header says how long the run took (not how long it has been going), and once the page's own
watch has ended with the run, nobody is said to be watching it.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import CONNECTION, VIEW, run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

ELAPSED = f"{VIEW}.querySelector('.elapsed').textContent"
VIEWERS = f"{VIEW}.querySelector('.viewers')"


@pytest.mark.parametrize("ending", ["SUCCEEDED", "CANCELLED"])
async def test_an_ended_runs_header_says_how_long_it_took_and_no_one_watching(
    server: RunstreamServer, web: Web, ending: str
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("report", steps=["draft"])
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{CONNECTION} === 'live' && {VIEWERS}.textContent === '1 watching'")
        await page.wait(f"{ELAPSED}.startsWith('Elapsed ')")
        async with run.step("draft"):
            pass
        if ending == "SUCCEEDED":
            await run.complete(summary="Drafted")
        else:
            await client.cancel_run(run.run_id, cancelled_by="ops-lead")
        await run.close()
        await page.wait(run_view_is(ending))
        await page.wait(f"{ELAPSED}.startsWith('Took ')", within=10)
        # The page's watch ended with the run: the count goes to 0, and says nothing.
        await page.wait(f"{VIEWERS}.hidden", within=10)
        assert await page.errors() == []
