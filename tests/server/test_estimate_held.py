"""A paused run's estimate stands still: what its producer reports while paused (progress,
a thought) does not count it down or move it, until the run is resumed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run
from tests.server.test_insight import newsletter, timed

# What the estimate says: the commit path changes nothing here.
STORES = BOTH_STORES


async def test_progress_reported_while_paused_leaves_the_estimate_held(stubs: Stubs) -> None:
    start = datetime.now(UTC) - timedelta(minutes=10)
    await newsletter(stubs, start, {"a": 200.0})
    run = await create_run(stubs, "a", workflow="newsletter")
    now = datetime.now(UTC)
    began = ev.RunEvent(step_started=ev.StepStarted(step_id="a"))
    await append(stubs, run.run_id, timed(began, now - timedelta(seconds=50)))
    await stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id))
    held = (await get_run(stubs, run.run_id)).estimate
    assert held.held and held.source == run_pb2.ESTIMATE_SOURCE_HISTORY
    halfway = ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=90))
    await append(stubs, run.run_id, timed(halfway, now))
    after = (await get_run(stubs, run.run_id)).estimate
    assert after.held
    assert after.remaining == held.remaining
