"""What a live view holds besides the run's snapshot: step rows, open decisions, what events
mean to a person (notes, and the feed's lines) and the messages agents are writing.

:class:`~runstream.cli.view.RunView` keeps them; :mod:`runstream.cli.view_events` makes them
from events; :mod:`runstream.cli.render` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import runstream
from runstream import DecisionOption, Step

from .fmt import enum_name

__all__ = ["FeedLine", "Note", "OpenPrompt", "StepRow", "TextStream", "options_text"]


@dataclass
class StepRow:
    """One row of the step list."""

    step_id: str
    name: str
    agent: str
    status: str = "PENDING"
    description: str = ""
    percent: float = 0.0
    sub_step: str = ""
    detail: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: timedelta | None = None
    tokens: int = 0
    attempts: int = 0

    @classmethod
    def from_step(cls, step: Step) -> StepRow:
        return cls(
            step_id=step.step_id,
            name=step.name or step.step_id,
            agent=step.agent,
            status=enum_name(step.status),
            description=step.description,
            percent=step.percent,
            sub_step=step.sub_step,
            detail=step.detail,
            start_time=step.start_time,
            end_time=step.end_time,
            duration=step.duration,
            tokens=step.tokens_processed,
            attempts=step.attempts,
        )


@dataclass(frozen=True)
class OpenPrompt:
    """A decision of the run that waits for an answer, as the live view shows it."""

    decision_id: str
    prompt: str
    options: tuple[DecisionOption, ...]
    default_option: str
    can_skip: bool
    deadline: datetime | None
    context: dict[str, Any]

    @classmethod
    def of(cls, decision: runstream.Decision | runstream.DecisionRequested) -> OpenPrompt:
        return cls(
            decision_id=decision.decision_id,
            prompt=decision.prompt,
            options=decision.options,
            default_option=decision.default_option,
            can_skip=decision.can_skip,
            deadline=decision.deadline,
            context=decision.context,
        )

    def option_label(self, value: str) -> str:
        option = next((o for o in self.options if o.value == value), None)
        return (option.label or option.value) if option is not None else value


def options_text(prompt: OpenPrompt) -> str:
    """ "1) Weekend Wanderer*  2) City Summiteer" with the default starred."""
    parts = [
        f"{number}) {option.label or option.value}"
        + ("*" if option.value == prompt.default_option else "")
        for number, option in enumerate(prompt.options, start=1)
    ]
    return "  ".join(parts)


@dataclass(frozen=True)
class Note:
    """What one event means to a person.

    Attributes:
        icon: A one-character glyph for the feed.
        label: The event's category in plain output ("step", "agent", "alert" ...).
        text: The human sentence.
        style: The rich style of the sentence.
        feed: Whether the line belongs in the live activity feed (progress ticks do not; they
            show in the step list instead).
    """

    icon: str
    label: str
    text: str
    """One line, its control characters escaped (:meth:`RunView.apply` sees to it)."""
    style: str = ""
    feed: bool = True


@dataclass(frozen=True)
class FeedLine:
    """A line of the activity feed."""

    time: datetime
    note: Note


@dataclass
class TextStream:
    """An agent's message as its deltas arrive."""

    message_id: str
    agent: str
    step_id: str
    text: str = ""
    final: bool = False
    first_seq: int = 0
    """The seq of the first of its deltas this view saw."""
    last_seq: int = 0
    last_time: datetime | None = None
    partial: bool = False
    """The view started inside the log: deltas before `first_seq` may be missing."""

    def words(self) -> str:
        """How many words it has, "from #N on" when its start may be missing."""
        count = f"{len(self.text.split())} words"
        return f"{count} from #{self.first_seq} on" if self.partial else count
