"""The server interceptor that authenticates every call and authorizes it by role.

Installed only when auth is configured (with auth off it is not in the chain at all, so it
costs nothing). For each call it reads ``authorization: Bearer <jwt>``, verifies the token,
checks the method's role (:mod:`~runstream_server.auth.policy`) and binds the
:class:`~runstream_server.auth.principal.Principal` for the domain. Refusals are
UNAUTHENTICATED naming the failed check, or PERMISSION_DENIED naming the role needed.

Streams live no longer than their token: at ``exp`` a WatchRun, WatchRuns, Report or
Interact stream ends with UNAUTHENTICATED, and the client reconnects with a fresh token and
resumes from its cursor. The stream is cut only while it waits for its next message, never
in the middle of sending one, so a watcher's cursor is always exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from runstream_server.api.errors import RejectionLog
from runstream_server.api.handlers import (
    Behavior,
    Handler,
    HandlerRewriter,
    replace_behavior,
    streams_responses,
)
from runstream_server.auth import policy
from runstream_server.auth.principal import Principal, bind
from runstream_server.auth.tokens import TokenError, TokenVerifier

__all__ = ["EXPIRED_DURING_STREAM", "AuthInterceptor"]


Context = aio.ServicerContext[Any, Any]

EXPIRED_DURING_STREAM = "token expired during the stream; reconnect with a fresh token"
"""The status detail of a stream cut at its token's expiry (clients resume on it)."""


class AuthInterceptor(HandlerRewriter):
    """Verifies the bearer token and the method's role on every call (see module); the
    handler that does it is built once per method."""

    def __init__(self, verifier: TokenVerifier, rejections: RejectionLog | None = None) -> None:
        super().__init__()
        self._verifier = verifier
        self._rejections = rejections or RejectionLog()
        """Refusals are logged with the server's other rejections: anyone can send bad tokens,
        and each must not be a line of its own."""

    def authenticate(self, context: Context) -> Principal:
        """The caller's principal; raises TokenError naming what is wrong."""
        values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
        if not values:
            raise TokenError("missing authorization metadata; send 'authorization: Bearer <jwt>'")
        if len(values) > 1:
            raise TokenError("malformed authorization header: sent more than once")
        value = values[0]
        if isinstance(value, bytes):
            raise TokenError("malformed authorization header: expected 'Bearer <jwt>'")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("malformed authorization header: expected 'Bearer <jwt>'")
        return self._verifier.verify(token.strip())

    async def admit(self, method: str, context: Context) -> Principal:
        """The caller's principal, bound for the call; aborts the call when it may not."""
        try:
            principal = self.authenticate(context)
        except TokenError as exc:
            self._rejections.note(method, "UNAUTHENTICATED", exc.reason)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.reason)
        # Bound before the role check, so every line logged about a refused call names who
        # was refused (the handler never runs: the call ends here).
        bind(principal)
        role = policy.required_role(method)
        if not principal.has(role):
            name = method.rsplit("/", 1)[-1]
            reason = (
                f"{name} needs the {role.value!r} role; the token grants "
                f"{', '.join(sorted(r.value for r in principal.roles)) or 'no roles'}"
            )
            self._rejections.note(method, "PERMISSION_DENIED", reason, principal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        return principal

    def rewrite(self, method: str, handler: Handler) -> Handler:
        if policy.is_public(method):
            return handler

        def wrap(kind: str, behavior: Behavior) -> Behavior:
            if streams_responses(kind):

                async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                    principal = await self.admit(method, context)
                    responses = behavior(request, context)
                    if not hasattr(responses, "__aiter__"):  # writes with context.write()
                        responses = await responses
                        if responses is None:
                            return
                    if principal.expires_at is None:
                        async for response in responses:
                            yield response
                        return
                    async for response in _until_expiry(responses, principal.expires_at, context):
                        yield response

                return streaming

            async def unary(request: Any, context: Context) -> Any:
                await self.admit(method, context)
                return await behavior(request, context)

            return unary

        return replace_behavior(handler, wrap)


async def _until_expiry(
    stream: AsyncIterator[Any], expires_at: float, context: Context
) -> AsyncIterator[Any]:
    """The stream's responses until the token expires, then UNAUTHENTICATED (see module)."""
    task = asyncio.current_task()
    assert task is not None
    waiting = False
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        if waiting:  # idle: cut it now; otherwise it ends before its next wait
            task.cancel()

    timer = asyncio.get_running_loop().call_later(max(0.0, expires_at - time.time()), expire)
    try:
        while not expired:
            waiting = True
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not expired:
                    raise
                task.uncancel()
                break
            finally:
                waiting = False
            yield item
    finally:
        timer.cancel()
        if hasattr(stream, "aclose"):
            await stream.aclose()
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, EXPIRED_DURING_STREAM)
