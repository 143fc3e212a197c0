"""A message begun while a long run's page watches, in real Chromium through Envoy: the page
opened from the run's snapshot (only the newest events replayed), and a message it saw begin
is shown whole, not as one whose start it lacks ("…", "from #N on").
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import VIEW
from .test_browser_long_run_reconnect import long_run, open_live
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

BOX = "document.querySelector('[data-message-id=\"fresh\"]')"


async def test_a_message_begun_while_a_long_runs_page_watches_is_shown_whole(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await long_run(client)
        head = await open_live(page, web, client, run)
        await run.text("writer", "fresh", "Ranking ")
        await run.text("writer", "fresh", "the pages.", final=True)
        await run.flush()
        await page.wait(f"{VIEW}.dataset.lastSeq === '{head + 2}'")
        assert await page.eval(f"{BOX}.querySelector('.output-text').textContent") == (
            "Ranking the pages."
        )
        assert await page.eval(f"{BOX}.querySelector('.output-state').textContent") == "done"
        await run.close()
        assert await page.errors() == []
