"""The order of the run page's models panel, in real Chromium through Envoy: the agents
allocated a model last come first, an agent given another model moving back to the top.
"""

from __future__ import annotations

import pytest
import runstream
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import VIEW, run_view_is
from .web_support import browser

pytestmark = pytest.mark.timeout(180)

AGENTS = "[...document.querySelectorAll('.models .model-row')].map((li) => li.dataset.agentId)"


async def test_the_models_panel_lists_the_agents_allocated_last_first(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("research")
        for agent in ("planner", "searcher", "writer"):
            await run.model_allocation(agent, "gpt-4o-mini", tier="low")
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        assert await page.eval(AGENTS) == ["writer", "searcher", "planner"]
        await run.model_allocation("planner", "o3", tier="high")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.wait(f"{VIEW}.dataset.lastSeq === '{head}'")
        assert await page.eval(AGENTS) == ["planner", "writer", "searcher"]
        await run.close()
        assert await page.errors() == []
