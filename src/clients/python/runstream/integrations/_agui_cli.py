"""`runstream agui`: serve Runstream runs to AG-UI frontends as Server-Sent Events.

Registering the command imports nothing of AG-UI; running it needs the ``agui`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys

from .._target import allowed_origin, checked_allowed_host
from ..cli.args import (
    DEFAULT_TARGET,
    TARGET_ENV,
    non_negative_int,
    non_negative_seconds,
    positive_int,
    positive_seconds,
    target_address,
    target_from_environment,
)
from ..cli.auth import add_client_security, connect, wait_for_server
from ..cli.errors import CliError, UsageError

__all__ = ["add_agui_command"]


def add_agui_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    formatter: type[argparse.HelpFormatter],
) -> None:
    """Registers `runstream agui` on the CLI's subcommands."""
    parser = commands.add_parser(
        "agui",
        help="serve runs as AG-UI Server-Sent Events (for CopilotKit and other AG-UI frontends)",
        description="Serve GET /runs/RUN_ID/events: a run's events in the AG-UI protocol as "
        "Server-Sent Events, live until the run ends; the SSE id is the event's seq, so a "
        "client reconnecting with Last-Event-ID resumes exactly. POST to the same URL (what "
        "AG-UI's HttpAgent sends, a RunAgentInput as its JSON body) answers the same stream. "
        "Runs until Ctrl-C or SIGTERM. Needs: pip install 'runstream[agui]'.",
        epilog="examples:\n"
        "  runstream agui --address 127.0.0.1:8090\n"
        "  runstream agui --target 10.0.0.5:50051 --address 0.0.0.0:8090 \\\n"
        "      --origin http://localhost:3000 --allowed-host agui.example.com\n"
        "      # behind a proxy that authenticates, which forwards Host agui.example.com\n",
        formatter_class=formatter,
    )
    parser.add_argument(
        "--target",
        type=target_address,
        default=None,
        metavar="HOST:PORT",
        help=f"the Runstream server (default: ${TARGET_ENV}, else {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--address",
        default="127.0.0.1:8090",
        metavar="HOST:PORT",
        help="where the bridge listens; port 0 picks a free port",
    )
    parser.add_argument(
        "--origin",
        type=_origin,
        action="append",
        default=[],
        metavar="URL",
        help="a browser origin allowed to read the streams (CORS): scheme://host[:port], "
        "e.g. http://localhost:3000 (a trailing / is dropped); '*' for any (repeatable)",
    )
    parser.add_argument(
        "--allowed-host",
        type=_allowed_host,
        action="append",
        default=[],
        metavar="NAME",
        help="a name requests may give as Host besides localhost and IP addresses, e.g. the "
        "public name a proxy in front forwards; .example.com (or *.example.com) allows its "
        "subdomains too, '*' any; a port given is ignored (repeatable). Other names get 403, "
        "against DNS rebinding",
    )
    parser.add_argument(
        "--max-body",
        type=positive_int,
        default=None,
        metavar="BYTES",
        help="the largest POST body it reads (AG-UI's RunAgentInput, which carries the "
        "frontend's whole conversation); a larger one gets 413 (default: 1 MiB)",
    )
    parser.add_argument(
        "--max-streams",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="the most streams it serves at once, each holding one of the server's watch "
        "streams for this command's token (the server allows an identity 200 by default); "
        "one more gets 503 with Retry-After; 0: no limit (default: 100)",
    )
    parser.add_argument(
        "--max-streams-per-address",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="the most of them one client address may hold; one more gets 503 with "
        "Retry-After. Behind a proxy every client has the proxy's address: give as many as "
        "--max-streams there; 0: no limit (default: 20)",
    )
    parser.add_argument(
        "--keepalive",
        type=_keepalive,
        default=15.0,
        metavar="SECONDS",
        help="send an SSE comment after this much silence, so proxies keep the stream; at "
        "least 0.1 (as serve's --heartbeat)",
    )
    parser.add_argument(
        "--send-timeout",
        type=non_negative_seconds,
        default=60.0,
        metavar="SECONDS",
        help="reset a stream's connection when a message waited this long to be sent, its "
        "client not reading (a laptop closed, a stuck proxy): its place and its watch are "
        "freed, and EventSource reconnects with Last-Event-ID, missing nothing; on Linux "
        "also when what was sent waited this long for the client's acknowledgement (its "
        "network gone); 0: never (default: 60)",
    )
    add_client_security(parser)
    parser.set_defaults(handler=run_agui_command)


MIN_KEEPALIVE = 0.1
"""Seconds: `--keepalive 0.001` sent some 850 comments a second down every idle stream."""


def _keepalive(value: str) -> float:
    seconds = positive_seconds(value)
    if seconds < MIN_KEEPALIVE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_KEEPALIVE:g} seconds")
    return seconds


def _origin(value: str) -> str:
    """An origin as the bridge matches it; one that is none is a usage error, not a CORS
    refusal of every request that the bridge's output never explains."""
    try:
        return allowed_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _allowed_host(value: str) -> str:
    """A Host name as the bridge matches it; one that is none (a URL) is a usage error."""
    try:
        checked_allowed_host(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if "/" in host:  # a URL: listening on it failed as a name not found, exit 1
        raise UsageError(f"--address {address!r}: expected HOST:PORT, not a URL")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--address {address!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def run_agui_command(args: argparse.Namespace) -> int:
    """The command's handler: serves until SIGINT or SIGTERM; returns the exit code."""
    from runstream.integrations._common import ImportHint

    try:
        from runstream.integrations.agui_bridge import AguiBridge  # noqa: F401
    except ImportHint as exc:
        raise CliError(str(exc)) from exc
    host, port = _split_address(args.address)
    asyncio.run(_serve(args, host, port))
    return 0


async def _serve(args: argparse.Namespace, host: str, port: int) -> None:
    from runstream.integrations.agui_bridge import (
        DEFAULT_MAX_BODY,
        DEFAULT_MAX_STREAMS,
        DEFAULT_MAX_STREAMS_PER_ADDRESS,
        AguiBridge,
    )

    target = args.target or target_from_environment() or DEFAULT_TARGET
    origins: list[str] = args.origin
    keepalive: float = args.keepalive
    send_timeout: float = args.send_timeout
    max_body: int = args.max_body or DEFAULT_MAX_BODY
    max_streams: int = DEFAULT_MAX_STREAMS if args.max_streams is None else args.max_streams
    per_address: int = args.max_streams_per_address
    if per_address is None:
        per_address = DEFAULT_MAX_STREAMS_PER_ADDRESS

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with connect(args, target) as client:  # with the command's token and TLS options
        # A server it can never use (TLS reached without --ca-file, ...) is said now, as the
        # other commands say it: the bridge served 503 "give ca_file" to every request and
        # printed nothing. One out of reach is waited for while serving (503 meanwhile).
        await wait_for_server(args, client, certain_only=True)
        bridge = AguiBridge(
            client,
            host=host,
            port=port,
            origins=origins,
            keepalive=keepalive,
            max_body=max_body,
            allowed_hosts=args.allowed_host,
            max_streams=max_streams,
            max_streams_per_address=per_address,
            send_timeout=send_timeout,
        )
        try:
            await bridge.start()
        except OSError as exc:
            raise CliError(f"cannot listen on {args.address}: {exc.strerror or exc}") from exc
        print(f"AG-UI bridge for {target}: {bridge.url()}", flush=True)
        if not _loopback(host):
            # `serve` refuses such an exposure without --insecure-no-auth; this one says so.
            print(
                f"warning: the bridge listens on {args.address}, beyond this machine, and "
                "authenticates nobody: whoever reaches it reads every run this command's "
                "token may read. Put it behind a proxy that authenticates your users.",
                file=sys.stderr,
                flush=True,
            )
        try:
            await stop.wait()
        finally:
            await bridge.stop()
    print("stopped", file=sys.stderr, flush=True)
