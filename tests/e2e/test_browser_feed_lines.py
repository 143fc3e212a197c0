"""What the run page says of a decision answered elsewhere, an alert and a failed step, in
real Chromium through Envoy: the decision's card and its feed entry give the answer by its
option's label and who gave it; the feed gives an alert with its severity and its step's name,
a failed step by its name with its error.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream import StepSpec
from runstream_server.app import RunstreamServer

from tests.clients.test_decisions import open_decision

from .conftest import Web
from .test_browser import run_view_is
from .test_browser_decisions import state
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

# Each feed entry of these kinds as [title, detail, who].
KINDS = ["RUN_CREATED", "DECISION_RESOLVED", "ALERT", "STEP_FAILED"]
LINES = f"""Object.fromEntries({KINDS}.map((kind) => {{
  const li = document.querySelector(`.feed [data-kind="${{kind}}"]`);
  const who = li.querySelector('.feed-meta span:not(.feed-ago):not(.feed-seq)');
  return [kind, [li.querySelector('.feed-title').textContent,
    li.querySelector('.feed-detail')?.textContent ?? '', who?.textContent ?? '']];
}}))"""
OUTCOME = "document.querySelector('[data-decision-id=\"q1\"] .decision-outcome').textContent"


async def test_an_answer_given_elsewhere_is_shown_by_its_label_and_who_gave_it(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("launch", steps=[StepSpec("draft", "Draft copy")])
        await page.goto(web.run_url(run.run_id))
        options = [("bold", "Run further. Feel lighter."), ("calm", "Light shoes for long days")]
        asked = asyncio.create_task(run.ask("Which headline?", options, decision_id="q1"))
        await open_decision(client, run.run_id, "q1")
        await page.wait(f"{state('q1')} === 'open'")
        await client.submit_decision(run.run_id, "q1", "bold", answered_by="dana")
        await asyncio.wait_for(asked, 20)
        async with run.step("draft") as step:
            await run.alert("Copy over budget", severity=runstream.Severity.HIGH, step_id="draft")
            await step.fail("the brief is missing")
        await run.flush()
        await page.wait(run_view_is("RUNNING", (await client.get_run(run.run_id)).last_seq))
        assert await page.eval(LINES) == {
            # A run of one step in the singular, as the CLI says it (found in review).
            "RUN_CREATED": ["Run created", "1 step planned", "launch"],
            "DECISION_RESOLVED": ["Decision made", "Answered: Run further. Feel lighter.", "dana"],
            "ALERT": ["Copy over budget", "", "High · Draft copy"],
            "STEP_FAILED": ["Draft copy failed", "the brief is missing", ""],
        }
        assert await page.eval(OUTCOME) == "Answered \u201cRun further. Feel lighter.\u201d by dana"
        await run.close()
        assert await page.errors() == []
