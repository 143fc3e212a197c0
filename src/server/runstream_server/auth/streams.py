"""Streams that live no longer than their token is good: until its ``exp``, and until the key
that signed it is taken out of the key files.

A token is checked as its call starts, but a WatchRun, WatchRuns, Report or Interact stream
can outlive both its ``exp`` and the key that signed it. At ``exp`` the stream ends
UNAUTHENTICATED with :data:`~runstream_server.principal.EXPIRED_DURING_STREAM`. An
identity provider that withdraws a key (it leaked, or was rotated out) means to stop what
that key vouched for: when the key files change (auth/followed.py), every open stream's
token is verified again, and the streams of one that no longer verifies end UNAUTHENTICATED
with :data:`~runstream_server.principal.REFUSED_DURING_STREAM` and the reason. Clients
reconnect with a fresh token and resume from their cursor.

Either way a stream is cut only while it waits for its next message, never in the middle of
sending one, so a watcher's cursor is always exact. (WatchRun and WatchRuns write their
messages themselves, so for this layer the whole stream is one wait: a cut may come while
one is being written, and gRPC still sends that one whole, before the status.) A Report
stream, which also waits for its commits, is not cut at all: it ends itself once the commit
under way is acknowledged
(:func:`~runstream_server.principal.end_at_expiry`), so a producer is never left to send
again a batch that was stored.

While streams are open, the key files are looked at once a second even when no new call
comes to make the verifier look: a server whose callers all hold long streams still hears of
a withdrawn key.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import grpc
from grpc import aio

from runstream_server.auth.followed import RECHECK_SECONDS
from runstream_server.auth.tokens import TokenError, TokenVerifier
from runstream_server.background import spawn_logged
from runstream_server.principal import (
    EXPIRED_DURING_STREAM,
    REFUSED_DURING_STREAM,
    ExpiryHook,
    watch_expiry,
)
from runstream_server.rpc.errors import fitted, status_trailer

__all__ = ["OpenStreams"]

Context = aio.ServicerContext[Any, Any]

_SLICE_SECONDS = 0.02
"""How long verifying the open streams' tokens again holds the event loop at a time."""


class OpenStreams:
    """The tokens of the open streams, each verified again when the key files change."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        self._held: dict[object, tuple[str, Callable[[str], None]]] = {}
        self._looking: asyncio.TimerHandle | None = None
        self._verifying: set[asyncio.Task[None]] = set()
        verifier.on_keys_changed(self._verify_again)

    async def serve(
        self, responses: AsyncIterator[Any], token: str, expires_at: float, context: Context
    ) -> AsyncIterator[Any]:
        """The stream's responses while `token` is good, then UNAUTHENTICATED (see module)."""
        task = asyncio.current_task()
        assert task is not None
        waiting = False
        cut = False
        ended: str | None = None  # the status detail, once the token ended
        hook = ExpiryHook()
        watch_expiry(hook)  # before the handler runs: it may ask to end the stream itself

        def end(detail: str) -> None:
            nonlocal cut, ended
            if ended is not None:  # the first cause is the one told
                return
            ended = detail
            if hook.stop is not None:  # the handler ends the stream once its work is answered
                hook.stop(detail)
                return
            cut = True
            if waiting:  # idle: cut it now; otherwise it ends before its next wait
                task.cancel()

        def refused(reason: str) -> None:
            end(fitted(f"{REFUSED_DURING_STREAM} ({reason}); reconnect with a fresh token"))

        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, expires_at - time.time()), end, EXPIRED_DURING_STREAM)
        handle = self._hold(token, refused)
        # Verified as the call came in, but the keys may have changed since, before it was
        # held (a client can hold its request back as long as it likes): once more now.
        try:
            self._verifier.verify(token)  # a cache lookup unless the keys changed
        except TokenError as exc:
            refused(exc.reason)
        try:
            while not cut:
                waiting = True
                try:
                    item = await anext(responses)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not cut:
                        raise
                    task.uncancel()
                    break
                finally:
                    waiting = False
                yield item
        finally:
            timer.cancel()
            del self._held[handle]
            if hasattr(responses, "aclose"):
                await responses.aclose()
        assert ended is not None
        await end_for_its_token(context, ended)

    def close(self) -> None:
        """Stops looking at the files and verifying tokens (the server stopped)."""
        if self._looking is not None:
            self._looking.cancel()
            self._looking = None
        for task in self._verifying:
            task.cancel()

    def _hold(self, token: str, refused: Callable[[str], None]) -> object:
        """Calls `refused` with the reason should `token` stop verifying; the handle to
        delete once the stream is over."""
        handle = object()
        self._held[handle] = (token, refused)
        if self._looking is None:
            self._looking = asyncio.get_running_loop().call_later(RECHECK_SECONDS, self._look)
        return handle

    def _look(self) -> None:
        """Looks at the key files while streams are open (any change calls
        :meth:`_verify_again`)."""
        self._looking = None
        self._verifier.recheck_files()
        if self._held:
            self._looking = asyncio.get_running_loop().call_later(RECHECK_SECONDS, self._look)

    def _verify_again(self) -> None:
        """Every held token verified with the keys just taken, in a task of its own that
        lets the loop run between slices (10,000 RS256 tokens take over a second): ends the
        streams of those that fail."""
        if not self._held:
            return
        streams_of: dict[str, list[Callable[[str], None]]] = {}
        for token, refused in self._held.values():
            streams_of.setdefault(token, []).append(refused)
        task = spawn_logged(
            self._verify_each(streams_of),
            "runstream-token-reverify",
            context=contextvars.Context(),  # not the call's that saw the change
        )
        self._verifying.add(task)
        task.add_done_callback(self._verifying.discard)

    async def _verify_each(self, streams_of: dict[str, list[Callable[[str], None]]]) -> None:
        slice_started = time.monotonic()
        for token, stream_ends in streams_of.items():
            if time.monotonic() - slice_started > _SLICE_SECONDS:
                await asyncio.sleep(0)
                slice_started = time.monotonic()
            try:
                self._verifier.verify(token)
            except TokenError as exc:
                for refused in stream_ends:
                    refused(exc.reason)


async def end_for_its_token(context: aio.ServicerContext[Any, Any], detail: str) -> NoReturn:
    """Ends a stream UNAUTHENTICATED because its token ended during it (`detail`:
    :data:`EXPIRED_DURING_STREAM`, or :data:`REFUSED_DURING_STREAM` and why), with the
    ErrorInfo reason ``TOKEN_EXPIRED`` or ``TOKEN_INVALID``."""
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "TOKEN_EXPIRED" if detail == EXPIRED_DURING_STREAM else "TOKEN_INVALID"
    await context.abort(code, detail, trailing_metadata=status_trailer(code, detail, reason))
