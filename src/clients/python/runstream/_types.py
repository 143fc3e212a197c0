"""Typed views of Runstream's resources and events: IntEnums and frozen dataclasses.

The enums mirror the proto enums number for number, without the proto's name prefix
(``RunStatus.RUNNING`` is ``RUN_STATUS_RUNNING``). Values the SDK does not know (added to the
contract later) are read as the enum's ``UNSPECIFIED`` member rather than failing.

The dataclasses are immutable snapshots. ``google.protobuf.Struct`` fields are plain
``dict[str, Any]``, timestamps are timezone-aware ``datetime`` (``None`` when unset) and
durations are ``timedelta``. Resources and events keep the message they were read from in
``raw`` as an escape hatch to fields this SDK version does not know.

The payload of each event kind, ``EventKind`` and ``EventPayload`` are generated from the
protos into ``runstream._events`` (scripts/gen_sdk_events.py); what is here is hand-written.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

from runstream._errors import RunstreamError, StatusCode

if TYPE_CHECKING:
    from runstream._events import EventKind, EventPayload
    from runstream.v1 import decision_pb2, event_pb2, run_pb2

__all__ = [
    "ActiveAgent",
    "ActivityType",
    "AlertActionType",
    "AnswerResult",
    "Artifact",
    "ArtifactsSummary",
    "ControlAction",
    "Decision",
    "DecisionClosed",
    "DecisionOption",
    "DecisionOutcome",
    "DecisionPrompt",
    "DecisionResult",
    "DecisionState",
    "ErrorInfo",
    "Estimate",
    "EstimateSource",
    "Event",
    "InteractionUpdate",
    "ItemCounts",
    "LinkState",
    "MilestoneType",
    "OptionLike",
    "Run",
    "RunDetails",
    "RunHealth",
    "RunProgress",
    "RunStatus",
    "RunsUpdate",
    "Severity",
    "Step",
    "StepSpec",
    "StepStatus",
    "SubStepDetails",
    "Target",
    "TargetKind",
    "WatchLink",
]


# --- enums -------------------------------------------------------------------------------


class RunStatus(enum.IntEnum):
    """The lifecycle state of a run (proto ``RunStatus``)."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    WAITING_FOR_INPUT = 3
    PAUSED = 4
    SUCCEEDED = 5
    FAILED = 6
    CANCELLED = 7

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended and accepts no further events."""
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(enum.IntEnum):
    """The lifecycle state of a step (proto ``StepStatus``)."""

    UNSPECIFIED = 0
    PENDING = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    SKIPPED = 5


class RunHealth(enum.IntEnum):
    """How well a run is going, as the server assesses it (proto ``RunHealth``)."""

    UNSPECIFIED = 0
    HEALTHY = 1
    DEGRADED = 2
    STALLED = 3
    FAILING = 4


class Severity(enum.IntEnum):
    """How serious an alert or an error is (proto ``Severity``)."""

    UNSPECIFIED = 0
    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class ActivityType(enum.IntEnum):
    """What an agent is doing in an AgentActivity event (proto ``AgentActivityType``)."""

    UNSPECIFIED = 0
    STARTED = 1
    PROGRESS = 2
    COMPLETED = 3
    FAILED = 4


class MilestoneType(enum.IntEnum):
    """The kind of a milestone (proto ``MilestoneType``)."""

    UNSPECIFIED = 0
    PROGRESS = 1
    TARGET_REACHED = 2
    QUALITY = 3
    SPEED = 4
    COMPLETION = 5
    GROWTH = 6
    CUSTOM = 7


class DecisionOutcome(enum.IntEnum):
    """How a decision was closed (proto ``DecisionOutcome``)."""

    UNSPECIFIED = 0
    ANSWERED = 1
    DEFAULTED = 2
    TIMED_OUT = 3
    SKIPPED = 4
    CANCELLED = 5


class DecisionState(enum.IntEnum):
    """Whether a decision still takes answers (proto ``DecisionState``)."""

    UNSPECIFIED = 0
    OPEN = 1
    RESOLVED = 2


class TargetKind(enum.IntEnum):
    """What reaching a target means (proto ``TargetKind``); UNSPECIFIED counts as COUNT."""

    UNSPECIFIED = 0
    COUNT = 1
    QUALITY = 2


class ControlAction(enum.IntEnum):
    """What the server asks of a producer (proto ``ControlAction``)."""

    UNSPECIFIED = 0
    CANCEL = 1
    PAUSE = 2
    RESUME = 3


class EstimateSource(enum.IntEnum):
    """Where an estimate comes from: the server's learned history wins over the producer's."""

    UNSPECIFIED = 0
    HISTORY = 1
    PRODUCER = 2


class AlertActionType(enum.IntEnum):
    """What an alert's suggested action does, so a client can offer it as a button."""

    UNSPECIFIED = 0
    PAUSE_RUN = 1
    RESUME_RUN = 2
    CANCEL_RUN = 3


# --- resources ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A step as planned when a run is created.

    Attributes:
        step_id: Unique within the run: ASCII letters, digits, '-', '_' and '.', at most 128
            chars.
        name: Human-readable name, for example "Strategy Team".
        description: What the step does.
        agent: The agent (or team) that performs the step.
        depends_on: The steps that must finish first (the workflow graph): a list or a
            tuple of step ids, kept as a tuple.
        track: The parallel track the step runs on; empty for the main track.
        phase: The workflow phase the step belongs to, for example "Planning".
    """

    step_id: str
    name: str = ""
    description: str = ""
    agent: str = ""
    # A list is how a plan is written; kept as a tuple, so a spec stays hashable and equal
    # to the same spec written with a tuple. (One string is refused by start_run, not here.)
    depends_on: tuple[str, ...] | list[str] = ()
    track: str = ""
    phase: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.depends_on, list):
            object.__setattr__(self, "depends_on", tuple(self.depends_on))


@dataclass(frozen=True, slots=True)
class SubStepDetails:
    """What a step is doing right now: the operation, the model, when it expects to finish."""

    operation: str = ""
    model: str = ""
    estimated_completion_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class ItemCounts:
    """A run's progress counted in items, for example 15 of 25 companies.

    Attributes:
        completed: Items done so far.
        total: Items the run means to produce; 0 when not known.
        unit: What an item is, plural, for example "companies".
        by_stage: Items per pipeline stage, for example {"found": 15, "enriched": 9}.
    """

    completed: int
    total: int
    unit: str = ""
    by_stage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong: a machine-readable code, a message and free-form details."""

    code: str
    message: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file, document or other output that a step produced."""

    artifact_id: str
    name: str
    kind: str
    uri: str
    size_bytes: int
    step_id: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ArtifactsSummary:
    """A count of a run's artifacts, in total and by kind."""

    total: int
    by_kind: dict[str, int]


@dataclass(frozen=True, slots=True)
class RunProgress:
    """Progress of a run across its steps; percent counts running steps' own progress.

    ``unplanned``: the run declared no steps; they are known only as they start, and
    percent comes from its item counts instead (100 once it succeeded)."""

    percent: float
    completed_steps: int
    total_steps: int
    items: ItemCounts | None = None
    unplanned: bool = False


@dataclass(frozen=True, slots=True)
class ActiveAgent:
    """An agent currently at work on a run."""

    agent_id: str
    name: str
    type: str
    step_id: str
    message: str
    start_time: datetime | None


@dataclass(frozen=True, slots=True)
class Estimate:
    """The server's estimate of when a run will finish.

    Attributes:
        remaining: Time left; None when the server has no basis for an estimate.
        end_time: When the run is expected to finish.
        confidence: From 0 (a guess) to 1 (certain).
        remaining_low: The optimistic end of the likely range of the remaining time.
        remaining_high: The pessimistic end of the likely range.
        history_runs: How many completed runs of the workflow the estimate learned from.
        source: HISTORY (learned by the server) or PRODUCER (the producer's own figure).
        held: True while the run waits for input or is paused: the remaining time stands still.
    """

    remaining: timedelta | None
    end_time: datetime | None
    confidence: float
    remaining_low: timedelta | None = None
    remaining_high: timedelta | None = None
    history_runs: int = 0
    source: EstimateSource = EstimateSource.HISTORY
    held: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A goal declared for a run: the server fires a milestone, once, when the run-level
    metric ``metric`` reaches ``value``.

    Attributes:
        metric: The run-level metric to watch, for example "companies_found".
        value: The value to reach (at least).
        kind: COUNT fires a TARGET_REACHED milestone, QUALITY a QUALITY milestone.
        title: A human-readable description, for example "Find 50 companies".
    """

    metric: str
    value: float
    kind: TargetKind = TargetKind.COUNT
    title: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a run, with its state as the server derives it from the run's events."""

    step_id: str
    name: str
    description: str
    agent: str
    status: StepStatus
    start_time: datetime | None
    end_time: datetime | None
    duration: timedelta | None
    percent: float
    sub_step: str
    detail: str
    tokens_processed: int
    artifacts: tuple[Artifact, ...]
    metrics: dict[str, float]
    error: ErrorInfo | None
    skip_reason: str
    attempts: int
    raw: run_pb2.Step = field(repr=False, compare=False)
    summary: str = ""
    depends_on: tuple[str, ...] = ()
    track: str = ""
    phase: str = ""
    sub_step_details: SubStepDetails | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """A snapshot of a run: every field is derived by the server from the run's events."""

    run_id: str
    workflow: str
    display_name: str
    labels: dict[str, str]
    status: RunStatus
    steps: tuple[Step, ...]
    progress: RunProgress
    current_step_id: str
    active_agents: tuple[ActiveAgent, ...]
    create_time: datetime | None
    start_time: datetime | None
    update_time: datetime | None
    end_time: datetime | None
    last_seq: int
    estimate: Estimate | None
    health: RunHealth
    artifacts_summary: ArtifactsSummary
    error: ErrorInfo | None
    result_summary: str
    result: dict[str, Any]
    cancel_reason: str
    metrics: dict[str, float]
    viewer_count: int
    targets: tuple[Target, ...]
    purged_seq: int
    raw: run_pb2.Run = field(repr=False, compare=False)
    tenant: str = ""
    """The tenant the run belongs to ("" on a server without authentication)."""
    created_by: str = ""
    """Who created it: the creating token's subject ("" without authentication)."""
    metric_units: dict[str, str] = field(default_factory=dict)
    metric_changes: dict[str, float] = field(default_factory=dict)
    health_reason: str = ""
    """Why `health` is what it is ("step research failed: rate limited"); "" while HEALTHY."""


# --- events (their payloads are generated, in runstream._events) ---------------------------


@dataclass(frozen=True, slots=True)
class DecisionOption:
    """One answer a decision offers.

    Attributes:
        value: What the producer receives when this option is chosen.
        label: Human-readable label; viewers show the value when empty.
        description: A longer explanation of the option.
    """

    value: str
    label: str = ""
    description: str = ""


OptionLike: TypeAlias = DecisionOption | str | tuple[str, ...]
"""An option as ``RunReporter.ask()`` takes it: a DecisionOption, a value, or (value, label[,
description]). Options built apart from the call name it, ``options: list[OptionLike] =
["gen_z", DecisionOption("pros", "Professionals")]``: a type checker takes that list, left
unannotated, for a list[object], which ``ask()`` does not take."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a run's log.

    Attributes:
        run_id: The run the event belongs to.
        seq: Position in the run's log: 1, 2, 3 ... with no gaps.
        kind: What happened; ``UNSPECIFIED`` for a kind this SDK does not know.
        event_time: When it happened, as the producer saw it.
        idempotency_key: The producer's key for the event (may be empty).
        payload: The typed payload; ``None`` when ``kind`` is ``UNSPECIFIED``.
        raw: The ``runstream.v1.RunEvent`` message the event was read from.
    """

    run_id: str
    seq: int
    kind: EventKind
    event_time: datetime
    idempotency_key: str
    payload: EventPayload | None
    raw: event_pb2.RunEvent = field(repr=False, compare=False)

    @property
    def receive_time(self) -> datetime | None:
        """When the server received it, by the server's clock (what health and retention
        count from; ``event_time`` is the producer's); None for an event stored by a release
        before 2026-12-06. Read from ``raw`` when asked, not for every event a watcher
        reads."""
        if not self.raw.HasField("receive_time"):
            return None
        return self.raw.receive_time.ToDatetime(tzinfo=UTC)


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """A question a run asked a human, with its answer once there is one.

    Attributes:
        run_id: The run that asked.
        decision_id: Unique within the run.
        decision_type: The kind of decision, for example "file_selection".
        prompt: The question.
        options: The possible answers.
        default_option: The value taken when nobody answers before the deadline (an option's,
            or a fallback no human can choose); "" for none.
        timeout: How long the run waits for an answer; None waits until answered.
        can_skip: Whether the human may skip the decision.
        context: Context that helps the human decide.
        affects_workflow: Whether the answer changes the workflow's course.
        state: OPEN while it takes answers, then RESOLVED.
        create_time: When the run asked.
        deadline: When the server closes the decision if nobody answers; None without timeout.
        outcome: How it was closed; UNSPECIFIED while open.
        choice: The chosen option's value; "" while open and when skipped, timed out or
            cancelled.
        answered_by: Who answered or skipped; "" otherwise.
        resolve_time: When it was closed; None while open.
        requested_seq: The seq of the run's DecisionRequested event.
        resolved_seq: The seq of the run's DecisionResolved event; 0 while open.
        raw: The ``runstream.v1.Decision`` message.
    """

    run_id: str
    decision_id: str
    decision_type: str
    prompt: str
    options: tuple[DecisionOption, ...]
    default_option: str
    timeout: timedelta | None
    can_skip: bool
    context: dict[str, Any]
    affects_workflow: bool
    state: DecisionState
    create_time: datetime | None
    deadline: datetime | None
    outcome: DecisionOutcome
    choice: str
    answered_by: str
    resolve_time: datetime | None
    requested_seq: int
    resolved_seq: int
    raw: decision_pb2.Decision = field(repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        """Whether the decision still takes answers."""
        return self.state == DecisionState.OPEN

    def option(self, value: str) -> DecisionOption | None:
        """The option with this value, if the decision offers it."""
        return next((o for o in self.options if o.value == value), None)


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """What ``RunReporter.ask()`` returns once its decision closed.

    Attributes:
        decision_id: The decision.
        outcome: ANSWERED, DEFAULTED (nobody answered; the default was taken), SKIPPED or
            TIMED_OUT (nobody answered and there was no default).
        choice: The chosen option's value: the answer, or the default when DEFAULTED; None
            when SKIPPED or TIMED_OUT.
        answered_by: Who answered or skipped; "" when the deadline closed it.
        decision: The closed decision as the server holds it.
    """

    decision_id: str
    outcome: DecisionOutcome
    choice: str | None
    answered_by: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class DecisionPrompt:
    """On an interaction: a decision of a subscribed run is open (asked now, or before the
    subscription began) and takes answers."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class DecisionClosed:
    """On an interaction: a decision of a subscribed run was closed, by anyone or by its
    deadline."""

    decision: Decision


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """On an interaction: the outcome of one of this interaction's answers.

    Attributes:
        answer_id: The number ``Interaction.answer()`` gave the answer.
        code: OK when the answer was accepted (or repeated an identical accepted answer);
            otherwise the status SubmitDecision would have failed with.
        message: Why the answer was rejected; "" when accepted.
        decision: The decision after the answer (closed by it, or as it stands).
    """

    answer_id: int
    code: StatusCode
    message: str
    decision: Decision | None

    @property
    def accepted(self) -> bool:
        """Whether the answer was accepted."""
        return self.code == StatusCode.OK


InteractionUpdate: TypeAlias = DecisionPrompt | DecisionClosed | AnswerResult
"""What an interaction yields."""


# --- insight ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunDetails:
    """``Client.get_run_details()``: the snapshot with the activity feed and open decisions.

    Attributes:
        run: The run's snapshot, as ``get_run`` returns it.
        recent_activity: The run's last (up to 50) agent activity events, oldest first.
        open_decisions: The run's open decisions, in the order they were asked: every one
            (those GetRun's response left out are read with ListDecisions).
    """

    run: Run
    recent_activity: tuple[Event, ...]
    open_decisions: tuple[Decision, ...]


@dataclass(frozen=True, slots=True)
class RunsUpdate:
    """One update of ``Client.watch_runs()``.

    Attributes:
        runs: Runs without their steps, each in its latest state.
        initial: True when ``runs`` is every run matching the filter: the stream's initial
            state, and again after each reconnect. Replace what you hold with it (a run that
            is missing stopped matching or is gone). False: these runs changed; update them
            in place (a run whose status made it stop matching comes once more, then no
            longer).
        ended_runs_left_out: On an initial update: the watch's ``initial_ended_limit``
            left out matching runs that ended, older than those in ``runs`` (``list_runs``
            finds them).
    """

    runs: tuple[Run, ...]
    initial: bool
    ended_runs_left_out: bool = False


class LinkState(enum.Enum):
    """Where a watch's stream stands (``on_link`` of ``Client.watch()``)."""

    CONNECTING = "connecting"
    """Opening the stream, the first time."""
    LIVE = "live"
    """The server accepted the stream: what the run reports comes as it happens."""
    RECONNECTING = "reconnecting"
    """The stream was lost; the watch tries again, and resumes where it was."""


@dataclass(frozen=True, slots=True)
class WatchLink:
    """A change of a watch's stream, for a relay to show "Live" or "Reconnecting".

    Attributes:
        state: Where the stream stands now.
        after_seq: The watch's cursor: the events after this seq come next.
        error: RECONNECTING: why the stream was lost (``UnavailableError`` for a server
            gone or restarting, ``ResourceExhaustedError`` for a watch limit).
        retry_in: RECONNECTING: seconds before the next attempt.
    """

    state: LinkState
    after_seq: int
    error: RunstreamError | None = None
    retry_in: float | None = None
