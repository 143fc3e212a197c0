"""Must show: resume exactness. Watchers that drop and resume see every event once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
import runstream
from google.protobuf import duration_pb2
from runstream import Client, Event, EventKind, RunReporter
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.sqlite_writer import SqliteWriter

from tests.clients.support import eventually
from tests.conftest import free_port

EVENTS = 3000
WATCHERS = 12
BEAT = duration_pb2.Duration(nanos=100_000_000)


async def produce(run: RunReporter, count: int, *, start: int = 0) -> None:
    """Reports ``count`` custom events, yielding now and then so watchers read a live log."""
    for i in range(start, start + count):
        await run.custom("tick", {"i": i})
        if i % 25 == 0:
            await asyncio.sleep(0.001)


async def test_watchers_disconnecting_at_random_each_see_every_event_once(
    server: RunstreamServer,
) -> None:
    rng = random.Random(20240501)
    seeds = [rng.randrange(2**32) for _ in range(WATCHERS)]
    async with runstream.connect(server.target) as client:
        run = await client.start_run("resume-exactness")

        async def producer() -> None:
            await produce(run, EVENTS)
            await run.complete("done")
            await run.close()

        async def watcher(seed: int) -> tuple[list[int], int]:
            """Watches in sessions of random length; each resumes after the last seq seen."""
            own = random.Random(seed)
            seqs: list[int] = []
            sessions = 0
            while True:
                sessions += 1
                budget = own.randint(1, 600)
                finished = True
                async with contextlib.aclosing(
                    client.watch(run.run_id, after_seq=seqs[-1] if seqs else 0)
                ) as stream:
                    async for event in stream:
                        seqs.append(event.seq)
                        budget -= 1
                        if budget == 0:
                            finished = False
                            break  # drop the stream mid-log
                if finished:
                    return seqs, sessions
                if own.random() < 0.3:
                    await asyncio.sleep(own.uniform(0, 0.02))

        producing = asyncio.create_task(producer())
        results = await asyncio.wait_for(asyncio.gather(*(watcher(seed) for seed in seeds)), 60)
        await producing
        last_seq = (await client.get_run(run.run_id)).last_seq

    assert last_seq == EVENTS + 3  # RunCreated, RunStarted, the ticks, RunCompleted
    for seqs, sessions in results:
        assert seqs == list(range(1, last_seq + 1))
        assert sessions > 5  # it really did drop and resume, several times


async def collect(client: Client, run_id: str, into: list[Event]) -> None:
    async for event in client.watch(run_id):
        into.append(event)


async def test_watch_resumes_across_a_server_restart(tmp_path: Path) -> None:
    config = ServerConfig(address=f"127.0.0.1:{free_port()}", store_path=tmp_path / "r.db")
    server = RunstreamServer(config)
    await server.start()
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("restart")
            await produce(run, 200)
            await run.flush()
            seen: list[Event] = []
            watcher = asyncio.create_task(collect(client, run.run_id, seen))
            await eventually(lambda: len(seen) >= 202)

            await server.stop(grace=0.5)  # ends the watch and report streams: UNAVAILABLE
            await produce(run, 100, start=200)  # queued by the reporter while the server is down
            server = RunstreamServer(config)  # same store file, same port
            await server.start()

            await produce(run, 100, start=300)
            await run.complete()
            await run.close()
            await asyncio.wait_for(watcher, 20)
    finally:
        await server.stop(grace=0.5)

    assert [e.seq for e in seen] == list(range(1, 404))
    ticks = [e.payload.data["i"] for e in seen if isinstance(e.payload, runstream.Custom)]
    assert ticks == list(range(400))
    assert seen[-1].kind == EventKind.RUN_COMPLETED


async def test_a_watcher_is_never_sent_a_commit_its_server_has_not_folded_yet(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With synchronous=FULL the commit is made on the store's thread, and readers see it
    before the server has folded (and acknowledged) it. A watcher reading the store then
    must stop at the run's head: an event past it would make its resume OUT_OF_RANGE."""
    commit = SqliteWriter._commit
    hold = threading.Event()  # set: the next commit waits, once made, until released
    release = threading.Event()
    made: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def held_back(self: SqliteWriter, batch: list[Any]) -> list[Exception | None]:
        results = commit(self, batch)
        if hold.is_set():
            made.get_loop().call_soon_threadsafe(made.set_result, None)
            release.wait(30)
        return results

    monkeypatch.setattr(SqliteWriter, "_commit", held_back)
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("held-back")
            await produce(run, 5)
            await run.flush()
            head = (await client.get_run(run.run_id)).last_seq
            hold.set()
            await run.custom("tick", {"i": 5})
            flushing = asyncio.create_task(run.flush())
            await asyncio.wait_for(made, 10)  # in the file, not yet folded nor acknowledged
            seen: list[int] = []
            async with grpc.aio.insecure_channel(server.target) as channel:
                runs = run_service_pb2_grpc.RunServiceStub(channel)
                request = rs.WatchRunRequest(run_id=run.run_id, heartbeat_interval=BEAT)
                async for response in runs.WatchRun(request):
                    if response.HasField("heartbeat"):  # level with the head, and idle
                        assert response.heartbeat.head_seq == head
                        break
                    seen.extend(e.seq for e in response.events)
                assert seen == list(range(1, head + 1))
                release.set()
                await asyncio.wait_for(flushing, 10)
                resumed = runs.WatchRun(rs.WatchRunRequest(run_id=run.run_id, after_seq=head))
                assert [e.seq for e in (await anext(aiter(resumed))).events] == [head + 1]
                resumed.cancel()
    finally:
        release.set()  # the server stops after this (a fixture), its commit let go
