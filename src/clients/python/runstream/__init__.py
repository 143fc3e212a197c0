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

from runstream import _events
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

# Each event kind's payload dataclass, EventKind and EventPayload: generated from the protos.
from runstream._events import *  # noqa: F403
from runstream._interaction import Interaction
from runstream._reporter import RunReporter, StepReporter
from runstream._stats import ServerStats
from runstream._types import (
    ActiveAgent,
    ActivityType,
    AlertActionType,
    AnswerResult,
    Artifact,
    ArtifactsSummary,
    ControlAction,
    Decision,
    DecisionClosed,
    DecisionOption,
    DecisionOutcome,
    DecisionPrompt,
    DecisionResult,
    DecisionState,
    ErrorInfo,
    Estimate,
    EstimateSource,
    Event,
    InteractionUpdate,
    ItemCounts,
    LinkState,
    MilestoneType,
    Run,
    RunDetails,
    RunHealth,
    RunProgress,
    RunStatus,
    RunsUpdate,
    Severity,
    Step,
    StepSpec,
    StepStatus,
    SubStepDetails,
    Target,
    TargetKind,
    WatchLink,
)

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "ActiveAgent",
    "ActivityType",
    "AlertActionType",
    "AlreadyExistsError",
    "AnswerResult",
    "Artifact",
    "ArtifactsSummary",
    "Client",
    "ControlAction",
    "DataLossError",
    "DeadlineExceededError",
    "Decision",
    "DecisionClosed",
    "DecisionOption",
    "DecisionOutcome",
    "DecisionPrompt",
    "DecisionResult",
    "DecisionState",
    "ErrorDetails",
    "ErrorInfo",
    "Estimate",
    "EstimateSource",
    "Event",
    "FailedPreconditionError",
    "Interaction",
    "InteractionUpdate",
    "InternalError",
    "InvalidArgumentError",
    "ItemCounts",
    "LinkState",
    "MilestoneType",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "Run",
    "RunCancelledError",
    "RunDetails",
    "RunHealth",
    "RunProgress",
    "RunReporter",
    "RunStatus",
    "RunsUpdate",
    "RunstreamError",
    "ServerStats",
    "Severity",
    "StatusCode",
    "Step",
    "StepReporter",
    "StepSpec",
    "StepStatus",
    "SubStepDetails",
    "Target",
    "TargetKind",
    "TokenProviderError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "WatchLink",
    "__version__",
    "connect",
]
__all__ += _events.__all__
