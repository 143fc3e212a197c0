"""The AG-UI bridge: an HTTP server that streams Runstream runs as AG-UI Server-Sent Events.

``GET /runs/{run_id}/events`` answers ``text/event-stream``: the run's AG-UI events from the
start (see ``runstream.integrations.agui`` for the mapping), then live ones as the run goes
on, until the run ends. ``POST`` to the same URL answers exactly as GET does: it is how
AG-UI's own client, ``HttpAgent`` of ``@ag-ui/client`` (CopilotKit's transport), asks for a
run's events, a ``RunAgentInput`` as its JSON body. The run is the one in the URL; the body
must be a JSON object (or nothing), and what it says is not used (``AguiBridge._run_input``
says why). Each SSE message carries one AG-UI event as ``data:`` and an ``id:`` naming its
place in the run: the Runstream seq of the event it came from, ``7``. A Runstream event that
stands for several AG-UI events (a message's first text delta opens the message and carries
its first text) gives its earlier ones the ids ``7:1``, ``7:2`` ... and its last one ``7``.
A client that reconnects with ``Last-Event-ID`` (browsers' EventSource does so by itself;
a POST may send it too) gets exactly the events after that one, whichever it was: none
twice, none missing. A stream whose run has ended closes; reconnecting after its last event
gets ``204 No Content``, which tells EventSource to stop.

A request whose ``Host`` names neither this machine (``localhost``, a name under
``.localhost``), an IP address, nor one of ``allowed_hosts`` gets 403: a page of another site
whose name its owner pointed at this machine (DNS rebinding) would otherwise read the runs
through a visitor's browser, the bridge being same-origin to it.

Each stream holds one of the server's watch streams, opened with the bridge's own token, of
which the server allows an identity a few hundred: the bridge serves at most ``max_streams``
streams at once, and ``max_streams_per_address`` to one client address, so that one client
cannot take them all. A stream (or a POST, whose body is read in its stream's place) beyond
either gets ``503`` with ``Retry-After``, as does one whose watch the server refuses for a
limit of its own (RESOURCE_EXHAUSTED with a RetryInfo, which names the wait): the stream's
``200`` is sent only once the server took the watch, never a ``200`` followed by nothing. A
client that stops reading its stream (a laptop closed, a stuck proxy) would hold its place and
its watch for as long as the kernel kept the connection: a message that waited
``send_timeout`` seconds to be sent ends the stream, resetting the connection (EventSource
reconnects with ``Last-Event-ID`` and misses nothing). A client gone without a word (its
network lost) acknowledges nothing, also on a quiet run, where the keepalives never fill a
buffer: on Linux the kernel ends such a connection once what was sent waited ``send_timeout``
seconds for an acknowledgement (``TCP_USER_TIMEOUT``), instead of retrying for 15 minutes.

``OPTIONS`` answers CORS preflights, ``GET /healthz`` answers ``ok``, ``HEAD`` what ``GET``
would without its body. Other paths get 404, other methods 405, a POST body that is not a
JSON object (or whose RunAgentInput fields hold the wrong kind of value) 400, one over
``max_body`` bytes 413, a malformed ``Last-Event-ID``, one past the run's last event or one
the bridge never sent (``7:5`` when event 7 stood for three AG-UI events) 400, an unknown run
404, and a run whose early events the server's retention purged 410 (its AG-UI stream cannot
be told from the start again; EventSource stops on it), unless the client already has the
ended run's last event (204).

The parts: this module serves HTTP (:class:`AguiBridge`) and counts the streams against its
limits (:class:`StreamPlaces`); ``_agui_http`` reads requests and writes answers' heads;
``_agui_upstream`` opens a stream's watch on the Runstream server; ``_agui_sse`` turns the
watch's events into the SSE messages, by ``AguiTranslator``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from urllib.parse import unquote

import runstream
from runstream.dashboard.server import bracketed, called_on
from runstream.integrations._agui_http import (
    MAX_HEAD,
    BrowserRules,
    HeadOnly,
    HttpError,
    Request,
    Writer,
    linger,
    peer_address,
    read_body,
    read_request,
    respond,
    response_head,
    until_hangup,
)
from runstream.integrations._agui_sse import Cursor, with_keepalive
from runstream.integrations._agui_upstream import Upstream, Watch, abandon, seen_to_the_end
from runstream.integrations.agui import run_input_problems

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_STREAMS_PER_ADDRESS",
    "AguiBridge",
    "Cursor",
]

_log = logging.getLogger("runstream.agui")

# A POST's body: AG-UI's RunAgentInput, which carries the frontend's whole conversation.
DEFAULT_MAX_BODY = 1024 * 1024
# Streams at once: well below the watch streams a server allows one identity (200 by
# default), which the bridge's token shares with whatever else uses it (a dashboard).
DEFAULT_MAX_STREAMS = 100
DEFAULT_MAX_STREAMS_PER_ADDRESS = 20
# What a request refused for the bridge's own limits is told to wait: a stream may end by then.
_FULL_RETRY_AFTER = 5
_ROUTE = re.compile(r"^/runs/(?P<run_id>[^/]+)/events/?\Z")
# How long EventSource waits before reconnecting after a dropped stream.
_RETRY_MS = 1000


class _SendStalled(Exception):
    """A stream's client made no room for a message within the bridge's send timeout."""


class StreamPlaces:
    """The bridge's streams at once, in all (at most ``max_streams``) and of each client
    address (at most ``max_per_address``); 0: no limit."""

    def __init__(self, max_streams: int, max_per_address: int) -> None:
        self._max_streams = max_streams
        self._max_per_address = max_per_address
        self._streams = 0
        self._streams_of: Counter[str] = Counter()

    def take(self, address: str) -> None:
        """Counts a stream of ``address``, or raises the 503 to answer when there is no room."""
        if 0 < self._max_streams <= self._streams:
            message = (
                f"the bridge serves {self._max_streams} streams at once, the most it may "
                "(runstream agui --max-streams); try again later"
            )
            raise HttpError(503, "Service Unavailable", message, retry_after=_FULL_RETRY_AFTER)
        if 0 < self._max_per_address <= self._streams_of[address]:
            message = (
                f"{_counted(self._max_per_address, 'stream')} open from {address}, the most the "
                "bridge serves to one client address (runstream agui --max-streams-per-address); "
                "close one first"
            )
            raise HttpError(503, "Service Unavailable", message, retry_after=_FULL_RETRY_AFTER)
        self._streams += 1
        self._streams_of[address] += 1

    def leave(self, address: str) -> None:
        """Counts a stream of ``address`` that ended."""
        self._streams -= 1
        self._streams_of[address] -= 1
        if not self._streams_of[address]:
            del self._streams_of[address]


class AguiBridge:
    """Serves runs of the Runstream server behind ``client`` as AG-UI SSE streams.

    Args:
        client: A connected Runstream client (``runstream.connect(target)``).
        host: Where to listen.
        port: The port; 0 picks a free one (see ``port`` after ``start()``).
        origins: Browser origins allowed to read the streams (CORS), e.g.
            ``["http://localhost:3000"]``; ``["*"]`` allows any. None: same-origin only.
            Each is matched as a browser sends it (lower case, no trailing ``/`` or default
            port); one that is no origin (no scheme, a path) raises ValueError.
        keepalive: Seconds of silence after which a stream gets an SSE comment, so proxies
            and load balancers do not cut it.
        head_timeout: Seconds a client has to send its request head, and then a POST its
            body; then 408.
        max_body: The most bytes of a POST's body it reads; a longer one gets 413.
        allowed_hosts: Names a request's ``Host`` may give besides ``localhost`` and IP
            addresses (the name a proxy in front forwards, e.g. ``agui.example.com``; one
            starting with a dot, ``.example.com``, allows that domain and its subdomains;
            ``"*"`` any). Others get 403, against DNS rebinding. One that is no name (a
            URL) raises ValueError.
        max_streams: The most streams it serves at once (a POST counts while its body is
            read); one more gets 503 with ``Retry-After``. 0: no limit.
        max_streams_per_address: The most of them one client address may hold; one more
            gets 503 with ``Retry-After``. Behind a proxy, every client has the proxy's
            address: give it as much as ``max_streams`` there (or 0: no limit).
        send_timeout: Seconds a message of a stream may wait to be sent, its client not
            reading (what it left unread fills the connection's buffers): then the bridge
            resets the connection, which frees its place and ends its watch, and logs a
            WARNING. EventSource reconnects with ``Last-Event-ID`` and misses nothing. A
            connection's last bytes, once its stream ends or the bridge stops, wait no
            longer for the client to take them. On Linux, a connection whose sent bytes
            waited as long for the client's acknowledgement ends too (its client gone, a
            keepalive unanswered). 0: wait for ever.
    """

    def __init__(
        self,
        client: runstream.Client,
        *,
        host: str = "127.0.0.1",
        port: int = 8090,
        origins: Sequence[str] = (),
        keepalive: float = 15.0,
        head_timeout: float = 10.0,
        max_body: int = DEFAULT_MAX_BODY,
        allowed_hosts: Sequence[str] = (),
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_streams_per_address: int = DEFAULT_MAX_STREAMS_PER_ADDRESS,
        send_timeout: float = 60.0,
    ) -> None:
        self._upstream = Upstream(client)
        self._places = StreamPlaces(max_streams, max_streams_per_address)
        self._browsers = BrowserRules(origins, allowed_hosts)
        self._head_timeout = head_timeout
        self._max_body = max_body
        self._host = host
        self._port = port
        self._keepalive = keepalive
        self._send_timeout = send_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port it listens on (known after ``start()``)."""
        return self._port

    def url(self, run_id: str = "RUN_ID") -> str:
        """The stream's URL for ``run_id``, on loopback when the bridge listens on every
        address."""
        return f"http://{bracketed(called_on(self._host))}:{self._port}/runs/{run_id}/events"

    async def start(self) -> None:
        """Binds and starts accepting connections (OSError when the port is taken). On
        ``::``, IPv4 clients too where the system allows: asyncio binds ``::`` for IPv6
        alone, and ``--address [::]:8090`` refused every IPv4 client, unlike ``runstream
        serve`` on ``[::]``. On ``""`` (every interface) one socket too: asyncio binds one
        per family, and on port 0 each got a port of its own, so the URL's IPv4 loopback
        reached no bridge about half the time."""
        if self._host in ("", "::") and socket.has_dualstack_ipv6():
            listening = socket.create_server(
                ("::", self._port), family=socket.AF_INET6, dualstack_ipv6=True
            )
            self._server = await asyncio.start_server(self._accept, sock=listening, limit=MAX_HEAD)
        else:
            host = self._host or "0.0.0.0"  # every IPv4 interface, one socket
            self._server = await asyncio.start_server(
                self._accept, host, self._port, limit=MAX_HEAD
            )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stops listening and ends every open stream."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> AguiBridge:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- one connection, one request ----------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        _bound_unacknowledged(writer, self._send_timeout)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # The client went away.
        except asyncio.CancelledError:
            pass  # The bridge is stopping.
        except runstream.RunstreamError as exc:
            # The stream broke off (the server stayed unreachable); the client reconnects
            # with its Last-Event-ID and resumes.
            _log.warning("AG-UI stream ended: %s", exc)
        finally:
            self._connections.discard(task)
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Closes a connection once its client has taken what it still holds, or resets it
        when the client has not within the send timeout: one that stopped reading would keep
        the connection, and a stop that waits for it, for ever."""
        writer.close()
        try:
            async with asyncio.timeout(self._send_timeout or None):
                await writer.wait_closed()
        except TimeoutError:
            _reset(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._head_timeout):
                request = await read_request(reader)
        except HttpError as exc:
            await respond(writer, exc.status, exc.reason, str(exc), {})
            return
        except TimeoutError:
            message = f"no complete request head within {self._head_timeout:g} s"
            await respond(writer, 408, "Request Timeout", message, {})
            return
        host = request.headers.get("host")
        if host is not None and not self._browsers.host_allowed(host):
            message = (
                f"Host {host!r} is not a name the bridge answers to (localhost, an IP address "
                "or an allowed host: runstream agui --allowed-host NAME), against DNS rebinding"
            )
            await respond(writer, 403, "Forbidden", message, {})
            return
        cors = self._browsers.cors_headers(request.headers.get("origin"))
        if request.method == "OPTIONS":
            await respond(writer, 204, "No Content", "", cors, preflight=True)
            return
        if request.method not in ("GET", "HEAD", "POST"):
            allow = {**cors, "Allow": "GET, HEAD, POST, OPTIONS"}
            message = "only GET, HEAD and POST (and OPTIONS for CORS preflights)"
            await respond(writer, 405, "Method Not Allowed", message, allow)
            return
        if request.method != "POST" and _ROUTE.match(request.path) is None:
            await self._answer(request, reader, writer, cors)  # no stream, no body: no place
            return
        address = peer_address(writer)
        try:
            self._places.take(address)
        except HttpError as exc:
            await respond(writer, exc.status, exc.reason, str(exc), exc.headers(cors))
            if request.method == "POST":
                await linger(reader, writer)  # its body was left unread
            return
        try:
            await self._answer(request, reader, writer, cors)
        finally:
            self._places.leave(address)

    async def _answer(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cors: dict[str, str],
    ) -> None:
        """Answers a request that passed the Host, method and place checks."""
        if request.method == "POST" and not await self._run_input(request, reader, writer, cors):
            return
        # HEAD: what GET answers, without its body.
        out: Writer = HeadOnly(writer) if request.method == "HEAD" else writer
        if request.path == "/healthz":
            await respond(out, 200, "OK", "ok", cors)
            return
        route = _ROUTE.match(request.path)
        if route is None:
            await respond(out, 404, "Not Found", "no such path; try /runs/RUN_ID/events", cors)
            return
        run_id = unquote(route["run_id"])
        watch: Watch | None = None
        try:
            run, cursor = await self._upstream.resume_point(
                run_id, request.headers.get("last-event-id")
            )
            if not isinstance(out, HeadOnly) and not seen_to_the_end(run, cursor):
                watch = await self._upstream.open(run_id, cursor)
        except HttpError as exc:
            await respond(out, exc.status, exc.reason, str(exc), exc.headers(cors))
            return
        except runstream.NotFoundError:
            await respond(out, 404, "Not Found", f"no run {run_id!r}", cors)
            return
        except runstream.InvalidArgumentError as exc:
            await respond(out, 400, "Bad Request", exc.message, cors)
            return
        except runstream.UnavailableError as exc:
            # EventSource gives up on a 503; an AG-UI client may retry after Retry-After.
            message = f"the Runstream server is out of reach: {exc.message}"
            await respond(out, 503, "Service Unavailable", message, {**cors, "Retry-After": "1"})
            return
        except runstream.TokenProviderError as exc:
            # --token-file unreadable, and the last token expired.
            message = f"the bridge has no token for the Runstream server: {exc.message}"
            _log.warning("%s", message)
            await respond(out, 502, "Bad Gateway", message, cors)
            return
        except (runstream.UnauthenticatedError, runstream.PermissionDeniedError) as exc:
            # The bridge's own credentials: the server refused them, not the browser's. Said
            # where its operator looks too: a browser shows a failed EventSource, not why.
            message = f"the Runstream server refused the bridge: {exc.message}"
            _log.warning("%s", message)
            await respond(out, 502, "Bad Gateway", message, cors)
            return
        if seen_to_the_end(run, cursor):
            # Everything was seen and nothing more will come: 204 stops EventSource.
            await respond(out, 204, "No Content", "", cors)
            return
        head = response_head(
            200,
            "OK",
            {
                **cors,
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "Connection": "close",
            },
        )
        if watch is None:  # HEAD
            out.write(head)
            await out.drain()
            return
        try:
            try:
                await self._send(writer, head + f"retry: {_RETRY_MS}\n\n".encode())
            except BaseException:
                await abandon(*watch)
                raise
            await self._stream(*watch, reader, writer)
        except _SendStalled:
            # The watch has ended; the place is given back when this returns.
            _log.warning(
                "AG-UI stream of run %r to %s reset: a message waited %g s to be sent, the "
                "client not reading (runstream agui --send-timeout)",
                run_id,
                peer_address(writer),
                self._send_timeout,
            )
            _reset(writer)

    async def _run_input(
        self,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cors: dict[str, str],
    ) -> bool:
        """Reads a POST's body, AG-UI's ``RunAgentInput``; False when it answered an error.

        The body is checked, not used: the stream is the run in the URL, from its start or
        after ``Last-Event-ID``, as for GET. In AG-UI, ``threadId`` names the frontend's
        conversation and ``runId`` the new run it asks an agent to make of it; ``HttpAgent``
        makes both up (a random UUID each, the ``runId`` a new one for every request) unless
        the app sets them, and CopilotKit gives each chat its own thread id. The bridge
        starts no run and gives the frontend nothing to run: it serves a run that exists,
        whose events say threadId = runId = the Runstream run id. Refusing a body whose ids
        name something else would refuse every frontend that did not set its thread id to
        the run id, so they are ignored, as are ``messages``, ``state``, ``tools`` and the
        rest (what a user types into the chat does not reach the run; decisions are
        answered through Runstream, ``runstream answer``).
        """
        try:
            async with asyncio.timeout(self._head_timeout):
                body = await read_body(request.headers, reader, writer, self._max_body)
        except TimeoutError:
            message = f"no complete request body within {self._head_timeout:g} s"
            await respond(writer, 408, "Request Timeout", message, cors)
            await linger(reader, writer)
            return False
        except HttpError as exc:
            await respond(writer, exc.status, exc.reason, str(exc), cors)
            await linger(reader, writer)
            return False
        if not body.strip():
            return True  # No input: a GET's request, by POST.
        try:
            problems = run_input_problems(json.loads(body))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            problems = [f"it is not JSON ({exc})"]
        if problems:
            message = "the body is not AG-UI's RunAgentInput: " + "; ".join(problems)
            await respond(writer, 400, "Bad Request", message, cors)
            return False
        return True

    async def _stream(
        self,
        messages: AsyncIterator[bytes],
        first: asyncio.Future[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Sends the watch's messages, ``first`` first, until the run ends or the client
        leaves; then ends the watch (at once, also when a send stalled)."""
        hangup = asyncio.ensure_future(until_hangup(reader))
        chunks = with_keepalive(messages, self._keepalive, hangup, first)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await self._send(writer, chunk)
        finally:
            hangup.cancel()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Writes ``data`` of a stream; raises _SendStalled when the client has not made
        room for it within the send timeout."""
        writer.write(data)
        try:
            async with asyncio.timeout(self._send_timeout or None):
                await writer.drain()
        except TimeoutError:
            raise _SendStalled from None


_MAX_C_INT = 2**31 - 1


def _bound_unacknowledged(writer: asyncio.StreamWriter, seconds: float) -> None:
    """Has the kernel end the connection once what it sent waited ``seconds`` for the
    client's acknowledgement (``TCP_USER_TIMEOUT``, Linux): a client gone without a word (a
    laptop closed, its network lost) acknowledges nothing, and on a quiet run, which sends
    only keepalives, no send ever waits on it long enough to stall; the kernel would keep
    retrying for about 15 minutes. The stream then sees the connection fail, and its place
    and watch are given back within ``keepalive`` + ``seconds``. Nothing where the system
    has no such option, and nothing with a send timeout of 0 (never)."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or seconds <= 0 or sock is None:
        return
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # The option is milliseconds in a C int: past it (`--send-timeout 30d`) setsockopt
        # raised TypeError, and every connection ended unanswered with a traceback.
        milliseconds = min(max(1, round(seconds * 1000)), _MAX_C_INT)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, milliseconds)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Ends a connection whose client stopped reading, now: what the socket still holds is
    dropped and the client gets a reset (SO_LINGER 0), where a close would leave the kernel
    offering it to a client that takes none of it for minutes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _counted(n: int, noun: str) -> str:
    """``"1 stream is"``, ``"3 streams are"``."""
    return f"{n} {noun} is" if n == 1 else f"{n} {noun}s are"
