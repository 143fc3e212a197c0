"""The checks of a request that a limit (:mod:`runstream_server.auth.limits`) may judge.

A limit answers for how much a caller uses the server; a malformed request is answered
INVALID_ARGUMENT naming the field, whatever the caller's use. The limits run before the
handlers, so before one judges a request it asks these checks, which are the handler's own
checks that need no run (the same domain functions on the same fields): a request that fails
one gets that error, not the limit's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs

from runstream_server.api.watch_args import watch_run_args, watch_runs_args
from runstream_server.domain.creating import check_create
from runstream_server.domain.events import check_batch
from runstream_server.domain.limits import Limits
from runstream_server.domain.watching import check_watch
from runstream_server.domain.watching_runs import check_watch_runs

__all__ = ["RequestCheck", "request_checks"]

RequestCheck = Callable[[Any, str], None]
"""Raises the error the handler answers a malformed request with. The second argument is the
run a Report stream reports on (its first message names it; later ones need not)."""


def request_checks(limits: Limits, default_heartbeat: float) -> dict[str, RequestCheck]:
    """The checks of every method a limit judges a request of, by full method name."""

    def create_run(request: rs.CreateRunRequest, _: str) -> None:
        check_create(request.run_id, request, limits)

    def watch_run(request: rs.WatchRunRequest, _: str) -> None:
        check_watch(**watch_run_args(request, default_heartbeat))

    def watch_runs(request: rs.WatchRunsRequest, _: str) -> None:
        check_watch_runs(**watch_runs_args(request, default_heartbeat))

    def append(request: rp.AppendEventsRequest | rp.ReportRequest, stream_run: str) -> None:
        check_batch(request.run_id or stream_run, request.events, limits)

    run, report = "/runstream.v1.RunService/", "/runstream.v1.ReportService/"
    return {
        run + "CreateRun": create_run,
        run + "WatchRun": watch_run,
        run + "WatchRuns": watch_runs,
        report + "AppendEvents": append,
        report + "Report": append,
    }
