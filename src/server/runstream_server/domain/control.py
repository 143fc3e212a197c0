"""Run control: what a cancel, a pause or a resume writes, decided on the committed state.

Each function returns the ledger's ``Prepare`` for one request: called under the run's lock
with the state as committed (on this replica or, after catching up, on another), it refuses
what that state does not allow (FAILED_PRECONDITION naming the status) or returns the one
event to store. The commit then tells the run's producers (see commits.py).
"""

from __future__ import annotations

from runstream.v1 import event_pb2, run_pb2

from runstream_server import principal as access
from runstream_server.domain.ledger import Prepare
from runstream_server.domain.state import RunState, status_name
from runstream_server.errors import FailedPrecondition


def _reason(what: str, by: str, why: str) -> str:
    """E.g. "paused by ops: review", "paused by ops", "review" or "paused"."""
    if by:
        return f"{what} by {by}: {why}" if why else f"{what} by {by}"
    return why or what


def cancelling(run_id: str, reason: str, cancelled_by: str) -> Prepare:
    """A cancellation, unless the run already ended."""

    def prepare(state: RunState) -> list[event_pb2.RunEvent]:
        if state.is_terminal:
            raise FailedPrecondition(
                f"run {run_id!r} already ended ({status_name(state.run.status)})",
                reason="RUN_ENDED",
            )
        cancelled = event_pb2.RunCancelled(
            reason=reason, cancelled_by=access.acting_as(cancelled_by)
        )
        return [event_pb2.RunEvent(run_cancelled=cancelled)]

    return prepare


def pausing(run_id: str, reason: str, requested_by: str) -> Prepare:
    """A pause of a RUNNING or WAITING_FOR_INPUT run."""

    def prepare(state: RunState) -> list[event_pb2.RunEvent]:
        status = state.run.status
        if status not in (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_WAITING_FOR_INPUT):
            raise FailedPrecondition(
                f"run {run_id!r} is {status_name(status)}; only a RUNNING or "
                "WAITING_FOR_INPUT run can be paused",
                reason="RUN_ENDED" if state.is_terminal else "RUN_NOT_RUNNING",
            )
        by = access.acting_as(requested_by)
        change = event_pb2.RunStatusChanged(
            previous_status=status,
            status=run_pb2.RUN_STATUS_PAUSED,
            reason=_reason("paused", by, reason),
            changed_by=by,
        )
        return [event_pb2.RunEvent(run_status_changed=change)]

    return prepare


def resuming(run_id: str, reason: str, requested_by: str) -> Prepare:
    """A resume of a PAUSED run: RUNNING again, or WAITING_FOR_INPUT with open decisions."""

    def prepare(state: RunState) -> list[event_pb2.RunEvent]:
        status = state.run.status
        if status != run_pb2.RUN_STATUS_PAUSED:
            raise FailedPrecondition(
                f"run {run_id!r} is {status_name(status)}; only a PAUSED run can be resumed",
                reason="RUN_ENDED" if state.is_terminal else "RUN_NOT_PAUSED",
            )
        waiting = state.has_open_decisions
        by = access.acting_as(requested_by)
        change = event_pb2.RunStatusChanged(
            previous_status=status,
            status=(
                run_pb2.RUN_STATUS_WAITING_FOR_INPUT if waiting else run_pb2.RUN_STATUS_RUNNING
            ),
            reason=_reason("resumed", by, reason),
            changed_by=by,
        )
        return [event_pb2.RunEvent(run_status_changed=change)]

    return prepare
