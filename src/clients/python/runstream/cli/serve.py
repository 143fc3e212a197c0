"""`runstream serve`: its options, the checks of a command line whose options would do
nothing, and the server started from them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import (
    DEFAULT_TARGET,
    duration_or_off,
    listen_address,
    metrics_address,
    otlp_endpoint,
    otlp_endpoint_from_environment,
    positive_int,
    positive_seconds,
)
from .auth import LIMIT_OPTIONS, LIMITS_WITHOUT_AUTH, add_serve_security, security_config
from .errors import CliError
from .serve_args import (
    drain_seconds,
    grpc_seconds,
    heartbeat_seconds,
    retention_days,
    send_timeout_seconds,
    shutdown_grace_seconds,
)
from .stopping import run_async

__all__ = ["add_serve_command"]

DEFAULT_ABANDON_AFTER = 7 * 86400.0
"""`serve --abandon-after`'s default: a run STALLED and silent for a week has lost its producer
(runs waiting for a person, or paused, never stall); kept for ever, such runs held a tenant's
active-run places until CreateRun refused them all."""

SERVE_ENVIRONMENT = """\
environment (besides the $VARIABLE each option names above):
  RUNSTREAM_PAGE_TOKEN_KEY    the key that tags page tokens; the same on every replica of a
                              store, or paging breaks across them (unset: a fixed, public
                              key, so tokens can be forged)
  OTEL_EXPORTER_OTLP_HEADERS  headers for the trace exporter, e.g. credentials
                              (api-key=...), which --otlp-endpoint refuses in its URL
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
                              the traces' service name and resource attributes
  GRPC_VERBOSITY              gRPC core's own log level (default: ERROR)
"""
"""`serve --help`'s list of the variables it reads that no option names (see the README)."""


def add_serve_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    formatter: type[argparse.HelpFormatter],
) -> None:
    """Adds ``serve`` to the CLI's subcommands."""
    serve = commands.add_parser(
        "serve",
        help="run a Runstream server",
        description="Run a Runstream gRPC server (RunService, ReportService, health and "
        "reflection) over a SQLite file or a shared Redis, until SIGINT, SIGTERM or SIGHUP.",
        epilog=SERVE_ENVIRONMENT,
        formatter_class=formatter,
    )
    serve.add_argument(
        "--address",
        type=listen_address,
        default=DEFAULT_TARGET,
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free port",
    )
    serve.add_argument(
        "--store",
        default="runstream.db",
        metavar="PATH|URL",
        help="SQLite database file (created when missing, with its directory; checked, and "
        "locked against a second server, at start), or redis://[:PASSWORD@]HOST:PORT/DB "
        "(rediss:// for TLS; ?password_file=PATH, ?prefix=NAME, ?cluster=1, ?wait=N replica "
        "acknowledgements) to run as one of several replicas sharing that Redis",
    )
    serve.add_argument(
        "--skip-store-check",
        action="store_true",
        help="start without SQLite's quick_check of the store (it reads the whole file, "
        "about 3 s per GB)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging verbosity",
    )
    serve.add_argument(
        "--sync",
        default=None,
        choices=["full", "normal"],
        help="SQLite durability: full survives power loss, normal only process crashes (faster) "
        "(default: full)",
    )
    serve.add_argument(
        "--heartbeat",
        type=heartbeat_seconds,
        default=15.0,
        metavar="SECONDS",
        help="default idle time before a watch stream gets a heartbeat; 0.1 to 300 (what a "
        "watch may ask for)",
    )
    serve.add_argument(
        "--watch-send-timeout",
        type=send_timeout_seconds,
        default=60.0,
        metavar="SECONDS",
        help="end a watch stream whose message waited this long to be sent (its client "
        "stopped reading), RESOURCE_EXHAUSTED: the watcher resumes from its last seq; 1 to "
        "86400, or 0: never (default: 60)",
    )
    serve.add_argument(
        "--stall-after",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="silence that marks a running run STALLED when its step has no history",
    )
    serve.add_argument(
        "--start-within",
        type=positive_seconds,
        default=300.0,
        metavar="SECONDS",
        help="time after CreateRun by which a run must start; later, it is STALLED (still "
        "PENDING): its producer may have stopped before its first event",
    )
    serve.add_argument(
        "--abandon-after",
        type=duration_or_off,
        default=DEFAULT_ABANDON_AFTER,
        metavar="DURATION",
        help="end a run STALLED this much longer (24h, 7d; a number is seconds) FAILED, "
        "error code ABANDONED: its producer is gone, and retention may purge its log; it "
        "no longer counts against --max-active-runs (default 7d; off: silent runs wait for "
        "their producer for ever)",
    )
    serve.add_argument(
        "--retention-days",
        type=retention_days,
        default=None,
        metavar="DAYS",
        help="purge the event logs of runs that ended more than DAYS ago (snapshots stay); at "
        "most 36500 (default: keep them for ever)",
    )
    serve.add_argument(
        "--retention-runs",
        type=positive_int,
        default=None,
        metavar="N",
        help="keep the event logs of only the N most recently ended runs of each tenant (T "
        "tenants keep up to T x N) (default: keep them all)",
    )
    serve.add_argument(
        "--backup-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy the SQLite store into DIR as it serves, as runstream-TIME.db files (each "
        "a whole store; the first as the server starts); no other program can read the "
        "store while the server has it",
    )
    serve.add_argument(
        "--backup-interval",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="time between store copies (default: 3600)",
    )
    serve.add_argument(
        "--backup-keep",
        type=positive_int,
        default=None,
        metavar="N",
        help="store copies kept in --backup-dir; older ones are removed (default: 24)",
    )
    serve.add_argument(
        "--retention-interval",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="time between retention passes (the first runs as the server starts); a run "
        "past the limit keeps its log until the next pass (default: 3600)",
    )
    add_serve_security(serve)
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (time, level, logger, message, and where "
        "they apply run_id, method, code, duration_ms, principal, tenant, peer)",
    )
    serve.add_argument(
        "--metrics-address",
        type=metrics_address,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (a PORT alone: on every "
        "interface; needs the observability extra) (default: off)",
    )
    serve.add_argument(
        "--otlp-endpoint",
        type=otlp_endpoint,
        default=None,
        metavar="URL",
        help="export traces over OTLP/gRPC, e.g. http://collector:4317 (default: "
        "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT; none: off)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=shutdown_grace_seconds,
        default=5.0,
        metavar="SECONDS",
        help="at SIGTERM, SIGINT or SIGHUP, how long in-flight calls get to finish (streams "
        "end at once); at most 3600, and a second signal cuts it short (default: 5)",
    )
    serve.add_argument(
        "--drain-delay",
        type=drain_seconds,
        default=0.0,
        metavar="SECONDS",
        help="at SIGTERM, SIGINT or SIGHUP, answer health checks NOT_SERVING but serve on for "
        "this long first, so a load balancer takes the server out of rotation; at most 3600, "
        "and a second signal cuts it short (default: 0)",
    )
    serve.add_argument(
        "--max-connection-age",
        type=grpc_seconds,
        default=None,
        metavar="SECONDS",
        help="ask clients to reconnect after this long (GOAWAY, +-10%% jitter), so "
        "long-lived watchers rebalance across replicas; at most 2147483 (default: never)",
    )
    serve.add_argument(
        "--max-connection-age-grace",
        type=grpc_seconds,
        default=None,
        metavar="SECONDS",
        help="after --max-connection-age, how long open streams may still run; at most "
        "2147483 (default: until they end)",
    )
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here so the client commands never pay for (or depend on) the server.
    from runstream_server.domain.events import KindWithoutFold

    try:
        from runstream_server.app import (
            DRAIN_QUIET_PERIOD,
            ServerConfig,
            serve_forever,
            store_location,
        )
    except KindWithoutFold as exc:
        # A kind added to event.proto without its fold (README, "Adding an event kind"):
        # the message says where the fold goes; the import's traceback would bury it.
        raise CliError(str(exc)) from None
    from runstream_server.domain.insight import InsightPolicy
    from runstream_server.domain.runs import Retention
    from runstream_server.observability import MetricsUnavailable, TracingUnavailable, logs
    from runstream_server.store.sqlite_backups import Backups

    try:
        store_path, store_url = store_location(args.store)
    except ValueError as exc:
        print(f"runstream serve: --store: {exc}", file=sys.stderr)
        return 2
    if args.backup_dir is not None and store_url:
        print(
            "runstream serve: --backup-dir copies the SQLite store; a Redis store keeps its "
            "own (RDB, AOF: see the README's Backups)",
            file=sys.stderr,
        )
        return 2
    if problem := without_effect(args, redis=bool(store_url)):
        print(f"runstream serve: {problem}", file=sys.stderr)
        return 2
    backups = None
    if args.backup_dir is not None:
        default = Backups(args.backup_dir)
        backups = Backups(
            args.backup_dir,
            interval=args.backup_interval or default.interval,
            keep=args.backup_keep or default.keep,
        )
    logs.configure(args.log_level, args.log_format)
    config = ServerConfig(
        address=args.address,
        store_path=store_path,
        store_url=store_url,
        check_store=not args.skip_store_check,
        sqlite_synchronous=(args.sync or ServerConfig.sqlite_synchronous).upper(),
        heartbeat_interval=args.heartbeat,
        watch_send_timeout=args.watch_send_timeout,
        insight=InsightPolicy(
            stall_after=args.stall_after,
            start_within=args.start_within,
            abandon_after=args.abandon_after,
        ),
        retention=Retention(
            days=args.retention_days,
            runs=args.retention_runs,
            interval=args.retention_interval or Retention().interval,
        ),
        backups=backups,
        security=security_config(args, args.address),
        shutdown_grace=args.shutdown_grace,
        drain_delay=args.drain_delay,
        drain_quiet=DRAIN_QUIET_PERIOD,
        metrics_address=args.metrics_address,
        otlp_endpoint=args.otlp_endpoint or otlp_endpoint_from_environment(),
        max_connection_age=args.max_connection_age,
        max_connection_age_grace=args.max_connection_age_grace,
    )
    try:
        run_async(serve_forever(config))  # a StoreUnusable (an OSError) is one line, from main()
    except (MetricsUnavailable, TracingUnavailable) as exc:  # the observability extra is missing
        raise CliError(str(exc)) from None
    return 0


def without_effect(args: argparse.Namespace, *, redis: bool) -> str | None:
    """What a `serve` command line sets that would do nothing, given explicitly without the
    option it needs (or with a store it does not apply to), and what that is; else None.
    Such options were taken in silence: limits that protected nothing, backups "configured"
    but never taken."""
    auth = bool(args.jwt_secret_file or args.jwt_public_key)
    limits = [
        flag
        for flag, field, *_ in LIMIT_OPTIONS
        if field not in LIMITS_WITHOUT_AUTH and getattr(args, f"limit_{field}") is not None
    ]
    needs = {
        # Each: the options given, what they need, whether they have it.
        "--jwt-secret-file or --jwt-public-key (per-principal and per-tenant limits apply to "
        "verified callers only)": (limits, auth),
        "--backup-dir": (
            [f for f in ("--backup-interval", "--backup-keep") if _given(args, f)],
            args.backup_dir is not None,
        ),
        "--retention-days or --retention-runs": (
            [f for f in ("--retention-interval",) if _given(args, f)],
            args.retention_days is not None or args.retention_runs is not None,
        ),
        "--max-connection-age": (
            [f for f in ("--max-connection-age-grace",) if _given(args, f)],
            args.max_connection_age is not None,
        ),
    }
    for needed, (given, present) in needs.items():
        if given and not present:
            return f"{' and '.join(given)} {'need' if len(given) > 1 else 'needs'} {needed}"
    sqlite_only = [f for f in ("--sync", "--skip-store-check") if _given(args, f)]
    if redis and sqlite_only:
        verb = "apply" if len(sqlite_only) > 1 else "applies"
        return (
            f"{' and '.join(sqlite_only)} {verb} to a SQLite store, not to a redis:// one "
            "(whose durability is Redis's own: see the README's Replicas on Redis)"
        )
    return None


def _given(args: argparse.Namespace, flag: str) -> bool:
    """Whether `flag`, an option whose default is None (or False), was given."""
    return getattr(args, flag.removeprefix("--").replace("-", "_")) not in (None, False)
