"""Interceptors that rewrite a method's handler once, not on every call.

grpc.aio asks every interceptor for the handler of every call. An interceptor that wraps the
handler anew each time (as the grpc-interceptor package's ``AsyncServerInterceptor`` does,
with closures per call and one more async generator that each response of a stream passes
through) costs memory for as long as a call lives, and a watch stream can live for hours:
about a KiB per layer and stream, and a little time per message. A :class:`HandlerRewriter` builds
the rewritten handler once per method and hands out that same handler on every call, so a
layer that only acts when a call starts (limits, request decoding) adds no frame to the
stream at all, and one that must see every response (errors, telemetry) adds one.

The rewriters run as one interceptor, a :class:`RewriterChain`: grpc.aio runs each interceptor
of its list on every call, each in a coroutine of its own awaiting the next one's, which cost a
unary call N coroutines and partials; the chain asks for the handler once, runs the per-call
checks of the rewriters that have one (:meth:`HandlerRewriter.on_call`), and hands out the
handler all of them rewrote, built once per method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

Behavior = Callable[..., Any]
Handler = Any  # grpc.RpcMethodHandler: typed loosely by grpc's own stubs

_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def streams_responses(kind: str) -> bool:
    """Whether a behavior of that kind (a handler field's name) yields its responses."""
    return kind.endswith("_stream")


def replace_behavior(handler: Handler, wrap: Callable[[str, Behavior], Behavior]) -> Handler:
    """The handler with its one behavior replaced by ``wrap(kind, behavior)``."""
    for kind in _KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: wrap(kind, behavior)})
    return handler


class HandlerRewriter:
    """Rewrites each method's handler once (see the module docstring); runs in a
    :class:`RewriterChain`."""

    def rewrite(self, method: str, handler: Handler) -> Handler:
        """The handler to serve `method` with, given the one below this rewriter."""
        raise NotImplementedError

    def on_call(self, details: grpc.HandlerCallDetails, handler: Handler | None) -> None:
        """Called as each call starts, once its method's handler is found (None: no such
        method), before it runs; for work a rewritten handler cannot do (most do none)."""

    def close(self) -> None:
        """Called once the server stopped: ends background work of the rewriter's own."""


class RewriterChain(aio.ServerInterceptor):  # type: ignore[type-arg]
    """The rewriters as one interceptor, the first outermost (see the module docstring).

    The rewritten handler is kept for as long as the handler below the chain stays the same
    object (the method table's do: :mod:`~runstream_server.api.methods`).
    """

    def __init__(self, rewriters: Sequence[HandlerRewriter]) -> None:
        self._rewriters = tuple(rewriters)
        self._on_call = tuple(
            r for r in rewriters if type(r).on_call is not HandlerRewriter.on_call
        )
        self._rewritten: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        for rewriter in self._on_call:
            rewriter.on_call(handler_call_details, handler)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._rewritten.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        rewritten = handler
        for rewriter in reversed(self._rewriters):
            rewritten = rewriter.rewrite(method, rewritten)
        self._rewritten[method] = (handler, rewritten)
        return rewritten
