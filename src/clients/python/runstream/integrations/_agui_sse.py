"""A run's AG-UI stream as Server-Sent Events: Runstream events translated, each message's id.

Each SSE message carries one AG-UI event (:class:`~runstream.integrations.agui.AguiTranslator`
translates, :func:`~runstream.integrations.agui.encode_sse` frames) as ``data:`` and an
``id:`` naming its place in the run: the Runstream seq of the event it came from, ``7``. A
Runstream event that stands for several AG-UI events gives its earlier ones the ids ``7:1``,
``7:2`` ... and its last one ``7``. A :class:`Cursor` is where a client is in that stream,
read from its ``Last-Event-ID``; :class:`SseMessages` sends only what comes after it. A
stream's silences are filled with SSE comments (:func:`with_keepalive`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import runstream
from runstream.integrations._agui_http import HttpError
from runstream.integrations.agui import AguiTranslator, encode_sse

_EVENT_ID = re.compile(r"^(?P<seq>\d{1,18})(?::(?P<index>[1-9]\d{0,5}))?\Z")


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


class SseMessages:
    """The SSE messages of run ``run_id``'s AG-UI stream after ``cursor``, a Runstream event
    at a time, in the order of the run's events (a translation depends on the events before
    it)."""

    def __init__(self, run_id: str, cursor: Cursor) -> None:
        self._translator = AguiTranslator(run_id)
        self._cursor = cursor

    def encode(self, event: runstream.Event) -> bytes:
        """The messages ``event`` stands for that the cursor has not seen (none: b"")."""
        translated = self._translator.translate(event)
        last = len(translated) - 1
        return b"".join(
            encode_sse(item, str(event.seq) if i == last else f"{event.seq}:{i + 1}")
            for i, item in enumerate(translated)
            if self._cursor.wants(event.seq, i)
        )

    def count(self, event: runstream.Event) -> int:
        """How many AG-UI events ``event`` stands for (in place of :meth:`encode`)."""
        return len(self._translator.translate(event))


async def with_keepalive(
    messages: AsyncIterator[bytes],
    keepalive: float,
    hangup: asyncio.Future[None],
    first: asyncio.Future[bytes] | None = None,
) -> AsyncGenerator[bytes, None]:
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
