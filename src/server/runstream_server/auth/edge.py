"""How a server's security settings become interceptors and a listening port.

:class:`SecurityConfig` is everything ``runstream serve`` can be told about identity:
tokens, TLS and the plaintext escape hatch. The secure default: a server without token
verification listens on loopback only, unless ``insecure_no_auth`` says otherwise (and a
warning is logged). A server that verifies tokens but serves no TLS beyond loopback starts,
since a proxy in front may terminate TLS, and says once that tokens reach it in clear.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc import aio

from runstream_server.auth.certificates import CertificateFiles
from runstream_server.auth.interceptor import AuthInterceptor
from runstream_server.auth.limits import CallerLimits
from runstream_server.auth.tokens import AuthConfig, TokenVerifier
from runstream_server.rpc.errors import RejectionLog
from runstream_server.rpc.handlers import HandlerRewriter

__all__ = [
    "SecurityConfig",
    "TlsConfig",
    "auth_rewriters",
    "bind_error",
    "check_exposure",
    "listen",
]

log = logging.getLogger("runstream.auth")


@dataclass(frozen=True)
class TlsConfig:
    """The server's certificate and key (PEM), and the CA that client certificates need."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    """When set, mutual TLS: a client without a certificate signed by this CA is refused."""

    def problem(self) -> str | None:
        """Why gRPC could not serve TLS with these files, or None. They are loaded with
        Python's ssl as gRPC loads them, at any key strength; gRPC itself only says that it
        could not create the server, and a port that could not be bound says the same."""
        return self._unreadable() or self._unusable()

    def _unreadable(self) -> str | None:
        files = [("--tls-cert", self.cert_file), ("--tls-key", self.key_file)]
        if self.client_ca_file is not None:
            files.append(("--tls-client-ca", self.client_ca_file))
        for option, path in files:
            try:
                path.read_bytes()
            except OSError as exc:
                return f"cannot read {option} {path}: {exc.strerror or exc}"
        return None

    def _unusable(self) -> str | None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except (ssl.SSLError, ValueError) as exc:
            return (
                f"--tls-cert {self.cert_file} and --tls-key {self.key_file} are not a PEM "
                f"certificate and its unencrypted private key ({_reason(exc)})"
            )
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(self.client_ca_file)
            except ssl.SSLError as exc:
                ca = self.client_ca_file
                return f"--tls-client-ca {ca} holds no PEM certificate ({_reason(exc)})"
        return None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that follow the files (see auth/certificates.py)."""
        files = CertificateFiles(self.cert_file, self.key_file, self.client_ca_file, self.problem)
        return files.credentials()


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


_SSL_REASONS = {"KEY_VALUES_MISMATCH": "the key is not the certificate's"}


def _reason(exc: Exception) -> str:
    if not isinstance(exc, ssl.SSLError):
        return str(exc)
    return _SSL_REASONS.get(exc.reason, exc.reason) if exc.reason else "unreadable as PEM"


@dataclass(frozen=True)
class SecurityConfig:
    """Tokens, TLS, and whether plaintext without auth may leave loopback."""

    auth: AuthConfig | None = None
    """Verify bearer JWTs on every call; None: no authentication (loopback only)."""
    tls: TlsConfig | None = None
    """Serve TLS (and mutual TLS with a client CA); None: plaintext."""
    insecure_no_auth: bool = False
    """Allow a non-loopback address without auth (logged as a warning)."""
    limits: CallerLimits = field(default_factory=CallerLimits)
    """Per-principal and per-tenant limits (see runstream_server.auth.limits)."""


def _is_loopback(address: str) -> bool:
    """Whether only this machine can reach `address`: a loopback host, or a unix socket (a
    file's, which its permissions guard, or an abstract one, which only this machine's
    network namespace reaches, as its loopback); the SDK sends a token in clear to both."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(address: str, security: SecurityConfig, *, warn: bool = True) -> None:
    """Refuses (ValueError) to serve without auth beyond loopback unless explicitly allowed;
    allowed, logs a warning when `warn` (the server, as it starts: the CLI only checks its
    options early, so the warning is logged once). With auth but without TLS beyond loopback
    (or a unix socket), warns that tokens travel in clear."""
    if _is_loopback(address):
        return
    if security.auth is not None:
        if warn and security.tls is None and not address.startswith(("unix:", "unix-abstract:")):
            log.warning(
                "listening on %s with tokens but WITHOUT TLS: bearer tokens reach it in "
                "clear, and anyone on the path can replay them, unless a proxy in front "
                "terminates TLS; serve TLS with --tls-cert and --tls-key",
                address,
            )
        return
    if not security.insecure_no_auth:
        raise ValueError(
            f"refusing to listen on {address} without authentication: configure "
            "--jwt-secret-file or --jwt-public-key, listen on 127.0.0.1 or a unix: socket, "
            "or pass --insecure-no-auth to accept that anyone who reaches the port can read "
            "and steer every run"
        )
    if warn:
        log.warning(
            "listening on %s WITHOUT authentication (--insecure-no-auth): anyone who reaches "
            "the port can read, cancel and answer every run",
            address,
        )


def auth_rewriters(
    security: SecurityConfig, rejections: RejectionLog | None = None
) -> list[HandlerRewriter]:
    """The rewriters to put first in the chain (none when auth is off); refusals go to
    `rejections` with the server's other rejected calls."""
    if security.auth is None:
        return []
    return [AuthInterceptor(TokenVerifier(security.auth), rejections)]


def listen(server: aio.Server, address: str, security: SecurityConfig) -> int:
    """Binds `address` (TLS when configured); the port, or 0 when it could not bind."""
    if security.tls is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, security.tls.credentials())


def bind_error(address: str) -> str | None:
    """Why nothing can listen on `address` (HOST:PORT) now, found by binding a socket of our
    own, or None when something can (or when it is not a HOST:PORT: gRPC judges those).

    Asked before the store is opened and before gRPC binds: gRPC logs a failed bind on
    stderr itself, and a server that cannot listen should leave nothing behind. Like gRPC's
    listeners the socket reuses addresses (a port left in TIME_WAIT is free) and not ports,
    and one address of a name that resolves to several is enough. A name that resolves to
    nothing, and a unix socket whose directory is missing, are said too (gRPC's log line was
    all that said what was wrong with them).
    """
    if address.startswith("unix:"):
        directory = Path(address.removeprefix("unix:").removeprefix("//")).parent
        return None if directory.is_dir() else f"its directory {directory} does not exist"
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"the name {host} does not resolve here ({exc.strerror})"
    except UnicodeError:
        return None
    problem = None
    for family, kind, proto, _, where in found:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(where)
            except OSError as exc:
                in_use = exc.errno == errno.EADDRINUSE
                problem = problem or ("the port is in use" if in_use else exc.strerror or str(exc))
                continue
        return None
    return problem
