"""`runstream`: serve Runstream, run the demo, watch runs live, and inspect them.

Exit codes: 0 on success; 1 when a request fails (the SDK's message goes to stderr, never a
traceback) or the watched or demo run did not succeed; 2 for bad usage; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import grpc
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

import runstream

from .._arguments import MAX_SEQ
from .._convert import MAX_INITIAL_ENDED_LIMIT
from ..dashboard.cli import add_dashboard_command
from ..integrations._agui_cli import add_agui_command
from . import demo, tables
from .args import (
    DEFAULT_TARGET,
    TARGET_ENV,
    Parser,
    duration_or_off,
    listen_address,
    metrics_address,
    otlp_endpoint,
    otlp_endpoint_from_environment,
    positive_float,
    positive_int,
    positive_seconds,
    since,
    target_address,
    target_from_environment,
)
from .auth import (
    LIMIT_OPTIONS,
    LIMITS_WITHOUT_AUTH,
    WATCH_RECONNECT,
    add_client_security,
    add_serve_security,
    add_token_command,
    connect,
    reconnect_timeout,
    repeated_security,
    security_config,
    unanswered_hint,
    wait_for_server,
)
from .errors import CliError, UsageError
from .fmt import printable, run_status_text
from .health import add_health_command
from .render import follow_run, print_run_header
from .serve_args import (
    drain_seconds,
    grpc_seconds,
    heartbeat_seconds,
    retention_days,
    send_timeout_seconds,
    shutdown_grace_seconds,
)
from .stats import show_stats
from .stopping import cancelled_by_signals, terminated

T = TypeVar("T")

DEFAULT_ABANDON_AFTER = 7 * 86400.0
"""`serve --abandon-after`'s default: a run STALLED and silent for a week has lost its producer
(runs waiting for a person, or paused, never stall); kept for ever, such runs held a tenant's
active-run places until CreateRun refused them all."""


class _FromEnvironment(str):
    """--target's default when $RUNSTREAM_TARGET is set. argparse checks a default with the
    flag's type only when the flag is not given; this marks the value as the variable's, so a
    bad one is named as the variable the user set, not as "argument --target"."""


def default_target() -> str:
    from_env = os.environ.get(TARGET_ENV)
    return _FromEnvironment(from_env) if from_env else DEFAULT_TARGET


def _target(value: str) -> str:
    """As :func:`target_address`; $RUNSTREAM_TARGET is checked as the other commands check
    it (:func:`target_from_environment`), a bad one reported under its own name."""
    if not isinstance(value, _FromEnvironment):
        return target_address(value)
    try:
        return target_from_environment() or DEFAULT_TARGET
    except UsageError as exc:
        # ArgumentError without an action: argparse's error() says the message alone.
        raise argparse.ArgumentError(None, str(exc)) from None


# --- plumbing ------------------------------------------------------------------------------


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that stays readable when piped."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Pipes and CI logs get rich's 80 columns by default, which would fold run ids and
        # squeeze tables; nothing downstream benefits from wrapping.
        console.width = 200
    return console


def wants_live(console: Console, plain: bool) -> bool:
    """Live rendering needs a real terminal; `--plain` or a pipe gets one line per event."""
    return not plain and console.is_terminal and not console.is_dumb_terminal


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def describe_error(exc: runstream.RunstreamError) -> str:
    """ "not found: run 'x' ..." rather than "NOT_FOUND: ..."."""
    return f"{exc.code.name.lower().replace('_', ' ')}: {exc.message}"


def default_viewer() -> str:
    """Who answers and steers from this terminal: $RUNSTREAM_USER, else the login name."""
    name = os.environ.get("RUNSTREAM_USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


# --- commands ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here so the client commands never pay for (or depend on) the server.
    from runstream_server.app import (
        DRAIN_QUIET_PERIOD,
        ServerConfig,
        serve_forever,
        store_location,
    )
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


class PlainLogFormatter(logging.Formatter):
    """ "16:27:38 runstream.watch: watch of run … lost", a line like the plain event lines
    around it ("16:27:38 #50   step …"), a warning's level said after the time. Rich's log
    lines put "[12/06/26 16:27:38] INFO" and padding to the width among them (found in
    review)."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname} " if record.levelno > logging.INFO else ""
        return f"{record.asctime} {level}{record.name}: {record.message}"

    def usesTime(self) -> bool:
        return True


def configure_client_logging(console: Console, live: bool) -> None:
    """Warnings only (reconnects, failed reports). While the live view is up they go through
    its console, which prints them above the view instead of tearing it; plain output gets
    plain lines on stderr."""
    handler: logging.Handler
    if live:
        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainLogFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.serve and args.target:
        raise UsageError("--serve keeps the embedded server up; it has no meaning with --target")
    if args.replicas and (args.target or args.store or args.serve):
        raise UsageError(
            "--replicas starts its own Redis and servers; drop --target/--store/--serve"
        )
    console = make_console()
    configure_client_logging(console, wants_live(console, args.plain))
    options = demo.DemoOptions(
        target=args.target,
        address=args.address,
        store=Path(args.store) if args.store else None,
        speed=args.speed,
        serve=args.serve,
        live=wants_live(console, args.plain),
        seed=args.seed,
        viewer=default_viewer(),
        replicas=args.replicas,
        connect=lambda target: connect(args, target),
        security=repeated_security(args),
    )
    try:
        return run_async(demo.run_demo(options, console))
    except asyncio.CancelledError:
        # SIGTERM or SIGHUP while the run was in progress (the demo cancels its run).
        return terminated(make_console(stderr=True))


async def first_snapshot(
    client: runstream.Client, run_id: str, reconnect_timeout: float
) -> runstream.Run:
    """The run's snapshot once a server answers: a watch started while the server is out of
    reach (a restart, a deploy) waits for it as a watch cut off does, for --reconnect-timeout
    (0: for ever), rather than for the few seconds one read is retried."""
    deadline = time.monotonic() + reconnect_timeout if reconnect_timeout else None
    while True:
        try:
            return await client.get_run(run_id)
        except runstream.UnavailableError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise runstream.UnavailableError(
                    f"watch of run {run_id}: no server could serve it for "
                    f"{reconnect_timeout:g}s ({exc.message})"
                ) from exc


def cmd_watch(args: argparse.Namespace) -> int:
    console = make_console()
    live = wants_live(console, args.plain)
    configure_client_logging(console, live)
    if not live:  # the live view says "connection lost"; a plain follower's log says the
        # loss, a line every 30 s while it lasts, and the return (not every attempt)
        logging.getLogger("runstream.watch").setLevel(logging.INFO)

    async def watch() -> runstream.Run:
        async with cancelled_by_signals(), connect(args) as client:
            run = await first_snapshot(
                client, args.run_id, reconnect_timeout(args, WATCH_RECONNECT)
            )
            purged = run.status.is_terminal and run.purged_seq > args.from_seq
            if not live or purged:
                print_run_header(console, run)
            if purged:  # an ended run whose events retention removed: its snapshot is all
                console.print(
                    f"Its events 1..{run.purged_seq} were removed by the retention policy: "
                    f"the line above is what is kept (in full: runstream get {run.run_id}).",
                    style="grey62",
                    soft_wrap=True,
                    markup=False,
                )
                return run
            return await follow_run(
                client,
                args.run_id,
                console=console,
                live=live,
                after_seq=args.from_seq,
                kinds=args.kinds,
                interactive=not args.no_input,
                viewer=args.by,
            )

    try:
        final = run_async(watch())
    except asyncio.CancelledError:  # SIGTERM, SIGHUP
        return terminated(make_console(stderr=True))
    console.print(
        Text.assemble(
            f"Run {final.run_id} ended: ",
            run_status_text(final.status),
            f" after {final.last_seq} events",
        ),
        soft_wrap=True,
    )
    return 0 if final.status is runstream.RunStatus.SUCCEEDED else 1


def cmd_runs(args: argparse.Namespace) -> int:
    if args.watch and args.limit > MAX_INITIAL_ENDED_LIMIT:
        raise UsageError(f"--limit: at most {MAX_INITIAL_ENDED_LIMIT:,} with --watch")
    console = make_console()
    if args.since is not None:  # what --filter asks for, of the runs created since then
        since = f'create_time >= "{args.since}"'
        args.filter = f"{args.filter} AND {since}" if args.filter.strip() else since

    async def runs() -> None:
        async with cancelled_by_signals(), connect(args) as client:
            if args.watch:
                await tables.watch_runs(
                    client,
                    console,
                    filter=args.filter,
                    ended_limit=args.limit,
                    live=wants_live(console, args.plain) and not args.json,
                    as_json=args.json,
                )
            else:
                await wait_for_server(args, client)
                await tables.show_runs(
                    client, console, filter=args.filter, limit=args.limit, as_json=args.json
                )

    try:
        run_async(runs())
    except asyncio.CancelledError:  # SIGTERM, SIGHUP
        return terminated(make_console(stderr=True))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    console = make_console()

    async def get() -> None:
        async with connect(args) as client:
            await wait_for_server(args, client)
            await tables.show_run(client, console, args.run_id, as_json=args.json)

    run_async(get())
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    console = make_console()

    async def stats() -> None:
        async with connect(args) as client:
            await wait_for_server(args, client)
            await show_stats(client, console, as_json=args.json)

    run_async(stats())
    return 0


def cmd_steps(args: argparse.Namespace) -> int:
    console = make_console()

    async def steps() -> None:
        async with connect(args) as client:
            await wait_for_server(args, client)
            await tables.show_steps(client, console, args.run_id, as_json=args.json)

    run_async(steps())
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    console = make_console()

    async def events() -> None:
        async with connect(args) as client:
            await wait_for_server(args, client)
            try:
                await tables.show_events(
                    client,
                    console,
                    args.run_id,
                    kinds=args.kinds,
                    limit=args.limit,
                    as_json=args.json,
                    newest=args.newest,
                    after=args.after,
                    before=args.before,
                )
            except runstream.FailedPreconditionError:
                run = await client.get_run(args.run_id)
                if not run.purged_seq:
                    raise
                raise CliError(  # the server's words name the API's calls, not the command's
                    f"events 1..{run.purged_seq} of run {run.run_id} were removed by the "
                    f"retention policy; runstream get {run.run_id} shows its snapshot"
                ) from None

    run_async(events())
    return 0


def cmd_decisions(args: argparse.Namespace) -> int:
    console = make_console()

    async def decisions() -> None:
        async with connect(args) as client:
            await wait_for_server(args, client)
            await tables.show_decisions(
                client, console, args.run_id, only_open=args.open, as_json=args.json
            )

    run_async(decisions())
    return 0


def chosen_value(decision: runstream.Decision, given: str) -> str:
    """The value of the option `given` names: its value, else its label in any case (when no
    other option answers to it), else its number as `get` and the live view show it. The
    panels show labels and numbers, the server takes values (found in review: "Deep" and "2"
    were refused). Raises InvalidArgumentError listing the options when none fits."""
    options = decision.options
    if any(option.value == given for option in options):
        return given
    folded = given.casefold()
    named = [o for o in options if folded in (o.value.casefold(), (o.label or o.value).casefold())]
    if len(named) == 1:
        return named[0].value
    if not named and given.isdigit() and 1 <= int(given) <= len(options):
        return options[int(given) - 1].value
    listed = ", ".join(
        f"{number}) {option.value}" + (f" ({option.label})" if option.label else "")
        for number, option in enumerate(options, start=1)
    )
    if named:
        why = f"choice {given!r} names more than one option; give its value: {listed}"
    elif given == decision.default_option:
        why = (
            f"choice {given!r} is what the deadline takes, none of the options; "
            f"answer with one of them: {listed}"
        )
    else:
        why = (
            f"choice {given!r} is none of the options of decision {decision.decision_id} "
            f"(give a value, a label or a number): {listed}"
        )
    raise runstream.InvalidArgumentError(why)


def cmd_answer(args: argparse.Namespace) -> int:
    if args.skip == (args.choice is not None):
        raise UsageError("give either CHOICE or --skip")
    console = make_console()

    async def answer() -> runstream.Decision:
        async with connect(args) as client:
            await wait_for_server(args, client)
            choice = args.choice
            if choice is not None:
                asked = await client.get_decision(args.run_id, args.decision_id)
                choice = chosen_value(asked, choice)
            return await client.submit_decision(
                args.run_id, args.decision_id, choice, skip=args.skip, answered_by=args.by
            )

    decision = run_async(answer())
    outcome = decision.outcome.name
    choice = f" {printable(decision.choice)}" if decision.choice else ""
    console.print(
        Text.assemble(
            ("Decision ", ""),
            (printable(decision.decision_id), "bold"),
            f" of run {printable(decision.run_id)}: ",
            (f"{outcome}{choice}", "bold green"),
            f" by {printable(decision.answered_by)}" if decision.answered_by else "",
        ),
        soft_wrap=True,
    )
    return 0


def _control_command(action: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        console = make_console()

        async def control() -> runstream.Run:
            async with connect(args) as client:
                await wait_for_server(args, client)
                if action == "pause":
                    return await client.pause_run(
                        args.run_id, reason=args.reason, requested_by=args.by
                    )
                if action == "resume":
                    return await client.resume_run(
                        args.run_id, reason=args.reason, requested_by=args.by
                    )
                return await client.cancel_run(
                    args.run_id, reason=args.reason, cancelled_by=args.by
                )

        run = run_async(control())
        done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
        console.print(
            Text.assemble(f"Run {run.run_id} {done}: ", run_status_text(run.status)),
            soft_wrap=True,
        )
        return 0

    return command


# --- arguments -----------------------------------------------------------------------------


def _non_negative_int(value: str) -> int:
    """A seq: a whole number from 0 to the largest a run's log may reach."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    if number > MAX_SEQ:  # past int64, watch --from-seq ended in a traceback
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEQ}")
    return number


def _event_kinds(value: str) -> list[runstream.EventKind]:
    kinds: list[runstream.EventKind] = []
    known = [kind.name.lower() for kind in runstream.EventKind if kind.value]
    for part in value.split(","):
        name = part.strip().upper().removeprefix("EVENT_KIND_")
        if not name:
            continue
        try:
            kind = runstream.EventKind[name]
        except KeyError:
            raise argparse.ArgumentTypeError(
                f"unknown event kind {part.strip()!r}; known kinds: {', '.join(known)}"
            ) from None
        if kind.value == 0:
            raise argparse.ArgumentTypeError("'unspecified' is not an event kind")
        kinds.append(kind)
    return kinds


class _Formatter(argparse.HelpFormatter):
    """Wraps prose, keeps examples as written, and shows the defaults worth showing."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # Descriptions are single paragraphs; epilogs with line breaks are example blocks.
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or "(default:" in text  # says it in its own words
            or not action.option_strings
            or action.default in (None, False, "", argparse.SUPPRESS)
        ):
            return text
        return text + " (default: %(default)s)"


def _add_target(parser: argparse.ArgumentParser, *, security: bool = True) -> None:
    """--target, and (with `security`) the token and TLS options of client commands."""
    parser.add_argument(
        "--target",
        type=_target,
        default=default_target(),
        metavar="HOST[:PORT]",
        help=f"the Runstream server to talk to (port 50051 when not given), ${TARGET_ENV} when set",
    )
    if security:
        add_client_security(parser)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON for scripts (the contract's field names) instead of a table",
    )


def _add_plain(parser: argparse.ArgumentParser, each: str = "event") -> None:
    parser.add_argument(
        "--plain",
        action="store_true",
        help=f"print one line per {each} instead of the live view "
        "(automatic when stdout is not a terminal)",
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="runstream",
        description="Runstream: watch and steer multi-agent AI runs live.",
        epilog=(
            "examples:\n"
            "  runstream demo                      simulated campaign run, rendered live\n"
            "  runstream serve --store runs.db     run a server\n"
            "  runstream runs --filter 'status = RUNNING'\n"
            "  runstream watch RUN_ID              follow a run live, resuming on disconnect\n"
            "  runstream runs --watch              live table of every run\n"
            "  runstream answer RUN_ID DECISION_ID CHOICE\n"
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run a Runstream server",
        description="Run a Runstream gRPC server (RunService, ReportService, health and "
        "reflection) over a SQLite file or a shared Redis, until SIGINT, SIGTERM or SIGHUP.",
        epilog=SERVE_ENVIRONMENT,
        formatter_class=_Formatter,
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
        help="text lines, or one JSON object per line (time, level, message, run_id, method, "
        "code, duration_ms)",
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

    demo_parser = commands.add_parser(
        "demo",
        help="run a simulated 17-step campaign workflow and watch it live",
        description="Start an embedded server (or use --target), run a simulated "
        "multi-agent campaign workflow through the SDK, and render it live: steps, agents, "
        "reasoning, streamed copy, metrics and milestones. Exits 0 when the run succeeds.",
        epilog="examples:\n"
        "  runstream demo                    about 40 seconds; answer its question to save 8\n"
        "  runstream demo --speed 10 --plain about 4 seconds, one line per event\n"
        "  runstream demo --serve            keep the server up afterwards for grpcurl\n"
        "  runstream demo --replicas 2       report on one replica, watch through another\n",
        formatter_class=_Formatter,
    )
    demo_parser.add_argument(
        "--target",
        type=target_address,
        default=None,
        metavar="HOST[:PORT]",
        help="report to this running server instead of starting an embedded one",
    )
    demo_parser.add_argument(
        "--address",
        default=DEFAULT_TARGET,
        type=listen_address,
        metavar="HOST:PORT",
        help="where the embedded server listens",
    )
    demo_parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="SQLite file of the embedded server (default: a temp file)",
    )
    demo_parser.add_argument(
        "--speed",
        type=positive_float,
        metavar="FACTOR",
        default=1.0,
        help="speed-up factor; 10 runs the demo in about 4 seconds",
    )
    demo_parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the embedded server running after the run, until Ctrl-C or SIGTERM",
    )
    demo_parser.add_argument(
        "--seed", type=int, default=7, metavar="N", help="random seed of the simulated timings"
    )
    demo_parser.add_argument(
        "--replicas",
        type=int,
        choices=range(2, 9),
        default=0,
        metavar="N",
        help="start redis-server and N replicas on it (2-8); report to the first, watch "
        "through the second (needs redis-server and the redis extra: make setup)",
    )
    add_client_security(
        demo_parser,
        reconnect=False,
        description="With --target, as for the other client commands ($RUNSTREAM_TOKEN "
        "included). The demo's token needs the producer and viewer roles, and operator to "
        "answer its question.",
    )
    _add_plain(demo_parser)
    demo_parser.set_defaults(handler=cmd_demo)

    watch = commands.add_parser(
        "watch",
        help="follow a run live until it ends",
        description="Follow a run's events live until it ends, resuming exactly where it "
        "left off after a disconnect. Replays the run when it already ended. Exits 0 when "
        "the run succeeded, 1 when it failed or was cancelled.",
        formatter_class=_Formatter,
    )
    watch.add_argument("run_id", metavar="RUN_ID", help="the run to follow")
    _add_target(watch)
    watch.add_argument(
        "--kinds",
        type=_event_kinds,
        default=None,
        metavar="KIND,...",
        help="only these event kinds, e.g. step_progress,agent_activity",
    )
    watch.add_argument(
        "--from-seq",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="start after event N (0 replays the whole run)",
    )
    watch.add_argument(
        "--by",
        default=default_viewer(),
        metavar="NAME",
        help="who answers prompts from this view (default: $RUNSTREAM_USER or your login)",
    )
    watch.add_argument(
        "--no-input",
        action="store_true",
        help="show prompts but do not read answers from the keyboard",
    )
    _add_plain(watch)
    watch.set_defaults(handler=cmd_watch)

    runs = commands.add_parser(
        "runs",
        help="list runs",
        description="List runs, most recently created first.",
        epilog="filter examples:\n"
        "  status = RUNNING\n"
        '  workflow = "campaign-generator" AND labels.team = "growth"\n'
        '  create_time > "2026-12-01T09:00:00Z"\n',
        formatter_class=_Formatter,
    )
    _add_target(runs)
    runs.add_argument(
        "--filter",
        default="",
        metavar="EXPR",
        help="AIP-160 filter on status, workflow, labels and create_time",
    )
    runs.add_argument(
        "--since",
        type=since,
        default=None,
        metavar="WHEN",
        help="only runs created in the last WHEN (90s, 15m, 2h, 3d) or at or after the time "
        "WHEN (2026-12-01T09:00:00Z)",
    )
    runs.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        metavar="N",
        help="show at most N runs (with --watch: every run not ended, and the newest N that ended)",
    )
    runs.add_argument(
        "--watch",
        action="store_true",
        help="follow the matching runs live (status, progress, health, ETA, viewers) until Ctrl-C",
    )
    _add_plain(runs, "change of a run")
    _add_json(runs)
    runs.set_defaults(handler=cmd_runs)

    get = commands.add_parser(
        "get",
        help="show one run's progress snapshot",
        description="Show a run's snapshot: status, progress, health, times, metrics, "
        "artifacts and steps.",
        formatter_class=_Formatter,
    )
    get.add_argument("run_id", metavar="RUN_ID", help="the run to show")
    _add_target(get)
    _add_json(get)
    get.set_defaults(handler=cmd_get)

    stats = commands.add_parser(
        "stats",
        help="show a server's key figures (GetStats)",
        description="Show the figures of the server replica that answers: uptime, runs by "
        "status, open streams, events appended and delivered in the last minute, append "
        "latency p50/p99, store size.",
        formatter_class=_Formatter,
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_target(stats)
    stats.set_defaults(handler=cmd_stats)

    steps = commands.add_parser(
        "steps",
        help="list a run's steps",
        description="List a run's steps in plan order with status, percent and duration.",
        formatter_class=_Formatter,
    )
    steps.add_argument("run_id", metavar="RUN_ID", help="the run whose steps to list")
    _add_target(steps)
    _add_json(steps)
    steps.set_defaults(handler=cmd_steps)

    events = commands.add_parser(
        "events",
        help="list a run's stored events (history)",
        description="List a run's stored events in seq order, page by page (ListEvents), "
        "one line each; with --newest, newest first; --after and --before keep a window of "
        "seqs. Unlike watch, it shows what is stored now and returns.",
        formatter_class=_Formatter,
    )
    events.add_argument("run_id", metavar="RUN_ID", help="the run whose events to list")
    _add_target(events)
    events.add_argument(
        "--kinds",
        type=_event_kinds,
        default=None,
        metavar="KIND,...",
        help="only these event kinds, e.g. milestone,decision_resolved",
    )
    events.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="show at most N events"
    )
    events.add_argument(
        "--newest",
        action="store_true",
        help="newest first, read from the end of the log: with --limit N, the last N events",
    )
    events.add_argument(
        "--after",
        type=_non_negative_int,
        default=0,
        metavar="SEQ",
        help="only events after seq SEQ, read from there (not from the log's start)",
    )
    events.add_argument(
        "--before",
        type=_non_negative_int,
        default=None,
        metavar="SEQ",
        help="only events before seq SEQ; with --newest, the last ones before it",
    )
    _add_json(events)
    events.set_defaults(handler=cmd_events)

    decisions = commands.add_parser(
        "decisions",
        help="list a run's decisions (questions to humans)",
        description="List the decisions a run asked, open and closed, with their options, "
        "outcome and who answered.",
        formatter_class=_Formatter,
    )
    decisions.add_argument("run_id", metavar="RUN_ID", help="the run whose decisions to list")
    _add_target(decisions)
    decisions.add_argument("--open", action="store_true", help="only decisions still open")
    _add_json(decisions)
    decisions.set_defaults(handler=cmd_decisions)

    answer = commands.add_parser(
        "answer",
        help="answer (or skip) a run's open decision",
        description="Answer a decision a run is waiting on. The first valid answer wins; "
        "the same answer again is accepted; a different answer after the decision closed "
        "fails and names the winning answer.",
        epilog="examples:\n"
        "  runstream answer RUN_ID persona-priority city_summiteer   (the demo's question)\n"
        "  runstream answer RUN_ID persona-priority --skip --by ana\n",
        formatter_class=_Formatter,
    )
    answer.add_argument("run_id", metavar="RUN_ID", help="the run")
    answer.add_argument("decision_id", metavar="DECISION_ID", help="the decision")
    answer.add_argument(
        "choice",
        metavar="CHOICE",
        nargs="?",
        default=None,
        help="the chosen option: its value, its label (in any case) or its number as get and "
        "the live view show it",
    )
    answer.add_argument("--skip", action="store_true", help="skip the decision instead")
    answer.add_argument(
        "--by",
        default=default_viewer(),
        metavar="NAME",
        help="who answers (default: $RUNSTREAM_USER or your login)",
    )
    _add_target(answer)
    answer.set_defaults(handler=cmd_answer)

    for action, summary, description in (
        (
            "pause",
            "pause a running run",
            "Pause a run: its producer holds at its next step boundary until resumed.",
        ),
        ("resume", "resume a paused run", "Resume a paused run: its producer carries on."),
        (
            "cancel",
            "cancel a run",
            "Cancel a run: it becomes CANCELLED and its producer is told to stop.",
        ),
    ):
        control = commands.add_parser(
            action, help=summary, description=description, formatter_class=_Formatter
        )
        control.add_argument("run_id", metavar="RUN_ID", help=f"the run to {action}")
        _add_target(control)
        control.add_argument("--reason", default="", metavar="TEXT", help="why, for the log")
        control.add_argument(
            "--by",
            default=default_viewer(),
            metavar="NAME",
            help="who does it (default: $RUNSTREAM_USER or your login)",
        )
        control.set_defaults(handler=_control_command(action))

    add_dashboard_command(commands, _Formatter)
    add_token_command(commands, _Formatter)
    _add_target(add_health_command(commands, _Formatter), security=False)  # its own TLS options
    add_agui_command(commands, _Formatter)
    return parser


def _version() -> str:
    try:
        return metadata.version("runstream")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


# --- entry point ---------------------------------------------------------------------------


def _say_error(errors: Console, message: str) -> None:
    """One red line on stderr. Messages carry paths, addresses and ids the user or the server
    gave: shown as given, never read as rich markup (a store ``d[/x]`` crashed the CLI, an id
    ``ab[bold]cd`` lost a piece, ``[fe80::1]:PORT`` its host), control characters escaped."""
    errors.print(printable(message), style="red", soft_wrap=True, markup=False)


def _fill_closed_standard_streams() -> None:
    """Puts /dev/null where stdin, stdout or stderr is closed (`runstream runs >&-`, a
    supervisor that closes them). Otherwise the next socket or pipe takes the free number,
    and libuv aborts the process with an assertion (exit 134) when it closes it, while a
    None ``sys.stdout`` made `health` fail with a traceback."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:  # the process's stream for its whole life
                stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
                setattr(sys, name, stream)


SERVER_CAUSES = ("Redis store", "Redis cluster", "shutting down")
"""Words of the causes a running server gives with UNAVAILABLE (its store, or its stop)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `runstream` command; returns the exit code."""
    _fill_closed_standard_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `runstream`: say what it can do
        parser.print_help()
        return 0
    handler: Callable[[argparse.Namespace], int] = args.handler
    errors = make_console(stderr=True)
    target = getattr(args, "target", None)
    try:
        return handler(args)
    except KeyboardInterrupt:
        errors.print("interrupted", style="grey62")
        return 130
    except runstream.UnavailableError as exc:
        # Only when nothing answered: a server that did names its cause (its store is
        # unreachable, it is shutting down), and asking whether it runs would mislead.
        unanswered = target and not any(cause in exc.message for cause in SERVER_CAUSES)
        tls = bool(getattr(args, "ca_file", None) or os.environ.get("RUNSTREAM_CA_FILE"))
        where = f" ({unanswered_hint(str(target), exc.message, tls=tls)})" if unanswered else ""
        _say_error(errors, f"runstream: {describe_error(exc)}{where}")
        return 1
    except runstream.UnauthenticatedError as exc:
        # The server's words name the header to send; a person at this command gives options.
        said = (
            "unauthenticated: the server wants a bearer token and none was given: --token JWT, "
            "--token-file PATH, or $RUNSTREAM_TOKEN or $RUNSTREAM_TOKEN_FILE"
            if exc.details.reason == "TOKEN_MISSING"
            else describe_error(exc)
        )
        _say_error(errors, f"runstream: {said}")
        return 1
    except runstream.RunstreamError as exc:
        _say_error(errors, f"runstream: {describe_error(exc)}")
        return 1
    except grpc.RpcError as exc:
        # The SDK maps RPC failures; this catches anything that slipped past it so the user
        # still gets one line instead of a traceback.
        _say_error(errors, f"runstream: rpc failed: {exc}")
        return 1
    except UsageError as exc:
        _say_error(errors, f"runstream: {exc}")
        return 2
    except BrokenPipeError:
        # The reader went away (`runs --watch --json | head -5`): end quietly, as rich's
        # console does for the tables, rather than "runstream: [Errno 32] Broken pipe".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for exit's flush
        return 1
    except (CliError, OSError) as exc:
        _say_error(errors, f"runstream: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
