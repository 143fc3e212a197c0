"""A small Server-Sent Events client over a real TCP connection, for the AG-UI bridge tests.

It speaks HTTP/1.1 the way a browser's EventSource does: one GET, ``Accept:
text/event-stream``, ``Last-Event-ID`` when resuming, then ``id:``/``data:`` fields until a
blank line ends each message (or, with a body, as AG-UI's HttpAgent does: a POST). Comments
(keepalives) and ``retry:`` are read and set aside.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    id: str | None
    data: str


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str = ""


@dataclass
class SseClient:
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    comments: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    source: str | None = None
    """The loopback address it connects from (127.0.0.2 ...), as another client would."""

    async def open(
        self,
        path: str,
        *,
        last_event_id: str | None = None,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """Sends the request (with ``body`` and its Content-Length, if given); returns the
        status and headers (and the body, unless SSE)."""
        local = (self.source, 0) if self.source is not None else None
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=local
        )
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Accept: text/event-stream",
            "Cache-Control: no-cache",
        ]
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        response_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:] if line)
        }
        response = Response(status, response_headers)
        if "text/event-stream" not in response_headers.get("content-type", ""):
            length = int(response_headers.get("content-length", "0"))
            response.body = (await self.reader.readexactly(length)).decode()
            await self.close()
        return response

    async def next(self) -> Message | None:
        """The next message; None when the server ended the stream."""
        assert self.reader is not None
        event_id: str | None = None
        data: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    if event_id is not None:
                        self.last_event_id = event_id
                    return Message(event_id, "\n".join(data))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
            self.writer = None


async def read_all(
    port: int, path: str, last_event_id: str | None = None, **request: Any
) -> list[Message]:
    """Every message of one stream, until the server ends it (``request``: more of
    ``SseClient.open``'s arguments)."""
    client = SseClient(port)
    response = await client.open(path, last_event_id=last_event_id, **request)
    assert response.status == 200, response
    messages = []
    try:
        while (message := await client.next()) is not None:
            messages.append(message)
    finally:
        await client.close()
    return messages
