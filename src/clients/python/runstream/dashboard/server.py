"""Serves the dashboard's static files (the bundle shipped in this package) over HTTP.

The page itself holds no secrets and talks to Runstream through Envoy (grpc-web), so a
plain standard-library server is enough: it serves the bundle, plus a ``config.json`` that
tells the page which port Envoy listens on.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources.abc import Traversable

from .._target import is_ipv6

__all__ = ["DashboardServer", "bracketed", "bundle_files", "called_on"]

_log = logging.getLogger("runstream.dashboard")

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


def bundle_files() -> dict[str, Traversable]:
    """The built dashboard, by URL path (``/app.js``); ``/`` is ``index.html``."""
    static = importlib.resources.files("runstream.dashboard").joinpath("static")
    files = {f"/{item.name}": item for item in static.iterdir() if item.is_file()}
    if "/index.html" not in files:
        raise FileNotFoundError(
            "the dashboard bundle is missing from the runstream package "
            "(build it with: node src/clients/web/scripts/build.mjs)"
        )
    files["/"] = files["/index.html"]
    return files


@dataclass
class DashboardServer:
    """A threaded HTTP server for the dashboard on ``host:port`` (port 0 picks one).

    `host` is an IPv4 or IPv6 address or a name; ``0.0.0.0`` is every IPv4 interface and
    ``::`` every interface, IPv6 and IPv4 alike.

    `api_port` is the grpc-web port (Envoy) the page calls on its own host name; `api_url`,
    when set, is a full URL that wins over it. A connection that takes longer than
    `request_timeout` seconds to send its request, or to take its answer, is closed: each
    holds a thread, and connections that never send would pile up.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_port: int = 8081
    api_url: str = ""
    request_timeout: float = 30.0
    _server: ThreadingHTTPServer | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        """The page's address, for example ``http://127.0.0.1:8080/`` (every interface: on
        loopback; IPv6 in brackets)."""
        host = called_on(self.host)
        return f"http://{bracketed(host)}:{self.port}/"

    def start(self) -> None:
        """Binds (raising OSError when the port is taken) and serves on a daemon thread."""
        files = bundle_files()
        config = json.dumps({"api_port": self.api_port, "api_url": self.api_url}).encode()
        handler = _handler_class(files, config, self.request_timeout)
        self._server = _server_class(self.host)((self.host, self.port), handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="runstream-dashboard", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def called_on(host: str) -> str:
    """The address a listener on `host` is called on from this machine: every interface
    (0.0.0.0, "", or another spelling the resolver takes for it: 0, 0.0) on IPv4 loopback,
    :: (or 0::0) on IPv6 loopback, any other address as it is."""
    if is_ipv6(host):
        return "::1" if ipaddress.IPv6Address(host).is_unspecified else host
    try:
        every_interface = not host or socket.inet_aton(host) == bytes(4)
    except OSError:  # a name
        return host
    return "127.0.0.1" if every_interface else host


def bracketed(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if is_ipv6(host) else host


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Ipv6Server(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        if self.server_address[0] == "::":  # every interface: IPv4 too, as 0.0.0.0 would
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    return _Ipv6Server if is_ipv6(host) else _Server


def _handler_class(
    files: dict[str, Traversable], config: bytes, request_timeout: float
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "runstream-dashboard"
        timeout = request_timeout  # on the socket: reading the request, sending the answer

        def version_string(self) -> str:
            # http.server appends "Python/3.x.y": nothing a visitor needs to know.
            return self.server_version

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, *, send_body: bool) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if path == "/config.json":
                body, name = config, path
            elif path in files:
                # Read per request: the files are small, and a rebuilt bundle shows on reload.
                body, name = files[path].read_bytes(), files[path].name
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            suffix = "." + name.rsplit(".", 1)[-1]
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _CONTENT_TYPES.get(suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            # A new Runstream version ships a new bundle under the same names.
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _not_allowed(self) -> None:
            # The page is read-only. Without a do_ method http.server answers 501 Not
            # Implemented, a server error, to what is the client's mistake.
            body = b"only GET and HEAD\n"
            self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
            self.send_header("Allow", "GET, HEAD")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def __getattr__(self, name: str) -> Callable[[], None]:
            # http.server looks up do_<METHOD> for every method a client names (TRACE,
            # CONNECT, PROPFIND, ...): each of them is one the page does not allow.
            if name.startswith("do_"):
                return self._not_allowed
            raise AttributeError(name)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("%s " + format, self.address_string(), *args)

    return Handler
