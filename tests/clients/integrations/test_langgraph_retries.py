"""How a retried LangChain chain reads to a person, where no test looked (found by the
mutation audit mu68g): each retry is a MEDIUM error recovery that names the strategy, the
attempt and the agent, and the run goes on."""

from __future__ import annotations

import runstream
from langchain_core.runnables import RunnableLambda
from runstream import EventKind, Severity
from runstream.integrations.langchain import RunstreamCallbackHandler
from runstream_server.app import RunstreamServer

from .test_langgraph import _flaky


async def test_a_retry_is_a_medium_recovery_of_the_chains_agent(server: RunstreamServer) -> None:
    chain = (
        RunnableLambda(_flaky(1))
        .with_retry(stop_after_attempt=2, wait_exponential_jitter=False)
        .with_config(run_name="fetch")
    )
    async with runstream.connect(server.target) as client:
        run = await client.start_run("langchain-retried")
        handler = RunstreamCallbackHandler(run, agent="fetcher")
        async with run:  # it completes the run as the block ends
            await chain.ainvoke("page", {"callbacks": [handler]})
            await handler.flush()
        recoveries = [
            e.payload
            async for e in client.list_events(run.run_id)
            if e.kind == EventKind.ERROR_RECOVERY
        ]
    assert [
        (r.severity, r.recovery_strategy, r.attempt, r.affected_agents, r.can_continue)  # type: ignore[union-attr]
        for r in recoveries
    ] == [(Severity.MEDIUM, "retry", 1, ("fetcher",), True)]
