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

What the SDK's calls raise is a :class:`RunstreamError`, with one subclass per gRPC status;
``connect()`` raises ValueError instead, before anything connects, for an address, a token or
a TLS file it cannot use.
Generated protobuf modules live in ``runstream.v1``; the SDK returns its own typed objects and
keeps the underlying message in each object's ``raw`` attribute.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runstream import _grpc_verbosity

# Before anything imports gRPC: `import runstream; import grpc` must find it set, as it did
# when this module imported the SDK eagerly (a process importing only the server's modules
# gets it too: the default that gRPC documents).
_grpc_verbosity.set_default()

if TYPE_CHECKING:
    # What the lazy __getattr__ below returns, for type checkers; tests/clients/test_api.py
    # checks that these imports and _EXPORTED_FROM name the same things.
    from runstream._auth import TokenProviderError as TokenProviderError
    from runstream._client import Client as Client
    from runstream._client import connect as connect
    from runstream._errors import AbortedError as AbortedError
    from runstream._errors import AlreadyExistsError as AlreadyExistsError
    from runstream._errors import DataLossError as DataLossError
    from runstream._errors import DeadlineExceededError as DeadlineExceededError
    from runstream._errors import ErrorDetails as ErrorDetails
    from runstream._errors import FailedPreconditionError as FailedPreconditionError
    from runstream._errors import InternalError as InternalError
    from runstream._errors import InvalidArgumentError as InvalidArgumentError
    from runstream._errors import NotFoundError as NotFoundError
    from runstream._errors import OutOfRangeError as OutOfRangeError
    from runstream._errors import PermissionDeniedError as PermissionDeniedError
    from runstream._errors import RequestCancelledError as RequestCancelledError
    from runstream._errors import ResourceExhaustedError as ResourceExhaustedError
    from runstream._errors import RunCancelledError as RunCancelledError
    from runstream._errors import RunstreamError as RunstreamError
    from runstream._errors import StatusCode as StatusCode
    from runstream._errors import UnauthenticatedError as UnauthenticatedError
    from runstream._errors import UnavailableError as UnavailableError
    from runstream._errors import UnimplementedError as UnimplementedError
    from runstream._errors import UnknownError as UnknownError

    # Each event kind's payload dataclass, EventKind and EventPayload: generated from the
    # protos.
    from runstream._events import *  # noqa: F403
    from runstream._interaction import Interaction as Interaction
    from runstream._reporter import RunReporter as RunReporter
    from runstream._reporter import StepReporter as StepReporter
    from runstream._stats import ServerStats as ServerStats
    from runstream._types import ActiveAgent as ActiveAgent
    from runstream._types import ActivityType as ActivityType
    from runstream._types import AlertActionType as AlertActionType
    from runstream._types import AnswerResult as AnswerResult
    from runstream._types import Artifact as Artifact
    from runstream._types import ArtifactsSummary as ArtifactsSummary
    from runstream._types import ControlAction as ControlAction
    from runstream._types import Decision as Decision
    from runstream._types import DecisionClosed as DecisionClosed
    from runstream._types import DecisionOption as DecisionOption
    from runstream._types import DecisionOutcome as DecisionOutcome
    from runstream._types import DecisionPrompt as DecisionPrompt
    from runstream._types import DecisionResult as DecisionResult
    from runstream._types import DecisionState as DecisionState
    from runstream._types import ErrorInfo as ErrorInfo
    from runstream._types import Estimate as Estimate
    from runstream._types import EstimateSource as EstimateSource
    from runstream._types import Event as Event
    from runstream._types import InteractionUpdate as InteractionUpdate
    from runstream._types import ItemCounts as ItemCounts
    from runstream._types import LinkState as LinkState
    from runstream._types import MilestoneType as MilestoneType
    from runstream._types import OptionLike as OptionLike
    from runstream._types import Run as Run
    from runstream._types import RunDetails as RunDetails
    from runstream._types import RunHealth as RunHealth
    from runstream._types import RunProgress as RunProgress
    from runstream._types import RunStatus as RunStatus
    from runstream._types import RunsUpdate as RunsUpdate
    from runstream._types import Severity as Severity
    from runstream._types import Step as Step
    from runstream._types import StepSpec as StepSpec
    from runstream._types import StepStatus as StepStatus
    from runstream._types import SubStepDetails as SubStepDetails
    from runstream._types import Target as Target
    from runstream._types import TargetKind as TargetKind
    from runstream._types import WatchLink as WatchLink

__version__ = "0.1.0"

_EXPORTED_FROM: dict[str, tuple[str, ...]] = {
    "runstream._auth": ("TokenProviderError",),
    "runstream._client": ("Client", "connect"),
    "runstream._errors": (
        "AbortedError",
        "AlreadyExistsError",
        "DataLossError",
        "DeadlineExceededError",
        "ErrorDetails",
        "FailedPreconditionError",
        "InternalError",
        "InvalidArgumentError",
        "NotFoundError",
        "OutOfRangeError",
        "PermissionDeniedError",
        "RequestCancelledError",
        "ResourceExhaustedError",
        "RunCancelledError",
        "RunstreamError",
        "StatusCode",
        "UnauthenticatedError",
        "UnavailableError",
        "UnimplementedError",
        "UnknownError",
    ),
    "runstream._interaction": ("Interaction",),
    "runstream._reporter": ("RunReporter", "StepReporter"),
    "runstream._stats": ("ServerStats",),
    "runstream._types": (
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
    ),
}
"""The hand-written exports by module; beside them, everything ``runstream._events`` exports."""

_HOMES = {name: module for module, names in _EXPORTED_FROM.items() for name in names}


def _load(name: str) -> Any:
    """Imports an exported name's module on its first use: the module's ``__getattr__``.

    The server imports the generated ``runstream.v1``, which runs this module first: eager
    imports here loaded the whole SDK into the server (170 ms of its 262 ms import). A value is
    kept in the module once loaded, so this runs once a name.
    """
    if name == "__all__":
        value: Any = sorted([*_HOMES, *_event_types().__all__, "__version__"])
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif not name.startswith("_") and name in _event_types().__all__:
        value = getattr(_event_types(), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _event_types() -> Any:
    """The generated event types, ``runstream._events``."""
    return importlib.import_module("runstream._events")


if not TYPE_CHECKING:
    # PEP 562. Hidden from type checkers, which would otherwise take any name as Any: the
    # imports above give them each exported name and its type.
    __getattr__ = _load

    def __dir__() -> list[str]:
        return sorted({*globals(), *_load("__all__")})
