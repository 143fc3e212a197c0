"""AG-UI: a Runstream run as a stream of AG-UI protocol events, served as Server-Sent Events.

Frontends built for the AG-UI protocol (CopilotKit and others) watch a Runstream run without
knowing gRPC: ``runstream agui`` serves ``GET /runs/{run_id}/events`` (and POST, as AG-UI's
``HttpAgent`` asks; see ``AguiBridge``), and
``AguiTranslator`` turns each Runstream event into the AG-UI events it stands for:

============================  ==========================================================
Runstream event               AG-UI events
============================  ==========================================================
RunCreated                    RUN_STARTED, then STATE_SNAPSHOT (the plan: every step PENDING)
RunStarted, RunStatusChanged  STATE_DELTA (``/status``)
StepStarted                   STEP_STARTED (``stepName`` = the step id; not again for a
                              step still open), STATE_DELTA (a step started again after it
                              failed loses its ``error``)
StepProgress, StepSkipped     STATE_DELTA (the step's status and percent, the run's percent)
StepCompleted, StepFailed     STEP_FINISHED, STATE_DELTA (a failed step's ``error``)
DecisionRequested,            CUSTOM (as below), then STATE_DELTA when ``/status`` changes:
DecisionResolved              WAITING_FOR_INPUT while a decision is open, RUNNING again
                              after the last one closed
TextDelta                     TEXT_MESSAGE_START (first delta of a message; ``name`` = the
                              agent), TEXT_MESSAGE_CONTENT, TEXT_MESSAGE_END (final delta)
MetricsUpdate                 STATE_DELTA (``/metrics``, or the step's ``metrics``)
ItemProgress                  CUSTOM (as below), then STATE_DELTA (``/percent``) for a run
                              without planned steps
HealthChanged                 STATE_DELTA (``/health``, ``/healthReason``)
EstimateUpdated               STATE_DELTA (``/estimate``)
RunCompleted                  TEXT_MESSAGE_END / STEP_FINISHED for what is still open,
                              STATE_DELTA, RUN_FINISHED (``result``)
RunCancelled                  the same, then RUN_FINISHED with outcome ``cancelled``
RunFailed                     RUN_ERROR (``message``, ``code``)
AgentActivity of a tool       TOOL_CALL_START, _ARGS, _END (started), TOOL_CALL_RESULT
                              (done or failed), then CUSTOM (see ``_agui_agents``)
Thinking                      REASONING_START, REASONING_MESSAGE_START, _CONTENT, _END,
                              REASONING_END, then CUSTOM
anything else                 CUSTOM, named ``runstream.<kind>`` (``runstream.agent_activity``,
                              ``runstream.decision_requested``, ...), the payload as its value
============================  ==========================================================

The state is ``{"runId", "workflow", "status", "percent", "currentStep", "health",
"healthReason", "estimate", "metrics", "steps": {step_id: {"name", "status", "percent",
"metrics"}}}`` (``healthReason``: why the health is not HEALTHY, as ``Run.health_reason``)
(a FAILED step also has its ``error`` until it starts again), with the status and the run's
percent as the server's state has them: the status follows the run's open decisions as the
server folds them (the server emits no status event for them), and the percent counts
finished steps plus the running steps' own percent, over all steps (a run that declared no
steps: its item counts, ``run.items()``, else it moves only at its end). Deltas are JSON
Patch ``add`` operations, and ``remove`` for a step's error.

Needs the ``agui`` extra (``pip install 'runstream[agui]'``: the ``ag-ui-protocol`` models).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from runstream.integrations._common import require

require("ag_ui", "agui")

from ag_ui.core import (  # noqa: E402
    BaseEvent,
    CustomEvent,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from ag_ui.core.events import RunFinishedCancelledOutcome  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from runstream._events import (  # noqa: E402
    DecisionRequested,
    DecisionResolved,
    EstimateUpdated,
    EventKind,
    HealthChanged,
    ItemProgress,
    MetricsUpdate,
    RunCompleted,
    RunCreated,
    RunFailed,
    RunStatusChanged,
    StepCompleted,
    StepFailed,
    StepProgress,
    StepSkipped,
    StepStarted,
    TextDelta,
)
from runstream._types import Event  # noqa: E402
from runstream.integrations._agui_agents import AgentEvents  # noqa: E402

__all__ = ["AguiTranslator", "encode_sse", "run_input_problems"]

_PROTOCOL_VERSION = "1.0"
_DONE = ("SUCCEEDED", "SKIPPED")


def _pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) to ``parts``, escaping '~' and '/'."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


@dataclass
class _Delta:
    """JSON Patch operations (RFC 6902) against the state, applied to it as they are made."""

    state: dict[str, Any]
    ops: list[dict[str, Any]] = field(default_factory=list)

    def set(self, value: Any, *path: str) -> None:
        target = self.state
        for part in path[:-1]:
            target = target[part]
        # "add" sets an object member whether or not it exists (RFC 6902, 4.1).
        # A copy: later operations change the state in place, not what this one says.
        self.ops.append({"op": "add", "path": _pointer(*path), "value": copy.deepcopy(value)})
        target[path[-1]] = value

    def remove(self, *path: str) -> None:
        """Removes a member that exists (RFC 6902, 4.2: removing a missing one is an error)."""
        target = self.state
        for part in path[:-1]:
            target = target[part]
        self.ops.append({"op": "remove", "path": _pointer(*path)})
        del target[path[-1]]


class AguiTranslator:
    """Turns one run's Runstream events, in seq order from seq 1, into AG-UI events.

    The translation of an event depends on the events before it (a message's first delta
    opens it, the state delta is against the state so far), so a translator must see the
    run's events from the start; a stream that resumes translates from seq 1 again and sends
    only what its client has not seen.
    """

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._state: dict[str, Any] = {
            "runId": run_id,
            "workflow": "",
            "status": "PENDING",
            "percent": 0.0,
            "currentStep": "",
            "health": "HEALTHY",
            "healthReason": "",
            "estimate": None,
            "metrics": {},
            "steps": {},
        }
        self._unplanned = False
        self._items: ItemProgress | None = None
        self._open_messages: dict[str, None] = {}
        self._open_steps: dict[str, None] = {}
        self._open_decisions: set[str] = set()
        self._finished = False
        self._agents = AgentEvents()

    @property
    def state(self) -> dict[str, Any]:
        """The state as the events so far left it (what STATE_SNAPSHOT plus deltas give)."""
        return self._state

    @property
    def finished(self) -> bool:
        """Whether the run's terminal event was translated."""
        return self._finished

    def translate(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events that ``event`` stands for (possibly none)."""
        timestamp = int(event.event_time.timestamp() * 1000)
        out = self._translate(event) + self._waiting(event)
        for item in out:
            item.timestamp = timestamp
        return out

    def _translate(self, event: Event) -> list[BaseEvent]:
        p = event.payload
        run_id = self._run_id
        if p is None:
            # A kind this SDK does not know (EventKind.UNSPECIFIED: a newer server's): the
            # proto asks a client to skip it, not to send a contentless
            # "runstream.unspecified". Like any event that stands for no AG-UI event, its seq
            # sends no SSE message; a resumed stream still starts after the client's last id.
            return []
        if isinstance(p, RunCreated):
            self._state["workflow"] = p.workflow
            self._unplanned = not p.steps  # steps known as they start: no step percent
            for spec in p.steps:
                self._state["steps"][spec.step_id] = _step(spec.name or spec.step_id)
            return [
                RunStartedEvent(
                    thread_id=run_id, run_id=run_id, protocol_version=_PROTOCOL_VERSION
                ),
                StateSnapshotEvent(snapshot=copy.deepcopy(self._state)),
            ]
        if event.kind == EventKind.RUN_STARTED:
            return self._delta(lambda d: d.set("RUNNING", "status"))
        if isinstance(p, RunStatusChanged):
            return self._delta(lambda d: d.set(p.status.name, "status"))
        if isinstance(p, StepStarted):
            if p.step_id in self._open_steps:
                # Another attempt of a step still open (a producer restarted under it): AG-UI
                # has one STEP_STARTED per open step, its checker refuses a second.
                return self._step_started(p)
            return [StepStartedEvent(step_name=p.step_id), *self._step_started(p)]
        if isinstance(p, ItemProgress):
            self._items = p
            return [_custom(event), *self._delta(self._set_percent)]
        if isinstance(p, StepProgress):
            return self._step_changed(p.step_id, "RUNNING", p.percent)
        if isinstance(p, StepSkipped):
            return self._finish_step(p.step_id) + self._step_changed(p.step_id, "SKIPPED", None)
        if isinstance(p, StepCompleted):
            return self._finish_step(p.step_id) + self._step_changed(p.step_id, "SUCCEEDED", 100.0)
        if isinstance(p, StepFailed):
            error = p.error.message if p.error is not None else ""
            return self._finish_step(p.step_id) + self._step_changed(
                p.step_id, "FAILED", None, error=error
            )
        if isinstance(p, TextDelta):
            return self._text(p)
        if isinstance(p, MetricsUpdate):
            return self._metrics(p)
        if isinstance(p, HealthChanged):
            return self._delta(lambda d: self._health(d, p))
        if isinstance(p, EstimateUpdated):
            return self._delta(lambda d: d.set(_estimate(p), "estimate"))
        if isinstance(p, RunCompleted):
            result = p.result or ({"summary": p.summary} if p.summary else None)
            return [
                *self._close_all(),
                *self._ended("SUCCEEDED", percent=100.0),
                RunFinishedEvent(thread_id=run_id, run_id=run_id, result=result),
            ]
        if event.kind == EventKind.RUN_CANCELLED:
            return [
                *self._close_all(),
                *self._ended("CANCELLED"),
                RunFinishedEvent(
                    thread_id=run_id, run_id=run_id, outcome=RunFinishedCancelledOutcome()
                ),
            ]
        if isinstance(p, RunFailed):
            info = p.error
            return [
                *self._close_all(),
                *self._ended("FAILED"),
                RunErrorEvent(
                    message=(info.message if info is not None else "") or "the run failed",
                    code=(info.code if info is not None else "") or None,
                ),
            ]
        return [*self._agents.translate(event), _custom(event)]

    def _waiting(self, event: Event) -> list[BaseEvent]:
        """The status a decision sets, as the server folds it (``RunState.apply``): a question
        makes a RUNNING run WAITING_FOR_INPUT (a PAUSED one stays PAUSED), and after any event
        a waiting run with no open decision is RUNNING again."""
        p = event.payload
        if isinstance(p, DecisionRequested):
            self._open_decisions.add(p.decision_id)
        elif isinstance(p, DecisionResolved):
            self._open_decisions.discard(p.decision_id)
        status = self._state["status"]
        if isinstance(p, DecisionRequested) and status == "RUNNING":
            status = "WAITING_FOR_INPUT"
        if status == "WAITING_FOR_INPUT" and not self._open_decisions:
            status = "RUNNING"
        if status == self._state["status"]:
            return []
        return self._delta(lambda d: d.set(status, "status"))

    # --- steps ---------------------------------------------------------------------------

    def _step_started(self, p: StepStarted) -> list[BaseEvent]:
        self._open_steps[p.step_id] = None

        def change(d: _Delta) -> None:
            if p.step_id not in self._state["steps"]:
                d.set(_step(p.name or p.step_id), "steps", p.step_id)
            self._begin(d, p.step_id)
            d.set("RUNNING", "steps", p.step_id, "status")
            d.set(0.0, "steps", p.step_id, "percent")
            d.set(p.step_id, "currentStep")
            self._set_percent(d)

        return self._delta(change)

    def _step_changed(
        self, step_id: str, status: str, percent: float | None, *, error: str = ""
    ) -> list[BaseEvent]:
        def change(d: _Delta) -> None:
            if step_id not in self._state["steps"]:
                d.set(_step(step_id), "steps", step_id)
            if status == "RUNNING" and self._state["steps"][step_id]["status"] != "RUNNING":
                self._begin(d, step_id)  # progress of a step not running starts it again
            d.set(status, "steps", step_id, "status")
            if percent is not None:
                d.set(percent, "steps", step_id, "percent")
            if error:
                d.set(error, "steps", step_id, "error")
            if status != "RUNNING" and self._state["currentStep"] == step_id:
                # As the server has it: the latest-started step still running, else none.
                d.set(next(reversed(self._open_steps), ""), "currentStep")
            self._set_percent(d)

        return self._delta(change)

    def _begin(self, d: _Delta, step_id: str) -> None:
        """A step (re)starts: an earlier attempt's error goes, as the server clears it."""
        if "error" in self._state["steps"][step_id]:
            d.remove("steps", step_id, "error")

    def _finish_step(self, step_id: str) -> list[BaseEvent]:
        if step_id not in self._open_steps:
            return []
        del self._open_steps[step_id]
        return [StepFinishedEvent(step_name=step_id)]

    def _set_percent(self, d: _Delta) -> None:
        """The run's percent as the server has it: from its planned steps, else from its
        item counts (``run.items()``)."""
        steps = self._state["steps"].values()
        if steps and not self._unplanned:
            done = sum(1 for s in steps if s["status"] in _DONE)
            running = sum(s["percent"] for s in steps if s["status"] == "RUNNING")
            percent = min(100.0, round((done + running / 100) / len(steps) * 100, 2))
        elif self._items is not None and self._items.total > 0:
            percent = min(100.0, round(self._items.completed / self._items.total * 100, 2))
        else:
            return
        if percent != self._state["percent"]:
            d.set(percent, "percent")

    # --- text, metrics, the end ------------------------------------------------------------

    def _text(self, p: TextDelta) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        if p.message_id not in self._open_messages:
            self._open_messages[p.message_id] = None
            out.append(
                TextMessageStartEvent(
                    message_id=p.message_id, role="assistant", name=p.agent_id or None
                )
            )
        if p.delta:
            out.append(TextMessageContentEvent(message_id=p.message_id, delta=p.delta))
        if p.final:
            del self._open_messages[p.message_id]
            out.append(TextMessageEndEvent(message_id=p.message_id))
        return out

    def _metrics(self, p: MetricsUpdate) -> list[BaseEvent]:
        def change(d: _Delta) -> None:
            if p.step_id:
                if p.step_id not in self._state["steps"]:
                    d.set(_step(p.step_id), "steps", p.step_id)
                base: tuple[str, ...] = ("steps", p.step_id, "metrics")
            else:
                base = ("metrics",)
            for name, value in p.values.items():
                d.set(value, *base, name)

        return self._delta(change)

    def _close_all(self) -> list[BaseEvent]:
        """AG-UI ends a run only after its messages and steps: close what is still open."""
        out: list[BaseEvent] = [TextMessageEndEvent(message_id=m) for m in self._open_messages]
        out += self._agents.close_all()
        out += [StepFinishedEvent(step_name=s) for s in self._open_steps]
        self._open_messages.clear()
        self._open_steps.clear()
        return out

    def _ended(self, status: str, *, percent: float | None = None) -> list[BaseEvent]:
        self._finished = True

        def change(d: _Delta) -> None:
            d.set(status, "status")
            if percent is not None and self._state["percent"] != percent:
                d.set(percent, "percent")

        return self._delta(change)

    @staticmethod
    def _health(delta: _Delta, p: HealthChanged) -> None:
        """The health and, as the server keeps ``Run.health_reason``, why it is not HEALTHY."""
        delta.set(p.health.name, "health")
        delta.set("" if p.health.name == "HEALTHY" else p.reason, "healthReason")

    def _delta(self, change: Any) -> list[BaseEvent]:
        delta = _Delta(self._state)
        change(delta)
        if not delta.ops:
            return []
        # Validated into the package's JSON Patch operation models.
        return [StateDeltaEvent.model_validate({"type": "STATE_DELTA", "delta": delta.ops})]


def _custom(event: Event) -> CustomEvent:
    """The CUSTOM event ``runstream.<kind>`` carrying the event's payload."""
    return CustomEvent(name=f"runstream.{event.kind.name.lower()}", value=_payload(event))


def encode_sse(event: BaseEvent, event_id: str) -> bytes:
    """One Server-Sent Event: ``id:`` and one ``data:`` line of the event's AG-UI JSON."""
    data = event.model_dump_json(by_alias=True)
    return f"id: {event_id}\ndata: {data}\n\n".encode()


def run_input_problems(value: Any) -> list[str]:
    """What is wrong with a parsed JSON ``value`` as AG-UI's ``RunAgentInput`` (what a
    frontend POSTs), as far as a watcher can tell: not an object, or a field of the
    protocol's holding the wrong kind of value (``threadId`` a number, ``messages`` not an
    array). A missing field and what an array holds are not judged: the bridge reads none of
    them, and a newer client's kinds of message must not get its stream refused."""
    if not isinstance(value, dict):
        return [f"it is a JSON {_json_kind(value)}, not an object"]
    try:
        RunAgentInput.model_validate(value)
    except ValidationError as exc:
        return [
            f"{error['loc'][0]} is a JSON {_json_kind(error['input'])}, "
            + _EXPECTED.get(error["type"], error["msg"])
            for error in exc.errors(include_url=False)
            if len(error["loc"]) == 1 and error["type"] != "missing"
        ]
    return []


# What a RunAgentInput field holds, by the error pydantic gives for another kind of value.
_EXPECTED = {
    "string_type": "not a string",
    "list_type": "not an array",
    "dict_type": "not an object",
    "model_type": "not an object",
}


def _json_kind(value: Any) -> str:
    """The JSON type of a parsed JSON value."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _step(name: str) -> dict[str, Any]:
    return {"name": name, "status": "PENDING", "percent": 0.0, "metrics": {}}


def _estimate(p: EstimateUpdated) -> dict[str, Any] | None:
    estimate = p.estimate
    if estimate is None or estimate.remaining is None:
        return None
    return {
        "remainingSeconds": round(estimate.remaining.total_seconds(), 3),
        "endTime": estimate.end_time.isoformat() if estimate.end_time else None,
        "confidence": estimate.confidence,
    }


def _payload(event: Event) -> Any:
    """The event's payload as JSON (the proto's JSON form), with its seq."""
    raw = event.raw
    name = raw.WhichOneof("payload")
    value: dict[str, Any] = (
        json_format.MessageToDict(getattr(raw, name)) if name is not None else {}
    )
    return {"seq": event.seq, **value}
