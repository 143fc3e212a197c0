"""A commit runs to its end even when its caller goes away halfway through.

A producer's append is committed in the caller's task (no task of its own while the commit
never waits: SQLite with ``synchronous=NORMAL``); only the waits are shielded. A caller
cancelled while the store writes (a client that gives up, a deadline) leaves the commit to
finish on its own: the store and the server's view of the run stay one.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Sequence
from typing import Any

import pytest
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.uncancellable import uncancellable
from runstream_server.store.base import StoredEvent

from tests.server.support import append, create_run, custom, ev, seqs, watch_all


async def _cancelled(caller: asyncio.Future[Any]) -> None:
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_work_that_never_waits_gives_its_result_and_its_error() -> None:
    async def answer() -> int:
        return 42

    async def refuse() -> int:
        raise ValueError("no")

    assert await uncancellable(answer()) == 42
    with pytest.raises(ValueError, match="no"):
        await uncancellable(refuse())


async def test_work_goes_on_after_its_caller_is_cancelled_and_what_it_waits_for_is_not() -> None:
    writing: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []
    started = asyncio.Event()

    async def commit() -> str:
        steps.append("started")
        started.set()
        await asyncio.sleep(0)  # a bare yield on the way
        written = await writing  # the store's write in flight
        steps.append(written)
        await asyncio.sleep(0.01)  # and another wait after it
        steps.append("delivered")
        return written

    caller = asyncio.ensure_future(uncancellable(commit()))
    await started.wait()
    await asyncio.sleep(0)
    await _cancelled(caller)
    assert not writing.cancelled()
    writing.set_result("written")
    for _ in range(100):
        if "delivered" in steps:
            break
        await asyncio.sleep(0.01)
    assert steps == ["started", "written", "delivered"]


async def test_work_waiting_several_times_gives_its_caller_the_result() -> None:
    async def commit() -> list[int]:
        seen = []
        for n in range(3):
            await asyncio.sleep(0.001)
            seen.append(n)
        return seen

    assert await uncancellable(commit()) == [0, 1, 2]


async def test_a_failure_after_the_caller_left_is_not_reported_as_lost() -> None:
    # What earlier tests of this process left for the collector (a Redis connection of a
    # server stopped mid-call, its loop gone) is theirs, not this test's: collected first.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    writing: asyncio.Future[None] = loop.create_future()

    async def commit() -> None:
        await writing
        raise RuntimeError("the store refused")

    caller = asyncio.ensure_future(uncancellable(commit()))
    await asyncio.sleep(0)
    await _cancelled(caller)
    writing.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()  # a task whose exception nobody retrieved is reported when it is collected
    await asyncio.sleep(0)
    assert reported == []


async def test_an_append_whose_client_gives_up_while_it_is_written_is_stored_once(
    server: RunstreamServer, stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client cancels its AppendEvents while the store writes it: the event is stored,
    a watcher gets every event once, and the client's retry is answered as a duplicate."""
    run = await create_run(stubs)
    store = server._store
    assert store is not None
    original = store.append
    writing, release = asyncio.Event(), asyncio.Event()

    async def slow_append(
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: Any = None,
    ) -> None:
        if run_id == run.run_id and any(e.idempotency_key == "k1" for e in events):
            writing.set()
            await release.wait()
        await original(run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)

    monkeypatch.setattr(store, "append", slow_append)
    watcher = asyncio.ensure_future(watch_all(stubs, run.run_id))
    call = stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run.run_id, events=[custom(1)]))
    await asyncio.wait_for(writing.wait(), 10)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.2)  # the server's handler is cancelled by now
    release.set()

    retried = await append(stubs, run.run_id, custom(1))
    assert [(a.seq, a.duplicate) for a in retried.events] == [(2, True)]
    after = await append(stubs, run.run_id, custom(2), ev.RunEvent(run_completed=ev.RunCompleted()))
    assert [a.seq for a in after.events] == [3, 4]
    assert seqs(await asyncio.wait_for(watcher, 10)) == [1, 2, 3, 4]
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    assert [(e.seq, e.idempotency_key) for e in listed.events] == [
        (1, ""),
        (2, "k1"),
        (3, "k2"),
        (4, ""),
    ]
