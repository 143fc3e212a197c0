"""The run list's "Show more runs", in real Chromium through Envoy: with exactly as many runs
as the list shows at first (100) it is not offered, as there is nothing more; the 101st run
brings it, and it lists that run too.
"""

from __future__ import annotations

import pytest
import runstream
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_server_panel import LISTED
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

MORE_HIDDEN = "document.querySelector('#runs-more').hidden"


async def test_show_more_runs_is_offered_only_past_a_full_page(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        stub = client.raw_run_service
        for i in range(100):
            await stub.CreateRun(rs.CreateRunRequest(workflow="page", run_id=f"run-{i:03}"))
        await page.goto(web.page.url)
        await page.wait(f"{LISTED} === 100")
        assert await page.eval(MORE_HIDDEN)
        await stub.CreateRun(rs.CreateRunRequest(workflow="page", run_id="run-100"))
        await page.wait(f"!{MORE_HIDDEN}")
        await page.click("#runs-more")
        await page.wait(f"{LISTED} === 101 && {MORE_HIDDEN}")
        assert await page.errors() == []
