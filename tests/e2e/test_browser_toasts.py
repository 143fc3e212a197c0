"""The run page's toasts, in real Chromium through Envoy: what happens while the page watches
rises as a toast (a milestone, an alert of HIGH severity or worse, a question for the user),
and what happened before the page was opened does not, however recent; an alert below HIGH
is in the activity feed only.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from tests.clients.test_decisions import open_decision

from .conftest import Web
from .test_browser import CONNECTION, run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

TOASTS = "[...document.querySelectorAll('#toasts .toast')].map((t) => t.innerText)"
# Every toast shown from now on, as "title / detail", even one gone again (they leave after
# a few seconds).
RECORD_TOASTS = """(() => {
  window.toastsSeen = [];
  new MutationObserver((changes) => {
    for (const change of changes) for (const el of change.addedNodes) {
      const detail = el.querySelector('.toast-detail')?.textContent ?? '';
      window.toastsSeen.push(`${el.querySelector('.toast-title').textContent} / ${detail}`);
    }
  }).observe(document.querySelector('#toasts'), { childList: true });
})()"""


async def test_toasts_tell_what_happens_while_the_page_watches_not_what_came_before(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("crawl")
        await run.milestone("Sitemap read", description="1,200 pages")
        await run.alert("Crawler blocked once", severity=runstream.Severity.HIGH)
        asked = asyncio.create_task(
            run.ask("Crawl the archive too?", ["yes", "no"], decision_id="q1")
        )
        await open_decision(client, run.run_id, "q1")
        before = (await client.get_run(run.run_id)).last_seq
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{run_view_is('WAITING_FOR_INPUT', before)} && {CONNECTION} === 'live'")
        # Its history is on the page (the feed, the open question), and no toast of it.
        assert await page.eval(TOASTS) == []
        await page.eval(RECORD_TOASTS)
        await run.alert("A page was retried", severity=runstream.Severity.MEDIUM)
        await run.milestone("Half the catalogue indexed", description="600 of 1,200")
        await run.alert("Disk almost full", severity=runstream.Severity.HIGH)
        await run.flush()
        await page.wait("document.querySelectorAll('.feed [data-kind=\"ALERT\"]').length === 3")
        assert await page.eval("window.toastsSeen") == [
            "Half the catalogue indexed / 600 of 1,200",
            "Alert / Disk almost full",
        ]
        await client.submit_decision(run.run_id, "q1", "no", answered_by="dana")
        await asyncio.wait_for(asked, 20)
        await run.close()
        assert await page.errors() == []
