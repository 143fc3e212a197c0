"""The run page's step list and streamed output under long runs, in real Chromium through Envoy.

An agent loop of 1,500 steps shows the steps around the one at work, as the CLI's live view
does, the rest folded into a line each ("1,497 earlier steps done"), and every step on
"Show all"; a failed step is never folded away. Each step lists its artifacts (a web address
as a link, any other URI as text) and its metrics. A box of streamed text keeps its newest
words in sight as they are written, unless its reader scrolled it up.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

# The step list's rows, top to bottom: a step's id, or a folded line's text.
STEP_ROWS = (
    "[...document.querySelectorAll('.steps > li')].map((li) => li.dataset.stepId ?? li.textContent)"
)
TOGGLE = "document.querySelector('.steps-toggle')"


async def test_a_long_step_list_shows_the_steps_around_the_one_at_work(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a loop of 1,600 steps drew all of them, on every frame, on a page
    92,573 px tall, and the live page stopped answering clicks for seconds."""
    async with runstream.connect(server.target) as client, browser() as page:
        # An agent loop, its steps started as it goes (no plan), reported in big batches.
        run = await client.start_run("agent-loop", linger=0.05)
        for n in range(1500):
            async with run.step(f"iter-{n}", name=f"Iteration {n}") as step:
                if n == 700:
                    await step.fail("the tool timed out")
        at_work = await run.start_step("iter-1500", name="Iteration 1500")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(STEP_ROWS) == [
            "\u2713 697 earlier steps done",
            "iter-697",
            "iter-698",
            "iter-699",
            "iter-700",  # failed: shown, with the steps before it
            "\u2713 796 earlier steps done",
            "iter-1497",
            "iter-1498",
            "iter-1499",
            "iter-1500",
        ]
        failed = "document.querySelector('[data-step-id=\"iter-700\"]').dataset.status"
        assert await page.eval(failed) == "FAILED"
        assert await page.eval(f"{TOGGLE}.textContent") == "Show all 1,501"
        # As the loop goes on, the step at work stays in sight: the fold takes the rest.
        await at_work.complete()
        await run.start_step("iter-1501", name="Iteration 1501")
        await run.flush()
        rows = "\u2713 797 earlier steps done,iter-1498,iter-1499,iter-1500,iter-1501"
        await page.wait(f"{STEP_ROWS}.slice(-5).join() === '{rows}'")
        await page.click(".steps-toggle")
        await page.wait("document.querySelectorAll('.steps > .step').length === 1502")
        assert await page.eval(f"{TOGGLE}.getAttribute('aria-expanded')") == "true"
        await page.click(".steps-toggle")
        await page.wait("document.querySelectorAll('.steps > .step').length === 8")
        await page.screenshot("long-step-list.png", full_page=False)
        await run.close()
        assert await page.errors() == []


async def test_a_long_plan_shows_the_next_few_steps_and_folds_the_rest(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("crawl", steps=[f"page-{n}" for n in range(60)])
        async with run.step("page-0"):
            pass
        await run.start_step("page-1")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(STEP_ROWS) == [
            "page-0",
            "page-1",
            "page-2",
            "page-3",
            "page-4",
            "\u25cb 55 more steps to come",
        ]
        await run.close()
        assert await page.errors() == []


# A step's artifacts as its row shows them: the text, the link's address and the URI beside.
ARTIFACTS = """[...document.querySelectorAll('[data-step-id="{}"] .artifact')].map((li) => [
  li.querySelector('a, .artifact-name')?.textContent ?? li.textContent,
  li.querySelector('a')?.getAttribute('href') ?? null,
  li.querySelector('.artifact-uri')?.textContent ?? null,
])"""
METRICS = "document.querySelector('[data-step-id=\"{}\"] .step-metrics')"


async def test_each_step_lists_its_artifacts_and_metrics(server: RunstreamServer, web: Web) -> None:
    """Found in review: a campaign's output is its artifacts (copy documents, the website),
    and the page showed only their count; no URI was shown or linked anywhere, nor the
    metrics each step reported."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("campaign", steps=["copy", "site", "review"])
        async with run.step("copy") as step:
            await step.artifact("headlines.md", kind="copy", uri="s3://campaigns/c1/headlines.md")
            await step.artifact("Landing page", kind="html", uri="https://example.com/c1/")
            await step.artifact("notes", kind="text", uri="javascript:alert(document.cookie)")
            await step.metrics({"tokens": 1200, "cost_usd": 0.042, "duration_s": 3.5})
        async with run.step("site") as step:
            for n in range(6):
                await step.artifact(f"page-{n}.html", uri=f"http://example.com/p{n}")
        await run.start_step("review")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(ARTIFACTS.format("copy")) == [
            ["headlines.md", None, "s3://campaigns/c1/headlines.md"],
            ["Landing page", "https://example.com/c1/", None],
            # Never a link: only web addresses are.
            ["notes", None, "javascript:alert(document.cookie)"],
        ]
        assert await page.eval(f"{METRICS.format('copy')}.textContent") == (
            "Cost $0.04 · Duration s 3.5 · Tokens 1,200"
        )
        site = await page.eval(ARTIFACTS.format("site"))
        assert [a[0] for a in site] == [*(f"page-{n}.html" for n in range(4)), "+2 more"]
        assert site[0][1] == "http://example.com/p0"
        # A step with neither shows neither line.
        review = '[data-step-id="review"]'
        assert await page.eval(f"document.querySelector('{review} .step-artifacts').hidden")
        assert await page.eval(f"{METRICS.format('review')}.hidden")
        # One reported as the page watches shows up in its step's row.
        async with run.step("review") as step:
            await step.artifact("verdict.md", uri="https://example.com/verdict")
        await run.flush()
        await page.wait(f"{ARTIFACTS.format('review')}.length === 1")
        await page.screenshot("step-artifacts.png", full_page=False)
        await run.close()
        assert await page.errors() == []


async def test_an_output_box_follows_the_words_being_written_until_scrolled_up(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a box opened at its top, so past about ten lines the words being
    written were out of sight and the message looked stuck."""
    box = "document.querySelector('.output[data-message-id=\"essay\"] .output-text')"
    at_end = f"({box}.scrollHeight - {box}.scrollTop - {box}.clientHeight < 2)"

    async def write(first: int, last: int) -> None:
        for n in range(first, last):
            await run.text("writer", "essay", f"line {n:03}\n")
        await run.flush()
        await page.wait(f"{box}.textContent.includes('line {last - 1:03}')")

    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("essay")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        await write(0, 40)
        assert await page.eval(f"{box}.scrollHeight > 2 * {box}.clientHeight")
        assert await page.eval(at_end)
        # Scrolled up to read, the reader keeps their place while more arrives ...
        await page.eval(f"{box}.scrollTop = 40")
        await write(40, 60)
        assert await page.eval(f"{box}.scrollTop") == 40
        # ... and back at the end, the box follows the text again.
        await page.eval(f"{box}.scrollTop = {box}.scrollHeight")
        await write(60, 80)
        assert await page.eval(at_end)
        await run.close()
        assert await page.errors() == []
