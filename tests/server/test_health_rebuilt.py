"""A run's troubles rebuilt from its log, when a server that did not hold it loads it (after
a restart, or on another replica), are the ones the server that wrote them had: on the same
steps, a retry saying its attempt, so the run's health moves after as it would have."""

from __future__ import annotations

from runstream.v1 import run_pb2
from runstream_server.app import RunstreamServer

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev
from tests.server.test_health_reason import restarted_on_its_store
from tests.server.test_health_troubles import alert, completed, health, recovering, started

# What a run's health says: the commit path changes nothing here.
STORES = BOTH_STORES

DEGRADED = run_pb2.RUN_HEALTH_DEGRADED
HEALTHY = (run_pb2.RUN_HEALTH_HEALTHY, "")


async def test_a_trouble_on_a_step_not_started_yet_stays_on_it(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    run = await create_run(stubs, "a", "b")
    await append(stubs, run.run_id, started("a"), recovering("b", "warming up"))
    async with restarted_on_its_store(server, server_config) as restarted:
        await append(restarted, run.run_id, completed("a"))  # not b: b's trouble stays
        assert await health(restarted, run.run_id) == (DEGRADED, "recovering: warming up")
        await append(restarted, run.run_id, started("b"), completed("b"))
        assert await health(restarted, run.run_id) == HEALTHY


async def test_an_alert_naming_a_skipped_step_ends_with_the_next_steps_completion(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    run = await create_run(stubs, "draft", "review")
    skip = ev.RunEvent(step_skipped=ev.StepSkipped(step_id="draft", reason="not needed"))
    await append(stubs, run.run_id, started("draft"), skip)
    await append(stubs, run.run_id, alert(run_pb2.SEVERITY_HIGH, "stale draft", "draft"))
    async with restarted_on_its_store(server, server_config) as restarted:
        assert await health(restarted, run.run_id) == (DEGRADED, "alert: stale draft")
        await append(restarted, run.run_id, started("review"), completed("review"))
        assert await health(restarted, run.run_id) == HEALTHY


async def test_a_retry_rebuilt_says_its_attempt(
    server: RunstreamServer, stubs: Stubs, server_config: ConfigFactory
) -> None:
    run = await create_run(stubs, "a", "b", "c")
    boom = ev.RunEvent(step_failed=ev.StepFailed(step_id="b", error=run_pb2.ErrorInfo(message="x")))
    await append(stubs, run.run_id, started("a"), started("b"), boom, started("b"))
    retried = (DEGRADED, "step b retried (attempt 2)")
    assert await health(stubs, run.run_id) == retried
    async with restarted_on_its_store(server, server_config) as restarted:
        # Another step's trouble opens and ends: the reason is b's retry again, as rebuilt.
        await append(restarted, run.run_id, recovering("a", "slow"))
        await append(restarted, run.run_id, completed("a"))
        assert await health(restarted, run.run_id) == retried
