"""Interceptors that rewrite a method's handler once, not on every call.

grpc.aio asks every interceptor for the handler of every call. An interceptor that wraps the
handler anew each time (as the grpc-interceptor package's ``AsyncServerInterceptor`` does,
with closures per call and one more async generator that each response of a stream passes
through) costs memory for as long as a call lives, and a watch stream can live for hours:
about a KiB per layer and stream, and a little time per message. A :class:`HandlerRewriter` builds
the rewritten handler once per method and hands out that same handler on every call, so a
layer that only acts when a call starts (limits, request decoding) adds no frame to the
stream at all, and one that must see every response (errors, telemetry) adds one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


class HandlerRewriter(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Rewrites each method's handler once (see the module docstring).

    The rewritten handler is kept for as long as the handler below it stays the same object
    (registered handlers do; an interceptor below that builds one per call gets a rewrite
    per call, as without this class).
    """

    def __init__(self) -> None:
        self._rewritten: dict[str, tuple[Handler, Handler]] = {}

    def rewrite(self, method: str, handler: Handler) -> Handler:
        """The handler to serve `method` with, given the one below this interceptor."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._rewritten.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        rewritten = self.rewrite(method, handler)
        self._rewritten[method] = (handler, rewritten)
        return rewritten
