"""Load for the SSE / WebSocket gateway on Redis pub/sub (stacks_gateway.py), each run in its
own process, speaking to ``run.py`` in JSON lines as loadgen.py does.

    stacks_load.py produce REDIS_URL RUN_ID [--rate R] [--count N] [--cpu C]
    stacks_load.py watch sse|ws TARGET RUN_ID --watchers N [--drop-after K --away S] [--cpu C]

produce: publishes a warm-up event every 50 ms until it reads ``go``, then N measured events
at R events/s, each a JSON object with a sequence number the producer keeps (pub/sub has
none) and the time it was published; prints ``{"cpu", "took", "last_seq"}`` and publishes an
end event, which ends every watcher.

watch: opens N SSE streams (a raw HTTP/1.1 reader, no client library's overhead) or N
WebSockets (the websockets library), one connection each, prints ``{"ready": n}`` once each
has had its first message, then the report-to-receive latencies and the events lost or
repeated, as loadgen.py's watchers do. With ``--drop-after K``, each watcher disconnects
after its K-th measured event and connects again ``--away`` seconds later, as a browser does
after a network blip: what was published meanwhile is what it lost (the end event too, when
the run ended meanwhile: a watcher back from its drop stops after ``SILENCE`` seconds without
a message).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncGenerator

from loadgen import (
    MEASURED,
    WARMUP,
    Tally,
    emit,
    paced,
    pin,
    raise_file_limit,
    stdin_lines,
    warmup_every,
    watcher_arguments,
)

OPEN_TIMEOUT = 60.0
"""Seconds each group of 200 watchers has to open (each one's first message)."""
SILENCE = 10.0
"""Seconds without a message after which a watcher back from its drop stops: the relay sent
nothing while it was away, the end event among it when the run ended meanwhile (on a busy
machine; the watcher waited for it for ever)."""


async def produce(url: str, run_id: str, rate: float, count: int) -> None:
    import redis.asyncio as redis

    connection = redis.from_url(url)
    channel = f"run:{run_id}"
    seq = 0

    def payload(kind: str) -> str:
        nonlocal seq
        seq += 1
        event = {"run_id": run_id, "seq": seq, "type": kind, "time_ns": time.time_ns()}
        return json.dumps(event | {"data": {"n": seq}})

    emit({"run_id": run_id})
    commands = await stdin_lines()
    go = asyncio.ensure_future(commands.readline())
    while not go.done():
        await connection.publish(channel, payload(WARMUP))
        await asyncio.wait({go}, timeout=warmup_every(rate))
    cpu0, t0 = time.process_time(), time.perf_counter()
    await paced(rate, count, lambda _i: connection.publish(channel, payload(MEASURED)))
    cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
    emit({"cpu": cpu, "took": took, "last_seq": seq})
    await connection.publish(channel, payload("end"))
    await connection.aclose()


async def sse_messages(target: str, run_id: str) -> AsyncGenerator[bytes, None]:
    """The data of each event of an SSE stream (chunked HTTP/1.1, as uvicorn sends it)."""
    host, port = target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = f"GET /runs/{run_id}/stream HTTP/1.1\r\nHost: {target}\r\n"
        writer.write(f"{request}Accept: text/event-stream\r\n\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise ConnectionError(f"SSE refused: {status!r}")
        while await reader.readline() not in (b"\r\n", b""):
            pass  # headers
        buffer = b""
        while size := int((await reader.readline()).strip() or b"0", 16):
            buffer += (await reader.readexactly(size + 2))[:-2]
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                if block.startswith(b"data: "):
                    yield block[6:]
                elif block.startswith(b": connected"):
                    yield b""
    finally:
        writer.close()


async def ws_messages(target: str, run_id: str) -> AsyncGenerator[bytes, None]:
    from websockets.asyncio.client import connect

    # As long to open as the watchers' group waits (the library's own 10 s is not enough for
    # a gateway that relays warm-up events to the hundreds already open on a busy core).
    url = f"ws://{target}/runs/{run_id}/ws"
    async with connect(url, max_size=None, open_timeout=OPEN_TIMEOUT) as socket:
        async for message in socket:
            yield b"" if '"connected"' in message[:40] else str(message).encode()


async def _until_silent(
    stream: AsyncGenerator[bytes, None], silence: float | None
) -> AsyncGenerator[bytes, None]:
    """The messages of `stream` until it ends or none comes for `silence` seconds (None:
    no limit)."""
    while True:
        try:
            async with asyncio.timeout(silence):
                data = await anext(stream)
        except (StopAsyncIteration, TimeoutError):
            return
        yield data


async def watch_one(
    system: str,
    target: str,
    run_id: str,
    tally: Tally,
    first: asyncio.Future[None],
    drop_after: int,
    away: float,
) -> None:
    last = 0
    measured = 0
    silence: float | None = None  # none until it comes back from its drop
    while True:
        stream = (sse_messages if system == "sse" else ws_messages)(target, run_id)
        async for data in _until_silent(stream, silence):
            now_ns = time.time_ns()
            if not first.done():
                first.set_result(None)
            if not data:  # the gateway's hello: the subscription is in place
                continue
            event = json.loads(data)
            if event["type"] == "end":
                return
            seq = event["seq"]
            if last and seq != last + 1:
                if seq <= last:
                    tally.repeated += last - seq + 1
                else:
                    tally.lost += seq - last - 1
            last = max(last, seq)
            if event["type"] == MEASURED:
                tally.latencies.append(((now_ns - event["time_ns"]) / 1e6, 1))
                measured += 1
                if measured == drop_after:
                    break  # a network blip: gone for `away` seconds
        else:
            return
        await stream.aclose()
        await asyncio.sleep(away)
        silence = SILENCE


async def watch(
    system: str, target: str, run_id: str, watchers: int, drop_after: int, away: float
) -> None:
    raise_file_limit()
    tally = Tally()
    firsts = [asyncio.get_running_loop().create_future() for _ in range(watchers)]
    failures: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            await watch_one(system, target, run_id, tally, firsts[i], drop_after, away)
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            failures[type(exc).__name__] += 1
            if not firsts[i].done():
                firsts[i].set_result(None)

    tasks = []
    for start in range(0, watchers, 200):
        group = range(start, min(watchers, start + 200))
        tasks += [asyncio.create_task(one(i)) for i in group]
        await asyncio.wait([firsts[i] for i in group], timeout=OPEN_TIMEOUT)
    opened = sum(1 for f in firsts if f.done()) - sum(failures.values())
    emit({"ready": opened, "failed": dict(failures)})
    await asyncio.gather(*tasks, return_exceptions=True)
    emit(tally.summary() | {"failed": dict(failures)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    produce_args = sub.add_parser("produce")
    produce_args.add_argument("url")
    produce_args.add_argument("run_id")
    produce_args.add_argument("--rate", type=float, default=0)
    produce_args.add_argument("--count", type=int, default=1000)
    watch_args = sub.add_parser("watch")
    watch_args.add_argument("system", choices=["sse", "ws"])
    watcher_arguments(watch_args)
    produce_args.add_argument("--cpu", default=None, help="pin to these cores (e.g. 1, or 0,1)")
    pin(args := parser.parse_args())
    import uvloop

    if args.command == "produce":
        uvloop.run(produce(args.url, args.run_id, args.rate, args.count))
    else:
        work = watch(
            args.system, args.target, args.run_id, args.watchers, args.drop_after, args.away
        )
        uvloop.run(work)


if __name__ == "__main__":
    main()
