"""Runstream's Python SDK: report multi-agent runs and watch them live, with exact resume.

Producing::

    async with runstream.connect("127.0.0.1:50051") as client:
        async with await client.start_run("campaign-generator", steps=[...]) as run:
            async with run.step("strategy") as step:
                await step.progress(50, "drafting")
            await run.complete("done")

Asking a human, and answering::

    result = await run.ask("Which persona first?", ["wanderer", "summiteer"],
                           default="wanderer", timeout=60)
    ...
    await client.submit_decision(run_id, decision_id, "summiteer", answered_by="ana")

Watching::

    async for event in client.watch(run_id):
        print(event.seq, event.kind.name, event.payload)
    async for update in client.watch_runs('workflow = "campaign-generator"'):
        ...

Everything the SDK raises is a :class:`RunstreamError`, with one subclass per gRPC status.
Generated protobuf modules live in ``runstream.v1``; the SDK returns its own typed objects and
keeps the underlying message in each object's ``raw`` attribute.
"""

from __future__ import annotations

import os as _os

# gRPC's documented default verbosity, set before gRPC loads: unset, its core also logs at
# INFO to stderr (a failed TLS handshake printed "I1205 ... Handshake failed with error ..."
# beside the CLI's own one-line error). GRPC_VERBOSITY given by the user is kept.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from runstream._auth import TokenProviderError
from runstream._client import Client, connect
from runstream._errors import (
    AbortedError,
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    ErrorDetails,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    RequestCancelledError,
    ResourceExhaustedError,
    RunCancelledError,
    RunstreamError,
    StatusCode,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)
from runstream._interaction import Interaction
from runstream._reporter import RunReporter, StepReporter
from runstream._stats import ServerStats
from runstream._types import (
    ActiveAgent,
    ActivityType,
    AgentActivity,
    Alert,
    AlertAction,
    AlertActionType,
    AnswerResult,
    Artifact,
    ArtifactProduced,
    ArtifactsSummary,
    ControlAction,
    Custom,
    Decision,
    DecisionClosed,
    DecisionOption,
    DecisionOutcome,
    DecisionPrompt,
    DecisionRequested,
    DecisionResolved,
    DecisionResult,
    DecisionState,
    ErrorInfo,
    ErrorRecovery,
    Estimate,
    EstimateSource,
    EstimateUpdated,
    Event,
    EventKind,
    EventPayload,
    HealthChanged,
    InteractionUpdate,
    ItemCounts,
    ItemProgress,
    LinkState,
    MetricsUpdate,
    Milestone,
    MilestoneType,
    ModelAllocation,
    Run,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunDetails,
    RunFailed,
    RunHealth,
    RunProgress,
    RunStarted,
    RunStatus,
    RunStatusChanged,
    RunsUpdate,
    Severity,
    Step,
    StepCompleted,
    StepFailed,
    StepProgress,
    StepSkipped,
    StepSpec,
    StepStarted,
    StepStatus,
    SubStepDetails,
    Target,
    TargetKind,
    TextDelta,
    Thinking,
    WatchLink,
    WorkflowStateChange,
)

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "ActiveAgent",
    "ActivityType",
    "AgentActivity",
    "Alert",
    "AlertAction",
    "AlertActionType",
    "AlreadyExistsError",
    "AnswerResult",
    "Artifact",
    "ArtifactProduced",
    "ArtifactsSummary",
    "Client",
    "ControlAction",
    "Custom",
    "DataLossError",
    "DeadlineExceededError",
    "Decision",
    "DecisionClosed",
    "DecisionOption",
    "DecisionOutcome",
    "DecisionPrompt",
    "DecisionRequested",
    "DecisionResolved",
    "DecisionResult",
    "DecisionState",
    "ErrorDetails",
    "ErrorInfo",
    "ErrorRecovery",
    "Estimate",
    "EstimateSource",
    "EstimateUpdated",
    "Event",
    "EventKind",
    "EventPayload",
    "FailedPreconditionError",
    "HealthChanged",
    "Interaction",
    "InteractionUpdate",
    "InternalError",
    "InvalidArgumentError",
    "ItemCounts",
    "ItemProgress",
    "LinkState",
    "MetricsUpdate",
    "Milestone",
    "MilestoneType",
    "ModelAllocation",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "Run",
    "RunCancelled",
    "RunCancelledError",
    "RunCompleted",
    "RunCreated",
    "RunDetails",
    "RunFailed",
    "RunHealth",
    "RunProgress",
    "RunReporter",
    "RunStarted",
    "RunStatus",
    "RunStatusChanged",
    "RunsUpdate",
    "RunstreamError",
    "ServerStats",
    "Severity",
    "StatusCode",
    "Step",
    "StepCompleted",
    "StepFailed",
    "StepProgress",
    "StepReporter",
    "StepSkipped",
    "StepSpec",
    "StepStarted",
    "StepStatus",
    "SubStepDetails",
    "Target",
    "TargetKind",
    "TextDelta",
    "Thinking",
    "TokenProviderError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "WatchLink",
    "WorkflowStateChange",
    "__version__",
    "connect",
]
