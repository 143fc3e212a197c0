"""The typed events a producer reports about its run, one method per kind.

:class:`RunEvents` is the reporting vocabulary of :class:`~runstream.RunReporter`: each method
builds one event (through ``_event_builders``) and hands it to ``_report``, which queues it
for the report stream; ``complete()`` and ``fail()`` end the run and wait until everything is
durable. Building the event checks the call's arguments against the server's rules
(:mod:`runstream._arguments`): a bad one raises InvalidArgumentError naming it, and nothing
is queued.
How events travel, and steps, are the reporter's (``_reporter.py``); decisions are
``_run_decisions.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from google.protobuf import unknown_fields

from runstream import _event_builders as builders
from runstream._arguments import LONG_TEXT_CHARS
from runstream._errors import InvalidArgumentError
from runstream._events import AlertAction
from runstream._types import (
    ActivityType,
    AlertActionType,
    MilestoneType,
    Severity,
)
from runstream.v1 import event_pb2

__all__ = ["MAX_DELTA_CHARS", "RunEvents"]

_ENDING = {
    "run_completed": "complete()",
    "run_failed": "fail()",
    "run_cancelled": "client.cancel_run()",
}
"""The kinds that end a run, and the calls that report them."""

MAX_DELTA_CHARS = LONG_TEXT_CHARS
"""The longest ``TextDelta.delta`` the server takes; longer text goes as several deltas."""
MAX_DELTA_BYTES = 196_608
"""The most UTF-8 bytes one delta carries: an event may take 256 KiB, which 65,536 characters
of four bytes each (emoji) pass."""


def text_pieces(text: str) -> list[str]:
    """``text`` as deltas the server takes: at most MAX_DELTA_CHARS characters and
    MAX_DELTA_BYTES bytes each, split only between characters."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"delta: must be a string, got {text!r:.60}")
    pieces = []
    for i in range(0, len(text), MAX_DELTA_CHARS):
        piece = text[i : i + MAX_DELTA_CHARS]
        if len(piece.encode("utf-8", "surrogatepass")) <= MAX_DELTA_BYTES:
            pieces.append(piece)
        else:  # wide characters: pieces short enough even if every one takes four bytes
            step = MAX_DELTA_BYTES // 4
            pieces += [piece[j : j + step] for j in range(0, len(piece), step)]
    return pieces


class RunEvents:
    """Run-level reporting calls; each returns once its event is queued (see RunReporter).

    Each call checks its arguments as the server would, and raises InvalidArgumentError
    naming the first one the server would refuse, with nothing queued: ids (ASCII letters,
    digits, '.', '_', '-', at most 128 characters), required texts (not blank), the length of every
    text and list, numbers (finite, and within their ranges), counts (whole, not negative),
    enum values, durations (0 to 100 years) and JSON-like data (``data``, ``metadata``,
    ``result``, ``details``: what a Struct holds, finite numbers, at most 1 MiB). What only
    the server knows (a step the run does not have, a milestone id already used, the size
    of an event or of the run) it refuses later: see RunReporter.

    A mixin, unlike the reporter's other parts (objects it holds), because these calls are
    the reporter's public surface by design: they read none of its attributes and use one
    primitive, ``self._report(event)``, which RunReporter provides.
    """

    async def _report(
        self, event: event_pb2.RunEvent, *, ends_run: bool = False, call: str | None = None
    ) -> None:
        """The one primitive these calls use, which the reporter provides: queues one event
        for the report stream; one that ``ends_run`` is also flushed. `call` names the call
        that reported it, in a refusal's message, when its kind's own call did not."""
        raise NotImplementedError

    async def skip_step(self, step_id: str, reason: str = "") -> None:
        """Reports that a planned step will not run.

        Checks ``step_id`` (an id) and ``reason`` (at most 4,096 characters)."""
        await self._report(builders.step_skipped_event(step_id, reason))

    async def activity(
        self,
        agent_id: str,
        activity: ActivityType,
        message: str = "",
        *,
        agent_name: str = "",
        agent_type: str = "",
        data: Mapping[str, Any] | None = None,
        step_id: str = "",
    ) -> None:
        """Reports that an agent started, progressed, completed or failed a piece of work.

        Checks that ``agent_id`` or ``agent_name`` is given, ``activity`` (an ActivityType
        other than UNSPECIFIED), the texts' lengths, ``data`` and ``step_id`` (an id or "").
        """
        await self._report(
            builders.agent_activity_event(
                agent_id, activity, message, agent_name, agent_type, data, step_id
            )
        )

    async def thinking(
        self,
        analysis: str,
        *,
        thinking_type: str = "",
        stage: str = "",
        factors: Iterable[str] = (),
        confidence: float = 0.0,
        reasoning_depth: str = "",
        agent_id: str = "",
    ) -> None:
        """Reports the manager agent's (or an agent's) reasoning.

        Checks ``confidence`` (0 to 1), ``factors`` (at most 100 names) and the texts'
        lengths (``analysis`` up to 65,536 characters)."""
        await self._report(
            builders.thinking_event(
                analysis, thinking_type, stage, factors, confidence, reasoning_depth, agent_id
            )
        )

    async def model_allocation(
        self,
        agent_id: str,
        model: str,
        *,
        tier: str = "",
        reasoning: str = "",
        complexity: str = "",
        context_window: int = 0,
        expected_cost_usd: float | None = None,
        factors: Iterable[str] = (),
        performance_expectation: str = "",
    ) -> None:
        """Reports the model chosen for an agent.

        Checks ``model`` (required), ``context_window`` (a count), ``expected_cost_usd`` (at
        least 0), ``factors`` and the texts' lengths."""
        await self._report(
            builders.model_allocation_event(
                agent_id,
                model,
                tier,
                reasoning,
                complexity,
                context_window,
                expected_cost_usd,
                factors,
                performance_expectation,
            )
        )

    async def text(
        self,
        agent_id: str,
        message_id: str,
        delta: str,
        *,
        final: bool = False,
        step_id: str = "",
    ) -> None:
        """Reports a piece of an agent's streamed output; deltas of a message concatenate.

        A delta longer than the server takes in one event (65,536 characters) goes as several,
        in order, the last one carrying ``final``. Checks ``message_id`` (required),
        ``agent_id``'s length and ``step_id`` (an id or "")."""
        pieces = text_pieces(delta)
        for i, piece in enumerate(pieces or [""]):
            last = i >= len(pieces) - 1
            event = builders.text_delta_event(agent_id, message_id, piece, final and last, step_id)
            await self._report(event)

    async def metrics(
        self,
        values: Mapping[str, float],
        *,
        step_id: str = "",
        units: Mapping[str, str] | None = None,
    ) -> None:
        """Reports new values of named metrics (run-level unless ``step_id`` is given).

        ``units`` names the unit of some of them, for example ``{"ctr": "%"}``; the server
        remembers it and works out each run-level metric's change since its last value.
        A value that is no finite number (text, None, nan) raises InvalidArgumentError naming
        it, and nothing is reported; so do no values, a blank name, more than 256 names or a
        unit longer than 32 characters, and a ``step_id`` that is no id.
        """
        await self._report(builders.metrics_event(values, step_id, units))

    async def items(
        self,
        completed: int,
        total: int = 0,
        *,
        unit: str = "",
        by_stage: Mapping[str, int] | None = None,
        estimated_time_remaining: timedelta | float | None = None,
    ) -> None:
        """Reports the run's progress in items, for example 15 of 25 "companies".

        A run without steps takes its percent, estimate and progress milestones from it.
        ``estimated_time_remaining`` (seconds or a timedelta) is the producer's own estimate
        of the whole run, shown while the server has no history for the workflow.
        Checks ``completed``, ``total`` and ``by_stage``'s counts (whole, not negative),
        ``by_stage``'s names (not blank), ``unit`` and ``estimated_time_remaining`` (0 to 100
        years).
        """
        await self._report(
            builders.item_progress_event(completed, total, unit, by_stage, estimated_time_remaining)
        )

    async def milestone(
        self,
        title: str,
        *,
        type: MilestoneType = MilestoneType.CUSTOM,
        description: str = "",
        data: Mapping[str, Any] | None = None,
        milestone_id: str = "",
    ) -> None:
        """Reports a milestone reached; ``milestone_id`` (unique in the run) is optional.

        Checks ``title`` (required), ``type`` (a MilestoneType), the texts' lengths and
        ``data``; a ``milestone_id`` the run already used is the server's refusal."""
        await self._report(builders.milestone_event(title, type, description, data, milestone_id))

    async def alert(
        self,
        message: str,
        *,
        severity: Severity = Severity.INFO,
        suggested_action: str = "",
        code: str = "",
        data: Mapping[str, Any] | None = None,
        step_id: str = "",
        action: AlertAction | AlertActionType | None = None,
    ) -> None:
        """Reports something that needs attention.

        ``action`` (e.g. ``AlertActionType.PAUSE_RUN``) is the suggestion as one a dashboard
        can offer with a button; ``suggested_action`` labels it (then at most 256
        characters). Checks ``message`` (required), ``severity`` and ``action`` (values of
        their enums), the texts' lengths, ``data`` and ``step_id`` (an id or "").
        """
        await self._report(
            builders.alert_event(message, severity, suggested_action, code, data, step_id, action)
        )

    async def error_recovery(
        self,
        error_message: str,
        *,
        severity: Severity = Severity.MEDIUM,
        recovery_strategy: str = "",
        can_continue: bool = True,
        affected_agents: Iterable[str] = (),
        user_action_required: bool = False,
        attempt: int = 1,
        step_id: str = "",
    ) -> None:
        """Reports an error that the workflow is recovering from (in ``step_id``, if given).

        Checks ``error_message`` (required), ``severity``, ``attempt`` (a count),
        ``affected_agents`` (at most 100 names), the texts' lengths and ``step_id``."""
        await self._report(
            builders.error_recovery_event(
                error_message,
                severity,
                recovery_strategy,
                can_continue,
                affected_agents,
                user_action_required,
                attempt,
                step_id,
            )
        )

    async def artifact(
        self,
        name: str,
        *,
        kind: str = "",
        uri: str = "",
        size_bytes: int = 0,
        step_id: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Reports an artifact produced (by the step ``step_id``, if given).

        Checks ``name`` (required), ``kind`` (at most 64 characters), ``uri`` (2,048),
        ``size_bytes`` (a count), ``metadata`` and ``step_id`` (an id or "")."""
        artifact = builders.artifact_to_pb(
            name, kind=kind, uri=uri, size_bytes=size_bytes, step_id=step_id, metadata=metadata
        )
        await self._report(builders.artifact_event(artifact))

    async def workflow_state(
        self,
        change_type: str,
        *,
        current_stage: str = "",
        stages: Iterable[str] = (),
        completion_percentage: float = 0.0,
        active_agents: Iterable[str] = (),
        pipeline_status: Mapping[str, bool] | None = None,
    ) -> None:
        """Reports a phase transition or a change of pipeline flags.

        Checks ``change_type`` (required), ``completion_percentage`` (0 to 100), the lists
        (at most 100 names each) and ``pipeline_status`` (at most 100 flags)."""
        await self._report(
            builders.workflow_state_event(
                change_type,
                current_stage,
                stages,
                completion_percentage,
                active_agents,
                pipeline_status,
            )
        )

    async def custom(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Reports a producer-defined event; checks ``type`` (required, at most 256
        characters) and ``data``."""
        await self._report(builders.custom_event(type, data))

    async def report_event(self, event: event_pb2.RunEvent) -> None:
        """Reports an event built from the contract's own messages (``runstream.v1.event_pb2``):
        a kind this SDK has no call for yet (one added to the contract, see "Adding an event
        kind" in the README), or an event made elsewhere. It travels as every other event:
        under the reporter's idempotency key (any key it has is replaced), resent after a
        reconnect, and refused by the server with its reason as the other calls' events are
        (see RunReporter). A copy is queued; ``event`` is left as it is.

        Raises InvalidArgumentError, with nothing queued, when ``event`` is no RunEvent,
        sets no kind, or ends the run (``complete()`` and ``fail()`` do that, and flush)."""
        if not isinstance(event, event_pb2.RunEvent):
            raise InvalidArgumentError(f"event: must be a runstream.v1 RunEvent, got {event!r:.60}")
        name = event.WhichOneof("payload")
        if name in _ENDING:
            raise InvalidArgumentError(f"event.{name}: ends the run; use {_ENDING[name]}")
        if name is None and not len(unknown_fields.UnknownFieldSet(event)):  # a newer kind: sent
            raise InvalidArgumentError("event.payload: exactly one event kind must be set")
        copy = event_pb2.RunEvent()
        copy.CopyFrom(event)
        await self._report(copy, call="run.report_event()")

    async def complete(self, summary: str = "", *, result: Mapping[str, Any] | None = None) -> None:
        """Reports the run succeeded, then flushes. No events may follow.

        Checks ``summary`` (at most 4,096 characters) and ``result`` first: a bad one raises
        InvalidArgumentError and the run goes on, not ended."""
        await self._report(builders.run_completed_event(summary, result), ends_run=True)

    async def fail(
        self, message: str, *, code: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        """Reports the run failed, then flushes. No events may follow.

        Checks ``message`` (required, at most 4,096 characters), ``code`` and ``details``
        first: a bad one raises InvalidArgumentError and the run goes on, not ended."""
        await self._report(builders.run_failed_event(message, code, details), ends_run=True)
