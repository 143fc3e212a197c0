"""The live delivery path: each event exactly once, coalesced under load, heartbeats when idle.

Some tests drive the domain directly (a RunManager over a real SQLite file) where they need to
hold a watcher still "sending" at a precise point; the others go through a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from runstream.v1 import event_pb2, report_service_pb2_grpc, run_service_pb2, run_service_pb2_grpc
from runstream_server.api.run_service import frame_event
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.hub import Hub
from runstream_server.domain.runs import Heartbeat, Limits, RunManager, WatchItem
from runstream_server.errors import Unavailable
from runstream_server.store.sqlite import SqliteEventStore

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, ev, scrape, value

Watch = run_service_pb2.WatchRunRequest


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[RunManager]:
    store = SqliteEventStore(tmp_path / "domain.db")
    await store.open()
    runs = RunManager(store, limits=Limits(watch_page_events=20), frame=frame_event)
    try:
        yield runs
    finally:
        runs.shutdown()
        await store.close()


def event_seqs(item: WatchItem) -> list[int]:
    assert isinstance(item, bytes), item
    return [e.seq for e in run_service_pb2.WatchRunResponse.FromString(item).events]


def test_framed_events_joined_are_the_watch_response_the_contract_describes() -> None:
    # The hub sends concatenations of events framed once each, never a message it built: a
    # framing that did not match WatchRunResponse.events (its number, its wire type, a length
    # of more than one byte) would corrupt every watch. Sizes around the length's byte limits.
    events = [
        event_pb2.RunEvent(seq=n, custom=event_pb2.Custom(type="x" * size))
        for n, size in enumerate((0, 120, 127, 128, 20_000, 3_000_000), start=1)
    ]
    joined = b"".join(frame_event(e.SerializeToString()) for e in events)
    assert list(run_service_pb2.WatchRunResponse.FromString(joined).events) == events
    number = run_service_pb2.WatchRunResponse.DESCRIPTOR.fields_by_name["events"].number
    assert frame_event(b"")[0] >> 3 == number


async def new_run(runs: RunManager) -> str:
    run = await runs.create_run(run_id="", workflow="wf", display_name="", labels={}, steps=[])
    return run.run_id


async def test_events_committed_while_a_watcher_sends_leave_together(manager: RunManager) -> None:
    run_id = await new_run(manager)
    watch = manager.watching.watch(run_id)
    try:
        assert event_seqs(await anext(watch)) == [1]  # from the store
        await manager.append(run_id, [custom(1)])
        assert event_seqs(await anext(watch)) == [2]  # live, as soon as it is durable
        # The watcher is "sending" (suspended at its yield) while 45 commits happen: they
        # wait for it and leave as few messages as the page limit (20 events) allows.
        for n in range(2, 47):
            await manager.append(run_id, [custom(n)])
        messages = [event_seqs(await anext(watch)) for _ in range(3)]
        assert messages == [list(range(3, 23)), list(range(23, 43)), list(range(43, 48))]
        # Idle again: the next commit goes out alone, at once.
        waiting = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        assert not waiting.done()
        await manager.append(run_id, [custom(47)])
        assert event_seqs(await waiting) == [48]
    finally:
        await watch.aclose()


async def test_a_burst_bigger_than_a_message_is_split_in_order(manager: RunManager) -> None:
    run_id = await new_run(manager)
    watch = manager.watching.watch(run_id)
    try:
        assert event_seqs(await anext(watch)) == [1]
        waiting = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        await manager.append(run_id, [custom(n) for n in range(1, 51)])  # one commit, 50 events
        got = event_seqs(await waiting)
        while got[-1] < 51:
            got += event_seqs(await anext(watch))
        assert got == list(range(2, 52))
    finally:
        await watch.aclose()


async def test_a_filtered_watcher_ends_when_the_run_ends_though_it_skips_the_end(
    manager: RunManager,
) -> None:
    run_id = await new_run(manager)
    watch = manager.watching.watch(run_id, kinds=[event_pb2.EVENT_KIND_CUSTOM])
    received: list[int] = []

    async def follow() -> None:
        async for item in watch:
            if not isinstance(item, Heartbeat):
                received.extend(event_seqs(item))

    following = asyncio.ensure_future(follow())
    await asyncio.sleep(0.05)  # live by now, waiting for news
    await manager.append(run_id, [custom(1)])
    await manager.append(run_id, [ev.RunEvent(run_completed=ev.RunCompleted())])
    await asyncio.wait_for(following, 10)  # ended: the terminal event passed its cursor
    assert received == [2]


async def test_a_filtered_watcher_catching_up_gets_each_wanted_event_once(
    stubs: Stubs,
) -> None:
    """The store filters a catch-up by kind, past its page of 500 events and while the
    producer goes on: each custom event once, in order, none of the others."""
    run = await create_run(stubs)
    alert = ev.RunEvent(alert=ev.Alert(message="slow"))
    for n in range(0, 1200, 100):  # 1,200 events, every third one custom
        await append(
            stubs, run.run_id, *[custom(n + i) if i % 3 == 0 else alert for i in range(100)]
        )
    wanted = [s for s in range(2, 1202) if (s - 2) % 100 % 3 == 0]

    async def follow(after_seq: int) -> list[int]:
        seen: list[int] = []
        request = Watch(run_id=run.run_id, after_seq=after_seq, kinds=[ev.EVENT_KIND_CUSTOM])
        async for response in stubs.runs.WatchRun(request, timeout=30):
            seen += [e.seq for e in response.events]
            if seen and seen[-1] >= 1302:
                return seen
        return seen

    watchers = [asyncio.ensure_future(follow(after)) for after in (0, 601)]
    for n in range(1200, 1300, 10):  # live while they catch up
        await append(
            stubs, run.run_id, *[custom(n + i) if i % 2 == 0 else alert for i in range(10)]
        )
    wanted += [s for s in range(1202, 1302) if (s - 1202) % 10 % 2 == 0]
    await append(stubs, run.run_id, custom(1300))
    wanted.append(1302)
    from_start, from_middle = await asyncio.gather(*watchers)
    assert from_start == wanted
    assert from_middle == [s for s in wanted if s > 601]


def stubs_for(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(
        channel,
        run_service_pb2_grpc.RunServiceStub(channel),
        report_service_pb2_grpc.ReportServiceStub(channel),
    )


async def test_every_watcher_sees_every_event_once_through_overflows(tmp_path: Path) -> None:
    """Concurrent producers, slow and fast watchers, a buffer of 16 events: nothing lost or
    repeated, whether an event came from the hub or, after an overflow, from the store."""
    server = RunstreamServer(
        ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "s.db", watcher_buffer_events=16)
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = stubs_for(channel)
            run = await create_run(stubs)
            rng = random.Random(7)

            async def follow(slow: bool) -> list[int]:
                seen: list[int] = []
                async for response in stubs.runs.WatchRun(Watch(run_id=run.run_id)):
                    seen += [e.seq for e in response.events]
                    if slow and rng.random() < 0.2:
                        await asyncio.sleep(0.01)
                return seen

            watchers = [asyncio.create_task(follow(slow=i % 2 == 0)) for i in range(12)]
            await asyncio.sleep(0.2)

            async def produce(producer: int) -> None:
                n = 0
                while n < 300:
                    size = rng.randint(1, 25)
                    batch = [custom(n + i, key=f"p{producer}-{n + i}") for i in range(size)]
                    await append(stubs, run.run_id, *batch)
                    n += size

            await asyncio.gather(*(produce(p) for p in range(3)))
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
            last = (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
            results = await asyncio.wait_for(asyncio.gather(*watchers), 60)
            assert all(seen == list(range(1, last.last_seq + 1)) for seen in results)
    finally:
        await server.stop(grace=0.1)


async def test_idle_streams_all_get_heartbeats_from_the_one_clock(server, stubs) -> None:  # type: ignore[no-untyped-def]
    runs = [await create_run(stubs) for _ in range(2)]
    await append(stubs, runs[1].run_id, custom(1))  # run 1 is at seq 2, run 0 at seq 1

    async def beats(run_index: int, tenths: int) -> list[int]:
        request = Watch(
            run_id=runs[run_index].run_id,
            heartbeat_interval=duration_pb2.Duration(nanos=tenths * 100_000_000),
        )
        heads: list[int] = []
        async for response in stubs.runs.WatchRun(request):
            if response.HasField("heartbeat"):
                heads.append(response.heartbeat.head_seq)
                if len(heads) == 2:
                    return heads
        raise AssertionError("the stream ended")

    streams = [beats(i % 2, 1 + i % 3) for i in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*streams), 30)
    assert results == [[1 + i % 2] * 2 for i in range(20)]


async def test_a_stream_that_gets_events_still_gets_heartbeats_once_idle(server, stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    request = Watch(run_id=run.run_id, heartbeat_interval=duration_pb2.Duration(nanos=100_000_000))
    stream = aiter(stubs.runs.WatchRun(request))
    assert [e.seq for e in (await anext(stream)).events] == [1]

    async def next_heartbeat() -> int:
        while not (response := await anext(stream)).HasField("heartbeat"):
            raise AssertionError(f"unexpected {response}")
        return response.heartbeat.head_seq

    assert await asyncio.wait_for(next_heartbeat(), 10) == 1
    await append(stubs, run.run_id, custom(1))
    response = await anext(stream)
    while response.HasField("heartbeat"):  # one may have left before the append
        response = await anext(stream)
    assert [e.seq for e in response.events] == [2]
    assert await asyncio.wait_for(next_heartbeat(), 10) == 2


async def test_a_watcher_catching_up_from_the_store_stops_at_shutdown(
    manager: RunManager,
) -> None:
    """A watcher far behind reads the store page by page; a server stopping waited the whole
    grace for it (it never looked at the shutdown while catching up), then gRPC cut it
    with "Cancelling all calls" rather than the resume message (found in review)."""
    run_id = await new_run(manager)
    for start in range(1, 201, 50):
        await manager.append(run_id, [custom(n) for n in range(start, start + 50)])
    watch = manager.watching.watch(run_id)
    try:
        assert event_seqs(await anext(watch)) == list(range(1, 21))  # a page of 20
        manager.shutdown()
        with pytest.raises(Unavailable, match="shutting down"):
            await anext(watch)
    finally:
        await watch.aclose()


async def test_a_watcher_that_stops_reading_big_events_lets_them_go_and_still_gets_each_once(
    tmp_path: Path,
) -> None:
    """Found in review: a watcher's buffer was bounded by a count of events only, so one
    whose client stopped reading held up to 4,096 events of up to 256 KiB each, a gigabyte,
    until it fell that far behind. Past 4 MiB it now lets them go and reads them from the
    store when it reads again."""
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0", store_path=tmp_path / "s.db", metrics_address="127.0.0.1:0"
        )
    )
    await server.start()
    try:
        # BDP probing off: gRPC grows the client's window as it measures the connection, and
        # on a loaded machine (CI, 2026-12-07) it grew past the 10 MB sent here, so the
        # server's writes took every event and the watcher never fell behind.
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(server.target, options=options) as channel:
            stubs = stubs_for(channel)
            run = await create_run(stubs)
            call = stubs.runs.WatchRun(Watch(run_id=run.run_id))
            seen = [e.seq for e in (await call.read()).events]  # then it stops reading
            big = ev.RunEvent(custom=ev.Custom(type="artifact"))
            big.custom.data.update({"text": "x" * 200_000})
            for _ in range(4):  # 10 MB in all, far below 4,096 events
                await append(stubs, run.run_id, *[big] * 12)
            await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
            while (response := await call.read()) is not grpc.aio.EOF:
                seen += [e.seq for e in response.events]
            assert seen == list(range(1, 4 * 12 + 3))
            assert value(await scrape(server), "runstream_watcher_overflows_total") == 1
    finally:
        await server.stop(grace=0.1)


class Overflows:
    """A DeliveryObserver that counts the watchers that fell back to the store."""

    def __init__(self) -> None:
        self.count = 0

    def delivered(self, events: int, behind: int) -> None:
        pass

    def overflowed(self) -> None:
        self.count += 1

    def send_stalled(self) -> None:
        pass

    def committed_elsewhere(self, run_id: str, events: object, run: object) -> None:
        pass


@pytest.fixture
async def budgeted(tmp_path: Path) -> AsyncIterator[tuple[RunManager, Overflows]]:
    """A RunManager whose watchers keep at most 1 MiB of events waiting, and the count of
    the watchers that overflowed that."""
    store = SqliteEventStore(tmp_path / "domain.db")
    await store.open()
    overflows = Overflows()
    runs = RunManager(
        store, Hub(max_pending_bytes=1024 * 1024), observer=overflows, frame=frame_event
    )
    try:
        yield runs, overflows
    finally:
        runs.shutdown()
        await store.close()


async def live_watch(runs: RunManager) -> tuple[str, AsyncGenerator[WatchItem, None]]:
    """A new run, and a watcher of it that is live: it sends seq 2, from the hub, and is held
    at that send until it is read on."""
    run_id = await new_run(runs)
    watch = runs.watching.watch(run_id)
    assert event_seqs(await anext(watch)) == [1]  # from the store
    following = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.1)  # level with the run: live, waiting
    await runs.append(run_id, [custom(1)])
    assert event_seqs(await following) == [2]  # live
    return run_id, watch


def artifacts(count: int) -> list[ev.RunEvent]:
    """`count` events of 200 KB each."""
    events = [ev.RunEvent(custom=ev.Custom(type="artifact")) for _ in range(count)]
    for event in events:
        event.custom.data.update({"text": "x" * 200_000})
    return events


async def test_a_watcher_that_keeps_up_takes_a_commit_bigger_than_the_byte_budget_live(
    budgeted: tuple[RunManager, Overflows],
) -> None:
    """Found in review: the byte budget counted a commit on its own, so one commit past it
    (a Report stream commits the batches that queued up as one) sent every watcher of the
    run, the ones keeping up too, back to the store at once."""
    runs, overflows = budgeted
    run_id, watch = await live_watch(runs)  # it sends seq 2, then reads on
    await runs.append(run_id, artifacts(8))  # 1.6 MB in one commit, nothing waiting
    seen: list[int] = []
    while len(seen) < 8:
        seen += event_seqs(await anext(watch))
    assert seen == list(range(3, 11))
    assert overflows.count == 0


async def test_a_watcher_that_stops_reading_gets_the_end_when_the_last_commit_overflows_it(
    budgeted: tuple[RunManager, Overflows],
) -> None:
    """The watcher is held at its send (as when its client stops reading) while big events
    fill its buffer, and the commit that overflows it is the run's last, with run_completed.
    No later commit would show it a gap: the overflow itself must send it back to the store,
    or it waits for news for good, and its stream never ends."""
    runs, overflows = budgeted
    run_id, watch = await live_watch(runs)  # it sends seq 2, then stops reading
    await runs.append(run_id, artifacts(4))  # 800 KB wait, within the 1 MiB budget
    await runs.append(run_id, [*artifacts(4), ev.RunEvent(run_completed=ev.RunCompleted())])
    seen: list[int] = []

    async def read_to_the_end() -> None:
        async for item in watch:
            seen.extend(event_seqs(item))

    with contextlib.suppress(TimeoutError):  # seen then says what went missing
        await asyncio.wait_for(read_to_the_end(), 5)
    assert seen == list(range(3, 12))  # each once, run_completed (11) last, then the end
    assert overflows.count == 1


def sizes(item: WatchItem) -> tuple[int, int, int]:
    """A message's first seq, last seq and count of events (consecutive seqs)."""
    assert isinstance(item, bytes), item
    got = [e.seq for e in run_service_pb2.WatchRunResponse.FromString(item).events]
    assert got == list(range(got[0], got[-1] + 1))
    return got[0], got[-1], len(got)


async def test_commits_a_live_watcher_missed_while_sending_fill_each_message(
    manager: RunManager,
) -> None:
    run_id, watch = await live_watch(manager)
    try:
        for n in range(2, 47):  # 45 commits of one event while it "sends" seq 2
            await manager.append(run_id, [custom(n)])
        assert [sizes(await anext(watch)) for _ in range(3)] == [
            (3, 22, 20),
            (23, 42, 20),
            (43, 47, 5),
        ]
    finally:
        await watch.aclose()


async def test_a_commit_bigger_than_a_message_is_split_at_the_page_limit(
    manager: RunManager,
) -> None:
    run_id, watch = await live_watch(manager)
    try:
        waiting = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        await manager.append(run_id, [custom(n) for n in range(2, 52)])  # one commit, 50 events
        assert [sizes(await waiting)] + [sizes(await anext(watch)) for _ in range(2)] == [
            (3, 22, 20),
            (23, 42, 20),
            (43, 52, 10),
        ]
    finally:
        await watch.aclose()
