"""The server interceptor that authenticates every call and authorizes it by role.

Installed only when auth is configured (with auth off it is not in the chain at all, so it
costs nothing). For each call it reads ``authorization: Bearer <jwt>``, verifies the token,
checks the method's role (:mod:`~runstream_server.auth.policy`) and binds the
:class:`~runstream_server.principal.Principal` for the domain. Refusals are
UNAUTHENTICATED naming the failed check, or PERMISSION_DENIED naming the role needed.

A refused call's request is never decoded. grpc.aio decodes a unary request with the
handler's deserializer before any behavior runs, and decoding and checking a 4 MiB request
costs a tenth of a second of CPU or more: were the token checked in the behavior, anyone who
reaches the port could keep a core busy with a few large calls a second and no credentials.
So the verdict is reached in ``intercept_service``, from the call's metadata, before grpc
receives the request; grpc runs that, the deserializer and the behavior in the call's one
task, so the verdict travels in a context variable. The deserializer of a refused call
returns None without parsing the bytes, and its behavior logs the refusal and aborts. The
handler that does this is still built once per method: only the verdict is per call.

Streams live no longer than their token: until its ``exp``, and until the key that signed it
is taken out of the key files (:mod:`~runstream_server.auth.streams`).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from grpc import aio

from runstream_server.auth import policy
from runstream_server.auth.streams import OpenStreams
from runstream_server.auth.tokens import TokenError, TokenVerifier
from runstream_server.principal import (
    EXPIRED_DURING_STREAM,
    REFUSED_DURING_STREAM,
    Principal,
    bind,
    current,
)
from runstream_server.rpc.errors import RejectionLog, fitted, status_trailer
from runstream_server.rpc.handlers import (
    Behavior,
    Handler,
    HandlerRewriter,
    replace_behavior,
    streams_responses,
)

__all__ = ["EXPIRED_DURING_STREAM", "REFUSED_DURING_STREAM", "AuthInterceptor"]


Context = aio.ServicerContext[Any, Any]
Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a call may not go on: the status it ends with, the detail the caller reads, and
    the verified caller refused, when there is one (for the log)."""

    code: grpc.StatusCode
    reason: str
    caller: Principal | None = None
    error_reason: str = "TOKEN_INVALID"
    """The ErrorInfo reason, for programs."""


_UNCHECKED = _Refusal(grpc.StatusCode.UNAUTHENTICATED, "the call's credentials were not checked")
"""A call that reaches a behavior no verdict was reached for is refused: should grpc ever run
handlers outside the task that ran ``intercept_service``, every call fails closed."""

_refusal: contextvars.ContextVar[_Refusal | None] = contextvars.ContextVar(
    "runstream_auth_refusal", default=_UNCHECKED
)
"""The call's verdict: None once it is admitted (its principal bound), else its refusal."""

_admitted_token: contextvars.ContextVar[str] = contextvars.ContextVar("runstream_auth_token")
"""The token an admitted call was verified with (its stream holds it: auth/streams.py)."""


class AuthInterceptor(HandlerRewriter):
    """Verifies the bearer token and the method's role on every call, before its request is
    decoded (see module); the handler that enforces the verdict is built once per method."""

    def __init__(self, verifier: TokenVerifier, rejections: RejectionLog | None = None) -> None:
        super().__init__()
        self._verifier = verifier
        self._streams = OpenStreams(verifier)
        self._rejections = rejections or RejectionLog()
        """Refusals are logged with the server's other rejections: anyone can send bad tokens,
        and each must not be a line of its own."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms the configured keys accept now."""
        return self._verifier.algorithms

    def authenticate(self, metadata: Metadata | None) -> tuple[str, Principal]:
        """The caller's token and principal; raises TokenError naming what is wrong."""
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            raise TokenError(
                "missing authorization metadata; send 'authorization: Bearer <jwt>'",
                "TOKEN_MISSING",
            )
        if len(values) > 1:
            raise TokenError("malformed authorization header: sent more than once")
        value = values[0]
        if isinstance(value, bytes):
            raise TokenError("malformed authorization header: expected 'Bearer <jwt>'")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("malformed authorization header: expected 'Bearer <jwt>'")
        token = token.strip()
        return token, self._verifier.verify(token)

    def admit(self, method: str, metadata: Metadata | None) -> _Refusal | None:
        """None when the caller may call `method` (its principal then bound for the call),
        else why not."""
        try:
            token, principal = self.authenticate(metadata)
        except TokenError as exc:
            return _Refusal(grpc.StatusCode.UNAUTHENTICATED, exc.reason, error_reason=exc.code)
        # Bound before the role check, so every line logged about a refused call names who
        # was refused (the handler never runs: the call ends in the behavior below).
        bind(principal)
        roles = policy.allowed(method)
        if not any(principal.has(role) for role in roles):
            name = method.rsplit("/", 1)[-1]
            needed = " or ".join(repr(role.value) for role in roles)
            reason = (
                f"{name} needs the {needed} role; the token grants "
                f"{', '.join(sorted(r.value for r in principal.roles)) or 'no roles'}"
            )
            return _Refusal(grpc.StatusCode.PERMISSION_DENIED, reason, principal, "ROLE_MISSING")
        _admitted_token.set(token)
        return None

    def close(self) -> None:
        self._streams.close()

    async def refuse(self, method: str, refusal: _Refusal, context: Context) -> NoReturn:
        """Ends a refused call, logged with the server's other rejections. Logged here, not
        as the verdict is reached, so that the line carries the call's request context."""
        # The peer most of all for a bad token: there is no principal to name.
        peer = context.peer()
        self._rejections.note(method, refusal.code.name, refusal.reason, refusal.caller, peer)
        message = fitted(refusal.reason)
        trailers = status_trailer(refusal.code, message, refusal.error_reason)
        await context.abort(refusal.code, message, trailing_metadata=trailers)

    def on_call(self, details: grpc.HandlerCallDetails, handler: Handler | None) -> None:
        method = details.method
        if handler is not None and not policy.is_public(method):
            _refusal.set(self.admit(method, details.invocation_metadata))

    def rewrite(self, method: str, handler: Handler) -> Handler:
        if policy.is_public(method):
            return handler
        if handler.request_deserializer is not None:
            handler = handler._replace(
                request_deserializer=_admitted_only(handler.request_deserializer)
            )

        def wrap(kind: str, behavior: Behavior) -> Behavior:
            if streams_responses(kind):

                async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                    refusal = _refusal.get()
                    if refusal is not None:
                        await self.refuse(method, refusal, context)
                    responses = behavior(request, context)
                    if not hasattr(responses, "__aiter__"):  # writes with context.write()
                        responses = await responses
                        if responses is None:
                            return
                    principal = current()
                    if principal is None or principal.expires_at is None:
                        async for response in responses:
                            yield response
                        return
                    token, expires_at = _admitted_token.get(), principal.expires_at
                    async for response in self._streams.serve(
                        responses, token, expires_at, context
                    ):
                        yield response

                return streaming

            async def unary(request: Any, context: Context) -> Any:
                refusal = _refusal.get()
                if refusal is not None:
                    await self.refuse(method, refusal, context)
                return await behavior(request, context)

            return unary

        return replace_behavior(handler, wrap)


def _admitted_only(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize` for admitted calls; a refused call's bytes are not even parsed (None)."""

    def decode(data: bytes) -> Any:
        if _refusal.get() is not None:
            return None
        return deserialize(data)

    return decode
