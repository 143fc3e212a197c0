"""The calls in flight, so a shutdown can wait for them with the server still answering.

``grpc.aio``'s ``Server.stop(grace)`` closes the listener and refuses every new call at once:
a health Check asked during the grace found no server at all (connection refused), and a
load balancer or probe could not tell a draining server from a dead one. So the server first
waits here for the calls that were open when the drain began (up to the grace), while health
answers NOT_SERVING and the stopped domain refuses new work with UNAVAILABLE, then until no
call has arrived for a moment, and only then stops gRPC with what is left of the grace.

That last wait is for a load balancer still sending calls (Envoy, until its health checks
see NOT_SERVING): refused by the domain, such a call is marked as never acted on and Envoy
sends it to another replica; caught by gRPC's own stop instead, it would be answered
CANCELLED, which nobody may safely retry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from grpc import aio

from runstream_server.rpc.handlers import Behavior, Handler, HandlerRewriter, replace_behavior

__all__ = ["CallTracker"]

Context = aio.ServicerContext[Any, Any]


class CallTracker(HandlerRewriter):
    """Keeps the calls in flight. Adds no frame to a call: it notes the call when it starts
    and forgets it when gRPC says it is done. Sits below the ErrorInterceptor, which awaits
    or iterates whatever a behavior returns."""

    def __init__(self) -> None:
        super().__init__()
        self._open: dict[Context, str] = {}  # the call's method
        self._awaited: set[Context] = set()
        self._all_ended = asyncio.Event()
        self._last_start = float("-inf")  # time.monotonic() of the latest call's start

    def rewrite(self, method: str, handler: Handler) -> Handler:
        name = method.lstrip("/")

        def wrap(_kind: str, behavior: Behavior) -> Behavior:
            def tracked(request: Any, context: Context) -> Any:
                self._open[context] = name
                self._last_start = time.monotonic()
                context.add_done_callback(self._ended)  # type: ignore[arg-type]
                return behavior(request, context)

            return tracked

        return replace_behavior(handler, wrap)

    def _ended(self, context: Context) -> None:
        self._open.pop(context, None)
        if context in self._awaited:
            self._awaited.discard(context)
            if not self._awaited:
                self._all_ended.set()

    def open_methods(self) -> list[str]:
        """The method of each call in flight now (``package.Service/Method``)."""
        return list(self._open.values())

    async def ended(self) -> None:
        """Returns once every call open now (not those started later) has ended."""
        self._awaited = set(self._open)
        try:
            if self._awaited:
                self._all_ended.clear()
                await self._all_ended.wait()
        finally:
            self._awaited = set()

    async def quiet(self, period: float) -> None:
        """Returns once no call has started for `period` seconds: at once when none started
        within the last `period`."""
        # A deadline that calls push back, not a condition set once: no event to wait on.
        while (idle := time.monotonic() - self._last_start) < period:  # noqa: ASYNC110
            await asyncio.sleep(period - idle)
