"""The AG-UI bridge's HTTP/1.1 on asyncio streams: requests, answers, the browsers served.

What the bridge needs of HTTP and no more: one request per connection (every answer says
``Connection: close``), a head of at most :data:`MAX_HEAD` bytes, a body by
``Content-Length`` or chunked, read only as far as a POST's needs, ``100 Continue`` for a
client that waits for it, and the manners of closing a connection whose body was left unread
(:func:`linger`). A request it refuses raises :class:`HttpError`, which names the status.

Why the standard library's asyncio streams rather than a web framework: the bridge has one
streaming route and reads no more of a request body than whether it is a JSON object, and it
runs on the same event loop as the gRPC client it reads from; a framework (aiohttp, or
starlette with uvicorn) would add a server stack and its dependencies to the ``agui`` extra
for no feature the bridge uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from runstream._target import (
    allowed_origin,
    checked_allowed_host,
    host_header_name,
    is_ip_address,
)

MAX_HEAD = 16 * 1024
"""The most bytes of a request head, and what a connection's reader buffers."""
_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,8}\Z")
# How long an answer to a body left unread waits for the client to stop sending it.
_LINGER = 2.0


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


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class HeadOnly:
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


async def read_request(reader: asyncio.StreamReader) -> Request:
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
    return Request(parts[0].upper(), urlsplit(parts[1]).path, headers)


async def read_body(
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


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After answering a request whose body was left unread: ends the answer, then reads and
    drops what the client still sends, for a while. Closing a connection with unread bytes
    makes the kernel reset it, and a client still sending its body may lose the answer
    before reading it (RFC 9112, 9.6)."""
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(_LINGER):
            while await reader.read(MAX_HEAD):
                pass


async def until_hangup(reader: asyncio.StreamReader) -> None:
    """Returns when the client hangs up. It has nothing to send after its request; whatever
    it sends anyway is dropped a chunk at a time (``reader.read()`` would keep all of it in
    memory until the connection ends)."""
    while await reader.read(MAX_HEAD):
        pass


class BrowserRules:
    """Which browsers' requests the bridge serves: a request's ``Host`` must be ``localhost``, an
    IP address or one of ``allowed_hosts`` (against DNS rebinding), and the origins given may
    read the streams (CORS). Each origin and name is checked as given (ValueError)."""

    def __init__(self, origins: Sequence[str], allowed_hosts: Sequence[str]) -> None:
        self._origins = tuple(allowed_origin(origin) for origin in origins)
        self._allowed_hosts = tuple(checked_allowed_host(name) for name in allowed_hosts)

    def host_allowed(self, host: str) -> bool:
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

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None or not self._origins:
            return {}
        if "*" in self._origins:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self._origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}


async def respond(
    writer: Writer,
    status: int,
    reason: str,
    body: str,
    headers: dict[str, str],
    *,
    preflight: bool = False,
) -> None:
    """Answers a request with a short text body (none for 204) and closes; a preflight's
    answer names what a browser may send."""
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
    writer.write(response_head(status, reason, extra))
    writer.write(payload)
    await writer.drain()


def response_head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def peer_address(writer: asyncio.StreamWriter) -> str:
    """The client's address (its IP, without the port)."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
