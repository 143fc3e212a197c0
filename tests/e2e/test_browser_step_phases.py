"""The run page's step list grouped under the workflow's phases, in real Chromium through
Envoy: a phase whose steps all succeeded is marked done, the one with a step at work current,
those to come next; a phase with a failed step is marked failed (red), whatever else of it
succeeded or is at work.
"""

from __future__ import annotations

import pytest
import runstream
from runstream import StepSpec
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

PHASE_HEADS = (
    "[...document.querySelectorAll('.steps > .phase-head')]"
    ".map((li) => [li.textContent, li.dataset.state])"
)


async def test_a_phase_with_a_failed_step_is_marked_failed(
    server: RunstreamServer, web: Web
) -> None:
    steps = [
        StepSpec("brief", phase="Planning"),
        StepSpec("search", phase="Research"),
        StepSpec("interview", phase="Research"),
        StepSpec("draft", phase="Writing"),
        StepSpec("proofread", phase="Review"),
    ]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("article", steps=steps)
        for step_id in ("brief", "search"):
            async with run.step(step_id):
                pass
        async with run.step("interview") as step:
            await step.fail("nobody answered")
        await run.start_step("draft")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        heads = dict(await page.eval(PHASE_HEADS))
        assert list(heads) == ["Planning", "Research", "Writing", "Review"]
        assert (heads["Planning"], heads["Writing"], heads["Review"]) == ("done", "current", "next")
        assert heads["Research"] == "failed"  # neither done (green) nor to come (grey)
        await run.close()
        assert await page.errors() == []
