"""A paused run's page, in real Chromium through Envoy: it offers to resume the run or to
cancel it (not to pause it again, nor by an alert's suggested Pause button), and a paused run
is cancelled from the page.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

OFFERED = (
    "['pause', 'resume', 'cancel'].filter((a) =>"
    ' !document.querySelector(`.controls [data-action="${a}"]`).hidden)'
)

ALERT_BUTTON = "document.querySelector('.feed .feed-action[data-action=\"pause\"]')"


async def test_a_paused_run_is_offered_resume_and_cancel_and_cancelled_from_the_page(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("ops", steps=["work"])
        await run.alert(
            "Spend 40% over budget",
            severity=runstream.Severity.HIGH,
            suggested_action="Pause campaign",
            action=runstream.AlertActionType.PAUSE_RUN,
        )
        await run.flush()
        await client.pause_run(run.run_id, requested_by="ops-lead")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("PAUSED"))
        assert await page.eval(OFFERED) == ["resume", "cancel"]
        assert await page.eval(f"{ALERT_BUTTON}.hidden")
        await page.click('.controls [data-action="cancel"]')
        await page.click('.controls [data-action="confirm-cancel"]')
        await page.wait(run_view_is("CANCELLED"))
        assert (await client.get_run(run.run_id)).status is runstream.RunStatus.CANCELLED
        assert await page.errors() == []
