"""Background work over runs no one holds in memory, and writes that cannot share a run.

Regression tests for issue 8: stall detection after a restart looks at the store, not only at
runs in memory (item 6); runs that never end are evicted, and eviction never gives one run
two locks (item 7); a producer's control signal carries the state its own event committed
(item 11).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import grpc
import pytest
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import Limits
from runstream_server.domain.slots import RunSlots
from runstream_server.domain.state import RunState

from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, ev, opened, watch_all


async def test_a_silent_run_turns_stalled_after_a_restart_without_being_opened(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Its producer died before the restart; nobody opens the run; ListRuns shows STALLED."""
    config = server_config(tmp_path / "s.db", insight=InsightPolicy(stall_after=1.0, stall_min=1.0))
    first = RunstreamServer(config)
    await first.start()
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stubs = Stubs(channel, *_stubs(channel))
            run = await create_run(stubs, "a")
            await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    finally:
        await first.stop(grace=0.1)

    again = RunstreamServer(config)
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.target) as channel:
            runs = _stubs(channel)[0]
            health = run_pb2.RUN_HEALTH_UNSPECIFIED
            for _ in range(200):  # ListRuns reads the store: it never loads the run
                listed = (await runs.ListRuns(rs.ListRunsRequest())).runs
                health = next(r.health for r in listed if r.run_id == run.run_id)
                if health == run_pb2.RUN_HEALTH_STALLED:
                    break
                await asyncio.sleep(0.05)
            assert health == run_pb2.RUN_HEALTH_STALLED
    finally:
        await again.stop(grace=0.1)


async def test_runs_that_never_end_leave_memory_and_writers_never_share_a_run(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    server = RunstreamServer(
        server_config(tmp_path / "e.db", limits=Limits(cached_runs=4, cached_ended_runs=2))
    )
    await server.start()
    try:
        runs = server.runs
        assert runs is not None
        ids = []
        for i in range(12):
            run = await runs.create_run(
                run_id=f"r{i}", workflow="wf", display_name="", labels={}, steps=[]
            )
            await runs.append(run.run_id, [custom(0, key=f"{run.run_id}-0")])
            ids.append(run.run_id)
        assert runs.cached_runs <= 4  # none ended, yet memory stays bounded

        # Many writers at once on more runs than memory holds: evictions and reloads happen
        # between and around them; every run's log stays contiguous with no seq twice.
        async def write(run_id: str, n: int) -> int:
            result = await runs.append(run_id, [custom(n, key=f"{run_id}-{n}")])
            return result.acks[0].seq

        jobs = [(run_id, n) for n in range(1, 9) for run_id in ids]
        seqs = await asyncio.gather(*(write(run_id, n) for run_id, n in jobs))
        by_run: dict[str, list[int]] = {}
        for (run_id, _), seq in zip(jobs, seqs, strict=True):
            by_run.setdefault(run_id, []).append(seq)
        for run_id in ids:
            assert sorted(by_run[run_id]) == list(range(3, 11))
            events, _ = await runs.list_events(run_id, filter_text="", page_size=100, page_token="")
            assert [e.seq for e in events] == list(range(1, 11))
        assert runs.cached_runs <= 4
    finally:
        await server.stop(grace=0.1)


async def test_each_control_signal_carries_the_status_its_own_event_committed(
    stubs: Stubs,
) -> None:
    """A pause and a cancel at once: each signal says the status its own event committed,
    at that event's seq, even when the other one committed right after it."""
    for _ in range(10):
        run = await create_run(stubs, "a")
        await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
        outgoing: asyncio.Queue[rp.ReportRequest] = asyncio.Queue()

        async def requests(queue: asyncio.Queue[rp.ReportRequest] = outgoing):  # type: ignore[no-untyped-def]
            while True:
                yield await queue.get()

        stream = stubs.report.Report(requests())
        await outgoing.put(rp.ReportRequest(run_id=run.run_id))
        assert (await anext(aiter(stream))).ack.last_seq == 2  # attached
        pause, _ = await asyncio.gather(
            stubs.runs.PauseRun(rs.PauseRunRequest(run_id=run.run_id, reason="look")),
            stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="stop")),
            return_exceptions=True,
        )
        log = [e for r in await watch_all(stubs, run.run_id) for e in r.events]
        expected = [
            (rp.CONTROL_ACTION_PAUSE, run_pb2.RUN_STATUS_PAUSED, e.seq)
            if e.HasField("run_status_changed")
            else (rp.CONTROL_ACTION_CANCEL, run_pb2.RUN_STATUS_CANCELLED, e.seq)
            for e in log
            if e.HasField("run_status_changed") or e.HasField("run_cancelled")
        ]
        assert len(expected) == (1 if isinstance(pause, grpc.aio.AioRpcError) else 2)
        got = []
        for _ in expected:
            control = (await anext(aiter(stream))).control
            got.append((control.action, control.status, control.seq))
        stream.cancel()
        assert got == expected


def _stubs(channel: grpc.aio.Channel):  # type: ignore[no-untyped-def]
    from runstream.v1 import report_service_pb2_grpc, run_service_pb2_grpc

    return run_service_pb2_grpc.RunServiceStub(channel), report_service_pb2_grpc.ReportServiceStub(
        channel
    )


@contextlib.asynccontextmanager
async def two_runs_in_memory(server_config: ConfigFactory, store: Path) -> AsyncIterator[Stubs]:
    """Stubs on a server that holds at most two runs in memory, one of them ended."""
    limits = Limits(cached_runs=2, cached_ended_runs=1)
    server = RunstreamServer(server_config(store, limits=limits))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield Stubs.on(channel)
    finally:
        await server.stop(grace=0.1)


async def test_subscribing_to_more_runs_than_memory_holds_sends_every_open_question(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Loading the fifth run evicts the first before the subscription pins them; every run's
    open decision still arrives."""
    from runstream.v1 import decision_service_pb2 as ds
    from runstream.v1 import decision_service_pb2_grpc

    from tests.server.test_decisions import ask

    async with two_runs_in_memory(server_config, tmp_path / "d.db") as stubs:
        run_ids = []
        for i in range(5):
            run = await create_run(stubs, "a")
            await append(stubs, run.run_id, ask(f"q{i}"))
            run_ids.append(run.run_id)
        decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)  # type: ignore[no-untyped-call]

        async def subscribe():  # type: ignore[no-untyped-def]
            yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=run_ids))
            await asyncio.Event().wait()  # keep the stream open

        stream = decisions.Interact(subscribe())
        prompts = [(await anext(aiter(stream))).prompt for _ in run_ids]
        stream.cancel()
    assert sorted((p.run_id, p.decision_id) for p in prompts) == sorted(
        (run_id, f"q{i}") for i, run_id in enumerate(run_ids)
    )


@pytest.mark.parametrize("ended", [False, True], ids=["running", "ended"])
async def test_a_run_can_be_watched_when_every_run_in_memory_is_watched(
    tmp_path: Path, server_config: ConfigFactory, ended: bool
) -> None:
    """Memory holds two runs (at most one ended) and both are watched; watching a third
    loads it, and the limits would evict it at once: it is watched all the same, from its
    first event to its last, and WatchRuns tells of its viewer."""
    async with two_runs_in_memory(server_config, tmp_path / "w.db") as stubs:
        runs = []
        for i in range(3):
            run = await create_run(stubs, "a")
            await append(stubs, run.run_id, custom(i))
            if ended:
                await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id))
            runs.append(run.run_id)
        held = [
            stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run_id, keep_open=True))
            for run_id in runs[:2]
        ]
        for stream in held:
            await opened(stream)
        listing = stubs.runs.WatchRuns(rs.WatchRunsRequest())
        while not (await anext(aiter(listing))).initial_state_complete:
            pass

        async def told_of(run_id: str) -> run_pb2.Run:
            async for changed in listing:
                for run in changed.runs:
                    if run.run_id == run_id:
                        return run
            raise AssertionError("WatchRuns ended")

        stream = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=runs[2], keep_open=True))
        first = await opened(stream)
        told = await asyncio.wait_for(told_of(runs[2]), 10)
        assert (told.last_seq, told.viewer_count) == (first.events[-1].seq, 1)
        if ended:
            assert [e.seq for e in first.events] == [1, 2, 3]
            assert first.events[-1].HasField("run_cancelled")
        else:
            assert [e.seq for e in first.events] == [1, 2]
            await append(stubs, runs[2], custom(9))
            following = await opened(stream)
            assert [e.seq for e in following.events] == [3]
        for call in (listing, stream, *held):
            call.cancel()


async def test_a_commit_looks_at_one_cached_run_however_many_ended_runs_are_watched() -> None:
    """Finding 6 of the scale review: with more ended runs watched than the cache keeps
    ended, each commit walked every cached run, freeing nothing (3 ms of CPU per append with
    3,000 watched). The walk now waits for a watcher to leave; then it frees the run."""
    watched: set[str] = set()
    looked_at: list[str] = []
    released = [0]

    def pinned(run_id: str) -> bool:
        looked_at.append(run_id)
        return run_id in watched

    slots = RunSlots(10_000, 2, pinned=pinned, releases=lambda: released[0])
    ended = cast(RunState, SimpleNamespace(is_terminal=True))
    running = cast(RunState, SimpleNamespace(is_terminal=False))
    for i in range(500):
        watched.add(f"ended{i}")
        async with slots.locked(f"ended{i}") as slot:
            slots.set_state(slot, ended)
    assert len(slots) == 500  # all watched: none can go
    looked_at.clear()
    for _ in range(100):
        async with slots.locked("live") as slot:
            slots.set_state(slot, running)
    assert len(looked_at) <= 100, "each commit walked the pinned runs again"

    watched.discard("ended7")
    released[0] += 1
    async with slots.locked("live"):
        pass
    assert "ended7" not in slots and len(slots) == 500
