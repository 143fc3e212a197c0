"""The baseline: a bare grpc.aio fan-out server, the best a hand-written one does.

Publish(payload) sends COUNT copies of an already serialized event to every subscriber, one
message per event, from memory: no store, no sequence numbers, no resume. Request bytes are
the event followed by a 2-byte big-endian COUNT. Count() answers the number of subscribers
(4 bytes, big-endian). Usage: PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc


class Baseline:
    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue[bytes]] = set()

    async def publish(self, request: bytes, context: Any) -> bytes:
        payload, count = request[:-2], int.from_bytes(request[-2:], "big")
        for queue in self.subscribers:
            for _ in range(count):
                queue.put_nowait(payload)
        return b""

    async def count(self, request: bytes, context: Any) -> bytes:
        return len(self.subscribers).to_bytes(4, "big")

    async def subscribe(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self.subscribers.discard(queue)


async def main(port: int) -> None:
    baseline = Baseline()
    identity = lambda b: b  # noqa: E731 - bytes in, bytes out
    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            baseline.publish, request_deserializer=identity, response_serializer=identity
        ),
        "Count": grpc.unary_unary_rpc_method_handler(
            baseline.count, request_deserializer=identity, response_serializer=identity
        ),
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            baseline.subscribe, request_deserializer=identity, response_serializer=identity
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("bench.Baseline", handlers),)
    )
    await serve_until_sigterm(server, port)


async def serve_until_sigterm(server: grpc.aio.Server, port: int) -> None:
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def run(main: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Runs main(PORT) on uvloop when it is installed, as serve_runstream.py does."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1])))


if __name__ == "__main__":
    run(main)
