"""The run page's toasts, in real Chromium through Envoy: what happens while the page watches
rises as a toast (a milestone, an alert of HIGH severity or worse, a question for the user),
and what happened before the page was opened does not, however recent; an alert below HIGH
is in the activity feed only. Three toasts show at most, the oldest giving way; each leaves
after six seconds (on the page's clock, which the test jumps ahead), and a question's toast
leaves as soon as the question is answered.
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
SHOWN = "[...document.querySelectorAll('#toasts .toast:not(.leaving)')].map((t) => t.innerText)"
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
# The titles the toasts show after each change, in order (a change's additions and removals
# together: what a person sees).
RECORD_SHOWN = """(() => {
  window.toastsShown = [];
  new MutationObserver(() => toastsShown.push(
    [...document.querySelectorAll('#toasts .toast-title')].map((t) => t.textContent)
  )).observe(document.querySelector('#toasts'), { childList: true });
})()"""
DECISION_TOAST = "document.querySelector('#toasts [data-decision-id=\"q2\"]')"


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
        await page.call("skew", seconds=0)  # the page's timers run on the test's clock
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

        # A question's toast stays while it is open and leaves with its answer.
        again = asyncio.create_task(run.ask("Index images?", ["yes", "no"], decision_id="q2"))
        await page.wait(f"{DECISION_TOAST}?.innerText.includes('Index images?')")
        await client.submit_decision(run.run_id, "q2", "yes", answered_by="dana")
        await asyncio.wait_for(again, 20)
        card = "document.querySelector('.decision[data-decision-id=\"q2\"]')"
        await page.wait(f"{card}?.dataset.state !== 'open'")
        assert await page.eval(f"{DECISION_TOAST} === null")

        # Four at once: the three newest show, the oldest gave way; then they leave.
        await page.eval(RECORD_SHOWN)
        for n in range(1, 5):
            await run.milestone(f"Shard {n} done")
        await run.flush()
        await page.wait("toastsShown.some((titles) => titles.includes('Shard 4 done'))")
        assert await page.eval("toastsShown.find((titles) => titles.includes('Shard 4 done'))") == [
            "Shard 2 done",
            "Shard 3 done",
            "Shard 4 done",
        ]
        await page.fastforward(3)  # half their time: still there, not fading out
        assert await page.eval(SHOWN) == ["Shard 2 done", "Shard 3 done", "Shard 4 done"]
        await page.fastforward(5)  # past their six seconds: gone
        await page.wait(f"{TOASTS}.length === 0", within=10)
        await run.close()
        assert await page.errors() == []
