"""The troubles behind a run's health: what lowered it, on which step, and whether that is over.

A run's health is the worst of its open troubles, HEALTHY when it has none (STALLED, the
silence of its producer, is set by the stall monitor and lasts only until the producer speaks
again: the troubles it had before stay open under it). A trouble is on the step its event
names (``StepFailed``, ``ErrorRecovery.step_id``, ``Alert.step_id``), or on the run as a whole
when the event names no step still to finish:

* a failed step, or an error the run cannot continue from, is FAILING;
* an error recovery, or a high-severity alert, is DEGRADED (a FAILING one on that step stays);
* the failed step starting again (a retry), or the run going on with another step, lowers a
  FAILING trouble to DEGRADED;
* the completion of its step ends a trouble; one on the run as a whole ends when any step
  completes.

The snapshot keeps only the health and its reason; the troubles are rebuilt from the log's
events of :data:`TROUBLE_KINDS` when a run that is not healthy is loaded, each with the steps
as the log had left them at that event (:class:`LoggedSteps`), as they were when it came.
"""

from __future__ import annotations

from typing import Protocol

from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.steps import DONE_STEP

TROUBLE_KINDS = (
    event_pb2.EVENT_KIND_STEP_STARTED,
    event_pb2.EVENT_KIND_STEP_SKIPPED,
    event_pb2.EVENT_KIND_STEP_COMPLETED,
    event_pb2.EVENT_KIND_STEP_FAILED,
    event_pb2.EVENT_KIND_ERROR_RECOVERY,
    event_pb2.EVENT_KIND_ALERT,
)
TROUBLED = frozenset(
    {run_pb2.RUN_HEALTH_DEGRADED, run_pb2.RUN_HEALTH_FAILING, run_pb2.RUN_HEALTH_STALLED}
)
_HIGH = frozenset({run_pb2.SEVERITY_HIGH, run_pb2.SEVERITY_CRITICAL})
_RANK: dict[int, int] = {run_pb2.RUN_HEALTH_DEGRADED: 1, run_pb2.RUN_HEALTH_FAILING: 2}
_RUN = ""  # the key of a trouble on the run as a whole
_STEP_EVENTS = frozenset({"step_started", "step_completed", "step_skipped", "step_failed"})


class Steps(Protocol):
    """The steps a trouble's event is folded with: the run's, or :class:`LoggedSteps`."""

    def get(self, step_id: str) -> run_pb2.Step | None: ...


class LoggedSteps:
    """The steps as a run's log left them event by event, to rebuild its troubles: a step
    is done from its StepCompleted or StepSkipped on (a done step never runs again), and its
    attempts are its StepStarted events so far. The run's own steps are as its last event
    left them: a high alert on a step skipped later was filed on the run, and ended by the
    next step's completion, on every replica that loaded the run (found in review)."""

    __slots__ = ("_planned", "_steps")

    def __init__(self, planned: Steps) -> None:
        self._planned = planned
        self._steps: dict[str, run_pb2.Step] = {}

    def get(self, step_id: str) -> run_pb2.Step | None:
        logged = self._steps.get(step_id)
        if logged is not None or self._planned.get(step_id) is None:
            return logged
        return run_pb2.Step(step_id=step_id)  # known, not done (nor started) yet

    def log(self, event: event_pb2.RunEvent) -> None:
        """Takes in the next event of the log (of any kind)."""
        name = event.WhichOneof("payload")
        if name not in _STEP_EVENTS:
            return
        step_id = getattr(event, name).step_id
        step = self._steps.setdefault(step_id, run_pb2.Step(step_id=step_id))
        if name == "step_started":
            step.status = run_pb2.STEP_STATUS_RUNNING
            step.attempts += 1
        elif name == "step_completed":
            step.status = run_pb2.STEP_STATUS_SUCCEEDED
        elif name == "step_skipped":
            step.status = run_pb2.STEP_STATUS_SKIPPED
        else:
            step.status = run_pb2.STEP_STATUS_FAILED


class Troubles:
    """A run's open troubles, by the step they are on, the latest last."""

    __slots__ = ("_open",)

    def __init__(self, troubles: dict[str, tuple[int, str]] | None = None) -> None:
        self._open: dict[str, tuple[int, str]] = dict(troubles or {})

    def copy(self) -> Troubles:
        return Troubles(self._open)

    @property
    def health(self) -> int:
        """The worst open trouble's health; HEALTHY when there is none."""
        if not self._open:
            return run_pb2.RUN_HEALTH_HEALTHY
        return max((health for health, _ in self._open.values()), key=_RANK.__getitem__)

    @property
    def reason(self) -> str:
        """Why the run is not HEALTHY: the latest of its worst troubles; "" when it is."""
        worst = self.health
        reasons = [reason for health, reason in self._open.values() if health == worst]
        return reasons[-1] if reasons else ""

    def note(self, event: event_pb2.RunEvent, steps: Steps | None = None) -> None:
        """Folds in one event of the run; `steps` (after it) tell a retry's attempt and the
        steps already done."""
        name = event.WhichOneof("payload")
        if name == "step_failed":
            failed = event.step_failed
            reason = f"step {failed.step_id} failed: {failed.error.message}"
            self._raise(failed.step_id, run_pb2.RUN_HEALTH_FAILING, reason)
        elif name == "error_recovery":
            error = event.error_recovery
            health = run_pb2.RUN_HEALTH_DEGRADED
            if not error.can_continue:
                health = run_pb2.RUN_HEALTH_FAILING
            on = _on(error.step_id, steps)
            self._raise(on, health, f"recovering: {error.error_message}")
        elif name == "alert" and event.alert.severity in _HIGH:
            on = _on(event.alert.step_id, steps)
            self._raise(on, run_pb2.RUN_HEALTH_DEGRADED, f"alert: {event.alert.message}")
        elif name == "step_started":
            step_id = event.step_started.step_id
            if self._open.get(step_id, (0, ""))[0] == run_pb2.RUN_HEALTH_FAILING:
                step = steps.get(step_id) if steps is not None else None
                attempt = f" (attempt {step.attempts})" if step is not None else ""
                self._set(step_id, run_pb2.RUN_HEALTH_DEGRADED, f"step {step_id} retried{attempt}")
            self._went_on(step_id)
        elif name == "step_skipped":
            # The producer gave the step up: its failure no longer stops the run.
            step_id = event.step_skipped.step_id
            if self._open.get(step_id, (0, ""))[0] == run_pb2.RUN_HEALTH_FAILING:
                reason = self._open[step_id][1]
                self._set(step_id, run_pb2.RUN_HEALTH_DEGRADED, f"{reason}; the step was skipped")
        elif name == "step_completed":
            step_id = event.step_completed.step_id
            self._open.pop(step_id, None)
            self._open.pop(_RUN, None)
            self._went_on(step_id)

    def _raise(self, on: str, health: int, reason: str) -> None:
        """A new trouble on `on`; one already FAILING there is not lowered by a lesser one."""
        if health == run_pb2.RUN_HEALTH_DEGRADED and (
            self._open.get(on, (0, ""))[0] == run_pb2.RUN_HEALTH_FAILING
        ):
            return
        self._set(on, health, reason)

    def _set(self, on: str, health: int, reason: str) -> None:
        self._open.pop(on, None)  # the latest goes last
        self._open[on] = (health, reason)

    def _went_on(self, step_id: str) -> None:
        """The run goes on with `step_id`: failures elsewhere no longer stop it."""
        for on, (health, reason) in list(self._open.items()):
            if health == run_pb2.RUN_HEALTH_FAILING and on != step_id:
                self._open[on] = (
                    run_pb2.RUN_HEALTH_DEGRADED,
                    f"{reason}; the run went on with step {step_id}",
                )


def _on(step_id: str, steps: Steps | None) -> str:
    """The step a trouble is on: the one its event names, unless that step is already done
    (its completion is past: the trouble is the run's)."""
    if not step_id or steps is None:
        return step_id
    step = steps.get(step_id)
    return _RUN if step is None or step.status in DONE_STEP else step_id
