"""The clock a store's servers share: what every "now" compared with stored times reads.

One server on its own file (SQLite) reads its wall clock. Replicas on Redis compare times
that other replicas stamped (a decision's deadline, when a run last heard from its producer,
when it ended, when it was created), so each reads Redis's clock instead: ``TIME`` read as
the store opens and every :data:`SYNC_INTERVAL` seconds after, kept as an offset to the
local wall clock (taken at the midpoint of the round trip, which is right within half the
trip: a read whose trip took much longer than usual is taken again, see :data:`MAX_TRIP`).
A replica whose clock was minutes off the others' fired their decisions' deadlines early,
marked their runs STALLED and abandoned them early, purged their logs early, and listed its
runs out of order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from runstream_server.errors import RunstreamError

log = logging.getLogger("runstream.store")

SYNC_INTERVAL = 30.0
"""Seconds between two reads of the shared clock."""

WARN_OFFSET = 1.0
"""Seconds this server's wall clock may be off the shared one before a WARNING says so."""

MAX_TRIP = 0.2
"""Seconds a read's round trip may take for its offset to be kept, or twice the shortest trip
seen when the store is farther away: the midpoint is right within half the trip, and a Redis
frozen for 7 s, answering as it woke, set a replica's clock 1.5 s ahead for 30 s (it fired a
6 s question's deadline 7.5 s after it was asked)."""

TRIES = 3
"""Reads of one sync at most; the one with the shortest trip counts, kept when that trip is
short enough (see MAX_TRIP). The first sync keeps it whatever its trip: better than none."""


class StoreClock:
    """The wall clock plus the offset of the store's clock, read through `read` (seconds
    since the epoch; None: the local clock is the store's, offset 0), which raises one of
    `unreachable` when the store is out of reach."""

    def __init__(
        self,
        read: Callable[[], Awaitable[float]] | None = None,
        unreachable: tuple[type[Exception], ...] = (RunstreamError, OSError),
    ) -> None:
        self._read = read
        self._unreachable = unreachable
        self.offset = 0.0
        """Seconds to add to this server's wall clock to get the store's."""
        self.wall: Callable[[], float] = time.time
        """This server's wall clock (tests set it off the others')."""
        self._warned = False  # the offset is large: said once, until it is small again
        self._shortest_trip = math.inf  # of the reads whose offsets were kept

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        """Now, in seconds since the epoch, by the shared clock."""
        return self.wall() + self.offset

    def time_us(self) -> int:
        """Now, in microseconds since the epoch, by the shared clock."""
        return int(self.time() * 1e6)

    async def sync(self) -> None:
        """Reads the store's clock once and keeps its offset to the wall clock."""
        if self._read is None:
            return
        quick = max(MAX_TRIP, 2 * self._shortest_trip)
        best: tuple[float, float, float] | None = None  # trip, wall clock before, store's
        for _ in range(TRIES):
            before = self.wall()
            started = time.monotonic()
            shared = await self._read()
            trip = time.monotonic() - started
            if best is None or trip < best[0]:
                best = (trip, before, shared)
            if trip <= quick:
                break
        assert best is not None
        trip, before, shared = best
        if trip > quick and self._shortest_trip < math.inf:
            log.debug("the store's clock answered in %.1fs at best; its offset is kept", trip)
            return
        self._shortest_trip = min(self._shortest_trip, trip)
        self.offset = shared - (before + trip / 2)
        if abs(self.offset) > WARN_OFFSET:
            if not self._warned:
                log.warning(
                    "this server's clock is %+.1fs off the store's (Redis TIME); times are "
                    "taken from the store's clock, but check this machine's time sync (NTP)",
                    -self.offset,
                )
            self._warned = True
        elif self._warned:
            log.info("this server's clock is back within %.0fs of the store's", WARN_OFFSET)
            self._warned = False

    async def run_forever(self) -> None:
        """Reads the store's clock every SYNC_INTERVAL; a failed read keeps the last offset."""
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.sync()
            except self._unreachable as exc:  # the store's own calls report it unreachable
                log.debug("reading the store's clock failed: %s", exc)
            except Exception:  # a bug: the offset stays as it is until it is fixed
                log.exception("reading the store's clock failed; its offset is kept")
