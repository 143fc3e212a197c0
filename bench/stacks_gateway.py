"""The stack Runstream replaces, built the way the reference systems build it: a Python web
gateway (Starlette on uvicorn, with uvloop and httptools) that relays a Redis pub/sub channel
per run to its browsers over Server-Sent Events and WebSockets.

    stacks_gateway.py PORT REDIS_URL

Producers publish each event as JSON to the channel ``run:<run_id>``; the gateway holds one
pattern subscription for every run, and each connected client has a queue of its own that
the subscription fills. ``GET /runs/<id>/stream`` is the SSE endpoint (a comment line every
15 s when nothing is sent), ``/runs/<id>/ws`` the WebSocket one (the library pings). Nothing
is stored: what a client misses while it is away is gone, as in the systems it stands for
(shared/reference/realtime-streaming-infrastructure.md and agentic-manager-streaming.md).
Used by ``bench/run.py --only stacks``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import AsyncIterator

import redis.asyncio as redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

HEARTBEAT = 15.0
clients: defaultdict[str, set[asyncio.Queue[str]]] = defaultdict(set)


async def relay(url: str) -> None:
    """The one subscription: every message goes to the queue of each client of its run."""
    connection = redis.from_url(url)
    pubsub = connection.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe("run:*")
    async for message in pubsub.listen():
        run_id = message["channel"].decode()[4:]
        data = message["data"].decode()
        for queue in clients.get(run_id, ()):
            queue.put_nowait(data)


async def sse(request: Request) -> StreamingResponse:
    run_id = request.path_params["run_id"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    clients[run_id].add(queue)

    async def events() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                yield f"data: {data}\n\n"
        finally:
            clients[run_id].discard(queue)

    return StreamingResponse(events(), media_type="text/event-stream")


async def ws(websocket: WebSocket) -> None:
    run_id = websocket.path_params["run_id"]
    queue: asyncio.Queue[str] = asyncio.Queue()
    clients[run_id].add(queue)
    await websocket.accept()
    try:
        await websocket.send_text('{"type": "connected"}')
        while True:
            await websocket.send_text(await queue.get())
    except WebSocketDisconnect:
        pass
    finally:
        clients[run_id].discard(queue)


async def main(port: int, url: str) -> None:
    app = Starlette(
        routes=[Route("/runs/{run_id}/stream", sse), WebSocketRoute("/runs/{run_id}/ws", ws)]
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        log_level="warning",
        backlog=10_000,
    )
    subscription = asyncio.ensure_future(relay(url))
    await uvicorn.Server(config).serve()
    subscription.cancel()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
