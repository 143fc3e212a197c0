"""The one sink for what the server observes about itself.

Hooks call it from three places: the store boundary (every durable commit: events by kind,
append latency, run status and health, decisions opened and answered, store errors), the run
manager's delivery loop (events delivered, watcher lag, overflows) and the request interceptor
(streams open, requests by method and code). It always keeps the few figures GetStats reports
(plain integers and one-minute windows, cheap enough to leave on), and forwards to Prometheus
metrics and the run tracer only when those are enabled.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.state import TERMINAL_STATUSES
from runstream_server.observability.windows import Buckets, LatencyWindow, RollingCounter
from runstream_server.store.base import StoredEvent

if TYPE_CHECKING:
    from runstream_server.observability.metrics import PrometheusMetrics
    from runstream_server.observability.tracing import RunTracer

__all__ = ["RunTally", "Telemetry"]

# Events whose content (not only their kind) the telemetry needs; only these are decoded.
_DECISION_KINDS = frozenset(
    {event_pb2.EVENT_KIND_DECISION_REQUESTED, event_pb2.EVENT_KIND_DECISION_RESOLVED}
)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Seconds, for the durable-append histogram."""
LAG_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)
"""Events behind the head, for the watcher-lag histogram."""


class RunTally:
    """Runs by status (all of them) and the health of those not yet ended.

    Counted once from the store at start, then moved by every committed snapshot. Only runs
    not yet ended are remembered individually (an ended run never changes status again).
    """

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._active: dict[str, tuple[int, int]] = {}  # run id -> (status, health)

    def count(self, run: run_pb2.Run) -> None:
        """Adds a run found in the store at start."""
        self._counts[run.status] += 1
        if run.status not in TERMINAL_STATUSES:
            self._active[run.run_id] = (run.status, run.health)

    def update(self, run: run_pb2.Run) -> None:
        """Moves the tally to `run`'s new status and health."""
        previous = self._active.get(run.run_id)
        if previous is not None:
            self._counts[previous[0]] -= 1
        self._counts[run.status] += 1
        if run.status in TERMINAL_STATUSES:
            self._active.pop(run.run_id, None)
        else:
            self._active[run.run_id] = (run.status, run.health)

    def by_status(self) -> dict[int, int]:
        return {status: n for status, n in self._counts.copy().items() if n}

    def active_by_health(self) -> dict[int, int]:
        return dict(Counter(health for _, health in list(self._active.values())))


class Telemetry:
    """Counters for GetStats; Prometheus metrics and run traces when enabled."""

    def __init__(
        self,
        metrics: PrometheusMetrics | None = None,
        tracer: RunTracer | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self.started = datetime.now(UTC)
        self._started_monotonic = time.monotonic()
        self.runs = RunTally()
        self.open_streams: Counter[str] = Counter()  # by method name, e.g. "WatchRun"
        self.appended = RollingCounter()
        self.delivered_recently = RollingCounter()
        self.append_latency = LatencyWindow()
        self.events_appended_total = 0
        self.appended_by_kind: dict[int, int] = {}
        self.append_seconds = Buckets(APPEND_BUCKETS)
        self.events_delivered_total = 0
        self.watcher_lag = Buckets(LAG_BUCKETS)
        self.store_errors_total = 0
        self._open_decisions: dict[tuple[str, str], float] = {}  # -> requested, epoch seconds
        if metrics is not None:
            metrics.attach(self)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started_monotonic

    def open_decision_count(self) -> int:
        return len(self._open_decisions)

    # --- the store boundary ---------------------------------------------------------------

    def committed(
        self,
        run: run_pb2.Run,
        events: Sequence[StoredEvent],
        seconds: float,
    ) -> None:
        """A batch of `events` became durable in `seconds`, leaving the run as `run`."""
        n = len(events)
        self.events_appended_total += n
        self.appended.add(n)
        self.append_latency.observe(seconds)
        self.append_seconds.observe(seconds)
        by_kind = self.appended_by_kind
        for event in events:
            by_kind[event.kind] = by_kind.get(event.kind, 0) + 1
        self.runs.update(run)
        tracer = self.tracer
        wanted = tracer.kinds if tracer is not None else _DECISION_KINDS
        decoded = [
            event_pb2.RunEvent.FromString(event.data) for event in events if event.kind in wanted
        ]
        if tracer is not None and decoded:
            tracer.committed(run, decoded)
        for message in decoded:
            if message.HasField("decision_requested") or message.HasField("decision_resolved"):
                self._decision(run.run_id, message)

    def _decision(self, run_id: str, event: event_pb2.RunEvent) -> None:
        when = event.event_time.ToNanoseconds() / 1e9
        if event.HasField("decision_requested"):
            self._open_decisions[(run_id, event.decision_requested.decision_id)] = when
            return
        resolved = event.decision_resolved
        asked = self._open_decisions.pop((run_id, resolved.decision_id), None)
        if asked is not None and self.metrics is not None:
            outcome = event_pb2.DecisionOutcome.Name(resolved.outcome)
            self.metrics.decision_answer.labels(
                outcome.removeprefix("DECISION_OUTCOME_").lower()
            ).observe(max(0.0, when - asked))

    def decision_open(self, run_id: str, decision_id: str, asked: datetime) -> None:
        """Registers a decision found open at start."""
        self._open_decisions.setdefault((run_id, decision_id), asked.timestamp())

    def store_failed(self, operation: str) -> None:
        self.store_errors_total += 1
        if self.metrics is not None:
            self.metrics.store_errors.labels(operation).inc()

    def store_conflict(self) -> None:
        if self.metrics is not None:
            self.metrics.store_conflicts.inc()

    def store_reconnected(self) -> None:
        if self.metrics is not None:
            self.metrics.store_reconnects.inc()

    # --- delivery (the DeliveryObserver the run manager calls) -------------------------------

    def delivered(self, events: int, behind: int) -> None:
        self.events_delivered_total += events
        self.delivered_recently.add(events)
        self.watcher_lag.observe(behind)

    def overflowed(self) -> None:
        if self.metrics is not None:
            self.metrics.watcher_overflows.inc()

    # --- requests ---------------------------------------------------------------------------

    def stream_opened(self, method: str) -> None:
        self.open_streams[method] += 1

    def stream_closed(self, method: str) -> None:
        self.open_streams[method] -= 1

    def request_finished(self, full_method: str, code: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.rpc_requests.labels(full_method, code).inc()
            self.metrics.rpc_duration.labels(full_method).observe(seconds)

    def close(self) -> None:
        if self.tracer is not None:
            self.tracer.close()
        if self.metrics is not None:
            self.metrics.close()
