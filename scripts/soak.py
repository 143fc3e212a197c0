"""A chaos soak: real replicas, producers, watchers and answerers, with faults at random.

    .venv/bin/python scripts/soak.py --mode redis --minutes 10     # 3 replicas on one Redis
    .venv/bin/python scripts/soak.py --mode sqlite --minutes 10    # one server on a SQLite file
    .venv/bin/python scripts/soak.py --mode redis --minutes 1 --seed 7   # a short smoke run

It starts every process itself (redis-server with AOF and ``appendfsync always``, and
``.venv/bin/runstream serve`` replicas on ports 27500-27510, below the kernel's ephemeral
range) and drives them from outside, as a user's fleet would: SDK producers report runs of a
few hundred events (steps, progress, streamed text, metrics, some asking decisions that a
separate answerer answers, at times from two replicas at once); a watcher follows each run
through one replica and resumes after its last seq on another whenever its stream breaks.
Every 5-20 s a fault: a replica SIGKILLed and started again on its port, or frozen (SIGSTOP)
for 2-12 s, Redis frozen for 2-12 s, Redis SIGKILLed and restarted on its AOF; the SQLite
server killed and restarted, or frozen. Once the time is up the faults stop, and the
producers get ``--drain`` seconds to end their runs.

Each run is checked as it ends and every run again at the end, against what the README
promises: every event acknowledged to the producer is in ListEvents once, at the seq its
acknowledgement named (seqs 1..N dense, idempotency keys unique); the watcher saw exactly the
log's seqs, in order; GetRun's status and last_seq match the log on every server; each
decision was closed by exactly one DecisionResolved, the one the producer's ask() returned and
any answer a viewer was told it won, and its deadline is when the server received it plus
its timeout. It prints a summary and writes ``soak.json`` with every
violation (run id, guarantee, details) beside the servers' logs in ``--workdir`` (a temporary
directory, kept, when not given). Exit status 1 when a guarantee was broken. Ctrl-C or SIGTERM
stops every process it started and ends it early, exit status 130 or 143.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import runstream
from runstream import (
    DecisionOutcome,
    DecisionState,
    Event,
    LinkState,
    RunStatus,
    StepSpec,
    WatchLink,
)

ROOT = Path(__file__).resolve().parent.parent
# Below Linux's ephemeral range (32768-60999), where an outgoing connection could hold one.
REDIS_PORT = 27500
REPLICA_PORTS = (27501, 27502, 27503)
SQLITE_PORT = 27510
TERMINAL = {
    "run_completed": RunStatus.SUCCEEDED,
    "run_failed": RunStatus.FAILED,
    "run_cancelled": RunStatus.CANCELLED,
}


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port} within 30 s")


@dataclass
class Process:
    """One process the soak starts, kills, freezes and starts again on the same port."""

    name: str
    port: int
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    def start(self) -> None:
        """Starts it and waits until it listens on its port."""
        with open(self.log, "ab") as log:
            log.write(f"--- soak: start at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=ROOT,
            )
        wait_for_port(self.port, self.process, self.name)

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None and not self.frozen

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.kill()
            self.process.wait(10)
        with open(self.log, "ab") as log:
            log.write(f"--- soak: SIGKILL at {time.strftime('%H:%M:%S')}\n".encode())

    def freeze(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.process is not None and self.frozen:
            self.process.send_signal(signal.SIGCONT)
            self.frozen = False


@dataclass
class Violation:
    guarantee: str
    run_id: str
    details: str


@dataclass
class RunRecord:
    """What the soak knows of one run from the outside: what the producer was told, what the
    watcher saw, what the answerer was told."""

    run_id: str
    key_prefix: str
    asks: bool
    started: float = field(default_factory=time.monotonic)
    reported: int = 0
    acked: int = 0
    # (events acknowledged, the reporter's last_seq) sampled as the run went: the event
    # `acked - 1` was acknowledged at that seq.
    acks: list[tuple[int, int]] = field(default_factory=list)
    asked: dict[str, tuple[DecisionOutcome, str | None]] = field(default_factory=dict)
    won: dict[str, set[str]] = field(default_factory=dict)  # choices a viewer was told won
    seen: list[int] = field(default_factory=list)
    watch_resumes: int = 0
    watch_done: bool = False
    producer_done: bool = False
    ended: float | None = None
    error: str = ""


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.redis: Process | None = None
        self.servers: list[Process] = []
        self.clients: dict[int, runstream.Client] = {}
        self.runs: dict[str, RunRecord] = {}
        self.violations: list[Violation] = []
        self.faults: Counter[str] = Counter()
        self.fault_log: list[str] = []
        self.stopping = asyncio.Event()  # the time is up: no new runs, no more faults
        self.drained = asyncio.Event()  # the runs ended, or the drain's time is up
        self.watchers: set[asyncio.Task[None]] = set()
        self.runs_started = 0
        self.t0 = time.monotonic()

    # --- processes ----------------------------------------------------------------------

    def start_processes(self) -> None:
        serve = [str(ROOT / ".venv/bin/runstream"), "serve"]
        if self.args.mode == "redis":
            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("soak: redis-server is not installed")
            directory = self.workdir / "redis"
            directory.mkdir(parents=True, exist_ok=True)
            # AOF fsynced before each reply: a SIGKILL of Redis loses nothing acknowledged.
            durable = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            listen = ["--port", str(REDIS_PORT), "--bind", "127.0.0.1"]
            argv = [binary, *listen, *durable, "--dir", str(directory)]
            self.redis = Process("redis", REDIS_PORT, argv, self.workdir / "redis.log")
            self.redis.start()
            store = f"redis://127.0.0.1:{REDIS_PORT}/0?prefix=soak"
            for port in REPLICA_PORTS[: self.args.replicas]:
                argv = [*serve, "--address", f"127.0.0.1:{port}", "--store", store]
                self.servers.append(
                    Process(f"replica-{port}", port, argv, self.workdir / f"replica-{port}.log")
                )
        else:
            store = str(self.workdir / "runs.db")
            argv = [*serve, "--address", f"127.0.0.1:{SQLITE_PORT}", "--store", store]
            self.servers.append(Process("sqlite", SQLITE_PORT, argv, self.workdir / "sqlite.log"))
        for server in self.servers:
            server.start()

    def stop_processes(self) -> None:
        for process in [*self.servers, *([self.redis] if self.redis else [])]:
            process.kill()

    def fault(self, what: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {what}"
        self.fault_log.append(line)
        self.faults[what.split(" ")[0]] += 1
        print(f"fault: {line}", flush=True)

    async def restart(self, process: Process) -> None:
        process.kill()
        await asyncio.to_thread(process.start)

    async def inject_faults(self) -> None:
        """One fault every 5-20 s until the time is up; everything is back up when it ends."""
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.rng.uniform(5, 20))
                    return
                await self.one_fault()
        finally:
            await self.heal()

    async def one_fault(self) -> None:
        server = self.rng.choice(self.servers)
        redis = self.redis
        if redis is None:
            kind = self.rng.choices(["server-killed", "server-frozen"], [0.7, 0.3])[0]
        else:
            kinds = ["server-killed", "server-frozen", "redis-frozen", "redis-killed"]
            kind = self.rng.choices(kinds, [0.35, 0.1, 0.3, 0.25])[0]
        seconds = self.rng.uniform(2, 12)
        if kind == "server-killed":
            self.fault(f"server-killed {server.name} (SIGKILL, started again)")
            server.kill()
            await asyncio.sleep(self.rng.uniform(0, 2))
            await asyncio.to_thread(server.start)
        elif kind == "server-frozen":
            self.fault(f"server-frozen {server.name} for {seconds:.1f}s (SIGSTOP, then SIGCONT)")
            server.freeze()
            await asyncio.sleep(seconds)
            server.thaw()
        elif redis is not None and kind == "redis-frozen":
            self.fault(f"redis-frozen for {seconds:.1f}s (SIGSTOP, then SIGCONT)")
            redis.freeze()
            await asyncio.sleep(seconds)
            redis.thaw()
        elif redis is not None:
            self.fault("redis-killed (SIGKILL, started again on its AOF)")
            redis.kill()
            await asyncio.sleep(self.rng.uniform(0, 3))
            await asyncio.to_thread(redis.start)

    async def heal(self) -> None:
        for process in [*([self.redis] if self.redis else []), *self.servers]:
            process.thaw()
            if process.process is None or process.process.poll() is not None:
                await asyncio.to_thread(process.start)

    # --- clients ------------------------------------------------------------------------

    def client(self, port: int) -> runstream.Client:
        if port not in self.clients:
            self.clients[port] = runstream.connect(f"127.0.0.1:{port}", reconnect_timeout=60)
        return self.clients[port]

    def any_client(self) -> runstream.Client:
        up = [s.port for s in self.servers if s.up] or [s.port for s in self.servers]
        return self.client(self.rng.choice(up))

    def violation(self, guarantee: str, run_id: str, details: str) -> None:
        found = Violation(guarantee, run_id, details)
        if found in self.violations:  # the final check finds again what a run's end found
            return
        self.violations.append(found)
        print(f"VIOLATION [{guarantee}] run {run_id}: {details}", flush=True)

    def producer_target(self) -> str:
        ports = [s.port for s in self.servers]
        self.rng.shuffle(ports)
        return "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports)

    # --- load ---------------------------------------------------------------------------

    async def producer(self, slot: int) -> None:
        """Runs one after another until the time is up, each through all servers' addresses
        (gRPC takes the first that answers and moves on when it dies)."""
        async with runstream.connect(self.producer_target(), reconnect_timeout=60) as client:
            while not self.stopping.is_set():
                self.runs_started += 1
                number = self.runs_started
                asks = self.rng.random() < 0.4
                prefix = f"soak{self.args.seed}-{slot}-{number}"
                try:
                    await self.one_run(client, prefix, asks)
                except Exception as exc:
                    run_id = next(
                        (r.run_id for r in self.runs.values() if r.key_prefix == prefix),
                        "(not created)",
                    )
                    if run_id in self.runs:
                        self.runs[run_id].error = repr(exc)
                        self.runs[run_id].producer_done = True
                    self.violation("producer", run_id, f"the producer raised {exc!r}")
                    await asyncio.sleep(1)

    async def one_run(self, client: runstream.Client, prefix: str, asks: bool) -> None:
        steps = [StepSpec(f"s{i}", f"Step {i}") for i in range(self.rng.randint(3, 5))]
        run = await client.start_run(
            "soak", steps=steps, key_prefix=prefix, linger=self.rng.choice([0.0, 0.0, 0.02])
        )
        record = RunRecord(run.run_id, prefix, asks)
        self.runs[run.run_id] = record
        watcher = asyncio.create_task(self.watcher(record))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        rng = random.Random(prefix)
        target_events = rng.randint(150, 400)
        per_step = target_events // len(steps)
        pace = self.args.pace

        def sample() -> None:
            record.reported = run.events_reported
            record.acked = run.events_acknowledged
            if record.acked and (not record.acks or record.acks[-1][0] != record.acked):
                record.acks.append((record.acked, run.last_seq))

        async with run:
            for index, spec in enumerate(steps):
                async with run.step(spec.step_id) as step:
                    for i in range(per_step):
                        roll = rng.random()
                        if roll < 0.4:
                            await step.progress(100 * i / per_step, f"part {i}")
                        elif roll < 0.7:
                            await run.text(
                                "writer",
                                f"m{index}",
                                f"tok{i} ",
                                step_id=spec.step_id,
                                final=i == per_step - 1,
                            )
                        elif roll < 0.85:
                            await run.metrics({"i": i, "step": index})
                        else:
                            await run.custom("tick", {"i": i, "step": index})
                        if i % 10 == 0:
                            sample()
                        await asyncio.sleep(rng.uniform(0, 2 * pace))
                    if asks and index in (1, len(steps) - 1):
                        decision_id = f"q{index}"
                        timeout = rng.choice([None, None, rng.uniform(2, 8)])
                        result = await run.ask(
                            f"pick for step {index}",
                            ["a", "b", "c"],
                            default="a" if timeout is not None else None,
                            timeout=timeout,
                            decision_id=decision_id,
                        )
                        record.asked[decision_id] = (result.outcome, result.choice)
                    sample()
            await run.complete(summary="soak run done")
            sample()
        sample()
        record.producer_done = True
        record.ended = time.monotonic()
        if record.acked != record.reported:
            self.violation(
                "acknowledged",
                run.run_id,
                f"complete() returned with {record.acked} of {record.reported} events acknowledged",
            )
        await watcher
        await self.check_run(record)

    async def watcher(self, record: RunRecord) -> None:
        """Follows the run through one server; when its stream breaks (or, now and then, for
        no reason), resumes after its last seq on another."""

        class Switch(Exception):
            pass

        def on_link(link: WatchLink) -> None:
            if link.state is LinkState.RECONNECTING:
                raise Switch(str(link.error))

        rng = random.Random(record.run_id)
        while True:
            up = [s.port for s in self.servers if s.up] or [s.port for s in self.servers]
            port = rng.choice(up)
            after = record.seen[-1] if record.seen else 0
            try:
                stream = self.client(port).watch(record.run_id, after_seq=after, on_link=on_link)
                async with contextlib.aclosing(stream) as events:
                    async for event in events:
                        expected = record.seen[-1] + 1 if record.seen else 1
                        if event.seq != expected:
                            self.violation(
                                "watch",
                                record.run_id,
                                f"on :{port} after seq "
                                f"{after}: got seq {event.seq}, expected {expected}",
                            )
                        record.seen.append(event.seq)
                        if rng.random() < 0.003:
                            break  # a watcher that goes away and comes back
                    else:
                        record.watch_done = True
                        return
            except Switch:
                pass
            except runstream.UnavailableError:
                pass
            except runstream.RunstreamError as exc:
                self.violation("watch", record.run_id, f"on :{port} after seq {after}: {exc!r}")
                record.watch_done = True
                return
            record.watch_resumes += 1
            await asyncio.sleep(rng.uniform(0.05, 0.5))

    async def answerer(self) -> None:
        """Answers the open questions of the runs that ask, each after 0-5 s, now and then
        from two servers at once with different choices, or twice."""
        handled: set[tuple[str, str]] = set()
        pending: set[asyncio.Task[None]] = set()
        while not self.drained.is_set():
            for record in list(self.runs.values()):
                if not record.asks or record.producer_done:
                    continue
                try:
                    open_ = await self.any_client().list_decisions(
                        record.run_id, state=DecisionState.OPEN
                    )
                except runstream.RunstreamError:
                    continue
                for decision in open_:
                    if (record.run_id, decision.decision_id) not in handled:
                        handled.add((record.run_id, decision.decision_id))
                        task = asyncio.create_task(self.answer(record, decision.decision_id))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
            await asyncio.sleep(0.5)
        for task in list(pending):
            task.cancel()

    async def answer(self, record: RunRecord, decision_id: str) -> None:
        await asyncio.sleep(self.rng.uniform(0, 5))
        roll = self.rng.random()
        choices = ["b", "c"] if roll < 0.3 else [self.rng.choice("abc")] * (2 if roll < 0.5 else 1)

        async def submit(choice: str) -> None:
            for _ in range(10):
                try:
                    decision = await self.any_client().submit_decision(
                        record.run_id, decision_id, choice, answered_by=f"soak-{choice}"
                    )
                except (runstream.AbortedError, runstream.FailedPreconditionError):
                    return  # another answer or the deadline won, or the run ended
                except (runstream.UnavailableError, runstream.DeadlineExceededError):
                    # Gone, or frozen past the client's 10 s deadline (a SQLite server
                    # stopped for 12 s): the same answer again gets the same result.
                    await asyncio.sleep(1)
                    continue
                except runstream.RunstreamError as exc:
                    self.violation("decision-once", record.run_id, f"{decision_id}: {exc!r}")
                    return
                if decision.outcome is DecisionOutcome.ANSWERED:
                    record.won.setdefault(decision_id, set()).add(decision.choice)
                return

        await asyncio.gather(*(submit(c) for c in choices))

    # --- checks -------------------------------------------------------------------------

    async def read_log(self, run_id: str) -> list[Event]:
        for attempt in range(10):
            try:
                return [e async for e in self.any_client().list_events(run_id)]
            except runstream.UnavailableError:
                await asyncio.sleep(1 + attempt)
        return [e async for e in self.any_client().list_events(run_id)]

    async def check_run(self, record: RunRecord, *, final: bool = False) -> None:
        run_id = record.run_id
        try:
            log = await self.read_log(run_id)
        except runstream.RunstreamError as exc:
            self.violation("acknowledged", run_id, f"ListEvents: {exc!r}")
            return
        seqs = [e.seq for e in log]
        if seqs != list(range(1, len(seqs) + 1)):
            missing = sorted(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            twice = sorted(s for s, n in Counter(seqs).items() if n > 1)
            self.violation(
                "log-dense",
                run_id,
                f"seqs not 1..N: missing {missing[:10]}, twice {twice[:10]}, {len(seqs)} events",
            )
        keys = Counter(e.idempotency_key for e in log if e.idempotency_key)
        for key, count in keys.items():
            if count > 1:
                seen_at = [e.seq for e in log if e.idempotency_key == key]
                self.violation(
                    "exactly-once", run_id, f"key {key!r} stored {count} times, at seqs {seen_at}"
                )
        at = {e.idempotency_key: e.seq for e in log}
        ours = [at.get(f"{record.key_prefix}:{n}") for n in range(record.reported)]
        lost = [n for n, seq in enumerate(ours) if seq is None]
        if lost:
            self.violation(
                "acknowledged",
                run_id,
                f"{len(lost)} of {record.reported} reported "
                f"events missing from the log, e.g. keys {lost[:10]}; "
                f"acked {record.acked}",
            )
        order = [seq for seq in ours if seq is not None]
        if order != sorted(order):
            self.violation("order", run_id, "the producer's events are stored out of order")
        for acked, last_seq in record.acks:
            stored = ours[acked - 1] if acked - 1 < len(ours) else None
            if stored != last_seq:
                self.violation(
                    "acknowledged",
                    run_id,
                    f"event {record.key_prefix}:{acked - 1} "
                    f"was acknowledged at seq {last_seq}, the log has it at "
                    f"{stored}",
                )
                break
        ends = [e for e in log if e.raw.WhichOneof("payload") in TERMINAL]
        head = seqs[-1] if seqs else 0
        if record.producer_done and not record.error and (len(ends) != 1 or ends[0].seq != head):
            self.violation(
                "log-end", run_id, f"terminal events at {[e.seq for e in ends]}, head {head}"
            )
        if record.watch_done and record.seen != seqs:
            self.violation(
                "watch",
                run_id,
                f"the watcher saw {len(record.seen)} events "
                f"{self.diff(record.seen, seqs)}; the log has 1..{head}",
            )
        self.check_decisions(record, log)
        if record.asked:
            await self.check_deadlines(record, log)
        if ends:
            await self.check_get_run(
                record, TERMINAL[ends[-1].raw.WhichOneof("payload") or ""], head, final=final
            )

    @staticmethod
    def diff(seen: list[int], seqs: list[int]) -> str:
        for index, (a, b) in enumerate(zip(seen, seqs, strict=False)):
            if a != b:
                return f"(first difference at position {index}: saw {a}, log {b})"
        return f"(the shorter is a prefix of the other: saw {len(seen)}, log {len(seqs)})"

    def check_decisions(self, record: RunRecord, log: list[Event]) -> None:
        asked: dict[str, int] = {}
        resolved: dict[str, list[Event]] = {}
        for event in log:
            kind = event.raw.WhichOneof("payload")
            if kind == "decision_requested":
                asked[event.raw.decision_requested.decision_id] = event.seq
            elif kind == "decision_resolved":
                resolved.setdefault(event.raw.decision_resolved.decision_id, []).append(event)
        run_id = record.run_id
        for decision_id in sorted(set(asked) | set(resolved)):
            closures = resolved.get(decision_id, [])
            if decision_id not in asked or len(closures) != 1:
                self.violation(
                    "decision-once",
                    run_id,
                    f"{decision_id}: asked at "
                    f"{asked.get(decision_id)}, resolved at "
                    f"{[e.seq for e in closures]}",
                )
                continue
            closed = closures[0].raw.decision_resolved
            if decision_id in record.asked:
                outcome, choice = record.asked[decision_id]
                if int(outcome) != closed.outcome or (choice or "") != closed.choice:
                    self.violation(
                        "decision-once",
                        run_id,
                        f"{decision_id}: ask() returned "
                        f"{outcome.name} {choice!r}, the log has outcome "
                        f"{closed.outcome} {closed.choice!r}",
                    )
            winners = record.won.get(decision_id, set())
            answered = closed.outcome == int(DecisionOutcome.ANSWERED)
            if winners - {closed.choice} or (winners and not answered):
                self.violation(
                    "decision-once",
                    run_id,
                    f"{decision_id}: viewers were told "
                    f"{sorted(winners)} won, the log has outcome {closed.outcome} "
                    f"{closed.choice!r}",
                )

    async def check_deadlines(self, record: RunRecord, log: list[Event]) -> None:
        """A question's deadline is when the server received it plus its timeout, as
        event.proto says (not its event time, the producer's: a question held up by a frozen
        replica or Redis still gives humans its whole timeout)."""
        received = {
            e.raw.decision_requested.decision_id: e.raw.receive_time.ToDatetime(UTC)
            for e in log
            if e.raw.WhichOneof("payload") == "decision_requested"
        }
        try:
            decisions = await self.any_client().list_decisions(record.run_id)
        except runstream.RunstreamError as exc:
            self.violation("decision-deadline", record.run_id, f"ListDecisions: {exc!r}")
            return
        for decision in decisions:
            at = received.get(decision.decision_id)
            if decision.deadline is None or decision.timeout is None or at is None:
                continue
            gap = (decision.deadline - at).total_seconds()
            if abs(gap - decision.timeout.total_seconds()) > 0.001:
                self.violation(
                    "decision-deadline",
                    record.run_id,
                    f"{decision.decision_id}: received at {at:%H:%M:%S.%f} with a timeout of "
                    f"{decision.timeout.total_seconds():.2f}s; its deadline is {gap:.3f}s after "
                    f"that ({decision.deadline:%H:%M:%S.%f}); closed {decision.outcome.name}",
                )

    async def check_get_run(
        self, record: RunRecord, status: RunStatus, head: int, *, final: bool
    ) -> None:
        """Every server up agrees with the log; a lagging one gets 15 s to catch up."""
        for server in self.servers:
            if not server.up:
                continue
            found: tuple[RunStatus, int] | None = None
            answers: list[str] = []  # what the server said before it agreed
            started = time.monotonic()
            while time.monotonic() - started < 15:
                try:
                    run = await self.client(server.port).get_run(record.run_id)
                    found = (run.status, run.last_seq)
                    if found == (status, head):
                        break
                    answers.append(f"{run.status.name} last_seq {run.last_seq}")
                except runstream.UnavailableError as exc:
                    answers.append(f"UNAVAILABLE {exc.message[:80]!r}")
                await asyncio.sleep(0.5)
            else:
                if found is not None:
                    self.violation(
                        "get-run",
                        record.run_id,
                        f"{'final: ' if final else ''}GetRun on :{server.port} says "
                        f"{found[0].name} last_seq {found[1]} for 15 s; the log ends at {head} "
                        f"({status.name}); its answers: {sorted(set(answers))}",
                    )
                continue
            waited = time.monotonic() - started
            if answers:
                print(
                    f"note: GetRun on :{server.port} of {record.run_id} agreed with the log "
                    f"(seq {head}) after {waited:.1f}s; before: {sorted(set(answers))}",
                    flush=True,
                )

    # --- the soak -----------------------------------------------------------------------

    async def run(self) -> int:
        starting = asyncio.ensure_future(asyncio.to_thread(self.start_processes))
        try:
            await asyncio.shield(starting)
        except BaseException:
            # Ctrl-C or SIGTERM as the processes start, or one failing to: the thread starts
            # on regardless, so wait for it before stopping each one it started (they were
            # left running, a replica or Redis on the soak's port, for the next soak to trip on).
            with contextlib.suppress(BaseException):  # its own failure is raised below
                await starting
            await asyncio.to_thread(self.stop_processes)
            raise
        print(
            f"soak: {self.args.mode}, {len(self.servers)} server(s), "
            f"{self.args.producers} producers, {self.args.minutes} min, seed {self.args.seed}, "
            f"logs in {self.workdir}",
            flush=True,
        )
        producers = [asyncio.create_task(self.producer(i)) for i in range(self.args.producers)]
        faults = asyncio.create_task(self.inject_faults())
        answerer = asyncio.create_task(self.answerer())
        progress = asyncio.create_task(self.report_progress())
        try:
            await asyncio.sleep(self.args.minutes * 60)
            self.stopping.set()
            await faults
            print("soak: faults stopped, waiting for the producers to end their runs", flush=True)
            _, stuck = await asyncio.wait(producers, timeout=self.args.drain)
            for record in self.runs.values():
                if not record.producer_done:
                    self.violation(
                        "stuck",
                        record.run_id,
                        f"not ended {self.args.drain:g}s "
                        f"after the faults stopped: {record.reported} reported, "
                        f"{record.acked} acknowledged, watcher at "
                        f"{record.seen[-1] if record.seen else 0}",
                    )
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
            self.drained.set()
            await asyncio.wait_for(answerer, 30)
            print("soak: final check of every run on every server", flush=True)
            for record in list(self.runs.values()):
                await self.check_run(record, final=True)
        finally:
            progress.cancel()
            watchers = list(self.watchers)
            for task in (*producers, faults, answerer, *watchers):
                task.cancel()
            await asyncio.gather(
                *producers, faults, answerer, progress, *watchers, return_exceptions=True
            )
            for client in self.clients.values():
                await client.close()
            await asyncio.to_thread(self.stop_processes)
        self.summary()
        return 1 if self.violations else 0

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(60)
            ended = sum(r.producer_done for r in self.runs.values())
            print(
                f"soak: {time.monotonic() - self.t0:.0f}s, runs {len(self.runs)} "
                f"({ended} ended), events {sum(r.acked for r in self.runs.values())}, "
                f"faults {sum(self.faults.values())}, violations {len(self.violations)}",
                flush=True,
            )

    def summary(self) -> None:
        records = list(self.runs.values())
        decisions = sum(len(r.asked) for r in records)
        lines = [
            f"soak summary ({self.args.mode}, seed {self.args.seed}, "
            f"{(time.monotonic() - self.t0) / 60:.1f} min)",
            f"  runs: {len(records)} ({sum(r.producer_done for r in records)} ended), "
            f"events acknowledged: {sum(r.acked for r in records)}, decisions: {decisions}, "
            f"watcher resumes: {sum(r.watch_resumes for r in records)}",
            f"  faults: {sum(self.faults.values())} "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())),
            f"  violations: {len(self.violations)}",
        ]
        lines += [f"    [{v.guarantee}] {v.run_id}: {v.details}" for v in self.violations]
        print("\n".join(lines), flush=True)
        report = {
            "mode": self.args.mode,
            "seed": self.args.seed,
            "runs": len(records),
            "events": sum(r.acked for r in records),
            "faults": self.fault_log,
            "violations": [v.__dict__ for v in self.violations],
        }
        (self.workdir / "soak.json").write_text(json.dumps(report, indent=2))


def number(at_least: float, *, above: bool = False, whole: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of at least `at_least` (more than it, `above`).
    `--minutes 0`, `-1` and `nan` each ran the soak's shortest round and reported success."""
    bound = f"{'more than' if above else 'at least'} {at_least:g}"

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            what = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if value < at_least or (above and value == at_least):
            raise argparse.ArgumentTypeError(f"expected {bound}, got {text}")
        return value

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Runstream chaos soak (see the module doc).")
    parser.add_argument("--mode", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--minutes", type=number(0, above=True), default=10)
    parser.add_argument("--replicas", type=int, choices=[2, 3], default=3)
    parser.add_argument(
        "--producers", type=number(1, whole=True), default=3, help="concurrent runs (default 3)"
    )
    parser.add_argument("--pace", type=number(0), default=0.05, help="mean seconds between events")
    parser.add_argument("--drain", type=number(0), default=120, help="seconds for runs to end")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--workdir", type=Path, default=None)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"soak-{args.mode}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    main_task = asyncio.current_task()
    assert main_task is not None
    # Ctrl-C and SIGTERM alike cancel the soak: the finally of Soak.run() kills every process
    # the soak started, and it ends in one line, where both printed a CancelledError
    # traceback (Ctrl-C a KeyboardInterrupt one too). A second signal does not cut that
    # cleaning up short.
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if not received:
            main_task.cancel()
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop, signum)
    try:
        return await Soak(args, workdir).run()
    except asyncio.CancelledError:
        if not received:
            raise
        main_task.uncancel()
        said = "interrupted" if received[0] == signal.SIGINT else "terminated"
        print(f"soak: {said}; the processes it started are stopped; logs in {workdir}", flush=True)
        return 128 + received[0]


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
