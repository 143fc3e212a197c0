"""A run's page as its run ends, in real Chromium through Envoy: the header says how long the
run took (not how long it has been going), and once the page's own watch has ended with the
run, nobody is said to be watching it.
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


async def test_an_ended_runs_header_says_how_long_it_took_and_no_one_watching(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("report", steps=["draft"])
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{CONNECTION} === 'live' && {VIEWERS}.textContent === '1 watching'")
        await page.wait(f"{ELAPSED}.startsWith('Elapsed ')")
        async with run.step("draft"):
            pass
        await run.complete(summary="Drafted")
        await run.close()
        await page.wait(run_view_is("SUCCEEDED"))
        await page.wait(f"{ELAPSED}.startsWith('Took ')", within=10)
        # The page's watch ended with the run: the count goes to 0, and says nothing.
        await page.wait(f"{VIEWERS}.hidden", within=10)
        assert await page.errors() == []
