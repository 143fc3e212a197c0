"""A client or a run's reporter handed to a worker process ('spawn' or 'forkserver', which
pickle what they are given) raises TypeError saying what to do instead.

Found in review: the worker never started, and the error spoke of the SDK's insides
("Can't pickle local object 'WeakSet.__init__.<locals>._remove'", "cannot pickle
'TaskStepMethWrapper' object").
"""

from __future__ import annotations

import multiprocessing

import pytest
import runstream
from runstream_server.app import RunstreamServer


def start_worker(given: object) -> None:
    """Starts a 'spawn' worker given `given`; one that started anyway is stopped (a test
    that fails does not leave it behind)."""
    worker = multiprocessing.get_context("spawn").Process(target=print, args=(given,))
    try:
        worker.start()
    finally:
        if worker.pid is not None:  # started: given was sent
            worker.kill()
            worker.join(10)


async def test_a_client_or_reporter_handed_to_a_worker_says_what_to_do(
    server: RunstreamServer,
) -> None:
    client = runstream.connect(server.target)
    with pytest.raises(TypeError) as unopened:
        start_worker(client)
    async with client:
        run = await client.start_run("pickled")
        with pytest.raises(TypeError) as opened:
            start_worker(client)
        async with run:
            with pytest.raises(TypeError) as reporter:
                start_worker(run)
            await run.complete()

    for refused in (unopened, opened):
        assert str(refused.value) == (
            "a Runstream client cannot be sent to another process: connect in the worker; "
            "for a run, pass its run_id and attach_run() it there"
        )
    assert str(reporter.value) == (
        f"the reporter of run {run.run_id!r} cannot be sent to another process: pass the "
        "run_id to the worker, connect there and attach_run() it"
    )
