"""The "Answering as" field of the run page, in real Chromium through Envoy: offered while a
decision is open, gone once none is, while the answered card still shows its outcome.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_decisions import OPTIONS, option, state
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

ANSWER_AS = "document.querySelector('.answer-as')"


async def test_answering_as_is_offered_only_while_a_decision_is_open(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        asked = asyncio.create_task(run.ask("Approve the asset?", OPTIONS, decision_id="d0"))
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{state('d0')} === 'open'")
        assert not await page.eval(f"{ANSWER_AS}.hidden")
        await page.click(option("d0", "approve"))
        await asyncio.wait_for(asked, 20)
        await page.wait(f"{state('d0')} === 'resolved'")
        await page.wait(f"{ANSWER_AS}.hidden")
        assert await page.eval("!document.querySelector('.decision').closest('[hidden]')")
        await run.close()
        assert await page.errors() == []
