"""The SDK against real servers whose TLS its settings do not fit: it says why at once, in
its own parameter names, from the first call, ``start_run``, a watch and an interaction,
instead of retrying for its whole reconnect timeout and then raising gRPC's words (see
runstream._unreachable).

Each client here retries for ever (``reconnect_timeout=None``): only a cause said at once
ends its call, which must come well within WITHIN. A server that closes connections as they
open without a TLS handshake (a proxy with nothing behind it, as during a deploy) is waited
out, and named as the likely cause only when the retries give up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import runstream
from runstream_server.app import RunstreamServer
from runstream_server.auth.edge import SecurityConfig, TlsConfig

from tests.clients.support import eventually, proxy_to
from tests.identity import Pki, start_server

WITHIN = 20.0
"""Seconds a call may take to say a certain cause: nothing near a reconnect timeout's."""
MISSING = "0" * 32


@dataclass
class Servers:
    """A TLS server, a mutual-TLS one, a plaintext one, and the certificates around them."""

    tls: RunstreamServer
    mutual: RunstreamServer
    plaintext: RunstreamServer
    pki: Pki
    other: Pki
    """Certificates of another CA, which neither server trusts or is vouched for by."""


@pytest.fixture
async def servers(tmp_path: Path, server: RunstreamServer) -> AsyncIterator[Servers]:
    pki, other = Pki.make(tmp_path / "pki"), Pki.make(tmp_path / "other")
    tls = await start_server(
        tmp_path / "tls", SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key))
    )
    mutual = await start_server(
        tmp_path / "mutual",
        SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key, pki.ca_file)),
    )
    try:
        yield Servers(tls, mutual, server, pki, other)
    finally:
        await asyncio.gather(tls.stop(grace=0.5), mutual.stop(grace=0.5))


def _cases(s: Servers) -> dict[str, tuple[str, dict[str, Any], str]]:
    """Each mismatch: the target, the TLS arguments of connect, what the error says."""
    tls, mutual, plain = (f"127.0.0.1:{x.port}" for x in (s.tls, s.mutual, s.plaintext))
    return {
        "plaintext to TLS": (tls, {}, f"a server at {tls} serves TLS: give ca_file"),
        "TLS to plaintext": (
            plain,
            {"ca_file": s.pki.ca_file},
            f"a server at {plain} answered without TLS: connect without ca_file",
        ),
        "a CA that did not sign": (
            tls,
            {"ca_file": s.other.ca_file},
            f"a server at {tls} answered over TLS with a certificate the CA of ca_file did "
            "not sign",
        ),
        "no client certificate": (
            mutual,
            {"ca_file": s.pki.ca_file},
            f"a server at {mutual} wants a client certificate: give client_cert and client_key",
        ),
        "a client certificate of another CA": (
            mutual,
            {
                "ca_file": s.pki.ca_file,
                "client_cert": s.other.client_cert,
                "client_key": s.other.client_key,
            },
            f"a server at {mutual} refused the client certificate {s.other.client_cert}: is "
            "it signed by a CA the server trusts, and still valid?",
        ),
    }


CASES = [
    "plaintext to TLS",
    "TLS to plaintext",
    "a CA that did not sign",
    "no client certificate",
    "a client certificate of another CA",
]


async def _start_and_close(client: runstream.Client) -> None:
    run = await client.start_run("wf")
    await run.close()


async def _watch(client: runstream.Client) -> None:
    async for _ in client.watch(MISSING):
        pass


async def _get(client: runstream.Client) -> None:
    await client.get_run(MISSING)


async def _interact(client: runstream.Client) -> None:
    async with client.interact([MISSING], viewer="ana") as interaction:
        async for _ in interaction:
            pass


CALLS: dict[str, tuple[Callable[[runstream.Client], Awaitable[None]], str]] = {
    "get_run": (_get, ""),
    "start_run": (_start_and_close, ""),
    "watch": (_watch, f"watch of run {MISSING!r}: "),
    "interact": (_interact, ""),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("case", CASES)
async def test_a_tls_mismatch_is_said_at_once_in_the_sdks_words(
    servers: Servers, case: str, call: str
) -> None:
    target, tls, said = _cases(servers)[case]
    make_call, what = CALLS[call]
    async with runstream.connect(target, reconnect_timeout=None, **tls) as client:
        with pytest.raises(runstream.UnavailableError) as raised:
            async with asyncio.timeout(WITHIN):
                await make_call(client)
    assert raised.value.message == what + said


@pytest.mark.parametrize("resetting", [False, True], ids=["closed", "reset"])
@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "TLS"])
async def test_a_server_closing_connections_as_they_open_is_waited_out(
    servers: Servers, tls: bool, resetting: bool
) -> None:
    """A proxy that takes connections and closes them (nothing behind it yet) is no TLS
    mismatch: the producer waits until a server is there. A TLS client sees "Handshake read
    failed", which was taken for a failed handshake and raised at once (found in review)."""
    server = servers.tls if tls else servers.plaintext
    settings = {"ca_file": servers.pki.ca_file} if tls else {}
    async with proxy_to(server.port) as proxy:
        proxy.refusing, proxy.resetting = True, resetting
        async with runstream.connect(proxy.target, reconnect_timeout=None, **settings) as client:
            starting = asyncio.create_task(client.start_run("wf"))
            await asyncio.sleep(2)
            assert not starting.done()
            proxy.restore()
            run = await asyncio.wait_for(starting, WITHIN)
            await run.close()
        async with runstream.connect(server.target, **settings) as client:
            assert (await client.get_run(run.run_id)).workflow == "wf"


@pytest.mark.parametrize("resetting", [False, True], ids=["closed", "reset"])
async def test_giving_up_on_connections_closed_as_they_open_says_the_likely_cause(
    server: RunstreamServer, resetting: bool
) -> None:
    """Closed as it opens, a connection fails "Socket closed", or "Connection reset by peer"
    when the client's first bytes were not read yet (seen in CI): the same likely cause."""
    async with proxy_to(server.port) as proxy:
        proxy.refusing, proxy.resetting = True, resetting
        async with runstream.connect(proxy.target, reconnect_timeout=1) as client:
            with pytest.raises(runstream.UnavailableError) as raised:
                await client.start_run("wf")
            with pytest.raises(runstream.UnavailableError) as watching:
                await _watch(client)
            with pytest.raises(runstream.UnavailableError) as interacting:
                await _interact(client)
    likely = (
        f"; likely cause: a server at {proxy.target} closed the connection as it opened: does "
        "it serve TLS (then give ca_file)?"
    )
    assert raised.value.message.endswith(likely)
    assert watching.value.message.startswith(f"watch of run {MISSING!r}: no server could serve")
    assert watching.value.message.endswith(likely)
    assert interacting.value.message.endswith(likely)


async def _reread(server: RunstreamServer, run_id: str) -> runstream.Run:
    async with runstream.connect(server.target) as client:
        return await client.get_run(run_id)


async def test_a_client_that_reached_its_server_retries_and_gives_up_naming_the_cause(
    servers: Servers,
) -> None:
    """Settings that reached a server fit it: when the server behind the target turns into
    one they do not fit (here a TLS server behind the same proxy), the reporter and the
    watcher retry for their reconnect timeout, as for any outage, and the error they give up
    with says what they found."""
    async with (
        proxy_to(servers.plaintext.port) as proxy,
        runstream.connect(proxy.target, reconnect_timeout=1) as client,
    ):
        run = await client.start_run("wf")
        await run.flush()
        watch = client.watch(run.run_id)
        assert (await anext(watch)).seq == 1
        proxy.cut()
        proxy._upstream_port = servers.tls.port  # the TLS server, behind the same address
        proxy.restore()
        await run.metrics({"n": 1})
        with pytest.raises(runstream.UnavailableError) as reporting:
            await run.flush()
        with pytest.raises(runstream.UnavailableError) as watching:
            async for _ in watch:  # what came before the switch, then the error
                pass
    likely = f"; likely cause: a server at {proxy.target} serves TLS: give ca_file"
    assert "no server could serve it for 1s" in reporting.value.message
    assert reporting.value.message.endswith(likely)
    assert watching.value.message.startswith(f"watch of run {run.run_id!r}: no server could")
    assert watching.value.message.endswith(likely)


class _ClosingPlaintext:
    """A listener that closes each plaintext connection as it opens ("Socket closed" to a
    plaintext client, the cause a closer look tells apart) and holds each TLS one without a
    word of its handshake (a closer look then learns nothing until its own time is up);
    ``looks`` counts the TLS connections, that is the closer looks."""

    def __init__(self) -> None:
        self.looks = 0
        self._held: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.target = ""

    async def __aenter__(self) -> _ClosingPlaintext:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.target = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        for writer in self._held:
            writer.close()
        assert self._server is not None
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.read(1) == b"\x16":  # a TLS ClientHello
            self.looks += 1
            self._held.append(writer)
            return
        writer.close()


async def test_a_control_that_reaches_no_server_raises_without_looking_closer_again() -> None:
    """A control (cancel, pause, resume) is not repeated, so an UNAVAILABLE ends it at once:
    it gave up on nothing, and a closer look of its own (up to 4 s for a server that holds
    the handshake) only delayed the error. The client's one first look is shared."""
    async with (
        _ClosingPlaintext() as listener,
        runstream.connect(listener.target, reconnect_timeout=None) as client,
    ):
        with pytest.raises(runstream.UnavailableError):
            await client.cancel_run(MISSING)
        with pytest.raises(runstream.UnavailableError):
            await client.pause_run(MISSING)
        assert listener.looks == 1


async def test_a_call_waiting_on_a_closer_look_ends_as_its_client_closes() -> None:
    """Closing the client ends its closer look, and the calls and watches waiting on it end
    at once saying the client was closed: the look outlived the client (a task still
    pending when the program's loop closed, up to 3 s), and once it ended with the client,
    a read and a watch that waited on it were raised CancelledError though nobody cancelled
    them."""
    async with _ClosingPlaintext() as listener:
        client = runstream.connect(listener.target, reconnect_timeout=None)
        waiting = [
            asyncio.create_task(client.get_run(MISSING)),
            asyncio.create_task(_watch(client)),
            # A run's start retries of its own, and a control not at all: both raised what
            # the look left them (an AttributeError of the closed channel, "Socket closed").
            asyncio.create_task(client.start_run("wf")),
            asyncio.create_task(client.cancel_run(MISSING)),
        ]
        await eventually(lambda: listener.looks == 1)
        await client.close()
        async with asyncio.timeout(1.5):  # half the look's own time, 3 s
            for call in waiting:
                with pytest.raises(runstream.FailedPreconditionError, match="closed"):
                    await call


async def test_a_program_that_closes_its_client_during_a_closer_look_exits_at_once() -> None:
    """A program that closes its client and returns from asyncio.run while a closer look
    waits on a silent server exits at once: the look ran in a thread, which asyncio.run's
    shutdown waited for until the look's own time (3 s) was up."""
    async with _ClosingPlaintext() as listener:

        async def program() -> None:
            client = runstream.connect(listener.target, reconnect_timeout=None)
            reading = asyncio.create_task(client.get_run(MISSING))
            while listener.looks == 0:  # noqa: ASYNC110 (the listener runs on another loop)
                await asyncio.sleep(0.01)
            await client.close()
            with pytest.raises(runstream.FailedPreconditionError, match="closed"):
                await reading

        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(10):
            await asyncio.to_thread(asyncio.run, program())  # a loop of its own, as a program's
        assert asyncio.get_running_loop().time() - started < 1.5
