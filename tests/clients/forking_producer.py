"""A producer process that forks a worker after using the SDK, as a ProcessPoolExecutor with
Linux's default start method, gunicorn or Celery's prefork pool do.

    python -m tests.clients.forking_producer TARGET closed|open

``closed`` reports a run and closes its client, which it keeps (a module-level client), then
forks at once, while gRPC's threads wind down; the worker reports a run of its own with a
client of its own; FORKS times (``closed N`` for N). ``beside-grpc`` runs a gRPC server of
its own, reports a run, closes its client, waits GRPC_WIND_DOWN, and prints how long a fork
took (gRPC's threads stay for the server: no wait is owed them). ``open`` forks while
its client and run are open; the worker tries the parent's client, then a client of its own,
and the parent then goes on to complete its run. The worker prints one line per try
(``worker ok RUN_ID``, or ``worker ExceptionName: message``) and leaves with ``os._exit``;
the parent prints how the worker ended, then its own run's id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import grpc
import runstream
from runstream._connection import GRPC_WIND_DOWN

WORKER_TIMEOUT = 5.0
"""How long each try of the worker may take: a regression hangs rather than fails."""

FORKS = 5
"""How many times the ``closed`` producer reports, closes and forks: a fork that hangs is rare."""

kept: list[object] = []


async def report_a_run(client: runstream.Client, workflow: str) -> str:
    run = await client.start_run(workflow)
    async with run:
        await run.metrics({"done": 1})
        await run.complete()
    return run.run_id


Parents = tuple[runstream.Client, str]
"""The parent's open client, and its run's id."""


def worker(target: str, parents: Parents | None) -> None:
    """The forked child: its tries, each bounded, then os._exit (never the parent's exit)."""

    async def own_client() -> str:
        async with runstream.connect(target) as client:
            return await report_a_run(client, "forked-worker")

    async def parents_client() -> str:
        assert parents is not None
        client, run_id = parents
        return (await client.get_run(run_id)).run_id

    tries = [own_client] if parents is None else [parents_client, own_client]
    for attempt in tries:
        try:
            run_id = asyncio.run(asyncio.wait_for(attempt(), WORKER_TIMEOUT))
            print("worker ok", run_id, flush=True)
        except BaseException as exc:
            print(f"worker {type(exc).__name__}: {exc}", flush=True)
    os._exit(0)


def fork_and_wait(target: str, parents: Parents | None) -> None:
    pid = os.fork()
    if pid == 0:
        worker(target, parents)
    deadline = time.monotonic() + 3 * WORKER_TIMEOUT
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:  # stuck outside the event loop: never leave it behind
            os.kill(pid, signal.SIGKILL)
            ended = os.waitpid(pid, 0)
            break
        time.sleep(0.05)
    status = ended[1]
    if os.WIFSIGNALED(status):
        print("worker killed by signal", os.WTERMSIG(status), flush=True)
    else:
        print("worker exited", os.WEXITSTATUS(status), flush=True)


async def report_and_close(target: str) -> None:
    async with runstream.connect(target) as client:
        print("parent", await report_a_run(client, "forking-parent"), flush=True)
    kept.append(client)


async def fork_beside_grpc(target: str) -> None:
    server = grpc.aio.server()
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await report_and_close(target)
    await asyncio.sleep(GRPC_WIND_DOWN + 0.2)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    took = time.monotonic() - started
    await asyncio.to_thread(os.waitpid, pid, 0)
    print(f"fork took {took:.3f} s", flush=True)
    await server.stop(None)


async def fork_while_open(target: str) -> None:
    async with runstream.connect(target) as client:
        run = await client.start_run("forking-parent")
        async with run:
            fork_and_wait(target, (client, run.run_id))
            await run.metrics({"after_fork": 1})
            await run.complete()
        print("parent", run.run_id, flush=True)


if __name__ == "__main__":
    address, how = sys.argv[1:3]
    if how == "closed":
        for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else FORKS):
            asyncio.run(report_and_close(address))
            fork_and_wait(address, None)
    elif how == "beside-grpc":
        asyncio.run(fork_beside_grpc(address))
    else:
        asyncio.run(fork_while_open(address))
