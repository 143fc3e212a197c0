"""The range of an estimate made from history: from one past run (too few to measure how
durations vary), a quarter either side of the remaining time, and how many runs it is from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from runstream.v1 import run_pb2

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run
from tests.server.test_insight import newsletter, timed

# What the estimate says: the commit path changes nothing here.
STORES = BOTH_STORES


def seconds(value: object) -> float:
    return value.ToNanoseconds() / 1e9  # type: ignore[attr-defined]


async def test_an_estimate_from_one_run_says_a_quarter_either_side(stubs: Stubs) -> None:
    await newsletter(stubs, datetime.now(UTC) - timedelta(minutes=10), {"a": 200.0})
    run = await create_run(stubs, "a", workflow="newsletter")
    began = ev.RunEvent(step_started=ev.StepStarted(step_id="a"))
    await append(stubs, run.run_id, timed(began, datetime.now(UTC)))
    estimate = (await get_run(stubs, run.run_id)).estimate
    assert estimate.source == run_pb2.ESTIMATE_SOURCE_HISTORY
    assert estimate.history_runs == 1
    left = seconds(estimate.remaining)
    assert left == pytest.approx(200, abs=5)
    assert seconds(estimate.remaining_low) == pytest.approx(left - 50, abs=1)
    assert seconds(estimate.remaining_high) == pytest.approx(left + 50, abs=1)
