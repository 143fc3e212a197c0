"""The sidebar's run list, in real Chromium through Envoy: each run by its display name (its
workflow when it has none) with its workflow, age and progress under it, and the run the page
shows marked as the current one, the mark following the run picked next.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

ITEMS = (
    "[...document.querySelectorAll('#run-list .run-item')].map((a) => [a.dataset.runId,"
    " a.querySelector('.run-item-name').textContent, a.querySelector('.run-item-meta')"
    ".textContent, a.getAttribute('aria-current')])"
)


async def test_the_run_list_names_each_run_with_its_progress_and_marks_the_one_shown(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        named = await client.start_run("crawl", steps=["a", "b"], display_name="Crawl the archive")
        async with named.step("a"):
            pass
        plain = await client.start_run("rank")
        await named.flush()
        await plain.flush()
        await page.goto(web.run_url(named.run_id))
        await page.wait(run_view_is("RUNNING"))
        await page.wait(
            f"{ITEMS}.length === 2 && {ITEMS}.every(([, , meta]) => meta.endsWith('%'))"
        )
        items = {run_id: rest for run_id, *rest in await page.eval(ITEMS)}
        name, meta, current = items[named.run_id]
        assert (name, current) == ("Crawl the archive", "page")
        assert meta.startswith("crawl \u00b7 ") and meta.endswith(" \u00b7 50%"), meta
        name, meta, current = items[plain.run_id]
        assert (name, current) == ("rank", "false")
        assert meta.startswith("rank \u00b7 ") and meta.endswith(" \u00b7 0%"), meta
        await page.click(f'.run-item[data-run-id="{plain.run_id}"]')
        await page.wait(
            f"{ITEMS}.map(([id, , , current]) => id + ':' + current).join() === "
            f"'{plain.run_id}:page,{named.run_id}:false'"
        )
        await named.close()
        await plain.close()
        assert await page.errors() == []
