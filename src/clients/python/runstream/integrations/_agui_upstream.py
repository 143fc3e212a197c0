"""The AG-UI bridge's side toward the Runstream server: where a stream resumes, and its watch.

A stream starts with GetRun, and a ListEvents for nothing that checks the bridge's token may
watch the run (:meth:`Upstream.resume_point`), which also checks the client's
``Last-Event-ID`` against the run: past its last event, an id the bridge never sent, or a run
whose early events retention purged are each the HttpError to answer. Then the run's
WatchRun (:meth:`Upstream.open`), with the bridge's own token: the stream's ``200`` goes out
only once the server took the watch, so that a watch the server refuses for a limit of its
own is a ``503`` with ``Retry-After``, never a ``200`` followed by nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, Callable
from typing import Any

import runstream
from runstream.integrations._agui_http import HttpError
from runstream.integrations._agui_sse import Cursor, SseMessages

Watch = tuple[AsyncGenerator[bytes, None], asyncio.Future[bytes]]
"""A stream's watch: its SSE messages, and the future of the first of them."""


class Upstream:
    """The Runstream server behind ``client``, as the bridge's streams read it."""

    def __init__(self, client: runstream.Client) -> None:
        self._client = client

    async def resume_point(
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
        if seen_to_the_end(run, cursor):
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
        messages = SseMessages(run_id, cursor)
        async with contextlib.aclosing(self._client.list_events(run_id)) as events:
            async for event in events:
                stands_for = messages.count(event)
                if event.seq >= cursor.seq:
                    return event.seq == cursor.seq and cursor.index < stands_for
        return False

    async def open(self, run_id: str, cursor: Cursor) -> Watch:
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
            await abandon(messages, first)
            raise
        finally:
            taken.cancel()
        return messages, first

    async def _messages(
        self, run_id: str, cursor: Cursor, on_link: Callable[[runstream.WatchLink], None]
    ) -> AsyncGenerator[bytes, None]:
        messages = SseMessages(run_id, cursor)
        async with contextlib.aclosing(self._client.watch(run_id, on_link=on_link)) as events:
            async for event in events:
                chunk = messages.encode(event)
                if chunk:
                    yield chunk


async def abandon(messages: AsyncGenerator[bytes, None], first: asyncio.Future[bytes]) -> None:
    """Closes a stream's watch that no stream will read."""
    first.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await first
    await messages.aclose()


def seen_to_the_end(run: runstream.Run, cursor: Cursor) -> bool:
    """The run ended and the client has its last event: there is nothing to send."""
    return run.status.is_terminal and cursor.seq == run.last_seq and cursor.index is None
