"""Stall checks keep to a small share of the process when a pass is slow.

A replica on Redis with ten thousand runs not ended read every one of them once a second to
find the running ones gone silent: a quarter to a third of a core on every idle replica (a
probe measured 36 % of a core at 10,000 pending runs). Checks now wait at least CHECK_SHARE
times as long as their last pass took.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.monitors import CHECK_SHARE, StallTracker
from runstream_server.store.base import RunFilter, RunPage


class SlowStore:
    """A store whose listing of running runs takes `took` seconds (and finds none)."""

    def __init__(self, took: float) -> None:
        self.took = took
        self.passes = 0

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, cursor: tuple[int, str] | None
    ) -> RunPage:
        self.passes += 1
        await asyncio.sleep(self.took)
        return RunPage([], None)


async def never_called(*_: object) -> None:
    raise AssertionError("no run is running")


async def test_a_slow_pass_makes_the_next_check_wait_in_proportion() -> None:
    store = SlowStore(took=0.1)
    policy = InsightPolicy(stall_after=0.2, stall_min=0.2)  # a check every 0.05 s otherwise
    tracker = StallTracker(
        store,  # type: ignore[arg-type]
        policy,
        lambda: datetime.now(UTC),
        never_called,  # type: ignore[arg-type]
        never_called,  # type: ignore[arg-type]
    )
    assert tracker.interval == 0.05 and 0.1 * CHECK_SHARE >= 1.5
    checking = asyncio.create_task(tracker.run_forever())
    await asyncio.sleep(1.5)
    checking.cancel()
    # Back to back, 1.5 s held about ten passes of 0.1 s with 0.05 s between them; now the
    # first pass makes the next wait 0.1 * CHECK_SHARE s.
    assert store.passes == 1


async def test_fast_passes_keep_the_policy_interval() -> None:
    store = SlowStore(took=0.0)
    tracker = StallTracker(
        store,  # type: ignore[arg-type]
        InsightPolicy(stall_after=0.2, stall_min=0.2),
        lambda: datetime.now(UTC),
        never_called,  # type: ignore[arg-type]
        never_called,  # type: ignore[arg-type]
    )
    checking = asyncio.create_task(tracker.run_forever())
    await asyncio.sleep(0.6)
    checking.cancel()
    assert store.passes >= 5  # every 0.05 s: a stalled run is still found within its interval
