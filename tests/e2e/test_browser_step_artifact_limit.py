"""How many of a step's artifacts its row lists, in real Chromium through Envoy: four are
listed as they are, a fifth makes the row list four and "+1 more".
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

LISTED = (
    "[...document.querySelectorAll('[data-step-id=\"write\"] .artifact')].map((li) =>"
    " li.textContent)"
)


@pytest.mark.parametrize(
    ("made", "listed"),
    [
        (4, ["a0.md", "a1.md", "a2.md", "a3.md"]),
        (5, ["a0.md", "a1.md", "a2.md", "a3.md", "+1 more"]),
    ],
)
async def test_four_artifacts_are_listed_whole_and_a_fifth_is_counted(
    server: RunstreamServer, web: Web, made: int, listed: list[str]
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("copy", steps=["write", "review"])
        async with run.step("write") as step:
            for n in range(made):
                await step.artifact(f"a{n}.md", kind="document")
        await run.start_step("review")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(LISTED) == listed
        await run.close()
        assert await page.errors() == []
