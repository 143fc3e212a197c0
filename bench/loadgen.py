"""Load generators for the benchmarks, each run in its own process (and pinned to a core).

    loadgen.py produce SYSTEM TARGET [--rate R] [--count N] [--closed] [--cpu C]
    loadgen.py watch SYSTEM TARGET RUN_ID --watchers N [--per-channel K] [--mode M] [--cpu C]
                     [--drop-after K --away S]

SYSTEM is ``runstream`` (the SDK producer, raw WatchRun streams) or ``baseline`` (the bare
grpc.aio server in baseline_grpc.py: unary Publish, one message per event). ``produce bare``
reports to a Runstream server without the SDK: a bare grpc.aio client on a raw Report
stream, one message per event, reading the acknowledgements as they come (what the SDK's
per-event cost compares with); ``produce unary`` makes one AppendEvents call per event.

The processes talk to ``run.py`` in JSON lines: on stdout they print what they have to say,
on stdin they wait for commands.

produce: creates the run (runstream), prints ``{"run_id": ...}``, then reports a warm-up
event every 50 ms until it reads ``go``; then reports N measured events, open loop at R
events/s (``--rate 0``: as fast as the reporter takes them; ``--closed``: one at a time,
each acknowledged before the next), flushes, prints ``{"cpu": seconds, "took": seconds,
"last_seq": seq}`` and ends the run, which ends every watcher's stream.

watch: opens N watch streams (one connection per stream, or ``--per-channel`` streams per
connection). Modes:
  latency  each watcher prints nothing until it ends; the process prints ``{"ready": N}``
           once every watcher has received a message, then, when all streams ended, the
           report-to-receive latency of each measured event (a message's events are all
           given its oldest event's latency: an upper bound) and the events lost or repeated.
           With ``--drop-after K`` each watcher drops its stream after its K-th measured
           event and resumes ``--away`` seconds later after the last seq it saw.
  idle     prints ``{"ready": N}`` once all streams are open (and have had their first
           message), then holds them until stdin closes.
  burst    opens all N streams at once, prints ``{"opened": n, "failed": {code: count}}``
           once each stream has either had its first message or failed, then holds them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from runstream.v1 import event_pb2, run_service_pb2

WARMUP, MEASURED = "w", "m"


def warmup_every(rate: float) -> float:
    """Seconds between warm-up events: every 50 ms, never more often than the measured rate,
    so a thousand watchers opening are not sent more than they will be measured with (a relay
    that sends each message on its own fell behind on a busy core and never let the last
    ones open)."""
    return max(0.05, 1 / rate) if rate else 0.05


def emit(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def raise_file_limit() -> None:
    """Many streams need many descriptors: raise the soft limit to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def tick_event(kind: str, n: int) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(custom=event_pb2.Custom(type=kind))
    event.custom.data.update({"n": n})
    event.event_time.GetCurrentTime()
    return event


# --- producers -----------------------------------------------------------------------------


async def paced(rate: float, count: int, send: Callable[[int], Awaitable[object]]) -> None:
    """Awaits send(i) for i < count at `rate` per second (0: at once), open loop: a send
    that comes late does not delay the schedule of the next ones."""
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = count if rate <= 0 else min(count, int((time.perf_counter() - started) * rate) + 1)
        due = max(due, sent + 1)  # woken for the next send: a timer firing early does not spin
        while sent < due:
            await send(sent)
            sent += 1
        if sent < count:
            await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))


async def produce_runstream(
    target: str, rate: float, count: int, closed: bool, linger: float = 0.0, steps: int = 0
) -> None:
    import runstream

    async with runstream.connect(target) as client:
        planned = [f"step-{i + 1}" for i in range(steps)]
        run = await client.start_run("bench", linger=linger, steps=planned)
        await _midway(run, planned)
        emit({"run_id": run.run_id})
        commands = await stdin_lines()
        go = asyncio.ensure_future(commands.readline())
        n = 0
        while not go.done():
            await run.custom(WARMUP, {"n": n})
            n += 1
            await asyncio.wait({go}, timeout=warmup_every(rate))
        await run.flush()
        cpu0, t0 = time.process_time(), time.perf_counter()
        if closed:
            for i in range(count):
                await run.custom(MEASURED, {"n": i})
                await run.flush()
        else:
            # Reporting calls return once the event is queued (the reporter sends it).
            await paced(rate, count, lambda i: run.custom(MEASURED, {"n": i}))
            await run.flush()
        cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
        emit({"cpu": cpu, "took": took, "last_seq": run.last_seq})
        await run.complete()


async def _midway(run: Any, planned: list[str]) -> None:
    """Takes a run of planned steps to where a workflow spends most of its time: a third of
    them done, up to three running, each with its agent."""
    done = len(planned) // 3
    for i, step_id in enumerate(planned[: done + 3]):
        step = await run.start_step(step_id, agent=f"agent-{i + 1}")
        if i < done:
            await step.complete("done")
    await run.flush()


async def _nothing(_i: int) -> None:
    pass


async def produce_nothing(target: str, rate: float, count: int, closed: bool) -> None:
    """The floor of any producer at `rate`: a process with a channel open that wakes up
    `rate` times a second and sends nothing."""
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        emit({"run_id": ""})
        commands = await stdin_lines()
        await commands.readline()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await paced(rate, count, _nothing)
        cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
        emit({"cpu": cpu, "took": took})


async def produce_bare(target: str, rate: float, count: int, closed: bool) -> None:
    from runstream.v1 import report_service_pb2, report_service_pb2_grpc, run_service_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="bench"))
        run_id = created.run.run_id
        emit({"run_id": run_id})
        call = report_service_pb2_grpc.ReportServiceStub(channel).Report()
        await call.write(report_service_pb2.ReportRequest(run_id=run_id))
        await call.read()
        commands = await stdin_lines()
        await commands.readline()  # go
        batch = 0

        async def send(i: int) -> None:
            nonlocal batch
            batch += 1
            event = tick_event(MEASURED, i)
            event.idempotency_key = f"bare-{i}"
            await call.write(report_service_pb2.ReportRequest(events=[event], batch_id=batch))
            if closed:
                await call.read()

        async def acks() -> None:
            for _ in range(count):
                await call.read()

        cpu0, t0 = time.process_time(), time.perf_counter()
        reader = None if closed else asyncio.create_task(acks())
        await paced(rate, count, send)
        if reader is not None:
            await reader
        cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
        emit({"cpu": cpu, "took": took, "last_seq": count + 1})
        await call.done_writing()


async def produce_unary(target: str, rate: float, count: int, closed: bool) -> None:
    """Like produce_bare, one AppendEvents call per event instead of a Report stream: the
    unary path, as the baseline's Publish."""
    from runstream.v1 import report_service_pb2, report_service_pb2_grpc, run_service_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="bench"))
        run_id = created.run.run_id
        emit({"run_id": run_id})
        append = report_service_pb2_grpc.ReportServiceStub(channel).AppendEvents
        commands = await stdin_lines()
        await commands.readline()  # go
        calls: list[Awaitable[object]] = []

        async def send(i: int) -> None:
            event = tick_event(MEASURED, i)
            event.idempotency_key = f"unary-{i}"
            call = append(report_service_pb2.AppendEventsRequest(run_id=run_id, events=[event]))
            if closed:
                await call
            else:
                calls.append(call)  # a call starts when it is made

        cpu0, t0 = time.process_time(), time.perf_counter()
        await paced(rate, count, send)
        await asyncio.gather(*calls)
        cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
        emit({"cpu": cpu, "took": took, "last_seq": count + 1})
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        await append(report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done]))


async def produce_baseline(target: str, rate: float, count: int, closed: bool) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        publish = channel.unary_unary(
            "/bench.Baseline/Publish", request_serializer=None, response_deserializer=None
        )
        emit({"run_id": ""})
        commands = await stdin_lines()
        go = asyncio.ensure_future(commands.readline())
        seq = 0

        def payload(kind: str) -> bytes:
            nonlocal seq
            seq += 1
            event = tick_event(kind, seq)
            event.seq = seq
            return event.SerializeToString() + (1).to_bytes(2, "big")

        while not go.done():
            await publish(payload(WARMUP))
            await asyncio.wait({go}, timeout=warmup_every(rate))
        cpu0, t0 = time.process_time(), time.perf_counter()
        if closed:
            for _ in range(count):
                await publish(payload(MEASURED))
        else:
            calls: list[Awaitable[bytes]] = []

            async def send(_i: int) -> None:
                calls.append(publish(payload(MEASURED)))  # a call starts when it is made

            await paced(rate, count, send)
            await asyncio.gather(*calls)
        cpu, took = time.process_time() - cpu0, time.perf_counter() - t0
        emit({"cpu": cpu, "took": took, "last_seq": seq})
        await publish(payload("end"))


# --- watchers ------------------------------------------------------------------------------


class Tally:
    """Latencies (ms, one entry per message with its weight) and sequence checks."""

    def __init__(self) -> None:
        self.latencies: list[tuple[float, int]] = []
        self.lost = 0
        self.repeated = 0
        self.ready = 0

    def summary(self) -> dict[str, object]:
        total = sum(weight for _, weight in self.latencies)
        out: dict[str, object] = {"events": total, "lost": self.lost, "repeated": self.repeated}
        if total:
            ordered = sorted(self.latencies)
            for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
                rank, seen = q * total, 0
                for latency, weight in ordered:
                    seen += weight
                    if seen >= rank:
                        out[name] = latency
                        break
        return out


def channel_options(shared: bool) -> list[tuple[str, object]]:
    # A local subchannel pool gives each channel a connection of its own.
    return [] if shared else [("grpc.use_local_subchannel_pool", 1)]


async def watch_one(
    system: str,
    channel: grpc.aio.Channel,
    run_id: str,
    tally: Tally,
    first: asyncio.Future[None],
    drop_after: int = 0,
    away: float = 0.0,
) -> None:
    """One watcher; with `drop_after`, it drops its stream after that many measured events
    and resumes `away` seconds later after the last seq it saw (runstream only)."""
    last = 0
    measured = 0
    while True:
        if system == "runstream":
            request = run_service_pb2.WatchRunRequest(
                run_id=run_id, after_seq=last, heartbeat_interval={"seconds": 30}
            )
            call = channel.unary_stream(
                "/runstream.v1.RunService/WatchRun",
                request_serializer=run_service_pb2.WatchRunRequest.SerializeToString,
                response_deserializer=run_service_pb2.WatchRunResponse.FromString,
            )(request)
        else:
            call = channel.unary_stream(
                "/bench.Baseline/Subscribe",
                request_serializer=None,
                response_deserializer=event_pb2.RunEvent.FromString,
            )(b"")
        last, measured, dropped = await _follow(
            system, call, tally, first, last, measured, drop_after
        )
        if not dropped:
            return
        call.cancel()
        await asyncio.sleep(away)


async def _follow(
    system: str,
    call: Any,
    tally: Tally,
    first: asyncio.Future[None],
    last: int,
    measured: int,
    drop_after: int,
) -> tuple[int, int, bool]:
    """Reads a watch stream to its end, or to the `drop_after`-th measured event: the last
    seq seen, the measured events counted so far, and whether it dropped the stream."""
    async for response in call:
        now_ns = time.time_ns()
        if system == "runstream":
            events = response.events
            if not events:
                continue  # a heartbeat
            head, count, tail = events[0], len(events), events[-1].seq
        else:
            head, count, tail = response, 1, response.seq
            if response.custom.type == "end":
                break
        if not first.done():
            first.set_result(None)
        if last and head.seq != last + 1:
            if head.seq <= last:
                tally.repeated += last - head.seq + 1
            else:
                tally.lost += head.seq - last - 1
        last = tail
        if head.custom.type == MEASURED:
            latency = (now_ns - head.event_time.ToNanoseconds()) / 1e6
            tally.latencies.append((latency, count))
            before, measured = measured, measured + count
            if before < drop_after <= measured:
                return last, measured, True  # a network blip
    return last, measured, False


async def watch(
    system: str,
    target: str,
    run_id: str,
    watchers: int,
    per_channel: int,
    mode: str,
    drop_after: int = 0,
    away: float = 0.0,
) -> None:
    raise_file_limit()
    channels = [
        grpc.aio.insecure_channel(target, options=channel_options(per_channel > 1))
        for _ in range((watchers + per_channel - 1) // per_channel)
    ]
    tally = Tally()
    firsts = [asyncio.get_running_loop().create_future() for _ in range(watchers)]
    failures: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            channel = channels[i // per_channel]
            await watch_one(system, channel, run_id, tally, firsts[i], drop_after, away)
        except grpc.aio.AioRpcError as exc:
            failures[exc.code().name] += 1
            if not firsts[i].done():
                firsts[i].set_result(None)

    if mode != "burst":
        # Opened in groups small enough that even four processes at once stay under gRPC's
        # default accept backlog (1,000 calls): the burst mode is where that is measured.
        tasks = []
        for start in range(0, watchers, 200):
            group = range(start, min(watchers, start + 200))
            tasks += [asyncio.create_task(one(i)) for i in group]
            await asyncio.wait([firsts[i] for i in group], timeout=60)
    else:
        tasks = [asyncio.create_task(one(i)) for i in range(watchers)]
    await asyncio.wait(firsts, timeout=120)
    opened = sum(1 for f in firsts if f.done()) - sum(failures.values())
    if mode == "burst":
        emit({"opened": opened, "failed": dict(failures)})
    else:
        emit({"ready": opened, "failed": dict(failures)})
    if mode == "latency":
        await asyncio.gather(*tasks, return_exceptions=True)
        emit(tally.summary() | {"failed": dict(failures)})
    else:
        commands = await stdin_lines()
        await commands.read()  # until the parent closes stdin
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close(grace=None)


def watcher_arguments(watcher: argparse.ArgumentParser) -> None:
    """The arguments every watch command takes, after its system."""
    watcher.add_argument("target")
    watcher.add_argument("run_id")
    watcher.add_argument("--watchers", type=int, default=1)
    watcher.add_argument("--drop-after", type=int, default=0, help="measured events, then")
    watcher.add_argument("--away", type=float, default=1.0, help="seconds before resuming")
    watcher.add_argument("--cpu", default=None, help="pin to these cores (e.g. 1, or 0,1)")


def pin(args: argparse.Namespace) -> None:
    """Pins this process to the cores of ``--cpu``, when given."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {int(core) for core in args.cpu.split(",")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    produce = sub.add_parser("produce")
    produce.add_argument("system", choices=["runstream", "baseline", "bare", "unary", "nothing"])
    produce.add_argument("target")
    produce.add_argument("--rate", type=float, default=0)
    produce.add_argument("--count", type=int, default=1000)
    produce.add_argument("--closed", action="store_true")
    produce.add_argument("--linger", type=float, default=0.0, help="the SDK's linger (s)")
    produce.add_argument("--steps", type=int, default=0, help="the run's planned steps")
    watcher = sub.add_parser("watch")
    watcher.add_argument("system", choices=["runstream", "baseline"])
    watcher_arguments(watcher)
    watcher.add_argument("--per-channel", type=int, default=1)
    watcher.add_argument("--mode", choices=["latency", "idle", "burst"], default="latency")
    produce.add_argument("--cpu", default=None, help="pin to these cores (e.g. 1, or 0,1)")
    pin(args := parser.parse_args())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.command == "produce":
        producer = {
            "runstream": produce_runstream,
            "baseline": produce_baseline,
            "bare": produce_bare,
            "unary": produce_unary,
            "nothing": produce_nothing,
        }[args.system]
        if (args.linger or args.steps) and args.system != "runstream":
            parser.error("--linger and --steps are the SDK's: produce runstream only")
        options = {"linger": args.linger} if args.linger else {}
        options |= {"steps": args.steps} if args.steps else {}
        asyncio.run(producer(args.target, args.rate, args.count, args.closed, **options))
    else:
        asyncio.run(
            watch(
                args.system,
                args.target,
                args.run_id,
                args.watchers,
                args.per_channel,
                args.mode,
                args.drop_after,
                args.away,
            )
        )


if __name__ == "__main__":
    main()
