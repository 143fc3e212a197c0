"""Shared fixtures: real Runstream servers on port 0 over real SQLite files or a real Redis.

Every test that needs a server gets its own, with its own store (a database file under
tmp_path, or its own key prefix in a redis-server this session started), and the server is
stopped in ``finally`` so a failing test never leaks a port. ``store_kind`` says which store:
SQLite by default; tests/server/conftest.py runs every server test on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import parse_url

from tests.identity import Pki, keys, secured  # noqa: F401 - identity fixtures, shared by tests/*

ROOT = Path(__file__).resolve().parent.parent
ConfigFactory = Callable[..., ServerConfig]


class RedisProcess:
    """A real redis-server on a free loopback port, with its own directory and AOF on.

    ``appendfsync always`` by default: Redis answers a write only once it is in the AOF on
    disk, so ``kill -9`` loses nothing acknowledged. Extra arguments pass straight through
    (``--cluster-enabled yes`` for a cluster node).
    """

    def __init__(
        self, directory: Path, *extra: str, fsync: str = "always", tls: Pki | None = None
    ) -> None:
        """With `tls`, Redis listens with TLS only, on `port`, with the server certificate
        of that PKI (clients need not present one)."""
        self.directory = directory
        self.port = free_port()
        if "--cluster-enabled" in extra:
            # Its bus on a port of this worker's own too: by default Redis takes port + 10,000,
            # which for the ports here lies among the kernel's ephemeral ones or in the other
            # worker's share (a node's bus once took a replica's port there, both tests failed).
            extra = (*extra, "--cluster-port", str(free_port()))
        self.extra = extra
        self.fsync = fsync
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _listen(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.server_cert),
            "--tls-key-file", str(self.tls.server_key),
            "--tls-ca-cert-file", str(self.tls.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
        if self.tls is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.tls.ca_file))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing; run `make setup` (scripts/setup.sh test)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    *self._listen(),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "yes",
                    "--appendfsync", self.fsync,
                    "--dir", str(self.directory),
                    # A replica's first sync starts at once, not after Redis's default 5 s
                    # wait for more replicas to join it.
                    "--repl-diskless-sync-delay", "0",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with self._connect() as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to flush anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, again every half second: Redis refuses to shut down while it writes its
        first AOF (a replica just after its sync), and does not try again by itself."""
        deadline = time.monotonic() + 10
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                return
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the session; each test keeps to its own key prefix."""
    redis = RedisProcess(tmp_path_factory.mktemp("redis"))
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def redis_store_url(redis: RedisProcess, store: Path) -> str:
    """The store URL of `store`'s own keys: one prefix per path, so a test's "restart on the
    same store" finds its data and no other test's."""
    prefix = hashlib.sha256(str(store).encode()).hexdigest()[:16]
    return f"{redis.url}?prefix=t{prefix}"


async def index_entries_only(store_url: str, run_id: str, tenant: str, at_us: int) -> None:
    """What a replica killed between a create's index entries and its script leaves in the
    Redis store at `store_url`: `run_id` in the run indexes at `at_us`, and no run."""
    url = parse_url(store_url)
    names = RedisKeys(url.prefix)
    client = aioredis.from_url(url.url)
    try:
        for index in (names.runs, names.active, names.tenant_runs(tenant)):
            await client.zadd(index, {run_id: at_us}, nx=True)
    finally:
        await client.aclose()


@pytest.fixture
def store_kind() -> str:
    """Which store servers use: "sqlite" here; tests/server parametrizes it over all."""
    return "sqlite"


@pytest.fixture
def server_config(store_kind: str, request: pytest.FixtureRequest) -> ConfigFactory:
    """Makes a ServerConfig on 127.0.0.1:0 for the store named by a path (the SQLite file,
    or a Redis key prefix derived from it); the same path gives the same store."""

    def make(store: Path, **fields: object) -> ServerConfig:
        fields.setdefault("address", "127.0.0.1:0")
        if store_kind == "redis":
            redis: RedisProcess = request.getfixturevalue("redis_server")
            return ServerConfig(
                store_path=store,
                store_url=redis_store_url(redis, store),
                **fields,  # type: ignore[arg-type]
            )
        if store_kind == "sqlite-normal":  # commits made on the event loop, not a thread
            fields.setdefault("sqlite_synchronous", "NORMAL")
        return ServerConfig(store_path=store, **fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def server(tmp_path: Path, server_config: ConfigFactory) -> AsyncIterator[RunstreamServer]:
    """An in-process grpc.aio Runstream server on 127.0.0.1:<free port> over its own store."""
    srv = RunstreamServer(server_config(tmp_path / "runstream.db"))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


@pytest.fixture(autouse=True)
def _no_log_handler_on_a_closed_stream() -> None:
    """A test that runs the CLI in process (its main() sets up logging with force=True)
    leaves the root logger writing to that test's captured stderr, which pytest closes after
    it: every later test's log lines in that process came out as "--- Logging error ---"
    tracebacks (seen with two test processes). Such handlers are taken off first."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            root.removeHandler(handler)


def _ephemeral_low() -> int:
    """Where the kernel starts the ports it hands to bind(0) and outgoing connections."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


_PORTS_LOW = 20000
# Each process starts at a place of its own in its share: two pytest runs side by side (no
# xdist, both "gw0") handed out the same ports in the same order, and one's server took the
# port the other's had just picked.
_PORT_TRIES = itertools.count(random.randrange(1 << 16))


def free_port() -> int:
    """A TCP port free a moment ago on 127.0.0.1, for a server a test starts on it (Envoy,
    a subprocess, Redis). From this test process's own share of the ports below the
    kernel's ephemeral ones: no server binding port 0 and no outgoing connection takes it
    meanwhile, and no other pytest-xdist worker hands it out (one did, once, to its own
    gRPC server between another's pick and Envoy's bind)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    span = (_ephemeral_low() - _PORTS_LOW) // max(workers, 1)
    for _ in range(max(span, 0)):
        port = _PORTS_LOW + worker * span + next(_PORT_TRIES) % span
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # no range of its own below the ephemeral ports
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_module(module: str, *args: str, within: float = 60) -> tuple[int, bytes, bytes]:
    """Runs ``python -m module args`` from the repository's root to its end (killed after
    `within` seconds, and the test fails): its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out, err


@contextlib.asynccontextmanager
async def serving_on(
    store_url: str, directory: Path, *, grace: float | None = 0.5, **fields: object
) -> AsyncIterator[RunstreamServer]:
    """An in-process server on the shared store `store_url` (other ServerConfig `fields`
    as given), stopped on the way out."""
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=directory / "unused.db",
            store_url=store_url,
            **fields,  # type: ignore[arg-type]
        )
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=grace)


@contextlib.asynccontextmanager
async def replicas_serving(
    store_url: str, directory: Path, **fields: object
) -> AsyncIterator[tuple[tuple[RunstreamServer, grpc.aio.Channel], ...]]:
    """Two in-process replicas on the shared store `store_url` (other ServerConfig `fields`
    as given; stopped at once on the way out), each with a channel to it."""
    async with (
        serving_on(store_url, directory / "a", grace=None, **fields) as a,
        serving_on(store_url, directory / "b", grace=None, **fields) as b,
        grpc.aio.insecure_channel(a.target) as on_a,
        grpc.aio.insecure_channel(b.target) as on_b,
    ):
        yield (a, on_a), (b, on_b)


@contextlib.asynccontextmanager
async def replica_channels(
    store_url: str, directory: Path, **fields: object
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.Channel]]:
    """Two in-process replicas on the shared store `store_url`, and a channel to each."""
    async with replicas_serving(store_url, directory, **fields) as ((_, on_a), (_, on_b)):
        yield on_a, on_b


def redis_cli(*args: str) -> str:
    binary = shutil.which("redis-cli")
    assert binary is not None, "redis-cli is missing; run `make setup`"
    done = subprocess.run([binary, *args], capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


def wait_until_linked(primary: RedisProcess, replica: RedisProcess, within: float = 30) -> None:
    """Until the replica has synced and the primary counts it online: only then does WAIT
    ask it for its acknowledgement. The replica's own ``master_link_status:up`` comes first,
    and a WAIT sent in between waited its whole timeout for a replica not yet online."""
    deadline = time.monotonic() + within
    while "master_link_status:up" not in redis_cli("-p", str(replica.port), "info", "replication"):
        assert time.monotonic() < deadline, "the replica did not sync with the primary"
        time.sleep(0.05)
    while "state=online" not in redis_cli("-p", str(primary.port), "info", "replication"):
        assert time.monotonic() < deadline, "the primary does not count its replica online"
        time.sleep(0.05)


@contextlib.contextmanager
def redis_cluster(
    directory: Path, masters: int = 3, replicas: int = 0
) -> Iterator[list[RedisProcess]]:
    """A real Redis Cluster: `masters` nodes, each with `replicas` replicas, formed with
    `redis-cli --cluster create`; stopped on the way out."""
    nodes = [
        RedisProcess(directory / f"node{i}", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf")
        for i in range(masters * (1 + replicas))
    ]  # fmt: skip
    try:
        for node in nodes:
            node.start()
        redis_cli(
            "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
            "--cluster-replicas", str(replicas), "--cluster-yes",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not all(
            "cluster_state:ok" in redis_cli("-p", str(n.port), "cluster", "info")
            and "master_link_status:down" not in redis_cli("-p", str(n.port), "info", "replication")
            # and every node's view has every replica with its master (gossip spreads it)
            and _replicas_seen(n) == masters * replicas
            for n in nodes
        ):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.1)
        yield nodes
    finally:
        # SIGKILL: nothing of a test's cluster is read afterwards, and a master told to stop
        # waits up to Redis's shutdown-timeout (10 s) for a replica to catch up.
        for node in nodes:
            node.kill()


def _replicas_seen(node: RedisProcess) -> int:
    """How many replicas this node's CLUSTER NODES shows, each with its master's id."""
    lines = redis_cli("-p", str(node.port), "cluster", "nodes").splitlines()
    return sum(1 for f in map(str.split, lines) if "slave" in f[2] and f[3] != "-")


def owned_slots(node: RedisProcess) -> set[int]:
    """The slots this node serves, from its own line of CLUSTER NODES."""
    mine = next(line for line in redis_cli("-p", str(node.port), "cluster", "nodes").splitlines()
                if "myself" in line)  # fmt: skip
    slots: set[int] = set()
    for part in mine.split()[8:]:
        first, _, last = part.partition("-")
        slots.update(range(int(first), int(last or first) + 1))
    return slots


def is_master(node: RedisProcess) -> bool:
    return "master" in redis_cli("-p", str(node.port), "role").split("\n", 1)[0]


def move_slot(nodes: list[RedisProcess], slot: int) -> RedisProcess:
    """Moves one slot, keys and all, to another master (as `redis-cli --cluster reshard`
    does, one slot); returns the new owner."""
    source, target, rest = start_moving_slot(nodes, slot)
    finish_moving_slot(nodes, slot, source, target, rest)
    return target


def start_moving_slot(
    nodes: list[RedisProcess], slot: int, first_keys: int | None = None
) -> tuple[RedisProcess, RedisProcess, list[str]]:
    """Marks `slot` as moving to another master and migrates its first `first_keys` keys (all when
    None); returns the source, the target and the keys still to move."""
    source = next(n for n in nodes if slot in owned_slots(n))
    target = next(n for n in nodes if n is not source and is_master(n))
    src, dst = str(source.port), str(target.port)
    redis_cli("-p", dst, "cluster", "setslot", str(slot), "importing", _node_id(source))
    redis_cli("-p", src, "cluster", "setslot", str(slot), "migrating", _node_id(target))
    in_slot = redis_cli("-p", src, "cluster", "getkeysinslot", str(slot), "1000").split()
    assert in_slot, "the run's keys should be in its slot"
    now = in_slot if first_keys is None else in_slot[:first_keys]
    redis_cli("-p", src, "migrate", "127.0.0.1", dst, "", "0", "10000", "keys", *now)
    return source, target, in_slot[len(now) :]


def finish_moving_slot(
    nodes: list[RedisProcess],
    slot: int,
    source: RedisProcess,
    target: RedisProcess,
    rest: list[str],
) -> None:
    """Migrates the keys a :func:`start_moving_slot` left and gives every node the slot's
    new owner."""
    if rest:
        redis_cli("-p", str(source.port), "migrate", "127.0.0.1", str(target.port), "", "0",
                  "10000", "keys", *rest)  # fmt: skip
    dst_id = _node_id(target)
    for node in (target, source, *(n for n in nodes if n not in (source, target))):
        redis_cli("-p", str(node.port), "cluster", "setslot", str(slot), "node", dst_id)


def _node_id(node: RedisProcess) -> str:
    return redis_cli("-p", str(node.port), "cluster", "myid").strip()


@dataclass
class ServerProcess:
    """A `runstream serve` subprocess: real process, real port, real SQLite file."""

    port: int
    store_path: Path
    process: subprocess.Popen[bytes] | None = None
    store_url: str = ""
    """A redis:// store instead of the SQLite file (the log still goes beside store_path)."""
    extra: tuple[str, ...] = ()
    """More `runstream serve` options."""
    pythonpath: str = ""
    """Another checkout's code to run (an earlier release), instead of this one's."""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        # Popen gives the child its own descriptor, so the file can close right away.
        with open(self.store_path.with_suffix(".log"), "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runstream.cli.main",
                    "serve",
                    "--address",
                    self.target,
                    "--store",
                    self.store_url or str(self.store_path),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    **({"PYTHONPATH": self.pythonpath} if self.pythonpath else {}),
                },
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("server did not start listening")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush; what was acknowledged must already be durable."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(20)


@contextlib.contextmanager
def two_replicas(directory: Path, store_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two started `runstream serve` processes on one Redis store; killed on the way out."""
    a = ServerProcess(port=free_port(), store_path=directory / "a.db", store_url=store_url)
    b = ServerProcess(port=free_port(), store_path=directory / "b.db", store_url=store_url)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.kill()
        b.kill()


@contextlib.contextmanager
def replicas_on_redis(
    directory: Path, prefix: str
) -> Iterator[tuple[RedisProcess, ServerProcess, ServerProcess]]:
    """A redis-server of their own and two replicas on it; all stopped on the way out."""
    redis = RedisProcess(directory / "redis")
    redis.start()
    try:
        with two_replicas(directory, f"{redis.url}?prefix={prefix}") as (a, b):
            yield redis, a, b
    finally:
        redis.stop()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two `runstream serve` replicas on a redis-server of their own."""
    with replicas_on_redis(tmp_path, "replicas") as (_, a, b):
        yield a, b


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A `runstream serve` subprocess; the test starts, kills and restarts it at will."""
    proc = ServerProcess(port=free_port(), store_path=tmp_path / "runstream.db")
    try:
        yield proc
    finally:
        proc.kill()
