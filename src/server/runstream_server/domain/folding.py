"""Folding a batch: the events a write stores, numbered and applied to a copy of the state.

The ledger calls :func:`fold` under the run's lock, on the committed state. Besides the
batch itself it adds what the server records around it: the decisions a terminal event
closes and the run's last milestones before it ends, the milestones each producer event
crosses right after it, and after the batch what it implies as a whole (a health change, a
moved estimate, a held ETA while waiting or paused). Nothing here reads the store or the
clock: the caller passes the keys already stored, the workflow's history and the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain import insight
from runstream_server.domain.commits import EventAck
from runstream_server.domain.events import (
    ESTIMATE_INPUTS,
    KIND_BY_FIELD,
    TERMINAL_FIELDS,
    kind_name,
)
from runstream_server.domain.health import TROUBLED, Troubles
from runstream_server.domain.state import TROUBLE_FIELDS, RunState, from_timestamp, to_timestamp
from runstream_server.errors import FailedPrecondition, InvalidArgument
from runstream_server.store.base import HeldKey


def fold(
    state: RunState,
    events: Sequence[event_pb2.RunEvent],
    *,
    producer: bool,
    known: dict[str, HeldKey],
    history: insight.WorkflowHistory,
    now: datetime,
    policy: insight.InsightPolicy,
) -> tuple[RunState, list[EventAck], list[event_pb2.RunEvent]]:
    """The state after the batch, each event's ack, and the events to store.

    `known` maps the idempotency keys the log already holds to what they hold (an event of
    the same kind is answered with its seq, not stored again; another kind is refused);
    `history` is the workflow's, for estimates and milestones.
    """
    batch = _Batch(state, producer, known, history, now, policy)
    for i, event in enumerate(events):
        _fold_one(batch, i, event)
    draft, spoken = batch.draft, batch.spoken
    if spoken and not draft.is_terminal:
        when = spoken[-1].event_time
        at = when.seconds + when.nanos / 1e9
        if insight.estimate_due(draft, history, at, batch.inputs_moved):
            draft.estimated_at, draft.estimated_from = at, history.version
            # How long the steps have run, by the producer's clock (its events' times); the
            # end time from the server's now, which readers count it down by.
            as_of = from_timestamp(when)
            for extra in insight.estimate_again(draft, history, as_of, spoken, at=now):
                batch.stage(extra, "server")
    if batch.staged:
        for extra in insight.hold_events(draft):  # waiting or paused: ETA stands still
            batch.stage(extra, "server")
    return draft, batch.acks, batch.staged


class _Batch:
    """One batch as :func:`fold` folds it: the draft state, what it staged and answered so
    far, and what its events tell the ones after them. One per batch, so that folding an
    event allocates nothing of its own (the commit's hot path)."""

    __slots__ = (
        "acks",
        "draft",
        "ended_at",
        "history",
        "inputs_moved",
        "known",
        "now",
        "policy",
        "producer",
        "received",
        "run_id",
        "spoken",
        "staged",
        "taken",
        "troubles",
    )

    def __init__(
        self,
        state: RunState,
        producer: bool,
        known: dict[str, HeldKey],
        history: insight.WorkflowHistory,
        now: datetime,
        policy: insight.InsightPolicy,
    ) -> None:
        self.run_id = state.run.run_id
        self.draft = state.copy()
        self.producer = producer
        self.known = known
        self.history = history
        self.now = now
        self.policy = policy
        self.received = to_timestamp(now)
        self.staged: list[event_pb2.RunEvent] = []
        self.acks: list[EventAck] = []
        self.spoken: list[event_pb2.RunEvent] = []
        self.troubles: Troubles = state.troubles.copy()  # the producer's events' so far
        self.ended_at = ""  # the event of this batch that ended the run
        self.taken: dict[str, int] = {}  # the keys this batch's events took: key -> index
        self.inputs_moved = False  # an event of the batch may move the estimate

    def stage(self, event: event_pb2.RunEvent, path: str) -> int:
        """Numbers and stamps `event`, applies it to the draft and stages it; its seq."""
        draft, received = self.draft, self.received
        event.run_id = self.run_id
        event.seq = draft.last_seq + 1
        if not event.HasField("event_time"):
            event.event_time.CopyFrom(received)
        # The server's own time beside the producer's: what silence and retention count from.
        event.receive_time.CopyFrom(received)
        if event.HasField("decision_requested"):
            asked = event.decision_requested
            if asked.HasField("timeout"):
                asked.deadline.CopyFrom(to_timestamp(self.now + asked.timeout.ToTimedelta()))
            else:
                asked.ClearField("deadline")
        draft.apply(event, path)
        self.staged.append(event)
        return event.seq


def _fold_one(batch: _Batch, i: int, event: event_pb2.RunEvent) -> None:
    """Folds `event`, the batch's `i`-th: a duplicate key is answered with its seq; else it
    is staged, after what the server records before a run ends if it ends it, and, from a
    producer, followed by the health and milestones it moved."""
    key = event.idempotency_key
    name = event.WhichOneof("payload") or ""
    known, taken = batch.known, batch.taken
    if key and key in known:
        held = known[key]
        if key in taken and held.kind != KIND_BY_FIELD[name]:
            raise InvalidArgument(
                f"events[{i}].idempotency_key",
                f"{key!r} is the key of events[{taken[key]}] of this batch too, "
                f"{_a(kind_name(held.kind))}; each event needs a key of its own",
            )
        _check_same_kind(held, name, key, f"events[{i}]", batch.run_id)
        batch.acks.append(EventAck(held.seq, key, duplicate=True))
        return
    if batch.ended_at:
        raise FailedPrecondition(
            f"run {batch.run_id!r} ends at {batch.ended_at} of this batch; it accepts no events "
            f"after that (events[{i}].{name})",
            reason="RUN_ENDED",
        )
    draft = batch.draft
    if name in TERMINAL_FIELDS and not draft.is_terminal:
        health = _ending_health(draft, event)  # from the troubles it ended with
        for extra in _closing(draft, event):
            batch.stage(extra, "server")
        # On the run as its steps closed: "all 2 steps done", not "1 of 2" with one running.
        ending = _last_milestones(draft, batch.history, event, batch.now, batch.policy)
        for extra in health + ending:
            batch.stage(extra, "server")
    seq = batch.stage(event, f"events[{i}]")
    if draft.is_terminal:
        batch.ended_at = f"events[{i}]"
    batch.acks.append(EventAck(seq, key, duplicate=False))
    if key:
        known[key] = HeldKey(seq, KIND_BY_FIELD[name])
        taken[key] = i
    if batch.producer:
        batch.spoken.append(event)
        moved = name in ESTIMATE_INPUTS  # and with them the progress (RunState.apply)
        batch.inputs_moved = batch.inputs_moved or moved
        if not draft.is_terminal:  # health and milestones right after what moved them
            for extra in (
                _health_moved(draft, event, name, batch.troubles)
                + (insight.progress_milestones(draft) if moved else [])
                + insight.target_milestones(draft)
            ):
                batch.stage(extra, "server")


def _check_same_kind(held: HeldKey, name: str, key: str, path: str, run_id: str) -> None:
    """Refuses an event whose key holds an event of another kind: the producer reports
    something new under a key it used before (a replay that went another way, or a process
    that attached with an earlier one's key_prefix and did not replay), which answering as a
    duplicate would drop without a word. The same kind is a resend or a replay, and answered
    with the stored event's seq even if its texts differ (a model rarely says it twice)."""
    if held.kind and held.kind != KIND_BY_FIELD[name]:
        stored = kind_name(held.kind)
        raise FailedPrecondition(
            f"{path}.idempotency_key {key!r} already holds event {held.seq} "
            f"of run {run_id!r}, {_a(stored)}, not {_a(name)}: a producer reporting again "
            "under keys it used must report the same events in the same order; new events "
            "need new keys (the SDK: attach_run with key_prefix=None)",
            reason="IDEMPOTENCY_KEY_REUSED",
        )


def _a(name: str) -> str:
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def _closing(draft: RunState, ending: event_pb2.RunEvent) -> list[event_pb2.RunEvent]:
    """What the server records before a run ends, first: its open decisions closed, and
    the steps still running."""
    extra = [
        event_pb2.RunEvent(
            decision_resolved=event_pb2.DecisionResolved(
                decision_id=d.decision_id, outcome=event_pb2.DECISION_OUTCOME_CANCELLED
            )
        )
        for d in draft.open_decisions()
    ]
    return extra + _steps_left_running(draft, ending)


def _ending_health(draft: RunState, ending: event_pb2.RunEvent) -> list[event_pb2.RunEvent]:
    """The run's health as it ends, from the troubles it had: before the server closes its
    steps, which a cancel or a failure would count among them."""
    if ending.HasField("run_completed"):
        return insight.completion_health(draft)
    if ending.HasField("run_failed") and draft.run.health != run_pb2.RUN_HEALTH_FAILING:
        return [
            insight.health_event(
                draft.run.health, run_pb2.RUN_HEALTH_FAILING, ending.run_failed.error.message
            )
        ]
    if ending.HasField("run_cancelled") and draft.run.health == run_pb2.RUN_HEALTH_STALLED:
        # A silence that ended with the run is over: its troubles say how it ended.
        troubles = draft.troubles
        return [
            insight.health_event(
                run_pb2.RUN_HEALTH_STALLED,
                troubles.health,
                troubles.reason or "the run was cancelled",
            )
        ]
    return []


def _last_milestones(
    draft: RunState,
    history: insight.WorkflowHistory,
    ending: event_pb2.RunEvent,
    now: datetime,
    policy: insight.InsightPolicy,
) -> list[event_pb2.RunEvent]:
    """A completed run's last milestones, once its decisions and steps are closed."""
    if not ending.HasField("run_completed"):
        return []
    end = ending.event_time.ToDatetime(UTC) if ending.HasField("event_time") else now
    return insight.progress_milestones(draft, finished=True) + insight.speed_milestone(
        draft, history, end, policy.speed_ratio
    )


def _steps_left_running(draft: RunState, ending: event_pb2.RunEvent) -> list[event_pb2.RunEvent]:
    """The steps still running when the run ends, closed: succeeded with a run that
    succeeded, failed (``RUN_CANCELLED``, ``RUN_FAILED``) with one that did not. A step not
    yet started stays pending."""
    running = [s.step_id for s in draft.run.steps if s.status == run_pb2.STEP_STATUS_RUNNING]
    if ending.HasField("run_completed"):
        return [
            event_pb2.RunEvent(step_completed=event_pb2.StepCompleted(step_id=step_id))
            for step_id in running
        ]
    # Each step left running gets its own copy of the reason: cut, so that a run with many
    # steps running cannot multiply a 4 KiB reason past the snapshot's size limit (the whole
    # reason stays in the run's cancel_reason or error, and in the ending event).
    if ending.HasField("run_cancelled"):
        reason = _cut(ending.run_cancelled.reason)
        error = run_pb2.ErrorInfo(
            code="RUN_CANCELLED",
            message=f"the run was cancelled: {reason}" if reason else "the run was cancelled",
        )
    else:
        message = _cut(ending.run_failed.error.message)
        error = run_pb2.ErrorInfo(code="RUN_FAILED", message=f"the run failed: {message}")
    return [
        event_pb2.RunEvent(step_failed=event_pb2.StepFailed(step_id=step_id, error=error))
        for step_id in running
    ]


_STEP_COPY_CHARS = 256
"""The most of a run's end reason copied into each step it closes."""


def _cut(text: str) -> str:
    return text if len(text) <= _STEP_COPY_CHARS else text[: _STEP_COPY_CHARS - 1] + "\u2026"


def _health_moved(
    draft: RunState, event: event_pb2.RunEvent, name: str, troubles: Troubles
) -> list[event_pb2.RunEvent]:
    """The HealthChanged a producer's event makes, right after it: each change is said, also
    one a later event of the same batch undoes (judged per batch, a recovery and its step's
    completion sent together never showed DEGRADED). `troubles`: those before the event,
    moved on past it here."""
    run = draft.run
    if run.health == run_pb2.RUN_HEALTH_HEALTHY and name not in TROUBLE_FIELDS:
        return []  # nothing to move: the common case, at no cost
    health, reason = insight.health_after(run.health, [event], draft, troubles)
    troubles.note(event, draft.steps)
    if health != run.health or (health in TROUBLED and reason != run.health_reason):
        return [insight.health_event(run.health, health, reason)]
    return []
