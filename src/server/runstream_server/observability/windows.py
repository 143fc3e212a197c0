"""Figures over the last minute, for GetStats: event counts and append latency percentiles.

Both are cheap to update on every append or delivery (an integer add, a deque append) and do
their work when read, which happens once per GetStats call.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Buckets", "LatencyWindow", "RollingCounter"]

WINDOW_SECONDS = 60


class RollingCounter:
    """A count of what happened in the last minute, in one-second buckets."""

    __slots__ = ("_clock", "_counts", "_seconds")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seconds = [-1] * WINDOW_SECONDS
        self._counts = [0] * WINDOW_SECONDS

    def add(self, n: int) -> None:
        second = int(self._clock())
        slot = second % WINDOW_SECONDS
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += n

    def total(self) -> int:
        """What was added in the last 60 whole seconds, the current one included."""
        now = int(self._clock())
        return sum(
            count
            for second, count in zip(self._seconds, self._counts, strict=True)
            if now - WINDOW_SECONDS < second <= now
        )


class LatencyWindow:
    """The durations observed in the last minute (at most `capacity` of the newest)."""

    __slots__ = ("_clock", "_samples")

    def __init__(self, capacity: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=capacity)

    def observe(self, seconds: float) -> None:
        self._samples.append((self._clock(), seconds))

    def percentiles(self, *quantiles: float) -> list[float]:
        """The nearest-rank quantiles of the last minute's durations; zeros when none."""
        horizon = self._clock() - WINDOW_SECONDS
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()
        values = sorted(seconds for _, seconds in self._samples)
        if not values:
            return [0.0 for _ in quantiles]
        return [values[max(0, math.ceil(q * len(values)) - 1)] for q in quantiles]


class Buckets:
    """A histogram as plain integers: cheap enough to update on every delivery.

    Prometheus's own histogram takes a lock per observation; this one is updated only from
    the event loop's thread and read (copied) at scrape time, which the GIL makes safe.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it) pairs, ending with +Inf."""
        running = 0
        out: list[tuple[str, float]] = []
        counts = list(self.counts)
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out
