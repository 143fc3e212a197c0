"""Assembles and runs the server: config, the grpc.aio server, health, reflection, shutdown.

``RunstreamServer`` is what tests and the embedded demo start in-process; ``serve_forever``
is what ``runstream serve`` runs, stopping gracefully on SIGTERM, SIGINT or SIGHUP: health turns
NOT_SERVING first (so load balancers stop routing) and health Watch streams end once they have
said so, live streams end with UNAVAILABLE (so clients resume elsewhere), in-flight unary calls
get the grace period to finish while health still answers NOT_SERVING, then the listener
closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from importlib import metadata
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2
from runstream.v1 import (
    decision_service_pb2,
    decision_service_pb2_grpc,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    stats_service_pb2,
    stats_service_pb2_grpc,
)

from runstream_server.api.checks import request_checks
from runstream_server.api.decision_service import DecisionServicer
from runstream_server.api.decoding import DecodingInterceptor
from runstream_server.api.draining import CallTracker
from runstream_server.api.introspection import (
    MAX_HEALTH_WATCHES,
    HealthService,
    serve_health,
    serve_reflection,
)
from runstream_server.api.methods import MethodTable
from runstream_server.api.report_service import ReportServicer
from runstream_server.api.run_service import RunServicer, frame_event
from runstream_server.api.stats_service import StatsServicer
from runstream_server.auth.edge import (
    SecurityConfig,
    auth_rewriters,
    bind_error,
    check_exposure,
    listen,
)
from runstream_server.auth.interceptor import AuthInterceptor
from runstream_server.auth.limits import LimitInterceptor
from runstream_server.background import spawn_logged, stop_task
from runstream_server.domain.hub import Hub
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import Limits, Retention, RunManager
from runstream_server.domain.watching import DEFAULT_HEARTBEAT_SECONDS
from runstream_server.observability import (
    ObservedStore,
    PrometheusMetrics,
    RequestInterceptor,
    RpcTracer,
    RunTracer,
    Telemetry,
    otlp_endpoint,
    tracer_provider,
)
from runstream_server.observability.in_force import in_force
from runstream_server.rpc.errors import ErrorInterceptor, RejectionLog
from runstream_server.rpc.handlers import HandlerRewriter, RewriterChain
from runstream_server.store.base import EventStore, StoreUnusable
from runstream_server.store.sqlite import SqliteEventStore
from runstream_server.store.sqlite_backups import BackupPasses, Backups
from runstream_server.store_health import StoreHealth

log = logging.getLogger("runstream.server")

LIVENESS_SERVICE = "liveness"
"""The grpc.health.v1 service name a liveness probe asks; "" (overall) is for readiness."""

DRAIN_QUIET_PERIOD = 0.25
"""How long no call may have arrived before a stopping ``runstream serve`` stops gRPC (within
its grace): a load balancer still sending calls is sending one every few milliseconds, not
this seldom."""

MAX_GRPC_SECONDS = 2_147_483
"""The longest duration gRPC takes (``serve --max-connection-age`` and its grace, about 24.8
days): its options are milliseconds in a C int, and a longer one overflows at start."""

MAX_STOP_SECONDS = 3600.0
"""The longest ``--drain-delay`` and ``--shutdown-grace``: an hour is more than any load
balancer or call needs, and a slip of unit (``--drain-delay 5000``, milliseconds meant) was
an 83-minute stop."""

SERVICE_NAMES = (
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    report_service_pb2.DESCRIPTOR.services_by_name["ReportService"].full_name,
    decision_service_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name,
    stats_service_pb2.DESCRIPTOR.services_by_name["StatsService"].full_name,
)


@dataclass(frozen=True)
class ServerConfig:
    """Everything a Runstream server can be told; every field has a working default."""

    address: str = "127.0.0.1:50051"
    """host:port to listen on; port 0 picks a free port."""
    store_path: Path = Path("runstream.db")
    """The SQLite file; created when missing."""
    store_url: str = ""
    """A ``redis://`` or ``rediss://`` URL: run as one of several replicas sharing that Redis
    (see :mod:`runstream_server.store.redis`); empty for the SQLite file."""
    check_store: bool = True
    """Check the SQLite file at start (quick_check: about 3 s per GB) and refuse a damaged
    one."""
    sqlite_synchronous: str = "FULL"
    """FULL survives power loss; NORMAL survives process crashes only, and is faster."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_SECONDS
    """Default seconds of idle before a watch stream gets a heartbeat."""
    watcher_buffer_events: int = 4096
    """Events buffered per watcher before it falls back to reading the store."""
    watcher_buffer_bytes: int = 4 * 1024 * 1024
    """... and bytes of them (events may be 256 KiB each: a watcher that stopped reading
    held up to a gigabyte by the count alone)."""
    watch_send_timeout: float = 60.0
    """Seconds one message of a watch stream (WatchRun, WatchRuns) may wait to be sent, held
    by HTTP/2 flow control because its client stopped reading, before the stream ends
    RESOURCE_EXHAUSTED (reason SEND_STALLED; the watcher resumes from its last seq) and lets
    go of what it held; 0: never. See :class:`~runstream_server.domain.hub.Sends`."""
    max_message_bytes: int = 4 * 1024 * 1024
    """Largest gRPC message accepted; larger ones get RESOURCE_EXHAUSTED."""
    accept_backlog: int = 20_000
    """New calls the gRPC core holds while the event loop takes on a burst (thousands of
    watchers connecting at once). Past it, new calls get CANCELLED: at random up to twice
    this many, all of them beyond. gRPC's own default (1,000) refuses such bursts."""
    health_watch_streams: int = MAX_HEALTH_WATCHES
    """grpc.health.v1 Watch streams open at once (health needs no token); past it a new one
    gets RESOURCE_EXHAUSTED."""
    limits: Limits = field(default_factory=Limits)
    insight: InsightPolicy = field(default_factory=InsightPolicy)
    """When runs count as stalled, how estimates learn, when speed milestones fire."""
    retention: Retention = field(default_factory=Retention)
    """How long finished runs keep their event logs (forever by default)."""
    backups: Backups | None = None
    """Copies of the SQLite store taken while it serves (see store/sqlite_backups.py); None
    takes none. Redis keeps its own (RDB, AOF)."""
    shutdown_grace: float = 5.0
    """Seconds in-flight calls get to finish at shutdown."""
    drain_delay: float = 0.0
    """Seconds a stopping server answers NOT_SERVING but otherwise serves on (streams, new
    calls) before its shutdown begins, so load balancers' health checks take it out of
    rotation first; 0 for one server with nobody to take over."""
    drain_quiet: float = 0.0
    """Seconds without a new call the drain waits for, with the listener open, before gRPC
    stops (see :mod:`~runstream_server.api.draining`); ``runstream serve`` uses
    DRAIN_QUIET_PERIOD, and an embedded server with no load balancer in front, none."""
    security: SecurityConfig = field(default_factory=SecurityConfig)
    """Tokens, TLS, and whether plaintext without auth may leave loopback."""
    metrics_address: str | None = None
    """host:port to serve Prometheus metrics on (/metrics); None serves none."""
    otlp_endpoint: str | None = None
    """OTLP/gRPC endpoint for traces; None falls back to the standard OTEL_ variables."""
    keepalive_time: float = 30.0
    """Seconds of silence on a connection before the server pings the client."""
    keepalive_timeout: float = 10.0
    """Seconds the server waits for a ping's answer before it closes the connection."""
    max_connection_age: float | None = None
    """Seconds after which a connection is asked to go away (GOAWAY; gRPC adds +-10 %
    jitter), so long-lived clients reconnect and rebalance across replicas; None: never.
    At most :data:`MAX_GRPC_SECONDS`."""
    max_connection_age_grace: float | None = None
    """Seconds a connection's open streams then get to finish; None: as long as they last.
    At most :data:`MAX_GRPC_SECONDS`."""


class RunstreamServer:
    """One Runstream server: store, domain, gRPC services, health and reflection."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self._server: aio.Server | None = None
        self._store: ObservedStore | None = None
        self._store_health: asyncio.Task[None] | None = None
        self._sharing: asyncio.Task[None] | None = None
        self._backups: asyncio.Task[None] | None = None
        self._health: HealthService | None = None
        self._calls = CallTracker()
        self._hurry = asyncio.Event()
        self._rejections = RejectionLog()
        self._auth: list[HandlerRewriter] = []
        self.runs: RunManager | None = None
        self.telemetry: Telemetry | None = None
        self.metrics_port = 0

    @property
    def target(self) -> str:
        """Where clients reach the server: its address with the port it listens on (a unix
        socket as it is: it has no port, and was said as ``unix:1``)."""
        if self.config.address.startswith(("unix:", "unix-abstract:")):
            return self.config.address
        host = self.config.address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def _telemetry(self) -> tuple[Telemetry, RpcTracer | None]:
        """Metrics when an address is configured, traces when an endpoint is."""
        config = self.config
        metrics = PrometheusMetrics() if config.metrics_address else None
        endpoint = otlp_endpoint(config.otlp_endpoint)
        provider = tracer_provider(endpoint) if endpoint else None
        run_tracer = RunTracer(provider) if provider is not None else None
        rpc_tracer = RpcTracer(provider) if provider is not None else None
        return Telemetry(metrics, run_tracer), rpc_tracer

    async def _count_open_decisions(self, runs: RunManager, telemetry: Telemetry) -> None:
        async for run_id, decision in runs.stored_open_decisions():
            asked = decision.create_time.ToDatetime(UTC)
            telemetry.decision_open(run_id, decision.decision_id, asked)

    async def start(self) -> None:
        """Opens the store, starts the runs' background work and listens; a start that fails
        at any point after the checks below undoes what it did (see :meth:`_abandon`)."""
        config = self.config
        check_exposure(config.address, config.security)
        # Before the store exists: an address it cannot listen on is the one line `serve`
        # prints, and creates nothing.
        check_addresses(config)
        self._auth = auth_rewriters(config.security, self._rejections)
        telemetry, rpc_tracer = self._telemetry()
        self.telemetry = telemetry
        created = store_files_to_create(config)
        try:
            store = await self._open_store(telemetry)
            runs = await self._start_runs(store, telemetry)
            server, limits = self._build_server(store, runs, telemetry, rpc_tracer)
            await self._listen(server, telemetry)
            await self._start_background(store, limits)
            self._announce(store, telemetry)
        except BaseException:
            # A store that did not open may be another server's, created since `created` was
            # listed (two started at once): its files stay, and an open that failed undid its
            # own. Only directories go, and only empty ones.
            opened = self._store is not None
            await self._abandon(created if opened else [p for p in created if p.is_dir()])
            raise

    async def _open_store(self, telemetry: Telemetry) -> ObservedStore:
        """Opens, checks and counts the store; held as ``_store`` once it is open, for
        :meth:`_abandon` to close (a store whose open failed has undone its own)."""
        config = self.config
        store = ObservedStore(open_store(config), telemetry)
        announce_store_check(config)
        await store.open()
        self._store = store
        await store.tally_runs()
        # Only once the store is open and checked: a store `serve` refuses is its one line,
        # not a "starting" line for a server that never started.
        log.info("starting on %s with store %s", config.address, describe_store(config))
        return store

    async def _start_runs(self, store: ObservedStore, telemetry: Telemetry) -> RunManager:
        """The domain over `store`, its background work started (on a shared store that
        follows the other replicas' commits) and its open questions counted."""
        config = self.config
        runs = self.runs = RunManager(
            store,
            Hub(
                config.watcher_buffer_events,
                max_pending_bytes=config.watcher_buffer_bytes,
                page_events=config.limits.watch_page_events,
                page_bytes=config.limits.watch_page_bytes,
                send_timeout=config.watch_send_timeout,
            ),
            config.limits,
            config.insight,
            config.retention,
            observer=telemetry,
            frame=frame_event,
        )
        await runs.start()
        await self._count_open_decisions(runs, telemetry)
        return runs

    def _build_server(
        self,
        store: ObservedStore,
        runs: RunManager,
        telemetry: Telemetry,
        rpc_tracer: RpcTracer | None,
    ) -> tuple[aio.Server, LimitInterceptor]:
        """The gRPC server with every service, health and reflection, not yet listening; and
        its limits, whose sharing among replicas starts with the background work."""
        config = self.config
        limits = LimitInterceptor(
            config.security.limits,
            store,
            request_checks(config.limits, config.heartbeat_interval),
            telemetry.limit_refused,
        )
        server = aio.server(
            # Requests first (it sees every call's final status, refused ones included), then
            # auth (a refused call goes no further); ErrorInterceptor before the limits and
            # DecodingInterceptor: it answers the errors they and their handlers raise; the
            # call tracker below it (it returns what the behavior returns, for it to await).
            interceptors=[
                RewriterChain(
                    [
                        RequestInterceptor(telemetry, rpc_tracer),
                        *self._auth,
                        ErrorInterceptor(self._rejections),
                        self._calls,
                        limits,
                        DecodingInterceptor(),
                    ]
                )
            ],
            options=grpc_options(config),
        )
        methods = MethodTable(raw_response_methods={"/runstream.v1.RunService/WatchRun"})
        run_service_pb2_grpc.add_RunServiceServicer_to_server(  # type: ignore[no-untyped-call]
            RunServicer(runs, config.heartbeat_interval), methods
        )
        report_service_pb2_grpc.add_ReportServiceServicer_to_server(  # type: ignore[no-untyped-call]
            ReportServicer(runs), methods
        )
        decision_service_pb2_grpc.add_DecisionServiceServicer_to_server(  # type: ignore[no-untyped-call]
            DecisionServicer(runs), methods
        )
        stats_service_pb2_grpc.add_StatsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            StatsServicer(
                telemetry,
                version=_version(),
                store_kind="redis" if config.store_url else "sqlite",
                store_size=self._store_size,
            ),
            methods,
        )
        self._health = serve_health(methods, config.health_watch_streams)
        serve_reflection(methods, SERVICE_NAMES)
        server.add_generic_rpc_handlers((methods,))
        return server, limits

    async def _listen(self, server: aio.Server, telemetry: Telemetry) -> None:
        """Listens on the address (and serves metrics, when asked), then starts `server`;
        held as ``_server`` once started."""
        config = self.config
        try:
            self.port = listen(server, config.address, config.security)
        except RuntimeError as exc:
            self.port = 0
            cause: BaseException | None = exc
        else:
            cause = None
        if self.port == 0:
            raise OSError(f"cannot listen on {config.address}: {listen_failure(config)}") from cause
        if config.metrics_address and telemetry.metrics is not None:
            self.metrics_port = telemetry.metrics.serve(config.metrics_address)
        await server.start()
        self._server = server

    async def _start_background(self, store: ObservedStore, limits: LimitInterceptor) -> None:
        """Health SERVING, then the work that runs while the server does: the store's
        health watch, limit sharing among replicas, backups."""
        config = self.config
        assert self._health is not None
        health = StoreHealth(self._health, SERVICE_NAMES, store, self.runs)
        await health.set_serving(True)
        # For liveness probes: SERVING while the process answers, whatever the store does
        # (a Redis outage must take replicas out of rotation, not restart them all).
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self._store_health = spawn_logged(
            health.follow(), "runstream-store-health", health.unfollowed
        )
        if store.shared and config.security.auth is not None:  # per-principal limits
            self._sharing = spawn_logged(limits.sharing.share_forever(), "runstream-limit-sharing")
        if config.backups is not None:
            sqlite = store.inner
            assert isinstance(sqlite, SqliteEventStore)  # check_addresses refused Redis
            passes = BackupPasses(config.backups, sqlite.backup, sqlite.path)
            self._backups = spawn_logged(passes.run_forever(), "runstream-backups")

    def _announce(self, store: ObservedStore, telemetry: Telemetry) -> None:
        """Logs what is in force (the posture line), and where metrics and traces go."""
        config = self.config
        algorithms = [a for r in self._auth if isinstance(r, AuthInterceptor) for a in r.algorithms]
        posture = in_force(
            config,
            target=self.target,
            version=_version(),
            algorithms=algorithms,
            store=describe_store(config),
            persistence=store.inner.persistence,
        )
        log.info("%s", posture)
        if telemetry.metrics is not None and telemetry.metrics.url:
            log.info("metrics on %s", telemetry.metrics.url)
        if endpoint := otlp_endpoint(config.otlp_endpoint):
            log.info("traces to %s (OTLP/gRPC)", endpoint)

    async def _abandon(self, created: Sequence[Path]) -> None:
        """Undoes a start that failed, wherever it failed: stops listening and the server's
        background work (on Redis, the store's own too: it would run on in an embedding
        caller's loop), closes the store and telemetry, and removes what opening the store
        created. :meth:`stop` has nothing to stop after a failed start."""
        for task in (self._store_health, self._sharing, self._backups):
            if task is not None:
                await stop_task(task)
        self._store_health = self._sharing = self._backups = None
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
        if self.runs is not None:
            self.runs.shutdown()
            await self.runs.stopped()
        if self._store is not None:
            await self._store.close()
            self._store = None
        if self.telemetry is not None:
            # Off the loop, as in stop(): flushing traces may wait on a collector.
            await asyncio.to_thread(self.telemetry.close)
        for path in created:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    path.rmdir()  # only while empty: nothing but the store was put there
                else:
                    path.unlink()

    def _store_size(self) -> int:
        """Bytes of the SQLite database and its write-ahead log; 0 for a Redis store."""
        if self.config.store_url:
            return 0
        path = self.config.store_path
        total = 0
        for file in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += file.stat().st_size
        return total

    def hurry(self, why: str) -> None:
        """Skips what is left of a stop's drain delay and grace (`why`: a second signal, said
        in the log): the calls still in flight are cut, and the server stops at once."""
        if not self._hurry.is_set():
            self._hurry.set()
            log.warning("%s: skipping the rest of the drain and grace; ending calls now", why)

    async def _unless_hurried(self, awaitable: Awaitable[object], within: float | None) -> None:
        """Waits for `awaitable` for at most `within` seconds (None: for ever), or until the
        stop is hurried, whichever comes first; it is then cancelled if it has not ended."""
        waiting = asyncio.ensure_future(awaitable)
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait(
                (waiting, hurried), timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiting.cancel()
            hurried.cancel()

    def _cutting(self, why: str) -> list[str]:
        """The calls gRPC is about to cut (the shutdown grace is over, or a second signal
        hurried the stop), logged: their clients get a bare UNAVAILABLE ("Cancelling all
        calls"), and an operator looking for why saw only "stopped"."""
        methods = self._calls.open_methods()
        if methods:
            counts = collections.Counter(methods)
            log.warning(
                "cutting %d calls still in flight (%s): %s",
                len(methods),
                why,
                ", ".join(f"{method} x{n}" if n > 1 else method for method, n in counts.items()),
            )
        return methods

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING (health Watch streams say so, then end), streams end
        UNAVAILABLE, calls get `grace` seconds while health still answers, then gRPC stops;
        :meth:`hurry` cuts the drain delay and the grace short."""
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + (self.config.shutdown_grace if grace is None else grace)

        def left() -> float:
            return 0.0 if self._hurry.is_set() else max(0.0, deadline - loop.time())

        for task in (self._store_health, self._sharing, self._backups):
            if task is not None:
                task.cancel()
        self._store_health = self._sharing = self._backups = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.config.drain_delay > 0 and not self._hurry.is_set():
            log.info("draining: NOT_SERVING for %g s before shutting down", self.config.drain_delay)
            await self._unless_hurried(self._hurry.wait(), self.config.drain_delay)
            deadline += self.config.drain_delay
        if self.runs is not None:
            self.runs.shutdown()
        # gRPC's stop refuses every new call at once: a probe's Check would find no server
        # rather than NOT_SERVING. So the calls in flight finish with the listener open first,
        # and calls a load balancer still sends are refused by the domain (see draining).
        await self._unless_hurried(self._calls.ended(), left())
        await self._unless_hurried(self._calls.quiet(self.config.drain_quiet), left())
        # A hurry during gRPC's own grace: its stop again without one cuts every call now.
        # The calls it cuts are named as it cuts them: at once when no grace is left (the
        # drain took it all, or a hurry), else when the grace runs out.
        grace = left()
        cut: list[str] = []
        noting: asyncio.TimerHandle | None = None
        over, hurried = "the shutdown grace is over", "the stop was hurried"
        if grace > 0:
            noting = loop.call_at(deadline, lambda: cut.extend(self._cutting(over)))
        else:
            cut = self._cutting(hurried if self._hurry.is_set() else over)
        stopping = asyncio.ensure_future(self._server.stop(grace))
        await self._unless_hurried(asyncio.shield(stopping), None)
        if not stopping.done():
            if noting is not None:
                noting.cancel()
                cut = self._cutting(hurried)
            await self._server.stop(None)
        await stopping
        if noting is not None:
            noting.cancel()
        self._server = None
        self._rejections.flush()  # refusals counted since the last summary: no later one comes
        for rewriter in self._auth:
            rewriter.close()
        if self.runs is not None:
            await self.runs.stopped()  # no background work holds the store any more
        if self._store is not None:
            await self._store.close()
        if self.telemetry is not None:
            # Off the loop: flushing traces may wait on a collector (even one on this loop).
            await asyncio.to_thread(self.telemetry.close)
        log.info(
            "stopped in %.1f s%s",
            loop.time() - began,
            f"; {len(cut)} calls in flight were cut" if cut else "",
        )


def grpc_options(config: ServerConfig) -> list[tuple[str, int]]:
    """The gRPC server's channel options for `config`."""
    options = [
        # gRPC enables SO_REUSEPORT by default, which lets a second server bind a busy
        # port and split clients between two stores at random: refuse instead.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        # gRPC refuses a random share of calls whose headers pass 8 KiB, and every one
        # past 16 KiB: an identity provider's token with many groups does (found in
        # review). Envoy's limit, 60 KiB, is the same order.
        ("grpc.max_metadata_size", 64 * 1024),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # Pings find dead peers (a watcher's laptop closed) and keep idle connections
        # open through proxies. Clients may ping every 5 s, even with no call open and
        # no data moving (the SDK pings every 30 s); faster pings earn a GOAWAY.
        ("grpc.keepalive_time_ms", int(config.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.server.max_pending_requests", config.accept_backlog),
        ("grpc.server.max_pending_requests_hard_limit", 2 * config.accept_backlog),
    ]
    if config.max_connection_age is not None:
        options.append(("grpc.max_connection_age_ms", int(config.max_connection_age * 1000)))
    if config.max_connection_age_grace is not None:
        grace = int(config.max_connection_age_grace * 1000)
        options.append(("grpc.max_connection_age_grace_ms", grace))
    return options


def open_store(config: ServerConfig) -> EventStore:
    """The store the config names: Redis for a redis:// URL, else the SQLite file."""
    if config.store_url:
        try:
            from runstream_server.store.redis import RedisEventStore
        except ModuleNotFoundError as exc:  # installed without the extra (make demo, serve)
            raise StoreUnusable(
                f"a redis:// store needs the {exc.name} package: pip install 'runstream[redis]'"
            ) from None
        return RedisEventStore(config.store_url)
    return SqliteEventStore(
        config.store_path, synchronous=config.sqlite_synchronous, check=config.check_store
    )


def check_addresses(config: ServerConfig) -> None:
    """Refuses (OSError, one line naming the address or the file) an address the server or
    its metrics cannot listen on now, or TLS files it cannot serve with; see
    :func:`~runstream_server.auth.edge.bind_error` and ``TlsConfig.problem``."""
    problem = bind_error(config.address)
    if problem is not None:
        raise OSError(f"cannot listen on {config.address}: {problem}")
    tls = config.security.tls
    if tls is not None and (problem := tls.problem()):
        raise OSError(f"cannot serve TLS on {config.address}: {problem}")
    if config.metrics_address and (problem := bind_error(config.metrics_address)):
        raise OSError(f"cannot serve metrics on {config.metrics_address}: {problem}")
    if config.backups is not None:
        if config.store_url:
            raise ValueError(
                "backups copy the SQLite store; a Redis store keeps its own (RDB, AOF: see "
                "the README's Backups)"
            )
        if problem := config.backups.problem():
            raise OSError(f"cannot keep store copies in {config.backups.directory}: {problem}")


def listen_failure(config: ServerConfig) -> str:
    """Why gRPC could not listen after check_addresses found it could: the port taken since,
    or else what gRPC judges and Python's ssl does not (the TLS files, when there are)."""
    if problem := bind_error(config.address):
        return problem
    if config.security.tls is not None:
        return "gRPC refused the TLS certificate or key"
    return "gRPC could not bind it"


def store_files_to_create(config: ServerConfig) -> list[Path]:
    """What opening the SQLite store would create, to remove should the server not listen
    after all: the file with its -wal file, then each missing directory above it,
    innermost first; nothing for a file that exists, or a Redis store."""
    path = config.store_path
    if config.store_url or path.exists():
        return []
    files = [path, path.with_name(path.name + "-wal")]  # no -shm: see sqlite_file.connect
    return [p for p in (*files, *path.parents) if not p.exists()]


def store_location(text: str) -> tuple[Path, str]:
    """Dispatches a ``--store`` value on its scheme: (SQLite path, "") or (default, URL).

    Anything that looks like a URL but names a backend this server does not have is refused
    rather than taken for a file name.
    """
    scheme, sep, _ = text.partition("://")
    if not sep:
        if text.partition(":")[0].lower() in ("redis", "rediss") and ":" in text:
            # redis:/HOST or redis:HOST would be a SQLite file (and directories) named after
            # the URL, password and all, and a replica that shares nothing with the others.
            raise ValueError(
                f"{text.partition(':')[0]}: is not followed by //; "
                "give redis://HOST:PORT/DB (or rediss://)"
            )
        return Path(text), ""
    if scheme.lower() in ("redis", "rediss") and scheme not in ("redis", "rediss"):
        raise ValueError(f"write the scheme in lower case: {scheme.lower()}://")
    if scheme in ("redis", "rediss"):
        from runstream_server.store.redis_url import parse_url

        parse_url(text)  # its options, checked before anything starts (ValueError)
        return ServerConfig.store_path, text
    raise ValueError(
        f"unsupported store scheme {scheme}://; use a file path, redis:// or rediss://"
    )


STORE_CHECK_NOTICE_BYTES = 64 * 1024 * 1024
"""A SQLite store this large takes noticeable time to check at start (0.2 s; 3 s per GB): a
line says so first, or the gap before "starting on" looked like a hang to a startup probe's
owner. A smaller one is not announced, so a refused store stays the one line `serve` prints."""


def announce_store_check(config: ServerConfig) -> None:
    """Logs that a large SQLite store is being checked, and what that costs, before it is."""
    if config.store_url or not config.check_store:
        return
    try:
        size = config.store_path.stat().st_size
    except OSError:  # a store to create, or one open() names what is wrong with
        return
    if size >= STORE_CHECK_NOTICE_BYTES:
        # In MB below 1 GB: every store from 64 MiB to 150 MB read "0.1 GB" (review rv65d).
        megabytes = round(size / 1e6)
        shown = f"{megabytes} MB" if megabytes < 1000 else f"{size / 1e9:.1f} GB"
        log.info(
            "checking the store %s (%s) before serving: SQLite's quick_check reads every "
            "page, about 3 s per GB (--skip-store-check starts without it)",
            config.store_path,
            shown,
        )


def describe_store(config: ServerConfig) -> str:
    """The store for logs: the file, or the URL without its password."""
    if config.store_url:
        from runstream_server.store.redis_url import redact

        return redact(config.store_url)
    return str(config.store_path)


def _version() -> str:
    try:
        return metadata.version("runstream")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def tune_gc() -> None:
    """Keeps the cycle collector's pauses out of delivery latency, once the server listens.

    What exists by then (modules, descriptors, the server's own objects) lives as long as the
    process, so it is frozen: a full collection does not walk it again. Young collections
    run every 20,000 allocations instead of 700, so the objects of messages in flight are
    mostly gone before one runs instead of being promoted, and full collections become rare.
    Measured with 1,000 watchers at 10 events/s for 8 s: full collections went from 5, up to
    55 ms each, to none after start-up; young ones from 660 (0.4 ms each) to 5 (5 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What stops ``runstream serve`` gracefully: SIGHUP too, the signal of a terminal or an SSH
session that closed, which killed it without a drain. A second one hurries the stop."""


async def serve_forever(config: ServerConfig) -> None:
    """Runs a server until SIGTERM, SIGINT or SIGHUP, then stops it gracefully; a second such
    signal skips the rest of the drain and grace (a person at a terminal pressing Ctrl-C
    again)."""
    server = RunstreamServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    received: list[signal.Signals] = []

    def stop_or_hurry(sig: signal.Signals) -> None:
        if stop.is_set():
            server.hurry(f"{sig.name} again")
        received.append(sig)
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop_or_hurry, sig)
    await server.start()
    tune_gc()
    try:
        await stop.wait()
        log.info("shutting down (%s)", received[0].name)
    finally:
        await server.stop()
