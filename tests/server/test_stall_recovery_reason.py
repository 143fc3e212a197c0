"""Why a STALLED run is HEALTHY again, as its HealthChanged says: the step its producer
started when that is what it said, not only "the producer reported again"."""

from __future__ import annotations

from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs

from tests.server.conftest import BOTH_STORES
from tests.server.support import append, create_run, ev, until_health
from tests.server.test_insight import insight_server  # noqa: F401  (a fixture)

# Why a run's health changed: the commit path changes nothing here.
STORES = BOTH_STORES


async def test_a_stalled_run_starting_a_step_says_so(insight_server) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    _, stubs = insight_server
    run = await create_run(stubs, "a", "b")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await until_health(stubs, run.run_id, run_pb2.RUN_HEALTH_STALLED)
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="b")))
    changes = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, filter="kind = HEALTH_CHANGED")
    )
    last = changes.events[-1].health_changed
    assert (last.previous_health, last.health, last.reason) == (
        run_pb2.RUN_HEALTH_STALLED,
        run_pb2.RUN_HEALTH_HEALTHY,
        "step b started",
    )
