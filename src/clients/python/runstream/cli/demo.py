"""`runstream demo`: a simulated 17-step campaign workflow, produced and watched live.

This module is the command: an embedded server (its store seeded with recorded runs, so the
first demo already shows an ETA) or the one given, the producer and the live view side by
side, and the closing summary with the commands to look at the run again. The workflow
itself is data in demo_script.py, and demo_campaign.Campaign plays it through the public
SDK, exactly as an application would; the live view watches through the SDK too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import runstream

from .demo_campaign import Campaign
from .demo_script import (
    ASSETS_TARGET,
    DISPLAY_NAME,
    PERSONA_OPTIONS,
    STAGES,
    WORKFLOW,
    campaign_steps,
)
from .errors import CliError
from .fmt import format_duration, literal, run_status_text, span
from .render import follow_run
from .replicas import replicas
from .stopping import cancelled_by_signals

DEFAULT_ADDRESS = "127.0.0.1:50051"

RECORDED_RUNS = 3
"""Runs of the campaign with recorded timings that a fresh demo store starts with, so the
server has history to estimate from and the very first demo shows an ETA."""


async def seed_recorded_runs(server: Any, speed: float, seed: int) -> int:
    """Stores RECORDED_RUNS finished campaign runs with the stages' usual timings (±10 %, at
    this speed) on the embedded server, unless its store already has history; returns how
    many runs of the workflow it now has to learn from."""
    from runstream.v1 import event_pb2, run_pb2

    manager = server.runs
    page = await manager.list_runs(
        filter_text=f'workflow = "{WORKFLOW}" AND status = SUCCEEDED', page_size=50, page_token=""
    )
    known = len(page[0])
    if known:
        return known
    rng = random.Random(seed + 1)
    moment = datetime.now(UTC) - timedelta(days=1)
    specs = [
        run_pb2.StepSpec(step_id=stage.step_id, name=stage.name, phase=stage.phase)
        for stage in STAGES
    ]
    for number in range(1, RECORDED_RUNS + 1):
        run = await manager.create_run(
            run_id="",
            workflow=WORKFLOW,
            display_name=f"{DISPLAY_NAME} (recorded run {number})",
            labels={"source": "recorded"},
            steps=specs,
        )
        events: list[event_pb2.RunEvent] = []

        def at(event: event_pb2.RunEvent, when: datetime) -> event_pb2.RunEvent:
            event.event_time.FromDatetime(when)
            return event

        for stage in STAGES:
            start = event_pb2.StepStarted(step_id=stage.step_id)
            events.append(at(event_pb2.RunEvent(step_started=start), moment))
            moment += timedelta(seconds=stage.seconds * rng.uniform(0.9, 1.1) / speed)
            done = event_pb2.StepCompleted(step_id=stage.step_id)
            events.append(at(event_pb2.RunEvent(step_completed=done), moment))
        events.append(at(event_pb2.RunEvent(run_completed=event_pb2.RunCompleted()), moment))
        await manager.append(run.run_id, events)
        moment += timedelta(minutes=5)
    return RECORDED_RUNS


def _as_typed(path: Path) -> str:
    """A path as a user can type it from here: relative when below the working directory."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return str(path)
    return relative if "/" in relative else f"./{relative}"


def cli_command() -> str:
    """How to run `runstream` from where the user is: its name when it is on PATH, else its
    path in the virtualenv (``.venv/bin/runstream`` after ``make demo``)."""
    if shutil.which("runstream"):
        return "runstream"
    for program in (Path(sys.argv[0]), Path(sys.executable).parent / "runstream"):
        if program.name == "runstream" and program.exists():
            return _as_typed(program)
    return f"{Path(sys.executable).name} -m runstream.cli.main"


def grpcurl_command() -> str | None:
    """grpcurl when it is installed (on PATH, or in the virtualenv beside Python)."""
    if shutil.which("grpcurl"):
        return "grpcurl"
    beside = Path(sys.executable).parent / "grpcurl"
    return _as_typed(beside) if beside.exists() else None


# --- the command ---------------------------------------------------------------------------


PLAINTEXT = ("", "-plaintext")
"""What the suggested `runstream` and grpcurl commands add to reach a server without a token
or TLS (the embedded server and replicas, which take none)."""


@dataclass(frozen=True)
class DemoOptions:
    """What `runstream demo` was asked to do."""

    target: str | None
    address: str
    store: Path | None
    speed: float
    serve: bool
    live: bool
    seed: int = 7
    viewer: str = ""
    """Who answers the demo's question from the live view."""
    replicas: int = 0
    """With 2 or more: a redis-server and that many replicas on it; the demo reports to the
    first replica and watches through the second."""
    connect: Callable[[str], runstream.Client] = runstream.connect
    """A client for `target`, with the command's token and TLS options (the embedded server
    and replicas take none)."""
    security: tuple[str, str] = PLAINTEXT
    """Those options again, for the `runstream` and grpcurl commands the summary suggests
    for `target` (never the token itself)."""
    reachable: Callable[[runstream.Client], Awaitable[None]] | None = None
    """Returns once a server at `target` answers, raising when none does within the few
    seconds the one-request commands wait: without it, a `--target` with nothing there kept
    the demo silent for the client's whole reconnect timeout (a minute) before it said so."""


@contextlib.asynccontextmanager
async def _embedded_server(options: DemoOptions, console: Console) -> AsyncIterator[str]:
    """An in-process Runstream server for the demo; yields its target."""
    from runstream_server.app import RunstreamServer, ServerConfig
    from runstream_server.auth.edge import bind_error

    with contextlib.ExitStack() as stack:
        if options.store is not None:
            store = options.store
        else:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="runstream-demo-"))
            store = Path(directory) / "runstream.db"
        address = options.address
        if address == DEFAULT_ADDRESS and bind_error(address) is not None:
            console.print(
                Text(
                    f"Port {address} is in use (is `make serve` running?); the demo's own "
                    "server takes a free port instead.",
                    style="yellow",
                ),
                soft_wrap=True,
            )
            address = "127.0.0.1:0"
        server = RunstreamServer(ServerConfig(address=address, store_path=store))
        try:
            await server.start()
        except OSError as exc:  # names the address and why (the port in use, most often)
            raise CliError(f"{exc}; pass --address 127.0.0.1:0 for a free port") from exc
        except ValueError as exc:  # an address beyond loopback: it would serve anyone
            raise CliError(
                f"the demo's server checks no identity, so it listens on loopback only, not "
                f"{address}; pass --address 127.0.0.1:PORT (`runstream serve` serves others)"
            ) from exc
        try:
            console.print(
                Text.assemble(
                    ("Runstream server ", "bold"),
                    ("listening on ", ""),
                    (server.target, "bold cyan"),
                    (f"  (store: {store})", "grey62"),
                ),
                soft_wrap=True,
            )
            history = await seed_recorded_runs(server, options.speed, options.seed)
            console.print(
                Text(
                    f"ETA history: {history} earlier runs of {WORKFLOW} in this store"
                    if options.store is not None
                    else f"ETA history: {RECORDED_RUNS} recorded runs of {WORKFLOW} with its "
                    "usual step timings, stored in this demo's temporary store before it starts",
                    style="grey62",
                ),
                soft_wrap=True,
            )
            yield server.target
        finally:
            await server.stop(grace=1.0)


async def run_demo(options: DemoOptions, console: Console) -> int:
    """Runs the demo; returns the process exit code (0 when the run succeeded)."""
    # SIGTERM and SIGHUP (its terminal closed) stop the demo the way Ctrl-C does: by
    # cancelling it, so the embedded server shuts down cleanly and the run is cancelled.
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(cancelled_by_signals())
        watch_target = None
        if options.replicas:
            targets = await stack.enter_async_context(replicas(options.replicas, console))
            target, watch_target = targets[0], targets[1 % len(targets)]
        elif options.target is None:
            target = await stack.enter_async_context(_embedded_server(options, console))
        else:
            target = options.target
            console.print(
                Text.assemble(("Using Runstream server at ", "bold"), (target, "bold cyan")),
                soft_wrap=True,
            )
        connect = runstream.connect if options.target is None else options.connect
        client = await stack.enter_async_context(connect(target))
        if options.target is not None and options.reachable is not None:
            await options.reachable(client)
        viewer_client = client
        if watch_target is not None and watch_target != target:
            viewer_client = await stack.enter_async_context(runstream.connect(watch_target))
            console.print(
                Text.assemble(
                    ("Reporting to ", "bold"),
                    (target, "bold cyan"),
                    (", watching through ", "bold"),
                    (watch_target, "bold cyan"),
                ),
                soft_wrap=True,
            )
        run = await client.start_run(
            WORKFLOW,
            steps=campaign_steps(),
            display_name=DISPLAY_NAME,
            labels={"team": "growth", "source": "demo"},
            targets=[ASSETS_TARGET],
        )
        console.print(
            Text.assemble(
                ("Started run ", "bold"),
                (run.run_id, "bold bright_white"),
                f" · {WORKFLOW} · {len(STAGES)} steps · speed {options.speed:g}x",
            ),
            soft_wrap=True,
        )
        campaign = Campaign(run, speed=options.speed, seed=options.seed)
        producer = asyncio.create_task(_produce(run, campaign))
        try:
            final = await _watch_while_producing(
                viewer_client, run.run_id, producer, options, console
            )
        finally:
            if not producer.done():
                producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, runstream.RunstreamError):
                await producer
        print_summary(
            console,
            final,
            target,
            embedded=options.target is None,
            serve=options.serve,
            security=options.security if options.target is not None else PLAINTEXT,
            address=options.address,
        )
        if options.serve and options.target is None:
            await _serve_until_signalled(console, target)
    return 0 if final.status is runstream.RunStatus.SUCCEEDED else 1


async def _produce(run: runstream.RunReporter, campaign: Campaign) -> None:
    # `async with run` reports how the run ended whatever happens: failed if the workflow
    # raises, cancelled if this task is cancelled (Ctrl-C, SIGTERM), so the watcher always
    # sees a terminal event.
    async with run:
        await campaign.play()


async def _watch_while_producing(
    client: runstream.Client,
    run_id: str,
    producer: asyncio.Task[None],
    options: DemoOptions,
    console: Console,
) -> runstream.Run:
    watcher = asyncio.create_task(
        follow_run(
            client,
            run_id,
            console=console,
            live=options.live,
            title="Runstream demo",
            interactive=options.live,
            viewer=options.viewer,
        )
    )
    try:
        done, _ = await asyncio.wait({watcher, producer}, return_when=asyncio.FIRST_COMPLETED)
        failure = producer.exception() if producer in done else None
        if watcher not in done and failure is not None:
            # The producer died; `async with run` reported RunFailed, which ends the watch.
            # If even that report could not be made, do not wait forever.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(watcher), timeout=10)
            if not watcher.done():
                raise failure
        return await watcher
    finally:
        if not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def print_summary(
    console: Console,
    run: runstream.Run,
    target: str,
    *,
    embedded: bool,
    serve: bool,
    security: tuple[str, str] = PLAINTEXT,
    address: str = DEFAULT_ADDRESS,
) -> None:
    """The closing summary: outcome, numbers, and how to look at the run again (`security`:
    the options that reach `target` as the demo did, for `runstream` and for grpcurl;
    `address`: the --address the embedded server was asked to listen on)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="grey62", no_wrap=True)
    grid.add_column()
    grid.add_row("Run ID", Text(run.run_id, style="bold bright_white"))
    grid.add_row("Status", run_status_text(run.status))
    grid.add_row("Duration", format_duration(span(run.start_time, run.end_time)))
    grid.add_row(
        "Steps", f"{run.progress.completed_steps}/{run.progress.total_steps} steps completed"
    )
    grid.add_row("Events", f"{run.last_seq} events")
    if run.artifacts_summary.total:
        grid.add_row("Artifacts", str(run.artifacts_summary.total))
    if run.result_summary:
        grid.add_row("Result", literal(run.result_summary))
    persona = run.result.get("persona")
    if isinstance(persona, str):
        label = next((o.label for o in PERSONA_OPTIONS if o.value == persona), persona)
        grid.add_row("Persona", literal(label))
    if run.error is not None:
        grid.add_row("Error", Text(run.error.message, style="bold red"))
    request = '{"run_id":"' + run.run_id + '"}'
    program = cli_command()
    grpcurl = grpcurl_command()
    lines: list[str] = []
    heading = "Inspect the run:"
    if embedded and not serve:
        # The server (and its temporary store) stop with the demo: point at one that stays.
        heading = "The demo's server stopped with it. To explore a run, keep one up:"
        # `demo --serve` listens where this demo was asked to. On port 0, or on a busy
        # 127.0.0.1:50051 (another server there), it takes a free port: the commands after
        # it go to the address it prints, not to that other server.
        serve_here = "" if address == DEFAULT_ADDRESS else f" --address {shlex.quote(address)}"
        picked = target != address  # the server's target has the port it took
        at = "ADDRESS" if picked else shlex.quote(target)
        then = "at the address it prints" if picked else "meanwhile"
        lines = [
            f"{program} demo --serve{serve_here}",
            f"{program} runs --target {at}     # in another terminal, {then}",
            f"{program} get RUN_ID --target {at}",
            f"{program} dashboard --demo                # the same in the browser",
        ]
    else:
        for_cli, for_grpcurl = (f" {given}" if given else "" for given in security)
        if grpcurl is not None:
            lines += [
                f"{grpcurl}{for_grpcurl} {target} list",
                f"{grpcurl}{for_grpcurl} -d '{request}' {target} runstream.v1.RunService/GetRun",
                f"{grpcurl}{for_grpcurl} -d '{request}' {target} runstream.v1.RunService/WatchRun",
            ]
        lines += [
            f"{program} {command} {run.run_id} --target {target}{for_cli}"
            for command in ("get", "watch", "steps", "decisions")
        ]
    commands = Text()
    for line in lines:
        commands.append("  $ ", style="grey50")
        commands.append(line + "\n", style="bright_white")
    border = "green" if run.status is runstream.RunStatus.SUCCEEDED else "red"
    console.print(
        Panel(
            grid,
            title="[bold]Run summary[/]",
            title_align="left",
            border_style=border,
            expand=False,
        )
    )
    console.print(Text(heading, style="bold"))
    console.print(commands, soft_wrap=True, end="")


async def _serve_until_signalled(console: Console, target: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    console.print(
        Text.assemble(
            ("Serving on ", "bold"),
            (target, "bold cyan"),
            (" until Ctrl-C or SIGTERM", ""),
        ),
        soft_wrap=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    console.print(Text("Shutting down", style="grey62"))
