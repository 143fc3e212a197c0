"""Helpers shared by the SDK tests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from socket import SO_LINGER, SOL_SOCKET
from typing import TypeVar

import runstream
from runstream.v1 import event_pb2, report_service_pb2
from runstream_server.app import RunstreamServer, ServerConfig

from tests.conftest import ConfigFactory, free_port

T = TypeVar("T")


async def eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Waits until ``condition()`` holds; fails the test if it does not ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {within:g}s")
        await asyncio.sleep(0.005)


async def until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Asks `check` again until it holds; fails the test if it does not `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, f"still not so after {within:g}s"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def collecting(
    feed: Callable[[list[T]], Awaitable[None]],
) -> AsyncIterator[list[T]]:
    """Runs ``feed(into)`` in a task, which appends what it gets to ``into``; yields ``into``
    and cancels the task on the way out."""
    into: list[T] = []
    task = asyncio.create_task(feed(into))
    try:
        yield into
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def link_states(links: Iterable[runstream.WatchLink]) -> list[runstream.LinkState]:
    """What a stream's ``on_link`` heard, state by state."""
    return [link.state for link in links]


class Restartable:
    """A server that a test stops and starts again, on the same store and port."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = RunstreamServer(config)

    async def start_again(self) -> None:
        self.server = RunstreamServer(self.server.config)
        await self.server.start()

    async def lost_and_back(self, links: list[runstream.WatchLink], away: float = 0.0) -> None:
        """Stops the server; once the stream whose ``on_link`` fills `links` says
        RECONNECTING and `away` more seconds passed, starts it again, and returns once the
        stream is LIVE again."""
        before = len(links)
        await self.server.stop(grace=0.2)
        await eventually(lambda: runstream.LinkState.RECONNECTING in link_states(links[before:]))
        await asyncio.sleep(away)
        await self.start_again()
        await eventually(lambda: link_states(links)[-1] == runstream.LinkState.LIVE)


@contextlib.asynccontextmanager
async def restartable(server_config: ConfigFactory, path: Path) -> AsyncIterator[Restartable]:
    """A started :class:`Restartable` on the SQLite file `path` and a port of its own,
    stopped on the way out."""
    served = Restartable(server_config(path, address=f"127.0.0.1:{free_port()}"))
    await served.server.start()
    try:
        yield served
    finally:
        await served.server.stop(grace=0.5)


def producer_events(events: Iterable[runstream.Event]) -> list[runstream.Event]:
    """The events a producer reported (and RunCreated): the server's own insight events
    (computed milestones, health and estimate changes) carry no idempotency key."""
    return [e for e in events if e.seq == 1 or e.idempotency_key]


def step_durations(steps: Iterable[runstream.Step]) -> dict[str, float]:
    """Seconds from start to end of each step that has both, by step id: as the server
    learns estimates from them."""
    return {
        s.step_id: (s.end_time - s.start_time).total_seconds()
        for s in steps
        if s.start_time is not None and s.end_time is not None
    }


def step_changes(events: Iterable[runstream.Event]) -> list[tuple[str, str]]:
    """(kind name, step id) of each StepStarted, StepCompleted and StepFailed, in order: what
    a watcher learns of the steps' lives."""
    kinds = (
        runstream.EventKind.STEP_STARTED,
        runstream.EventKind.STEP_COMPLETED,
        runstream.EventKind.STEP_FAILED,
    )
    return [
        (e.kind.name, e.payload.step_id)  # type: ignore[union-attr]
        for e in events
        if e.kind in kinds
    ]


class TcpProxy:
    """A real TCP relay in front of a server, whose connections a test can cut.

    ``cut()`` drops every relayed connection and refuses new ones until ``restore()``: the
    clients behind the proxy see their streams break and their reconnects fail, while other
    clients keep talking to the server directly. ``stall()`` holds the bytes instead, as a
    server stopped with SIGSTOP would. That is how a test makes a producer miss
    what happens on the server, deterministically and without stopping the server.
    ``stall_connection()`` holds one connection's bytes only. ``delay`` (seconds) holds each
    chunk of bytes that long each way, as a long link does; ``accepted`` counts the
    connections it took. ``refusing`` closes each new connection as it opens; with
    ``resetting`` too it resets it (RST), as a server that closes with the client's first
    bytes unread does.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusing = False
        self.resetting = False
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: dict[int, asyncio.Event] = {}  # upstream local port: flowing
        self.delay = 0.0
        self.accepted = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            if self.resetting:
                linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends RST
                writer.get_extra_info("socket").setsockopt(SOL_SOCKET, SO_LINGER, linger)
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        flowing = asyncio.Event()
        flowing.set()
        self._connections[up_writer.get_extra_info("sockname")[1]] = flowing
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, flowing))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        try:
            while data := await source.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()
                await flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()

    def cut(self) -> None:
        """Drops every connection and refuses new ones."""
        self.refusing = True
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        """Accepts connections again."""
        self.refusing = False

    def stall(self) -> None:
        """Holds every byte, both ways, with the connections left open: a frozen server."""
        self._flowing.clear()

    def flow(self) -> None:
        """Relays again what ``stall()`` held, and what follows."""
        self._flowing.set()

    @property
    def upstream_ports(self) -> set[int]:
        """The local ports of the connections made to the server, as the server sees them."""
        return set(self._connections)

    def stall_connection(self, upstream_port: int) -> None:
        """Holds every byte, both ways, of the one connection that reaches the server from
        local port `upstream_port` (the port the server sees), for good; the others flow.
        A connection whose link went silent, or never moved again after it came back."""
        self._connections[upstream_port].clear()

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[TcpProxy]:
    """A started TcpProxy in front of the server on ``port``, closed on the way out."""
    proxy = TcpProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@contextlib.asynccontextmanager
async def viewer_behind_proxy(
    server: RunstreamServer,
) -> AsyncIterator[tuple[TcpProxy, runstream.Client, runstream.Client]]:
    """A proxy in front of `server`, a client straight to it (the producer's side) and a
    viewer's client through the proxy that reconnects for up to 30 s: cut the proxy to break
    the viewer's connection alone."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as elsewhere,
        runstream.connect(proxy.target, reconnect_timeout=30) as viewer,
    ):
        yield proxy, elsewhere, viewer


@contextlib.contextmanager
def loop_complaints() -> Iterator[list[str]]:
    """The messages the running loop's exception handler gets meanwhile: a task destroyed
    while pending, an exception never retrieved (see ``collect_garbage``)."""
    loop = asyncio.get_running_loop()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _, context: complaints.append(context["message"]))
    try:
        yield complaints
    finally:
        loop.set_exception_handler(None)


async def collect_garbage() -> None:
    """Lets what was just closed finish, then collects it: a task left pending is destroyed
    and complains (in a callback, hence the second sleep)."""
    await asyncio.sleep(0.1)
    gc.collect()
    await asyncio.sleep(0.1)


def question(
    run_id: str, decision_id: str, *, large: bool = False
) -> report_service_pb2.AppendEventsRequest:
    """The AppendEvents request of a producer asking ``decision_id``, options a and b;
    ``large``: with 98 more options, described at length, about 240 KB (two fill GetRun's
    512 KiB budget for open decisions)."""
    options = [event_pb2.DecisionOption(value="a"), event_pb2.DecisionOption(value="b")]
    if large:
        options += [
            event_pb2.DecisionOption(value=f"o{n}", label="l" * 256, description="d" * 2000)
            for n in range(98)
        ]
    return report_service_pb2.AppendEventsRequest(
        run_id=run_id,
        events=[
            event_pb2.RunEvent(
                decision_requested=event_pb2.DecisionRequested(
                    decision_id=decision_id,
                    prompt=f"question {decision_id}" + " ?" * 8000 * large,
                    options=options,
                )
            )
        ],
    )
