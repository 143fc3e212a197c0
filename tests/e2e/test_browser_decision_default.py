"""A decision with a default, left unanswered, on the run page in real Chromium through Envoy:
while open its card says when it closes and which option it then takes, by the option's
label, and offers no Skip (the decision may not be skipped); once the deadline passed, it
says no answer came in time and which option was taken, and marks that option chosen; so
does its line in the activity feed.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser_decisions import state
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

CARD = "document.querySelector('[data-decision-id=\"q1\"]')"
OPTIONS = [("bold", "Bold headline"), ("calm", "Calm headline")]


async def test_a_decision_left_unanswered_says_it_took_its_default(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("launch", steps=["draft"])
        await page.goto(web.run_url(run.run_id))
        await page.wait("document.querySelector('#run-view') !== null")
        asked = asyncio.create_task(
            run.ask("Which headline?", OPTIONS, default="calm", timeout=6, decision_id="q1")
        )
        await page.wait(f"{state('q1')} === 'open'")
        deadline = await page.eval(f"{CARD}.querySelector('.decision-deadline').textContent")
        assert deadline.startswith("closes in ") and deadline.endswith(
            ", then \u201cCalm headline\u201d"
        ), deadline
        buttons = f"[...{CARD}.querySelectorAll('.options button')]"
        assert await page.eval(f"{buttons}.map((b) => b.textContent)") == [
            "Bold headline",
            "Calm headline",
        ]
        result = await asyncio.wait_for(asked, 30)
        assert result.outcome is runstream.DecisionOutcome.DEFAULTED
        await page.wait(f"{state('q1')} === 'resolved'")
        outcome = await page.eval(f"{CARD}.querySelector('.decision-outcome').textContent")
        assert outcome == "No answer in time: went with \u201cCalm headline\u201d"
        chosen = await page.eval(
            f"{buttons}.filter((b) => b.classList.contains('chosen')).map((b) => b.textContent)"
        )
        assert chosen == ["Calm headline"]
        # Nobody decided: neither the card nor the feed says "Decision made" (found in
        # review: both did, with a green check, and the feed named no option, "Defaulted").
        assert await page.eval(f"{CARD}.querySelector('h3').textContent") == "No answer in time"
        resolved = "document.querySelector('.feed [data-kind=\"DECISION_RESOLVED\"]')"
        await page.wait(f"{resolved} !== null")
        line = await page.eval(
            f"[{resolved}.querySelector('.feed-title').textContent,"
            f" {resolved}.querySelector('.feed-detail').textContent]"
        )
        assert line == ["No answer in time", "Went with the default: Calm headline"]
        await run.close()
        assert await page.errors() == []
