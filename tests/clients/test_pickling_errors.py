"""The SDK's errors pickle, so one raised in a worker process ('spawn' or 'forkserver' pools
send a worker's exception to the parent pickled) is caught in the parent as what it is.

Found in review: every error carried its details' metadata as a MappingProxyType, which does
not pickle, and ``except runstream.NotFoundError`` around a worker's future met
``TypeError: cannot pickle 'mappingproxy' object`` instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest
import runstream
from runstream_server.app import RunstreamServer

ERROR_CLASSES = sorted(
    (
        error
        for name in runstream.__all__
        if isinstance(error := getattr(runstream, name), type)
        and issubclass(error, runstream.RunstreamError)
    ),
    key=lambda error: error.__name__,
)


def an_error_of(cls: type[runstream.RunstreamError]) -> runstream.RunstreamError:
    error = (
        cls("run-7", "budget cut", by_server=True)  # type: ignore[call-arg]
        if issubclass(cls, runstream.RunCancelledError)
        else cls("the run ended before this event")
    )
    error.details = runstream.ErrorDetails(
        "RUN_ENDED", {"event_index": "3"}, (("events[3].kind", "unknown kind"),)
    )
    return error


def test_every_exported_error_class_is_itself_again_once_unpickled() -> None:
    assert len(ERROR_CLASSES) >= 18  # each status's class, RunCancelledError, TokenProvider...
    for cls in ERROR_CLASSES:
        error = an_error_of(cls)
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is cls
        assert (str(again), again.message, again.args, again.code) == (
            str(error),
            error.message,
            error.args,
            error.code,
        )
        assert again.details == error.details
        assert dict(again.details.metadata) == {"event_index": "3"}
        with pytest.raises(TypeError):  # read-only, as it was
            again.details.metadata["event_index"] = "4"  # type: ignore[index]
        assert vars(again) == vars(error)  # RunCancelledError's run_id, reason, by_server too


def attach_in_a_worker(target: str, run_id: str) -> None:
    async def attach() -> None:
        async with runstream.connect(target) as client:
            await client.attach_run(run_id)

    asyncio.run(attach())


async def test_a_worker_process_s_error_is_caught_in_the_parent_as_what_it_is(
    server: RunstreamServer,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        loop = asyncio.get_running_loop()
        with pytest.raises(runstream.NotFoundError) as refused:
            await loop.run_in_executor(pool, attach_in_a_worker, server.target, "nosuchrun")
    assert "nosuchrun" in refused.value.message
    assert refused.value.code is runstream.StatusCode.NOT_FOUND
