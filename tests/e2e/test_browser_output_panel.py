"""How many messages the run page's output panel shows, in real Chromium through Envoy: as many
as were written together lately (four judges' verdicts stay in sight once written), and back
to three once a message starts while no other is being written.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import VIEW, run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

SHOWN = "[...document.querySelectorAll('.output')].map((el) => el.dataset.messageId)"


async def test_the_output_panel_goes_back_to_three_once_a_message_is_written_alone(
    server: RunstreamServer, web: Web
) -> None:
    judges = [f"judge-{n}" for n in range(4)]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("council")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        for word in range(2):
            for judge in judges:
                await run.text(judge, f"{judge}-verdict", f"w{word} ", final=word == 1)
        await run.flush()
        await page.wait(f"{SHOWN}.length === 4")
        await run.text("chair", "ruling", "Judge 2 wins.")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.wait(f"{VIEW}.dataset.lastSeq === '{head}'")
        # The one being written, then the newest finished.
        assert await page.eval(SHOWN) == ["ruling", "judge-3-verdict", "judge-2-verdict"]
        await run.close()
        assert await page.errors() == []
