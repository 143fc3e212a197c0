"""The one sink for what the server observes about itself.

Hooks call it from four places: the store boundary (every durable commit: events by kind,
append latency, run status and health, decisions opened and answered, store errors), the run
manager's delivery loop (events delivered, watcher lag, overflows), the notices of other
replicas' commits (run status and health, decisions opened and answered: the store's
figures, whoever committed) and the request interceptor (streams open, requests by method
and code). It always keeps the few figures GetStats reports
(plain integers and one-minute windows, cheap enough to leave on), and forwards to Prometheus
metrics and the run tracer only when those are enabled.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runstream.v1 import decision_pb2, event_pb2, run_pb2

from runstream_server.domain.events import KIND_BY_FIELD, TERMINAL_FIELDS
from runstream_server.domain.state import TERMINAL_STATUSES, RunState
from runstream_server.observability.windows import Buckets, LatencyWindow, RollingCounter
from runstream_server.store.base import RunCounts, StoredEvent

if TYPE_CHECKING:
    from runstream_server.observability.metrics import PrometheusMetrics
    from runstream_server.observability.tracing import RunTracer

__all__ = ["RunTally", "Telemetry"]

# Events whose content (not only their kind) the telemetry needs; only these are decoded.
_DECISION_KINDS = frozenset(
    {event_pb2.EVENT_KIND_DECISION_REQUESTED, event_pb2.EVENT_KIND_DECISION_RESOLVED}
)


_ENDS = frozenset(KIND_BY_FIELD[name] for name in TERMINAL_FIELDS)
"""The kinds that end a run (their ``terminal`` annotation)."""


_STATUS_AFTER: dict[int, int] = {}
"""The status each kind in :data:`_ENDS` leaves its run in, folded once per kind."""


def _status_after(ended: StoredEvent) -> int:
    """The status an event of a kind in :data:`_ENDS` leaves its run in, as the run's fold
    sets it: what another replica's end says of a run this process does not hold."""
    status = _STATUS_AFTER.get(ended.kind)
    if status is None:
        probe = RunState.new("probe")
        probe.apply(event_pb2.RunEvent(run_created=event_pb2.RunCreated(workflow="probe")))
        probe.apply(ended.decode())
        status = _STATUS_AFTER[ended.kind] = probe.run.status
    return status


_SEEN_KEPT = 10_000
"""Runs whose last seq this process remembers, to count each commit once: a notice may come
twice, and this process's own come back to it too."""
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Seconds, for the durable-append histogram."""
LAG_BUCKETS = (0, 1, 10, 100, 1_000, 10_000, 100_000)
"""Events behind the head, for the watcher-lag histogram."""


class RunTally:
    """Runs by status (all of them) and the health of those not yet ended.

    Counted once from the store at start, then moved by every committed snapshot; on a shared
    store, counted again after each gap in the other replicas' notices (see
    :meth:`recounted`). Only runs not yet ended are remembered individually (an ended run
    never changes status again), so a run's end is counted only when the run was known not
    ended: an end told again, or told after a count that found the run ended, moves nothing.
    """

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._active: dict[str, tuple[int, int]] = {}  # run id -> (status, health)
        # While the store is counted again: each run's last move meanwhile.
        self._moved: dict[str, tuple[int, int]] | None = None

    def update(self, run: run_pb2.Run) -> None:
        """Moves the tally to `run`'s new status and health."""
        if self._moved is not None:
            self._moved[run.run_id] = (run.status, run.health)
        previous = self._active.get(run.run_id)
        ended = run.status in TERMINAL_STATUSES
        if previous is None and ended:
            return  # counted as ended already
        if previous is not None:
            self._counts[previous[0]] -= 1
        self._counts[run.status] += 1
        if ended:
            self._active.pop(run.run_id, None)
        else:
            self._active[run.run_id] = (run.status, run.health)

    def recounting(self) -> None:
        """The store is being counted again: the moves from now on are noted for
        :meth:`recounted`, which cannot tell whether the count saw them."""
        self._moved = {}

    def recounted(self, counts: RunCounts | None) -> None:
        """The tally becomes the store's count (at start, or again after a gap; None: the
        count failed, the tally stays), with the moves made while it was read made again on
        it. A run the count found not ended takes its last move, as does one the count did
        not find (created meanwhile); one it found ended was counted so. (A run created and
        ended while the count was read, milliseconds, is missed until the next count.)"""
        moved, self._moved = self._moved or {}, None
        if counts is None:
            return
        self._counts = Counter(counts.ended)
        self._active = {}
        for run in counts.active:
            self._counts[run.status] += 1
            self._active[run.run_id] = (run.status, run.health)
        for run_id, (status, health) in moved.items():
            self.update(run_pb2.Run(run_id=run_id, status=status, health=health))  # type: ignore[arg-type]

    def follow(self, run_id: str, events: Sequence[StoredEvent], open_decisions: int) -> None:
        """Moves the tally by another replica's events of a run whose state is not at hand
        (with `open_decisions` before them), as the run's fold moves its status and health."""
        known = self._active.get(run_id)
        status, health = known if known is not None else (None, 0)
        for event in events:
            kind = event.kind
            if kind == event_pb2.EVENT_KIND_RUN_CREATED:
                status, health = run_pb2.RUN_STATUS_PENDING, 0
            elif kind in _ENDS:
                status = _status_after(event)
            elif kind == event_pb2.EVENT_KIND_RUN_STATUS_CHANGED:
                status = event_pb2.RunEvent.FromString(event.data).run_status_changed.status
            elif kind == event_pb2.EVENT_KIND_HEALTH_CHANGED:
                health = event_pb2.RunEvent.FromString(event.data).health_changed.health
            else:
                if status == run_pb2.RUN_STATUS_PENDING:  # its first event starts it
                    status = run_pb2.RUN_STATUS_RUNNING
                    if health == run_pb2.RUN_HEALTH_UNSPECIFIED:
                        health = run_pb2.RUN_HEALTH_HEALTHY
                if kind == event_pb2.EVENT_KIND_DECISION_REQUESTED:
                    open_decisions += 1
                    if status == run_pb2.RUN_STATUS_RUNNING:
                        status = run_pb2.RUN_STATUS_WAITING_FOR_INPUT
                elif kind == event_pb2.EVENT_KIND_DECISION_RESOLVED:
                    open_decisions -= 1
            if status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT and open_decisions <= 0:
                status = run_pb2.RUN_STATUS_RUNNING
        if status is not None and (status, health) != known:
            self.update(run_pb2.Run(run_id=run_id, status=status, health=health))  # type: ignore[arg-type]

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
        self._open_by_run: Counter[str] = Counter()
        self._seen: OrderedDict[str, int] = OrderedDict()  # run -> the last seq counted
        # While the store is counted again: the questions asked and answered meanwhile.
        self._decisions_moved: list[tuple[str, event_pb2.RunEvent]] | None = None
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
        self._counted(run.run_id, run.last_seq)
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

    def committed_elsewhere(
        self, run_id: str, events: Sequence[StoredEvent], run: run_pb2.Run | None
    ) -> None:
        """Another replica's commit (the DeliveryObserver's): runs by status and open
        decisions are the whole store's, so they move with it; what the commit cost, and
        the time its decision took to answer, are that replica's figures."""
        counted = self._seen.get(run_id, 0)
        events = [e for e in events if e.seq > counted]  # not a notice seen, or made, here
        if not events:
            return
        self._counted(run_id, events[-1].seq)
        if run is not None:
            self.runs.update(run)
        else:
            self.runs.follow(run_id, events, self._open_by_run[run_id])
        for event in events:
            if event.kind in _DECISION_KINDS:
                self._decision(run_id, event_pb2.RunEvent.FromString(event.data), answered=False)

    def _counted(self, run_id: str, last_seq: int) -> None:
        seen = self._seen
        seen[run_id] = last_seq
        seen.move_to_end(run_id)
        if len(seen) > _SEEN_KEPT:
            seen.popitem(last=False)

    def recounting(self) -> None:
        """The store's runs and open questions are being counted again, after a gap in the
        other replicas' notices: the moves from now on are noted for :meth:`recounted`."""
        self.runs.recounting()
        self._decisions_moved = []

    def recounted(
        self,
        counts: RunCounts | None,
        open_decisions: Sequence[tuple[str, decision_pb2.Decision]],
    ) -> None:
        """The figures of the whole store become what the count found, the questions asked
        and answered while it was read told again on them (None: the count failed, the
        figures stay as they were)."""
        moved, self._decisions_moved = self._decisions_moved or [], None
        self.runs.recounted(counts)
        if counts is None:
            return
        self._open_decisions.clear()
        self._open_by_run.clear()
        for run_id, decision in open_decisions:
            self.decision_open(run_id, decision.decision_id, decision.create_time.ToDatetime(UTC))
        for run_id, event in moved:
            self._decision(run_id, event, answered=False)

    def _decision(self, run_id: str, event: event_pb2.RunEvent, *, answered: bool = True) -> None:
        if self._decisions_moved is not None:
            self._decisions_moved.append((run_id, event))
        when = event.event_time.ToNanoseconds() / 1e9
        if event.HasField("decision_requested"):
            self._opened(run_id, event.decision_requested.decision_id, when)
            return
        resolved = event.decision_resolved
        asked = self._open_decisions.pop((run_id, resolved.decision_id), None)
        if asked is not None:
            self._open_by_run[run_id] -= 1
            if not self._open_by_run[run_id]:
                del self._open_by_run[run_id]
        if answered and asked is not None and self.metrics is not None:
            outcome = event_pb2.DecisionOutcome.Name(resolved.outcome)
            self.metrics.decision_answer.labels(
                outcome.removeprefix("DECISION_OUTCOME_").lower()
            ).observe(max(0.0, when - asked))

    def decision_open(self, run_id: str, decision_id: str, asked: datetime) -> None:
        """Registers a decision found open at start."""
        self._opened(run_id, decision_id, asked.timestamp())

    def _opened(self, run_id: str, decision_id: str, when: float) -> None:
        if (run_id, decision_id) not in self._open_decisions:
            self._open_decisions[(run_id, decision_id)] = when
            self._open_by_run[run_id] += 1

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

    def send_stalled(self) -> None:
        if self.metrics is not None:
            self.metrics.watch_sends_stalled.inc()

    def limit_refused(self, reason: str) -> None:
        """A call refused by a per-principal, per-tenant or per-run limit (`reason`, as the
        refusal's ErrorInfo gives it: WATCH_STREAM_LIMIT, RATE_LIMITED, ...)."""
        if self.metrics is not None:
            self.metrics.limit_refusals.labels(reason).inc()

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
