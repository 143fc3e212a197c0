"""WatchRun: exact resume, kind filters, batching, heartbeats, snapshots, end of stream."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import tracemalloc
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from runstream.v1 import event_pb2, run_pb2, run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import InitialStateComplete

from tests.conftest import ConfigFactory
from tests.server.support import append, create_run, custom, ev, seqs, watch_all

Watch = run_service_pb2.WatchRunRequest


async def rpc_error(stubs, request) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stubs.runs.WatchRun(request):
            pass
    return info.value


async def finished_run(stubs, n: int) -> run_pb2.Run:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)  # no planned steps, so no progress milestones
    for start in range(1, n + 1, 500):
        await append(stubs, run.run_id, *[custom(i) for i in range(start, min(n, start + 499) + 1)])
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    return run


async def test_replay_from_any_cursor_is_exact_and_ends_after_terminal(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await finished_run(stubs, 50)  # seqs 1..52
    assert seqs(await watch_all(stubs, run.run_id)) == list(range(1, 53))
    for cursor in (1, 17, 51, 52):
        assert seqs(await watch_all(stubs, run.run_id, after_seq=cursor)) == list(
            range(cursor + 1, 53)
        )


async def test_a_watcher_that_is_behind_gets_batches(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await finished_run(stubs, 1200)
    responses = await watch_all(stubs, run.run_id)
    assert seqs(responses) == list(range(1, 1203))
    # Far fewer messages than events: the backlog arrives many events per message.
    assert len(responses) <= 5
    event = responses[0].events[1]
    assert event.run_id == run.run_id
    assert event.custom.type == "tick"
    assert event.HasField("event_time")


async def test_live_events_reach_every_watcher_in_the_same_order(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)

    async def follow() -> list[int]:
        return seqs(await watch_all(stubs, run.run_id))

    watchers = [asyncio.create_task(follow()) for _ in range(5)]
    await asyncio.sleep(0.1)
    for n in range(1, 101):
        await append(stubs, run.run_id, custom(n))
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    results = await asyncio.wait_for(asyncio.gather(*watchers), 30)
    assert all(r == list(range(1, 103)) for r in results)


async def test_kind_filter_is_applied_on_the_server(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
        custom(1),
        ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=50)),
        custom(2),
        ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
        ev.RunEvent(run_completed=ev.RunCompleted()),
    )
    kinds = [event_pb2.EVENT_KIND_STEP_PROGRESS, event_pb2.EVENT_KIND_STEP_COMPLETED]
    events = [e for r in await watch_all(stubs, run.run_id, kinds=kinds) for e in r.events]
    # seq 5 is the server's "25% and 50%" milestone, 9 its 100%: filtered out.
    assert [(e.seq, e.WhichOneof("payload")) for e in events] == [
        (4, "step_progress"),
        (7, "step_completed"),
    ]


async def test_heartbeats_keep_an_idle_stream_alive(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    request = Watch(
        run_id=run.run_id,
        heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
        kinds=[event_pb2.EVENT_KIND_CUSTOM],
    )
    beats: list[run_service_pb2.Heartbeat] = []
    async for response in stubs.runs.WatchRun(request):
        assert response.HasField("heartbeat")
        beats.append(response.heartbeat)
        if len(beats) == 3:
            break
    assert all(b.head_seq == 1 for b in beats)  # seq 1 (run_created) was filtered out
    assert beats[-1].server_time.ToNanoseconds() > beats[0].server_time.ToNanoseconds()


async def test_the_headers_come_as_the_watch_is_accepted_before_any_message(stubs) -> None:  # type: ignore[no-untyped-def]
    """A client learns that its stream stands without waiting for the first event or
    heartbeat (15 s by default on an idle run); a refused watch sends none before its error."""
    run = await create_run(stubs)
    call = stubs.runs.WatchRun(Watch(run_id=run.run_id, after_seq=1))
    try:
        await asyncio.wait_for(call.initial_metadata(), 5)
        assert not call.done()  # standing, with nothing sent yet
    finally:
        call.cancel()
    refused = stubs.runs.WatchRun(Watch(run_id="missing"))
    await asyncio.wait_for(refused.initial_metadata(), 5)
    assert await refused.code() == grpc.StatusCode.NOT_FOUND


async def test_a_filtered_stream_gets_heartbeats_while_the_run_is_busy_with_other_kinds(
    stubs: Any,
) -> None:
    """Heartbeats come when the stream has sent nothing for its interval, however busy the
    run is with events it filters out: each one moves the watcher's cursor to the head."""
    run = await create_run(stubs)
    request = Watch(
        run_id=run.run_id,
        heartbeat_interval=duration_pb2.Duration(nanos=200_000_000),
        kinds=[event_pb2.EVENT_KIND_MILESTONE],
    )
    stream = stubs.runs.WatchRun(request)

    async def busy() -> None:  # 20 events a second, none of them a milestone
        for n in range(1_000):
            await append(stubs, run.run_id, custom(n))
            await asyncio.sleep(0.05)

    producer = asyncio.create_task(busy())
    try:
        beats = [await asyncio.wait_for(anext(aiter(stream)), 5) for _ in range(3)]
    finally:
        producer.cancel()
        stream.cancel()
    assert all(b.HasField("heartbeat") for b in beats)
    heads = [b.heartbeat.head_seq for b in beats]
    assert heads == sorted(heads) and heads[-1] > heads[0] > 1


async def test_a_heartbeat_never_claims_an_event_the_stream_has_not_sent(
    server: RunstreamServer, stubs: Any
) -> None:
    """On a shared store a heartbeat first checks the run's head in the store; a matching
    commit made during that check goes out before the heartbeat, which then covers it. (It
    went out after a heartbeat already past it: the SDK raised DataLossError, and a client
    resuming from the heartbeat would have lost it.)"""
    if not server.runs._store.shared:
        pytest.skip("only a shared store checks the run's head at a heartbeat")
    run = await create_run(stubs)
    checks = server.runs._watching._checks
    check_head = checks.check_head
    committed: list[int] = []

    async def commit_meanwhile(run_id: str, head: Any) -> None:
        if len(committed) < 3:  # a matching commit lands while the head is checked
            committed.append((await append(stubs, run.run_id, custom(len(committed)))).last_seq)
        await check_head(run_id, head)

    checks.check_head = commit_meanwhile
    request = Watch(
        run_id=run.run_id,
        heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
        kinds=[event_pb2.EVENT_KIND_CUSTOM],
    )
    stream = stubs.runs.WatchRun(request)
    covered, received = 0, []
    try:
        async with asyncio.timeout(10):
            async for response in stream:
                if response.HasField("heartbeat"):
                    covered = max(covered, response.heartbeat.head_seq)
                    if len(received) == 3:
                        break
                for event in response.events:
                    assert event.seq > covered, f"seq {event.seq} came after heartbeat {covered}"
                    received.append(event.seq)
    finally:
        stream.cancel()
    assert received == committed
    assert covered >= received[-1]


async def test_snapshot_first_then_the_events_after_it(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a", "b")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    stream = stubs.runs.WatchRun(Watch(run_id=run.run_id, include_snapshot=True))
    first = await anext(aiter(stream))
    assert first.snapshot.last_seq == 2
    assert first.snapshot.current_step_id == "a"
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    rest = [e for r in [r async for r in stream] for e in r.events]
    # The server closes the step the run's success leaves running and marks the progress the
    # run passed before it ends, in one milestone.
    assert [(e.seq, e.WhichOneof("payload")) for e in rest] == [
        (3, "step_completed"),
        (4, "milestone"),
        (5, "run_completed"),
    ]
    assert rest[0].step_completed.step_id == "a"
    assert rest[1].milestone.milestone_id == "progress-100"
    assert rest[1].milestone.title == "100% complete"


async def test_keep_open_sends_heartbeats_after_the_end(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await finished_run(stubs, 1)
    request = Watch(
        run_id=run.run_id,
        keep_open=True,
        heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
    )
    kinds = []
    async for response in stubs.runs.WatchRun(request):
        kinds.append("events" if response.events else "heartbeat")
        if kinds.count("heartbeat") == 2:
            break
    assert kinds[0] == "events"
    assert kinds[-2:] == ["heartbeat", "heartbeat"]


async def test_bad_watch_requests(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    err = await rpc_error(stubs, Watch(run_id="missing"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(stubs, Watch(run_id=run.run_id, after_seq=2))
    assert err.code() == grpc.StatusCode.OUT_OF_RANGE
    assert err.details().startswith("after_seq:")
    err = await rpc_error(stubs, Watch(run_id=run.run_id, after_seq=-1))
    assert (err.code(), err.details().split(":")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "after_seq",
    )
    err = await rpc_error(stubs, Watch(run_id=run.run_id, kinds=[999]))
    assert (err.code(), err.details().split(":")[0]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "kinds[0]",
    )
    err = await rpc_error(
        stubs, Watch(run_id=run.run_id, heartbeat_interval=duration_pb2.Duration(seconds=3600))
    )
    assert err.details().startswith("heartbeat_interval:")
    err = await rpc_error(stubs, Watch(run_id=run.run_id, include_snapshot=True, after_seq=1))
    assert err.details().startswith("after_seq:")
    err = await rpc_error(stubs, Watch())
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "run_id: is required")


async def test_a_slow_watcher_catches_up_from_the_store(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A watcher whose buffer overflows loses no event: it re-reads them from the store."""
    server = RunstreamServer(server_config(tmp_path / "s.db", watcher_buffer_events=8))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            from runstream.v1 import report_service_pb2_grpc

            from tests.server.conftest import Stubs

            stubs = Stubs(
                channel,
                run_service_pb2_grpc.RunServiceStub(channel),
                report_service_pb2_grpc.ReportServiceStub(channel),
            )
            run = await create_run(stubs)
            stream = stubs.runs.WatchRun(Watch(run_id=run.run_id))
            received = [e.seq for e in (await anext(aiter(stream))).events]  # seq 1, now live
            for n in range(1, 501):  # 500 events in 50 batches while the watcher does not read
                if n % 10 == 0:
                    await append(stubs, run.run_id, *[custom(m) for m in range(n - 9, n + 1)])
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
            received += [e.seq for r in [r async for r in stream] for e in r.events]
            assert received == list(range(1, 503))
    finally:
        await server.stop(grace=0.1)


async def test_shutdown_ends_watch_streams_with_unavailable(server, stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    stream = stubs.runs.WatchRun(Watch(run_id=run.run_id))
    await anext(aiter(stream))
    stopping = asyncio.create_task(server.stop(grace=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    await stopping
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_watcher_that_goes_away_leaves_nothing_behind(server: RunstreamServer) -> None:
    """A watcher stops reading while events arrive, then disconnects: what the server kept
    for it to send is let go at once, not when its heartbeat (5 minutes away) would be due."""
    runs = server.runs
    assert runs is not None
    run = await runs.create_run(run_id="gone", workflow="wf", display_name="", labels={}, steps=[])
    watchers = [runs.watching.watch(run.run_id, heartbeat_interval=300.0) for _ in range(4)]
    for watcher in watchers:
        await anext(watcher)  # seq 1, read from the store
    live = [asyncio.ensure_future(anext(watcher)) for watcher in watchers]
    await runs.append(run.run_id, [custom(0)])
    await asyncio.gather(*live)  # each took seq 2 and stopped reading
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1, 41):  # 40 events of 25 KB wait for every watcher
            event = custom(n)
            event.custom.data.update({"blob": "x" * 25_000})
            await runs.append(run.run_id, [event])
        waiting = tracemalloc.get_traced_memory()[0] - before
        for watcher in watchers:
            await watcher.aclose()
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert waiting > 1_000_000
    assert left < waiting / 4, (waiting, left)


async def test_watchers_that_come_and_go_leave_no_trace(server: RunstreamServer) -> None:
    """A thousand short watches with a long heartbeat interval, one after another: memory
    holds what the open ones need, not one entry for every watcher of the last 5 minutes."""
    runs = server.runs
    assert runs is not None
    run = await runs.create_run(run_id="brief", workflow="wf", display_name="", labels={}, steps=[])

    async def glance() -> None:
        watcher = runs.watching.watch(run.run_id, heartbeat_interval=300.0)
        await anext(watcher)
        await watcher.aclose()

    for _ in range(100):  # whatever a first watch allocates once
        await glance()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            await glance()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _allocated_bytes() -> int:
    """What this process's C heap holds now (glibc's mallinfo2: chunks in use, mapped ones
    too), which protobuf's messages are made of: tracemalloc sees none of it, and the
    resident size moves as much with what was freed before."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


async def test_a_runs_watch_that_stops_reading_holds_no_steps(server: RunstreamServer) -> None:
    """A WatchRuns stream that stops reading holds the newest summary of each run that
    changed meanwhile. Summaries have no steps, and must not keep the steps' memory either:
    copied with their steps and cleared after, 30 runs of 200 long steps held 28 MB."""
    runs = server.runs
    assert runs is not None
    steps = [run_pb2.StepSpec(step_id=f"s{n}", description="d" * 4000) for n in range(200)]
    ids = []
    for n in range(30):
        run = await runs.create_run(
            run_id=f"big-{n}", workflow="wf", display_name="", labels={}, steps=steps
        )
        assert run.ByteSize() > 800_000
        ids.append(run.run_id)
    watch = runs.watch_runs(filter_text="", heartbeat_interval=300.0)
    while not isinstance(await anext(watch), InitialStateComplete):
        pass
    waiting = asyncio.ensure_future(anext(watch))
    await runs.append(ids[0], [custom(1)])
    got = await waiting
    assert [r.run_id for r in got] == [ids[0]]  # then it stops reading
    for run_id in ids:
        await runs.append(run_id, [custom(2)])
    # What the stream holds is what closing it lets go (the store's own work after the
    # appends, on Redis, is not the stream's).
    gc.collect()
    holding = _allocated_bytes()
    await watch.aclose()
    gc.collect()
    held = holding - _allocated_bytes()
    assert held < 8_000_000, held
