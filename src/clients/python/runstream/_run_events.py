"""The typed events a producer reports about its run, one method per kind.

:class:`RunEvents` is the reporting vocabulary of :class:`~runstream.RunReporter`: each method
builds one event (through ``_convert``) and hands it to ``_report``, which queues it for the
report stream; ``complete()`` and ``fail()`` end the run and wait until everything is durable.
How events travel, and steps, are the reporter's (``_reporter.py``); decisions are
``_run_decisions.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from runstream import _convert as convert
from runstream._types import (
    ActivityType,
    AlertAction,
    AlertActionType,
    MilestoneType,
    Severity,
)

if TYPE_CHECKING:
    from runstream.v1 import event_pb2

__all__ = ["MAX_DELTA_CHARS", "RunEvents", "as_timedelta"]

MAX_DELTA_CHARS = 65_536
"""The longest ``TextDelta.delta`` the server takes; longer text goes as several deltas."""
MAX_DELTA_BYTES = 196_608
"""The most UTF-8 bytes one delta carries: an event may take 256 KiB, which 65,536 characters
of four bytes each (emoji) pass."""


def text_pieces(text: str) -> list[str]:
    """``text`` as deltas the server takes: at most MAX_DELTA_CHARS characters and
    MAX_DELTA_BYTES bytes each, split only between characters."""
    pieces = []
    for i in range(0, len(text), MAX_DELTA_CHARS):
        piece = text[i : i + MAX_DELTA_CHARS]
        if len(piece.encode("utf-8", "surrogatepass")) <= MAX_DELTA_BYTES:
            pieces.append(piece)
        else:  # wide characters: pieces short enough even if every one takes four bytes
            step = MAX_DELTA_BYTES // 4
            pieces += [piece[j : j + step] for j in range(0, len(piece), step)]
    return pieces


def as_timedelta(value: timedelta | float | None) -> timedelta | None:
    """Seconds or a timedelta, as a timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


class RunEvents:
    """Run-level reporting calls; each returns once its event is queued (see RunReporter)."""

    async def _report(self, event: event_pb2.RunEvent, *, terminal: bool = False) -> None:
        """Queues one event for the report stream (the reporter's)."""
        raise NotImplementedError

    async def flush(self) -> None:
        """Waits until everything reported so far is durable (the reporter's)."""
        raise NotImplementedError

    async def skip_step(self, step_id: str, reason: str = "") -> None:
        """Reports that a planned step will not run."""
        await self._report(convert.step_skipped_event(step_id, reason))

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
        """Reports that an agent started, progressed, completed or failed a piece of work."""
        await self._report(
            convert.agent_activity_event(
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
        """Reports the manager agent's (or an agent's) reasoning."""
        await self._report(
            convert.thinking_event(
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
        """Reports the model chosen for an agent."""
        await self._report(
            convert.model_allocation_event(
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
        in order, the last one carrying ``final``."""
        pieces = text_pieces(delta)
        for i, piece in enumerate(pieces or [""]):
            last = i >= len(pieces) - 1
            event = convert.text_delta_event(agent_id, message_id, piece, final and last, step_id)
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
        it, and nothing is reported.
        """
        await self._report(convert.metrics_event(values, step_id, units))

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
        """
        await self._report(
            convert.item_progress_event(
                completed, total, unit, by_stage, as_timedelta(estimated_time_remaining)
            )
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
        """Reports a milestone reached; ``milestone_id`` (unique in the run) is optional."""
        await self._report(convert.milestone_event(title, type, description, data, milestone_id))

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
        can offer with a button; ``suggested_action`` labels it.
        """
        if isinstance(action, AlertActionType):
            action = AlertAction(action, suggested_action)
        await self._report(
            convert.alert_event(message, severity, suggested_action, code, data, step_id, action)
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
        """Reports an error that the workflow is recovering from (in ``step_id``, if given)."""
        await self._report(
            convert.error_recovery_event(
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
        """Reports an artifact produced (by the step ``step_id``, if given)."""
        artifact = convert.artifact_to_pb(
            name, kind=kind, uri=uri, size_bytes=size_bytes, step_id=step_id, metadata=metadata
        )
        await self._report(convert.artifact_event(artifact))

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
        """Reports a phase transition or a change of pipeline flags."""
        await self._report(
            convert.workflow_state_event(
                change_type,
                current_stage,
                stages,
                completion_percentage,
                active_agents,
                pipeline_status,
            )
        )

    async def custom(self, type: str, data: Mapping[str, Any] | None = None) -> None:
        """Reports a producer-defined event."""
        await self._report(convert.custom_event(type, data))

    async def complete(self, summary: str = "", result: Mapping[str, Any] | None = None) -> None:
        """Reports the run succeeded, then flushes. No events may follow."""
        await self._report(convert.run_completed_event(summary, result), terminal=True)
        await self.flush()

    async def fail(
        self, message: str, *, code: str = "", details: Mapping[str, Any] | None = None
    ) -> None:
        """Reports the run failed, then flushes. No events may follow."""
        await self._report(convert.run_failed_event(message, code, details), terminal=True)
        await self.flush()
