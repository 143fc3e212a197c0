"""Processes for the benchmarks: servers, producers and watchers, pinned and measured.

Servers and their producers run on one core (``SERVER_CPU``), watchers on the other
(``CLIENT_CPU``), so a scenario's server-side CPU is read from /proc for exactly the
processes that did the work, and the clients' work cannot steal the server's core.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CORES = sorted(os.sched_getaffinity(0))
SERVER_CPU = CORES[0]
CLIENT_CPU = CORES[-1]
EVERY_CORE = ",".join(map(str, CORES))
"""A placement on every core: the bench itself runs pinned to the client core, and a process
started without one inherits that."""
Cores = int | str | None
"""Where a process runs: one core, a comma-separated list (taskset -c), or None: where the
bench runs."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


@dataclass
class Proc:
    """A child process that speaks JSON lines on stdout and takes commands on stdin."""

    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    @property
    def stdout(self) -> IO[str]:
        """The pipe it prints its JSON lines on (spawned with quiet=False)."""
        stdout = self.process.stdout
        assert stdout is not None
        return stdout

    def read(self, timeout: float = 120) -> dict[str, Any]:
        """The next JSON line the process prints; a process that prints none for `timeout`
        seconds is killed (a read of its pipe cannot be given a time: it waited for ever)."""
        stdout = self.stdout
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            self.process.kill()

        quiet = threading.Timer(timeout, kill)
        quiet.start()
        try:
            while True:
                line = stdout.readline()
                if line.startswith("{"):
                    return json.loads(line)  # type: ignore[no-any-return]
                if not line and self.process.poll() is not None:
                    break
        finally:
            quiet.cancel()
        if fired.is_set():
            raise TimeoutError(f"{self.process.args!r} said nothing for {timeout}s")
        raise RuntimeError(f"{self.process.args!r} exited with {self.process.returncode}")

    def send(self, line: str) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()


@contextmanager
def spawn(
    argv: list[str],
    cpu: Cores,
    *,
    quiet: bool = False,
    stderr: IO[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Proc]:
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    process = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        text=True,
    )
    try:
        yield Proc(process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_port(port: int, timeout: float = 20, *, proc: Proc | None = None) -> None:
    """Returns once something listens on `port`; raises at once if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.process.poll() is not None:
            raise RuntimeError(f"{proc.process.args!r} exited with {proc.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


STACKS = ("sse", "ws")
"""The SSE and WebSocket gateway on Redis pub/sub (stacks_gateway.py) Runstream replaces."""


@dataclass
class Server:
    pid: int
    system: str
    target: str
    others: tuple[int, ...] = ()
    """Processes whose work is the server's too (a gateway's redis-server)."""
    store: str = ""
    """The Redis URL a gateway's producers publish to."""

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in (self.pid, *self.others))

    def rss(self) -> int:
        return rss_bytes(self.pid)


@contextmanager
def server(
    system: str,
    *,
    sync: str = "FULL",
    cpu: int | None = SERVER_CPU,
    profile: Path | None = None,
    store: str | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[Server]:
    """A Runstream server (`store`: a redis:// URL, else SQLite in a temporary directory;
    `extra`: more serve_runstream.py options), the bare baseline, or "echo": a bare Report
    stream that only acknowledges (echo_report.py).

    The port is chosen free, then the server binds it: another program's connection can
    take it in between (this machine's other work opens connections all the time), so a
    server that says its port is in use is started again on another; any other exit is
    raised with what the server wrote to stderr."""
    with ExitStack() as stack:
        if system == "runstream" and store is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            store = str(Path(tmp) / "bench.db")
        for attempt in (1, 2, 3):
            port = free_port()
            said = stack.enter_context(tempfile.TemporaryFile("w+"))
            proc = stack.enter_context(
                spawn(
                    server_argv(system, port, sync, store, extra, profile),
                    cpu,
                    quiet=True,
                    stderr=said,
                )
            )
            try:
                wait_for_port(port, proc=proc)
                break
            except RuntimeError as exc:
                said.seek(0)
                tail = said.read()[-2000:]
                if attempt < 3:  # its port taken meanwhile, most likely: another port
                    continue
                raise RuntimeError(f"{exc}; it said:\n{tail}") from None
        pid = proc.pid
        if cpu is not None or profile is not None:
            # taskset execs in place; py-spy keeps running as the server's parent.
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pid = int(children[0]) if profile is not None else pid
        try:
            yield Server(pid, system, f"127.0.0.1:{port}")
        finally:
            if profile is not None:  # py-spy writes its profile once the server exits
                os.kill(pid, signal.SIGTERM)
                proc.process.wait(60)


def server_argv(
    system: str,
    port: int,
    sync: str,
    store: str | None,
    extra: tuple[str, ...],
    profile: Path | None,
) -> list[str]:
    if system == "runstream":
        assert store is not None
        argv = [sys.executable, str(HERE / "serve_runstream.py"), str(port), store, sync, *extra]
    elif system == "echo":
        argv = [sys.executable, str(HERE / "echo_report.py"), str(port)]
    else:
        argv = [sys.executable, str(HERE / "baseline_grpc.py"), str(port)]
    if profile is not None:
        pyspy = str(Path(sys.executable).parent / "py-spy")
        argv = [
            pyspy,
            "record",
            "--native",
            "--idle",  # the poll's waits too: the busy share is of all the time
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(profile),
            "--",
            *argv,
        ]
    return argv


@contextmanager
def replica_of(tree: Path, url: str) -> Iterator[tuple[int, int]]:
    """A `runstream serve` of the checkout `tree` on the store `url`, no auth, warnings
    only: its (port, pid), stopped on the way out."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=f"{tree}/src/server:{tree}/src/clients/python")
    argv = [
        sys.executable, "-m", "runstream.cli.main", "serve", "--address", f"127.0.0.1:{port}",
        "--store", url, "--insecure-no-auth", "--log-level", "warning",
    ]  # fmt: skip
    replica = subprocess.Popen(argv, env=env)
    try:
        yield port, replica.pid
    finally:
        replica.terminate()
        replica.wait()


@contextmanager
def redis_server(cpu: Cores = None) -> Iterator[str]:
    """A redis-server with its append-only file synced on every write; yields its URL."""
    with _redis(cpu) as (url, _pid):
        yield url


@contextmanager
def _redis(cpu: Cores) -> Iterator[tuple[str, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", tmp]
        with spawn(argv, cpu, quiet=True) as proc:
            wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0", proc.pid


@contextmanager
def gateway(system: str) -> Iterator[Server]:
    """The SSE / WebSocket gateway and its redis-server, both on the server's core: a Server
    whose CPU is theirs together."""
    assert system in STACKS
    with _redis(SERVER_CPU) as (url, redis_pid):
        port = free_port()
        argv = [sys.executable, str(HERE / "stacks_gateway.py"), str(port), url]
        with spawn(argv, SERVER_CPU, quiet=True) as proc:
            wait_for_port(port, proc=proc)
            yield Server(proc.pid, system, f"127.0.0.1:{port}", (redis_pid,), url)


def loadgen(*args: str, cpu: Cores) -> list[str]:
    pin = ["--cpu", str(cpu)] if cpu is not None else []
    return [sys.executable, str(HERE / "loadgen.py"), *args, *pin]


def producer_argv(
    srv: Server,
    rate: float,
    count: int,
    *,
    closed: bool = False,
    cpu: Cores = SERVER_CPU,
    client: str | None = None,
    linger: float = 0.0,
    steps: int = 0,
) -> list[str]:
    """A loadgen producer for `srv`, on the server's core unless told otherwise; `client`
    "bare" reports to a Runstream server without the SDK; `linger` is the SDK's, and `steps`
    the planned steps of its run (a third done, up to three running). A gateway's producer
    publishes to its Redis (stacks_load.py)."""
    if srv.system in STACKS:
        args = ["produce", srv.store, f"bench-{os.getpid()}-{time.monotonic_ns()}"]
        args += ["--rate", str(rate), "--count", str(count)]
        return [sys.executable, str(HERE / "stacks_load.py"), *args, "--cpu", str(cpu)]
    system = client or srv.system
    args = ["produce", system, srv.target, "--rate", str(rate), "--count", str(count)]
    args += ["--closed"] if closed else []
    args += ["--linger", str(linger)] if linger else []
    args += ["--steps", str(steps)] if steps else []
    return loadgen(*args, cpu=cpu)


def start_watchers(
    stack: ExitStack,
    srv: Server,
    run_id: str,
    watchers: int,
    procs: int,
    *options: str,
    cpu: Cores = CLIENT_CPU,
) -> list[Proc]:
    """`watchers` watch streams split over `procs` loadgen processes (on the client core
    unless told otherwise; a gateway's: stacks_load.py)."""
    shares = [watchers // procs + (i < watchers % procs) for i in range(procs)]
    argvs = [
        loadgen("watch", srv.system, srv.target, run_id, "--watchers", str(n), *options, cpu=cpu)
        for n in shares
        if n
    ]
    if srv.system in STACKS:
        argvs = [[sys.executable, str(HERE / "stacks_load.py"), *argv[2:]] for argv in argvs]
    return [stack.enter_context(spawn(argv, None)) for argv in argvs]


class WatchersFailed(RuntimeError):
    """Some of a scenario's watchers could not open their streams."""


@dataclass
class OpenLoop:
    """The outcome of one open-loop scenario."""

    latency: dict[str, Any]
    server_cpu: float
    producer_cpu: float
    took: float
    events: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def server_busy(self) -> float:
        """The share of its core the server used while events flowed."""
        return self.server_cpu / self.took if self.took else 0.0


def open_loop(
    srv: Server,
    *,
    watchers: int,
    rate: float,
    count: int,
    closed: bool = False,
    watcher_procs: int = 1,
    linger: float = 0.0,
    client: str | None = None,
    per_channel: int = 1,
    drop_after: int = 0,
    window: Callable[[bool], object] | None = None,
    steps: int = 0,
) -> OpenLoop:
    """A producer reports `count` events at `rate`/s (or closed loop) to `watchers` watchers
    (`client`, `steps`: as in producer_argv; `per_channel`: watch streams sharing one connection;
    `drop_after`: each watcher drops its stream after that many measured events and comes
    back a second later; `window`: called with True as the measured events start and with
    False once they are acknowledged)."""
    with ExitStack() as stack:
        argv = producer_argv(
            srv, rate, count, closed=closed, linger=linger, client=client, steps=steps
        )
        producer = stack.enter_context(spawn(argv, None))
        run_id = producer.read()["run_id"] or "-"
        options: tuple[str, ...] = ("--per-channel", str(per_channel)) if per_channel > 1 else ()
        options += ("--drop-after", str(drop_after), "--away", "1") if drop_after else ()
        procs = start_watchers(stack, srv, run_id, watchers, watcher_procs, *options)
        opened = 0
        for proc in procs:
            ready = proc.read(300)
            if ready.get("failed"):
                raise WatchersFailed(f"{srv.system} watchers failed to open: {ready}")
            opened += ready["ready"]
        if opened < watchers:  # still opening when their processes stopped waiting
            raise WatchersFailed(f"{srv.system} watchers: {opened} of {watchers} opened")
        time.sleep(0.3)
        if window is not None:
            window(True)
        cpu0, clients0 = srv.cpu(), sum(p.cpu() for p in procs)
        producer.send("go")
        done = producer.read(600)
        server_cpu = srv.cpu() - cpu0
        if window is not None:
            window(False)
        clients_cpu = sum(p.cpu() for p in procs) - clients0
        results = [proc.read(600) for proc in procs]
    latency = _merge(results)
    return OpenLoop(
        latency, server_cpu, done["cpu"], done["took"], count, {"clients_cpu": clients_cpu}
    )


def spread_load(
    servers: list[Server], *, runs: int, watchers: int, rate: float, count: int
) -> tuple[dict[str, Any], list[float], float]:
    """`runs` runs, each with a producer at `rate`/s and `watchers` watchers, dealt round-robin
    over `servers` (replicas on one store); producers and watchers float over every core.

    Returns the merged latency, each server's share of a core, and the seconds it took.
    """
    with ExitStack() as stack:
        producers, procs = [], []
        for i in range(runs):
            srv = servers[i % len(servers)]
            argv = producer_argv(srv, rate, count, cpu=EVERY_CORE)
            producer = stack.enter_context(spawn(argv, None))
            producers.append(producer)
            run_id = producer.read()["run_id"]
            procs += start_watchers(stack, srv, run_id, watchers, 1, cpu=EVERY_CORE)
        for proc in procs:
            proc.read(300)
        time.sleep(0.3)
        cpu0 = [srv.cpu() for srv in servers]
        t0 = time.perf_counter()
        for producer in producers:
            producer.send("go")
        for producer in producers:
            producer.read(600)
        took = time.perf_counter() - t0
        busy = [(srv.cpu() - c) / took for srv, c in zip(servers, cpu0, strict=True)]
        results = [proc.read(600) for proc in procs]
    return _merge(results), busy, took


def _merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Combines watcher processes' summaries: counts add up, percentiles take the worst."""
    merged: dict[str, Any] = {"events": 0, "lost": 0, "repeated": 0}
    for result in results:
        for key in ("events", "lost", "repeated"):
            merged[key] += result.get(key, 0)
        for key in ("p50", "p99", "max"):
            if key in result:
                merged[key] = max(merged.get(key, 0.0), result[key])
    return merged
