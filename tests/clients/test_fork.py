"""Forking after using the SDK (a ProcessPoolExecutor with Linux's default start method,
gunicorn, Celery's prefork pool): a program that closed its client forks workers that
connect on their own, and a worker forked while the client was open gets a clear error.

Found in review: gRPC cannot be used in a child forked while a grpc.aio channel is alive in
the parent, and a closed client kept its channel (the connection kept it, each reporter
kept the Report method in a reference cycle), so a worker's own client hung, or the worker
died of SIGSEGV or SIGABRT, even after ``client.close()``. A worker forked while the client
was open hung the same way, or, with the parent's client, was told it was "opened in
another event loop". Found in CI under load: a worker forked right after ``close()``, while
gRPC's own threads still wound down, hung in its first channel.
"""

from __future__ import annotations

import runstream
from runstream import RunStatus
from runstream_server.app import RunstreamServer

from tests.clients.forking_producer import FORKS
from tests.conftest import run_module


async def fork_producer(target: str, how: str) -> list[str]:
    """Runs tests.clients.forking_producer to its end; the lines it printed."""
    returncode, out, err = await run_module("tests.clients.forking_producer", target, how)
    assert returncode == 0, err.decode()
    return out.decode().splitlines()


async def test_a_program_that_closed_its_client_forks_a_worker_that_reports_a_run(
    server: RunstreamServer,
) -> None:
    lines = await fork_producer(server.target, "closed")

    # Each fork right after a close, while gRPC's threads wound down: one in 40 hung under
    # load before the fork waited for them.
    assert len(lines) == 3 * FORKS, lines
    workers = lines[1::3]
    assert all(line.startswith("worker ok ") for line in workers), lines
    assert lines[2::3] == ["worker exited 0"] * FORKS, lines
    async with runstream.connect(server.target) as client:
        for line in workers:
            run = await client.get_run(line.split()[-1])
            assert (run.workflow, run.status) == ("forked-worker", RunStatus.SUCCEEDED)


async def test_a_program_that_also_runs_a_grpc_server_forks_without_waiting(
    server: RunstreamServer,
) -> None:
    """Waiting for gRPC's threads after a close is owed only right after it: while a gRPC
    server (or another library's channel) runs in the process, those threads never exit,
    and every fork waited a second for them (found in review)."""
    lines = await fork_producer(server.target, "beside-grpc")

    took = float(lines[-1].removeprefix("fork took ").removesuffix(" s"))
    assert took < 0.5, lines


async def test_a_worker_forked_while_the_client_was_open_is_told_what_to_do(
    server: RunstreamServer,
) -> None:
    lines = await fork_producer(server.target, "open")

    assert len(lines) == 4, lines
    parents_client, own_client, ended, parent = lines
    assert parents_client.startswith("worker FailedPreconditionError: "), lines
    assert "this Runstream client was opened before its process forked" in parents_client
    assert own_client.startswith("worker FailedPreconditionError: "), lines
    assert "forked while a Runstream client's gRPC channel was alive" in own_client
    for said in (parents_client, own_client):
        assert "gRPC cannot be used across fork()" in said
        assert "'spawn' or 'forkserver'" in said
        assert "pass its run_id and attach_run()" in said
    assert ended == "worker exited 0"
    # The parent goes on with its client and run as if nothing happened.
    async with runstream.connect(server.target) as client:
        run = await client.get_run(parent.split()[-1])
    assert (run.workflow, run.status) == ("forking-parent", RunStatus.SUCCEEDED)
