"""Which streamed messages the run page keeps once there are more than it holds (16), in real
Chromium through Envoy: a finished one goes first, so a message still being written stays on
the page with every word however many others were written meanwhile.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import VIEW, run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

LONG = "document.querySelector('[data-message-id=\"report\"] .output-text')?.textContent"


async def test_a_message_still_being_written_keeps_its_start_past_sixteen_others(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("research")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        await run.text("editor", "report", "The report begins here; ")
        for n in range(16):
            await run.text(f"searcher-{n}", f"note-{n}", f"Note {n}.", final=True)
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.wait(f"{VIEW}.dataset.lastSeq === '{head}'")
        # Still being written: shown first, its start kept.
        assert await page.eval(LONG) == "The report begins here; "
        await run.close()
        assert await page.errors() == []
