"""A producer's own estimate of the time left, shown while its workflow has no history: it
stays shown until the producer says another, whichever event of a batch says it last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from runstream.v1 import run_pb2

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run
from tests.server.test_insight import left_of, newsletter, timed

# What the estimate says: the commit path changes nothing here.
STORES = BOTH_STORES


def progress(percent: float, eta: int | None = None) -> ev.RunEvent:
    said = ev.StepProgress(step_id="a", percent=percent)
    if eta is not None:
        said.estimated_time_remaining.FromSeconds(eta)
    return timed(ev.RunEvent(step_progress=said), datetime.now(UTC))


async def test_progress_without_an_estimate_keeps_the_producers_last(stubs: Stubs) -> None:
    run = await create_run(stubs, "a", workflow="no-history-for-this-one")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await append(stubs, run.run_id, progress(10, eta=600))
    await append(stubs, run.run_id, progress(20))
    estimate = (await get_run(stubs, run.run_id)).estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_PRODUCER
    assert left_of(estimate) == pytest.approx(600, abs=5)


async def test_the_last_estimate_of_a_batch_is_the_one_shown(stubs: Stubs) -> None:
    run = await create_run(stubs, "a", workflow="no-history-for-this-one")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        progress(10, eta=600),
        progress(50, eta=300),
    )
    assert left_of((await get_run(stubs, run.run_id)).estimate) == pytest.approx(300, abs=5)


async def test_an_estimate_said_with_item_counts_is_shown(stubs: Stubs) -> None:
    run = await create_run(stubs, workflow="no-history-for-this-one")
    items = ev.ItemProgress(completed=40, total=100, unit="pages")
    items.estimated_time_remaining.FromSeconds(900)
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(run_started=ev.RunStarted()),
        timed(ev.RunEvent(item_progress=items), datetime.now(UTC)),
    )
    estimate = (await get_run(stubs, run.run_id)).estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_PRODUCER
    assert left_of(estimate) == pytest.approx(900, abs=5)


async def test_history_takes_over_from_the_producer_as_soon_as_there_is_some(
    stubs: Stubs,
) -> None:
    """The producer said 200 s left; meanwhile a past run of the workflow completed, its
    step in 200 s too: the next report shows history's estimate, saying so, even when the
    time left is the same."""
    run = await create_run(stubs, "a", workflow="newsletter")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    await append(stubs, run.run_id, progress(1, eta=200))
    assert (await get_run(stubs, run.run_id)).estimate.source == run_pb2.ESTIMATE_SOURCE_PRODUCER
    await newsletter(stubs, datetime.now(UTC) - timedelta(hours=1), {"a": 200.0})
    await append(stubs, run.run_id, progress(2))
    estimate = (await get_run(stubs, run.run_id)).estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_HISTORY
    assert left_of(estimate) == pytest.approx(200, abs=5)
