"""A long run's page losing its connection, in real Chromium through Envoy: it opened from the
run's snapshot (only the newest events replayed), and after Envoy is killed and started again
it goes on from the last event it applied, as a short run's page does: no message written
before the outage is shown twice, no activity entry is missing or doubled.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import CONNECTION, VIEW, run_view_is
from .web_support import Browser, browser

pytestmark = pytest.mark.timeout(180)

OUTPUT = "document.querySelector('[data-message-id=\"summary\"] .output-text').textContent"
# The message as written, once (its start read back: it began inside the replayed events).
WHOLE = f"{OUTPUT} === 'Three hundred pages crawled.'"


async def long_run(client: runstream.Client) -> runstream.RunReporter:
    """A run with 300 events more than a page replays: a page opens it from its snapshot."""
    run = await client.start_run("long", steps=["crawl"])
    for n in range(300):
        await run.custom("page", {"n": n})
    return run


async def open_live(
    page: Browser, web: Web, client: runstream.Client, run: runstream.RunReporter
) -> int:
    """Opens the run on the page once what was reported is stored; returns the run's last
    seq once the page has applied it and follows the run live."""
    await run.flush()
    head = (await client.get_run(run.run_id)).last_seq
    await page.goto(web.run_url(run.run_id))
    await page.wait(f"{CONNECTION} === 'live' && {VIEW}.dataset.lastSeq === '{head}'")
    return head


async def test_a_long_runs_page_resumes_after_envoy_restart_from_where_it_was(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await long_run(client)
        await run.text("writer", "summary", "Three hundred pages ")
        await run.text("writer", "summary", "crawled.", final=True)
        await open_live(page, web, client, run)
        await page.wait(WHOLE)

        web.envoy.kill()
        await page.wait(f"{CONNECTION} === 'reconnecting'")
        for n in range(20):  # reported while the page cannot reach the server
            await run.custom("late page", {"n": n})
        await run.flush()
        await web.envoy.start_async()
        await page.wait(f"{CONNECTION} === 'live'", within=30)
        await run.complete()
        await run.close()
        final = (await client.get_run(run.run_id)).last_seq
        await page.wait(run_view_is("SUCCEEDED", final))
        await page.wait(WHOLE, within=10)
        # Every feed entry the page added, from the first one its replayed events gave.
        shown: list[int] = await page.eval("window.__feedSeqs")
        kinds = set(
            (await page.eval("document.querySelector('.feed').dataset.feedKinds")).split(",")
        )
        expected = [
            event.seq
            async for event in client.watch(run.run_id, after_seq=min(shown) - 1)
            if event.kind.name in kinds
        ]
        assert shown == expected
        errors = await page.errors()
        assert [e for e in errors if "Failed to load resource: net::" not in e] == []
