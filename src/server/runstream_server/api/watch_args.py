"""The domain's arguments of a WatchRun or WatchRuns request, read from it in one place.

Two callers take them: the request checks a limit asks first (:mod:`.checks`, with the
domain's ``check_watch``/``check_watch_runs``) and the servicer (:mod:`.run_service`, with
``Watching.watch``/``RunManager.watch_runs``, which run the same checks). A field added to
either request is read here once, and both see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from runstream.v1 import run_service_pb2 as pb


class WatchRunArgs(TypedDict):
    """The checked arguments of ``Watching.watch`` (and ``check_watch``)."""

    run_id: str
    after_seq: int
    include_snapshot: bool
    kinds: Sequence[int]
    heartbeat_interval: float


class WatchRunsArgs(TypedDict):
    """The arguments of ``RunManager.watch_runs`` (and ``check_watch_runs``)."""

    filter_text: str
    heartbeat_interval: float
    initial_ended_limit: int


def heartbeat_interval(request: pb.WatchRunRequest | pb.WatchRunsRequest, default: float) -> float:
    """The seconds of idle a watch stream asks for before a heartbeat, or the default."""
    if request.HasField("heartbeat_interval"):
        return request.heartbeat_interval.ToNanoseconds() / 1e9
    return default


def watch_run_args(request: pb.WatchRunRequest, default_heartbeat: float) -> WatchRunArgs:
    return WatchRunArgs(
        run_id=request.run_id,
        after_seq=request.after_seq,
        include_snapshot=request.include_snapshot,
        kinds=list(request.kinds),
        heartbeat_interval=heartbeat_interval(request, default_heartbeat),
    )


def watch_runs_args(request: pb.WatchRunsRequest, default_heartbeat: float) -> WatchRunsArgs:
    return WatchRunsArgs(
        filter_text=request.filter,
        heartbeat_interval=heartbeat_interval(request, default_heartbeat),
        initial_ended_limit=request.initial_ended_limit,
    )
