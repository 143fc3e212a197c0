"""Stall checks keep to a small share of the process when a pass is slow.

A replica on Redis with ten thousand runs not ended read every one of them once a second to
find the running ones gone silent: a third of a core on every idle replica (36 % at 10,000
pending runs, measured with a real replica). A check now waits CHECK_SHARE times as long as
its last pass took, though never past half the shortest stall threshold, and a pass that
failed (the store out of reach) is tried again at the usual interval.

The clock and the sleeps are the test's own: what is checked is how long the tracker asks
to wait, not how long anything took.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from runstream_server.domain import monitors
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.monitors import CHECK_SHARE, StallTracker
from runstream_server.errors import Unavailable
from runstream_server.store.base import RunFilter, RunPage


class Clock:
    """The monotonic clock and the wall clock, which keep together unless `step` says so."""

    now = 1000.0
    step = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime.fromtimestamp(1.7e9 + self.now + self.step, UTC)


class Store:
    """Each pass over the running runs takes the next of `took` seconds and finds none; a
    negative time is a pass that fails after that long (a store that stopped answering)."""

    def __init__(self, clock: Clock, took: list[float]) -> None:
        self.clock = clock
        self.took = took

    async def list_runs(
        self, run_filter: RunFilter, page_size: int, cursor: tuple[int, str] | None
    ) -> RunPage:
        took = self.took.pop(0)
        self.clock.now += abs(took)
        if took < 0:
            raise Unavailable("the Redis store timed out")
        return RunPage([], [])


def tracker(store: Store, policy: InsightPolicy) -> StallTracker:
    return StallTracker(
        store,  # type: ignore[arg-type]
        policy,
        store.clock.wall,
        None,  # type: ignore[arg-type]  # no run is running: the ledger is never asked
    )


async def pauses_between(
    passes: list[float], policy: InsightPolicy, monkeypatch: pytest.MonkeyPatch
) -> list[float]:
    """The waits the tracker asks for around passes that take these times."""
    clock = Clock()
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) > len(passes):
            raise asyncio.CancelledError

    monkeypatch.setattr(monitors.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(monitors.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await tracker(Store(clock, list(passes)), policy).run_forever()
    return asked


async def test_a_slow_pass_makes_the_next_check_wait_in_proportion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = InsightPolicy()  # stall_min 30 s: a check every second otherwise
    asked = await pauses_between([0.001, 0.2, 0.7, 5.0, 0.001], policy, monkeypatch)
    assert asked == pytest.approx([1.0, 1.0, 0.2 * CHECK_SHARE, 0.7 * CHECK_SHARE, 15.0, 1.0])


async def test_a_pass_the_store_failed_is_tried_again_at_the_usual_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = await pauses_between([0.5, -10.0, 0.001], InsightPolicy(), monkeypatch)
    assert asked == pytest.approx([1.0, 0.5 * CHECK_SHARE, 1.0, 1.0])


async def test_a_step_of_the_wall_clock_pauses_the_checks_for_a_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's clock stepped an hour forward (an NTP correction): the next pass found
    every running run silent for an hour and marked it STALLED, and with --abandon-after
    ended it soon after. A pass that finds the wall clock moved 5 s or more apart from the
    monotonic one skips, saying so, and the next goes on from the new time."""

    class SteppingStore(Store):
        async def list_runs(self, *args: Any) -> RunPage:
            page = await super().list_runs(*args)
            self.clock.step = 3600.0  # stepped during the first pass: the second skips
            return page

    clock = Clock()
    store = SteppingStore(clock, [0.001, 0.001, 0.001])
    asked: list[float] = []

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) > 3:
            raise asyncio.CancelledError

    monkeypatch.setattr(monitors.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(monitors.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await tracker(store, InsightPolicy()).run_forever()
    assert store.took == [0.001]  # passes 1 and 3 listed the runs; pass 2 did not
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["the wall clock stepped by +3600s; stall checks paused for one pass"]
