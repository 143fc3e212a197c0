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
``200`` is sent only once the server took the watch, never a ``200`` followed by nothing.

``OPTIONS`` answers CORS preflights, ``GET /healthz`` answers ``ok``, ``HEAD`` what ``GET``
would without its body. Other paths get 404, other methods 405, a POST body that is not a
JSON object (or whose RunAgentInput fields hold the wrong kind of value) 400, one over
``max_body`` bytes 413, a malformed ``Last-Event-ID``, one past the run's last event or one
the bridge never sent (``7:5`` when event 7 stood for three AG-UI events) 400, an unknown run
404, and a run whose early events the server's retention purged 410 (its AG-UI stream cannot
be told from the start again; EventSource stops on it), unless the client already has the
ended run's last event (204).

Why the standard library's asyncio streams rather than a web framework: the bridge has one
streaming route and reads no more of a request body than whether it is a JSON object, and it
runs on the same event loop as the gRPC client it reads from; a framework (aiohttp, or
starlette with uvicorn) would add a server stack and its dependencies to the ``agui`` extra
for no feature the bridge uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import runstream
from runstream._target import allowed_host_name, host_header_name, is_ip_address
from runstream.integrations.agui import AguiTranslator, encode_sse, run_input_problems

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_MAX_STREAMS_PER_ADDRESS",
    "AguiBridge",
    "Cursor",
]

_log = logging.getLogger("runstream.agui")

_MAX_HEAD = 16 * 1024
# A POST's body: AG-UI's RunAgentInput, which carries the frontend's whole conversation.
DEFAULT_MAX_BODY = 1024 * 1024
# Streams at once: well below the watch streams a server allows one identity (200 by
# default), which the bridge's token shares with whatever else uses it (a dashboard).
DEFAULT_MAX_STREAMS = 100
DEFAULT_MAX_STREAMS_PER_ADDRESS = 20
# What a request refused for the bridge's own limits is told to wait: a stream may end by then.
_FULL_RETRY_AFTER = 5
_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,8}\Z")
# How long an answer to a body left unread waits for the client to stop sending it.
_LINGER = 2.0
_ROUTE = re.compile(r"^/runs/(?P<run_id>[^/]+)/events/?\Z")
_EVENT_ID = re.compile(r"^(?P<seq>\d{1,18})(?::(?P<index>[1-9]\d{0,5}))?\Z")
# How long EventSource waits before reconnecting after a dropped stream.
_RETRY_MS = 1000


class HttpError(Exception):
    """A request the bridge answers with an HTTP error status."""

    def __init__(
        self, status: int, reason: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after

    def headers(self, cors: dict[str, str]) -> dict[str, str]:
        """The answer's headers: CORS's, and ``Retry-After`` when it names a wait."""
        if self.retry_after is None:
            return cors
        return {**cors, "Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a client is in a run's AG-UI stream: every event of the Runstream events up to
    ``seq - 1`` seen, and of event ``seq`` the first ``index`` (all of them when None)."""

    seq: int = 0
    index: int | None = None

    def __str__(self) -> str:
        return str(self.seq) if self.index is None else f"{self.seq}:{self.index}"

    @classmethod
    def parse(cls, last_event_id: str | None) -> Cursor:
        """The cursor after the SSE message whose id is ``last_event_id``."""
        if last_event_id is None or not last_event_id.strip():
            return cls()
        match = _EVENT_ID.match(last_event_id.strip())
        if match is None:
            raise HttpError(
                400, "Bad Request", f"Last-Event-ID {last_event_id[:40]!r} is not an id it sent"
            )
        index = match["index"]
        return cls(int(match["seq"]), int(index) if index is not None else None)

    def wants(self, seq: int, index: int) -> bool:
        """Whether the ``index``-th AG-UI event (0-based) of Runstream event ``seq`` is new."""
        if seq != self.seq:
            return seq > self.seq
        return self.index is not None and index >= self.index


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]


class AguiBridge:
    """Serves runs of the Runstream server behind ``client`` as AG-UI SSE streams.

    Args:
        client: A connected Runstream client (``runstream.connect(target)``).
        host: Where to listen.
        port: The port; 0 picks a free one (see ``port`` after ``start()``).
        origins: Browser origins allowed to read the streams (CORS), e.g.
            ``["http://localhost:3000"]``; ``["*"]`` allows any. None: same-origin only.
        keepalive: Seconds of silence after which a stream gets an SSE comment, so proxies
            and load balancers do not cut it.
        head_timeout: Seconds a client has to send its request head, and then a POST its
            body; then 408.
        max_body: The most bytes of a POST's body it reads; a longer one gets 413.
        allowed_hosts: Names a request's ``Host`` may give besides ``localhost`` and IP
            addresses (the name a proxy in front forwards, e.g. ``agui.example.com``; one
            starting with a dot, ``.example.com``, allows that domain and its subdomains;
            ``"*"`` any). Others get 403, against DNS rebinding.
        max_streams: The most streams it serves at once (a POST counts while its body is
            read); one more gets 503 with ``Retry-After``. 0: no limit.
        max_streams_per_address: The most of them one client address may hold; one more
            gets 503 with ``Retry-After``. Behind a proxy, every client has the proxy's
            address: give it as much as ``max_streams`` there (or 0: no limit).
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
    ) -> None:
        self._client = client
        self._max_streams = max_streams
        self._max_per_address = max_streams_per_address
        self._streams = 0
        self._streams_of: Counter[str] = Counter()
        self._allowed_hosts = tuple(allowed_host_name(name) for name in allowed_hosts)
        self._head_timeout = head_timeout
        self._max_body = max_body
        self._host = host
        self._port = port
        self._origins = tuple(origins)
        self._keepalive = keepalive
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port it listens on (known after ``start()``)."""
        return self._port

    def url(self, run_id: str = "RUN_ID") -> str:
        """The stream's URL for ``run_id``, on loopback when the bridge listens on every
        address."""
        return f"http://{_url_host(self._host)}:{self._port}/runs/{run_id}/events"

    async def start(self) -> None:
        """Binds and starts accepting connections (OSError when the port is taken)."""
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=_MAX_HEAD
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
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._head_timeout):
                request = await _read_request(reader)
        except HttpError as exc:
            await self._respond(writer, exc.status, exc.reason, str(exc), {})
            return
        except TimeoutError:
            message = f"no complete request head within {self._head_timeout:g} s"
            await self._respond(writer, 408, "Request Timeout", message, {})
            return
        host = request.headers.get("host")
        if host is not None and not self._host_allowed(host):
            message = (
                f"Host {host!r} is not a name the bridge answers to (localhost, an IP address "
                "or an allowed host: runstream agui --allowed-host NAME), against DNS rebinding"
            )
            await self._respond(writer, 403, "Forbidden", message, {})
            return
        cors = self._cors_headers(request.headers.get("origin"))
        if request.method == "OPTIONS":
            await self._respond(writer, 204, "No Content", "", cors, preflight=True)
            return
        if request.method not in ("GET", "HEAD", "POST"):
            allow = {**cors, "Allow": "GET, HEAD, POST, OPTIONS"}
            message = "only GET, HEAD and POST (and OPTIONS for CORS preflights)"
            await self._respond(writer, 405, "Method Not Allowed", message, allow)
            return
        if request.method != "POST" and _ROUTE.match(request.path) is None:
            await self._answer(request, reader, writer, cors)  # no stream, no body: no place
            return
        address = _peer_address(writer)
        try:
            self._take_place(address)
        except HttpError as exc:
            await self._respond(writer, exc.status, exc.reason, str(exc), exc.headers(cors))
            if request.method == "POST":
                await _linger(reader, writer)  # its body was left unread
            return
        try:
            await self._answer(request, reader, writer, cors)
        finally:
            self._leave_place(address)

    def _take_place(self, address: str) -> None:
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

    def _leave_place(self, address: str) -> None:
        self._streams -= 1
        self._streams_of[address] -= 1
        if not self._streams_of[address]:
            del self._streams_of[address]

    async def _answer(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        cors: dict[str, str],
    ) -> None:
        """Answers a request that passed the Host, method and place checks."""
        if request.method == "POST" and not await self._run_input(request, reader, writer, cors):
            return
        # HEAD: what GET answers, without its body.
        out: _Writer = _HeadOnly(writer) if request.method == "HEAD" else writer
        if request.path == "/healthz":
            await self._respond(out, 200, "OK", "ok", cors)
            return
        route = _ROUTE.match(request.path)
        if route is None:
            await self._respond(
                out, 404, "Not Found", "no such path; try /runs/RUN_ID/events", cors
            )
            return
        run_id = unquote(route["run_id"])
        watch: tuple[AsyncGenerator[bytes, None], asyncio.Future[bytes]] | None = None
        try:
            run, cursor = await self._resume_point(run_id, request.headers.get("last-event-id"))
            if not isinstance(out, _HeadOnly) and not _seen_to_the_end(run, cursor):
                watch = await self._open_watch(run_id, cursor)
        except HttpError as exc:
            await self._respond(out, exc.status, exc.reason, str(exc), exc.headers(cors))
            return
        except runstream.NotFoundError:
            await self._respond(out, 404, "Not Found", f"no run {run_id!r}", cors)
            return
        except runstream.InvalidArgumentError as exc:
            await self._respond(out, 400, "Bad Request", exc.message, cors)
            return
        except runstream.UnavailableError as exc:
            # EventSource gives up on a 503; an AG-UI client may retry after Retry-After.
            message = f"the Runstream server is out of reach: {exc.message}"
            await self._respond(
                out, 503, "Service Unavailable", message, {**cors, "Retry-After": "1"}
            )
            return
        except runstream.TokenProviderError as exc:
            # --token-file unreadable, and the last token expired.
            message = f"the bridge has no token for the Runstream server: {exc.message}"
            _log.warning("%s", message)
            await self._respond(out, 502, "Bad Gateway", message, cors)
            return
        except (runstream.UnauthenticatedError, runstream.PermissionDeniedError) as exc:
            # The bridge's own credentials: the server refused them, not the browser's.
            message = f"the Runstream server refused the bridge: {exc.message}"
            await self._respond(out, 502, "Bad Gateway", message, cors)
            return
        if _seen_to_the_end(run, cursor):
            # Everything was seen and nothing more will come: 204 stops EventSource.
            await self._respond(out, 204, "No Content", "", cors)
            return
        try:
            out.write(
                _head(
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
            )
            if watch is None:  # HEAD
                await out.drain()
                return
            writer.write(f"retry: {_RETRY_MS}\n\n".encode())
            await writer.drain()
        except BaseException:
            if watch is not None:
                await _abandon(*watch)
            raise
        await self._stream(*watch, reader, writer)

    async def _run_input(
        self,
        request: _Request,
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
                body = await _read_body(request.headers, reader, writer, self._max_body)
        except TimeoutError:
            message = f"no complete request body within {self._head_timeout:g} s"
            await self._respond(writer, 408, "Request Timeout", message, cors)
            await _linger(reader, writer)
            return False
        except HttpError as exc:
            await self._respond(writer, exc.status, exc.reason, str(exc), cors)
            await _linger(reader, writer)
            return False
        if not body.strip():
            return True  # No input: a GET's request, by POST.
        try:
            problems = run_input_problems(json.loads(body))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            problems = [f"it is not JSON ({exc})"]
        if problems:
            message = "the body is not AG-UI's RunAgentInput: " + "; ".join(problems)
            await self._respond(writer, 400, "Bad Request", message, cors)
            return False
        return True

    async def _open_watch(
        self, run_id: str, cursor: Cursor
    ) -> tuple[AsyncGenerator[bytes, None], asyncio.Future[bytes]]:
        """Opens the stream's watch: its messages, and the future of the first of them, once
        the server took the watch (or lost it for a reason other than a limit, after which
        the watch tries again as a stream that had begun would). Raises the 503 to answer
        when the server refused it for a limit: before any byte of a 200, the client can be
        told when to come back, where a 200 followed by nothing left it waiting without a
        word (EventSource gives up on a 503; an AG-UI client may retry after Retry-After).
        """
        taken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_link(link: runstream.WatchLink) -> None:
            if taken.done() or link.state is runstream.LinkState.CONNECTING:
                return
            if link.state is runstream.LinkState.RECONNECTING and isinstance(
                link.error, runstream.ResourceExhaustedError
            ):
                message = f"the Runstream server refused the bridge a watch: {link.error.message}"
                wait = max(1, math.ceil(link.retry_in or 1))  # what its RetryInfo asks
                raise HttpError(503, "Service Unavailable", message, retry_after=wait)  # ends it
            taken.set_result(None)

        messages = self._messages(run_id, cursor, on_link)
        first = asyncio.ensure_future(anext(messages))
        try:
            waiting: set[asyncio.Future[Any]] = {first, taken}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if first.done() and not first.cancelled():
                error = first.exception()
                if error is not None and not isinstance(error, StopAsyncIteration):
                    raise error
        except BaseException:
            await _abandon(messages, first)
            raise
        finally:
            taken.cancel()
        return messages, first

    async def _stream(
        self,
        messages: AsyncIterator[bytes],
        first: asyncio.Future[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Sends the watch's messages, ``first`` first, until the run ends or the client
        leaves."""
        hangup = asyncio.ensure_future(_hangup(reader))
        try:
            async for chunk in _with_keepalive(messages, self._keepalive, hangup, first):
                writer.write(chunk)
                await writer.drain()
        finally:
            hangup.cancel()

    async def _resume_point(
        self, run_id: str, last_event_id: str | None
    ) -> tuple[runstream.Run, Cursor]:
        """The run and where its stream resumes, or the HttpError to answer instead."""
        cursor = Cursor.parse(last_event_id)
        run = await self._client.get_run(run_id)
        # The stream is WatchRun's, which takes a viewer where GetRun also lets a producer
        # read its own runs: ask ListEvents (a viewer's, as WatchRun) for nothing, so that a
        # token that may not watch is a 502 now, not a 200 that EventSource retries for ever.
        await self._client.list_events_page(run_id, page_size=1, after_seq=run.last_seq)
        if cursor.seq > run.last_seq:
            message = f"Last-Event-ID {cursor.seq} is past the run's last event ({run.last_seq})"
            raise HttpError(400, "Bad Request", message)
        if _seen_to_the_end(run, cursor):
            return run, cursor  # 204, purged or not: the client needs none of the events
        if run.purged_seq > 0:
            message = (
                f"the Runstream server's retention purged events 1-{run.purged_seq} of run "
                f"{run_id!r}; its AG-UI stream starts at the first"
            )
            raise HttpError(410, "Gone", message)
        if not await self._sent(run_id, cursor):
            message = f"Last-Event-ID {cursor} is not an id it sent for this run"
            raise HttpError(400, "Bad Request", message)
        return run, cursor

    async def _sent(self, run_id: str, cursor: Cursor) -> bool:
        """Whether the bridge ever sent an SSE message with ``cursor``'s id: ``seq:i`` only
        if event ``seq`` stands for more than ``i`` AG-UI events, which takes replaying the
        run's events up to it, as a stream does (``seq`` alone always passes). Resuming
        after an id never sent would skip the rest of event ``seq`` silently, and on a
        finished run answer an empty stream forever instead of 204."""
        if cursor.index is None:
            return True
        translator = AguiTranslator(run_id)
        async with contextlib.aclosing(self._client.list_events(run_id)) as events:
            async for event in events:
                translated = translator.translate(event)
                if event.seq >= cursor.seq:
                    return event.seq == cursor.seq and cursor.index < len(translated)
        return False

    async def _messages(
        self, run_id: str, cursor: Cursor, on_link: Callable[[runstream.WatchLink], None]
    ) -> AsyncGenerator[bytes, None]:
        translator = AguiTranslator(run_id)
        async with contextlib.aclosing(self._client.watch(run_id, on_link=on_link)) as events:
            async for event in events:
                translated = translator.translate(event)
                last = len(translated) - 1
                chunk = b"".join(
                    encode_sse(item, str(event.seq) if i == last else f"{event.seq}:{i + 1}")
                    for i, item in enumerate(translated)
                    if cursor.wants(event.seq, i)
                )
                if chunk:
                    yield chunk

    def _host_allowed(self, host: str) -> bool:
        name = host_header_name(host)
        if name is None:
            return False
        if name == "localhost" or name.endswith(".localhost") or is_ip_address(name):
            return True
        return any(
            allowed == "*"
            or allowed == name
            or (allowed.startswith(".") and (name == allowed[1:] or name.endswith(allowed)))
            for allowed in self._allowed_hosts
        )

    def _cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or not self._origins:
            return {}
        if "*" in self._origins:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self._origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    async def _respond(
        self,
        writer: _Writer,
        status: int,
        reason: str,
        body: str,
        headers: dict[str, str],
        *,
        preflight: bool = False,
    ) -> None:
        extra = dict(headers)
        if preflight and headers:
            # HttpAgent's POST is preflighted for its Content-Type (application/json), and
            # for the headers an app gives it: Authorization, for the proxy that
            # authenticates the frontend's users in front of the bridge.
            extra["Access-Control-Allow-Methods"] = "GET, HEAD, POST, OPTIONS"
            extra["Access-Control-Allow-Headers"] = (
                "Last-Event-ID, Cache-Control, Accept, Content-Type, Authorization"
            )
            extra["Access-Control-Max-Age"] = "600"
        payload = (body + "\n").encode() if body else b""
        if status != 204:  # a 204 has no content, and says nothing of its length (RFC 9110)
            extra["Content-Type"] = "text/plain; charset=utf-8"
            extra["Content-Length"] = str(len(payload))
        extra["Connection"] = "close"
        writer.write(_head(status, reason, extra))
        writer.write(payload)
        await writer.drain()


async def _abandon(messages: AsyncGenerator[bytes, None], first: asyncio.Future[bytes]) -> None:
    """Closes a stream's watch that no stream will read."""
    first.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await first
    await messages.aclose()


def _counted(n: int, noun: str) -> str:
    """``"1 stream is"``, ``"3 streams are"``."""
    return f"{n} {noun} is" if n == 1 else f"{n} {noun}s are"


def _peer_address(writer: asyncio.StreamWriter) -> str:
    """The client's address (its IP, without the port)."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _url_host(host: str) -> str:
    """``host`` as a URL holds it: a wildcard as loopback, an IPv6 address in brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _seen_to_the_end(run: runstream.Run, cursor: Cursor) -> bool:
    """The run ended and the client has its last event: there is nothing to send."""
    return run.status.is_terminal and cursor.seq == run.last_seq and cursor.index is None


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class _HeadOnly:
    """A HEAD request's writer: the head of what GET answers goes out, its body does not."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._head_written = False

    def write(self, data: bytes) -> None:
        if not self._head_written:
            self._head_written = True
            self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> _Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(431, "Request Header Fields Too Large", "request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "Bad Request", "not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "Bad Request", "malformed header line")
        headers[name.strip().lower()] = value.strip()
    return _Request(parts[0].upper(), urlsplit(parts[1]).path, headers)


async def _read_body(
    headers: dict[str, str],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    limit: int,
) -> bytes:
    """A request's body, by its ``Content-Length`` or chunked (none without either), or the
    HttpError to answer: 413 past ``limit`` bytes, known before reading any of it when the
    length is. A client that waits for ``100 Continue`` gets it once its length is known to
    fit."""
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None and length is not None:
        # A request that could be framed two ways (RFC 9112, 6.3): refused rather than
        # guessed at.
        raise HttpError(400, "Bad Request", "both Content-Length and Transfer-Encoding")
    if coding is not None and coding.lower() != "chunked":
        raise HttpError(501, "Not Implemented", f"Transfer-Encoding {coding[:40]!r}: only chunked")
    size = 0
    if length is not None:
        if not length.isascii() or not length.isdigit():
            raise HttpError(400, "Bad Request", f"Content-Length {length[:40]!r} is not a number")
        if len(length) > 18 or int(length) > limit:
            raise _too_large(length, limit)
        size = int(length)
    elif coding is None:
        return b""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if coding is None:
        return await reader.readexactly(size)
    return await _read_chunked(reader, limit)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    """A chunked body (RFC 9112, 7.1), at most ``limit`` bytes; trailer fields are dropped."""
    body = bytearray()
    while True:
        size_line = await _read_line(reader)
        size_text = size_line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        if _CHUNK_SIZE.match(size_text) is None:
            raise HttpError(400, "Bad Request", f"malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise _too_large(f"at least {len(body) + size}", limit)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "Bad Request", "a chunk longer than its size says")
    while await _read_line(reader):
        pass  # trailer fields, until the empty line that ends the body
    return bytes(body)


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """One CRLF-ended line of a chunked body, without its CRLF."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(400, "Bad Request", "a chunked body's line is too long") from None
    return line[:-2]


def _too_large(length: str, limit: int) -> HttpError:
    message = (
        f"the request body is {length[:40]} bytes; the bridge reads at most {limit} "
        "(runstream agui --max-body)"
    )
    return HttpError(413, "Content Too Large", message)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After answering a request whose body was left unread: ends the answer, then reads and
    drops what the client still sends, for a while. Closing a connection with unread bytes
    makes the kernel reset it, and a client still sending its body may lose the answer
    before reading it (RFC 9112, 9.6)."""
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(_LINGER):
            while await reader.read(_MAX_HEAD):
                pass


async def _hangup(reader: asyncio.StreamReader) -> None:
    """Returns when the client hangs up. It has nothing to send after its request; whatever
    it sends anyway is dropped a chunk at a time (``reader.read()`` would keep all of it in
    memory until the connection ends)."""
    while await reader.read(_MAX_HEAD):
        pass


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _with_keepalive(
    messages: AsyncIterator[bytes],
    keepalive: float,
    hangup: asyncio.Future[None],
    first: asyncio.Future[bytes] | None = None,
) -> AsyncIterator[bytes]:
    """``messages``, with an SSE comment after each ``keepalive`` seconds of silence; ends
    when they end or when the client hangs up (``hangup`` completes). ``first``: the next
    of them, already asked for."""
    iterator = aiter(messages)
    pending = first
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            waiting: set[asyncio.Future[Any]] = {pending, hangup}
            done, _ = await asyncio.wait(
                waiting, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if hangup in done:
                return
            if pending in done:
                try:
                    yield pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
            else:
                yield b": keepalive\n\n"
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
