"""Retention's passes as they run, every interval: a step of the wall clock backwards (an NTP
correction of a clock that ran ahead) is said and pauses retention for a pass, as a step
forward does, and a pass the store failed leaves the next one to purge. Each is told by the
operator's log and by the passes a store is asked for, on a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from runstream_server.domain import monitors
from runstream_server.domain.runs import Retention
from runstream_server.errors import Unavailable

INTERVAL = 60


class Passes:
    """A store and clocks for :meth:`RetentionPasses.run_forever`, stopped after `wanted`
    passes: the wall clock moves by `step` during the first interval and stays so; each pass
    in `failing` (counted from 1) fails as a store out of reach does."""

    def __init__(self, wanted: int, step: float = 0.0, failing: frozenset[int] = frozenset()):
        self.monotonic, self.step = 1000.0, 0.0
        self.asked: list[int | None] = []  # each pass's cutoff
        self._wanted, self._stepped, self._failing = wanted, step, failing

    async def purge_events(self, *, ended_before_us: int | None, **_: object) -> list[str]:
        self.asked.append(ended_before_us)
        if len(self.asked) in self._failing:
            raise Unavailable("the Redis store is unreachable")
        return []

    async def sleep(self, seconds: float) -> None:
        self.monotonic += seconds
        self.step = self._stepped
        if len(self.asked) >= self._wanted:
            raise asyncio.CancelledError

    def wall(self) -> datetime:
        return datetime.fromtimestamp(1.7e9 + self.monotonic + self.step, UTC)

    async def run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def purged(run_id: str) -> None:
            pass

        monkeypatch.setattr(monitors.time, "monotonic", lambda: self.monotonic)
        monkeypatch.setattr(monitors.asyncio, "sleep", self.sleep)
        retention = Retention(days=0.01, interval=INTERVAL)
        passes = monitors.RetentionPasses(self, retention, self.wall, purged)  # type: ignore[arg-type]
        with pytest.raises(asyncio.CancelledError):
            await passes.run_forever()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


async def test_a_step_of_the_wall_clock_backwards_is_said_and_pauses_retention_for_a_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    passes = Passes(wanted=2, step=-3600.0)
    await passes.run(monkeypatch)
    assert passes.monotonic == 1000.0 + 3 * INTERVAL  # pass 2, after the step, skipped
    said = warnings(caplog)
    assert said == ["the wall clock stepped by -3600s; retention paused for one pass"]


async def test_a_pass_the_store_failed_leaves_the_next_pass_to_purge(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store out of reach for one pass (Redis restarting) stopped retention for good
    would let the logs of ended runs grow until the server restarted."""
    passes = Passes(wanted=3, failing=frozenset({1}))
    await passes.run(monkeypatch)
    assert len(passes.asked) == 3
    assert passes.monotonic == 1000.0 + 3 * INTERVAL  # a pass every interval all the same
    said = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert said == ["retention pass failed; trying again at the next interval"]
