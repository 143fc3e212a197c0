"""`runstream`: serve Runstream, run the demo, watch runs live, and inspect them.

Exit codes: 0 on success; 1 when a request fails (the SDK's message goes to stderr, never a
traceback) or the watched or demo run did not succeed; 2 for bad usage; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import grpc
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

import runstream

from .._arguments import INT64_MAX, MAX_INITIAL_ENDED_LIMIT, MAX_SEQ
from .._errors import details_of
from ..dashboard.cli import add_dashboard_command
from ..integrations._agui_cli import add_agui_command
from . import demo, tables
from .args import (
    DEFAULT_TARGET,
    TARGET_ENV,
    Parser,
    listen_address,
    positive_float,
    positive_int,
    since,
    target_address,
    target_from_environment,
)
from .auth import (
    WATCH_RECONNECT,
    ServerUnreachable,
    add_client_security,
    add_token_command,
    connect,
    expired_token_file,
    expired_token_given,
    reconnect_timeout,
    repeated_security,
    tls_settings,
    unanswered_hint,
    wait_for_server,
)
from .errors import CliError, UsageError
from .fmt import printable, run_status_text
from .health import add_health_command
from .render import follow_run, print_run_header
from .serve import add_serve_command
from .stats import show_stats
from .stopping import cancelled_by_signals, run_async, terminated

T = TypeVar("T")


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


class _PipedConsole(Console):
    """A console whose reader going away (`| head`) is a BrokenPipeError, which unwinds the
    command (closing its channels, stopping the servers and redis-server it started) to
    main's quiet exit. rich raises SystemExit there, which a task the command awaits (the
    demo's watcher) threw out of the event loop: the channels were collected after it closed,
    and the process died of SIGSEGV, leaving `demo --replicas`'s redis-server running."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for exit's flush
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that stays readable when piped."""
    console = _PipedConsole(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Pipes and CI logs get rich's 80 columns by default, which would fold run ids and
        # squeeze tables; nothing downstream benefits from wrapping.
        console.width = 200
    return console


def wants_live(console: Console, plain: bool) -> bool:
    """Live rendering needs a real terminal; `--plain` or a pipe gets one line per event."""
    return not plain and console.is_terminal and not console.is_dumb_terminal


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
        reachable=lambda client: wait_for_server(args, client),
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
            # A TLS failure said at once, not after the minute a server restarting gets.
            await wait_for_server(args, client, WATCH_RECONNECT)
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
                await wait_for_server(args, client, WATCH_RECONNECT)  # as for watch
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
    if args.before is not None and args.before <= args.after:
        raise UsageError(  # an empty window: most likely the two seqs swapped
            f"--before {args.before} must be past --after {args.after}: no event is after "
            f"seq {args.after} and before seq {args.before}"
        )
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
                try:
                    asked = await client.get_decision(args.run_id, args.decision_id)
                except runstream.PermissionDeniedError:
                    # Another producer's token: the read's refusal spoke of reading and
                    # reporting (found in review); the answer's names the role answering needs.
                    pass
                else:
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


def _seq(most: int, least: int = 0) -> Callable[[str], int]:
    """A seq: a whole number from `least` to `most`, the SDK's bound for the call that takes
    it (past int64, watch --from-seq ended in a traceback)."""

    def seq(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if number < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more")
        if number > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}")
        return number

    return seq


# watch's after_seq: any int64, as the SDK's watch() and the server's WatchRun take it.
_watch_seq = _seq(INT64_MAX)
# ListEvents' filter compares seqs below 2^62 (the server's bound, and the SDK's).
_filter_seq = _seq(MAX_SEQ)
# Before seq 0 is before the log starts: said of --before itself, not as a window "past
# --after 0" the user may not have given.
_before_seq = _seq(MAX_SEQ, least=1)


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
    add_serve_command(commands, _Formatter)
    _add_demo_command(commands)
    _add_reading_commands(commands)
    _add_steering_commands(commands)
    add_dashboard_command(commands, _Formatter)
    add_token_command(commands, _Formatter)
    _add_target(add_health_command(commands, _Formatter), security=False)  # its own TLS options
    add_agui_command(commands, _Formatter)
    return parser


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo_parser = _add_command(
        commands,
        "demo",
        cmd_demo,
        summary="run a simulated 17-step campaign workflow and watch it live",
        description="Start an embedded server (or use --target), run a simulated "
        "multi-agent campaign workflow through the SDK, and render it live: steps, agents, "
        "reasoning, streamed copy, metrics and milestones. Exits 0 when the run succeeds.",
        epilog="examples:\n"
        "  runstream demo                    about 40 seconds; answer its question to save 8\n"
        "  runstream demo --speed 10 --plain about 4 seconds, one line per event\n"
        "  runstream demo --serve            keep the server up afterwards for grpcurl\n"
        "  runstream demo --replicas 2       report on one replica, watch through another\n",
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


def _add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    summary: str,
    description: str,
    epilog: str | None = None,
    run: str | None = None,
) -> argparse.ArgumentParser:
    """Adds the command `name`, run by `handler`: `summary` in the list of commands,
    `description` and `epilog` (examples) in its own help. A command about one run takes it
    first: with `run` (what that argument's help says), RUN_ID and then --target."""
    parser = commands.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=_Formatter
    )
    if run is not None:
        parser.add_argument("run_id", metavar="RUN_ID", help=run)
        _add_target(parser)
    parser.set_defaults(handler=handler)
    return parser


def _add_kinds(parser: argparse.ArgumentParser, examples: str) -> None:
    parser.add_argument(
        "--kinds",
        type=_event_kinds,
        default=None,
        metavar="KIND,...",
        help=f"only these event kinds, e.g. {examples}",
    )


def _add_by(parser: argparse.ArgumentParser, who: str) -> None:
    parser.add_argument(
        "--by",
        default=default_viewer(),
        metavar="NAME",
        help=f"{who} (default: $RUNSTREAM_USER or your login)",
    )


def _add_reading_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that watch and read runs: watch, runs, get, stats, steps, events."""
    watch = _add_command(
        commands,
        "watch",
        cmd_watch,
        summary="follow a run live until it ends",
        description="Follow a run's events live until it ends, resuming exactly where it "
        "left off after a disconnect. Replays the run when it already ended. Exits 0 when "
        "the run succeeded, 1 when it failed or was cancelled.",
        run="the run to follow",
    )
    _add_kinds(watch, "step_progress,agent_activity")
    watch.add_argument(
        "--from-seq",
        type=_watch_seq,
        default=0,
        metavar="N",
        help="start after event N (0 replays the whole run)",
    )
    _add_by(watch, "who answers prompts from this view")
    watch.add_argument(
        "--no-input",
        action="store_true",
        help="show prompts but do not read answers from the keyboard",
    )
    _add_plain(watch)

    runs = _add_command(
        commands,
        "runs",
        cmd_runs,
        summary="list runs",
        description="List runs, most recently created first.",
        epilog="filter examples:\n"
        "  status = RUNNING\n"
        "  status = FAILED OR status = CANCELLED\n"
        '  workflow = "campaign-generator" AND labels.team = "growth"\n'
        '  create_time > "2026-12-01T09:00:00Z"\n',
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

    get = _add_command(
        commands,
        "get",
        cmd_get,
        summary="show one run's progress snapshot",
        description="Show a run's snapshot: status, progress, health, times, metrics, "
        "artifacts and steps.",
        run="the run to show",
    )
    _add_json(get)

    stats = _add_command(
        commands,
        "stats",
        cmd_stats,
        summary="show a server's key figures (GetStats)",
        description="Show the figures of the server replica that answers: uptime, runs by "
        "status, open streams, events appended and delivered in the last minute, append "
        "latency p50/p99, store size.",
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object instead")
    _add_target(stats)

    steps = _add_command(
        commands,
        "steps",
        cmd_steps,
        summary="list a run's steps",
        description="List a run's steps in plan order with status, percent and duration.",
        run="the run whose steps to list",
    )
    _add_json(steps)

    events = _add_command(
        commands,
        "events",
        cmd_events,
        summary="list a run's stored events (history)",
        description="List a run's stored events in seq order, page by page (ListEvents), "
        "one line each; with --newest, newest first; --after and --before keep a window of "
        "seqs. Unlike watch, it shows what is stored now and returns.",
        run="the run whose events to list",
    )
    _add_kinds(events, "milestone,decision_resolved")
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
        type=_filter_seq,
        default=0,
        metavar="SEQ",
        help="only events after seq SEQ, read from there (not from the log's start)",
    )
    events.add_argument(
        "--before",
        type=_before_seq,
        default=None,
        metavar="SEQ",
        help="only events before seq SEQ; with --newest, the last ones before it",
    )
    _add_json(events)


def _add_steering_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that answer and steer: decisions, answer, pause, resume, cancel."""
    decisions = _add_command(
        commands,
        "decisions",
        cmd_decisions,
        summary="list a run's decisions (questions to humans)",
        description="List the decisions a run asked, open and closed, with their options, "
        "outcome and who answered.",
        run="the run whose decisions to list",
    )
    decisions.add_argument("--open", action="store_true", help="only decisions still open")
    _add_json(decisions)

    answer = _add_command(
        commands,
        "answer",
        cmd_answer,
        summary="answer (or skip) a run's open decision",
        description="Answer a decision a run is waiting on. The first valid answer wins; "
        "the same answer again is accepted; a different answer after the decision closed "
        "fails and names the winning answer.",
        epilog="examples:\n"
        "  runstream answer RUN_ID persona-priority city_summiteer   (the demo's question)\n"
        "  runstream answer RUN_ID persona-priority --skip --by ana\n",
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
    _add_by(answer, "who answers")
    _add_target(answer)

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
        control = _add_command(
            commands,
            action,
            _control_command(action),
            summary=summary,
            description=description,
            run=f"the run to {action}",
        )
        control.add_argument("--reason", default="", metavar="TEXT", help="why, for the log")
        _add_by(control, "who does it")


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
"""Words of the causes a server of a release before 2026-12-06, which sent no reason with
its refusals, gave with UNAVAILABLE (its store, or its stop)."""


def answered_by_a_server(exc: runstream.UnavailableError) -> bool:
    """Whether a server gave this UNAVAILABLE (its store is full, damaged, read-only or out of
    reach; it is shutting down), not the channel (nothing answered). A server's refusal
    carries its reason (``STORE_DAMAGED``...), on the error or on the refusal it was raised
    from: the SDK's "no server could serve it for 5s (...)" is raised from the last one."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes, never a loop
        if seen is None:
            break
        if isinstance(seen, runstream.RunstreamError) and seen.details.reason:
            return True
        if isinstance(seen, grpc.aio.AioRpcError) and details_of(seen).reason:
            return True
        seen = seen.__cause__
    return any(cause in exc.message for cause in SERVER_CAUSES)


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
        # full or damaged, it is shutting down), and asking whether it runs would mislead.
        # One that already says why (wait_for_server's) needs no hint either.
        unanswered = (
            target and not isinstance(exc, ServerUnreachable) and not answered_by_a_server(exc)
        )
        hint = unanswered_hint(str(target), exc.message, tls_settings(args))
        where = f" ({hint})" if unanswered else ""
        _say_error(errors, f"runstream: {describe_error(exc)}{where}")
        return 1
    except runstream.UnauthenticatedError as exc:
        # The server's words name the header to send; a person at this command gives options.
        said = describe_error(exc)
        if exc.details.reason == "TOKEN_MISSING":
            said = (
                "unauthenticated: the server wants a bearer token and none was given: --token "
                "JWT, --token-file PATH, or $RUNSTREAM_TOKEN or $RUNSTREAM_TOKEN_FILE"
            )
        elif exc.details.reason == "TOKEN_EXPIRED" and (
            stale := expired_token_file(args) or expired_token_given(args)
        ):
            said = f"unauthenticated: {stale}"
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
