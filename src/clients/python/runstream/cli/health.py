"""`runstream health`: whether a server's ``grpc.health.v1`` service says SERVING; the
container image's HEALTHCHECK.

It speaks TLS when the server does, and reads the same environment as ``serve`` to know:
with ``RUNSTREAM_TLS_CERT`` (the server's certificate) set, it connects with TLS, trusting
``RUNSTREAM_CA_FILE`` when set, else that certificate itself, and checks the certificate
against the name it was issued for (the check dials a loopback address, which a server's
certificate rarely names). Under mutual TLS it presents ``RUNSTREAM_CLIENT_CERT`` and
``RUNSTREAM_CLIENT_KEY``. Exit status 0 when SERVING, 1 otherwise with one line saying why
(Docker's convention: 1 is unhealthy).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .._auth import channel_credentials
from .._unreachable import TlsSettings, cause_of, look_closer
from .args import positive_seconds
from .auth import check_readable, unanswered_hint
from .errors import CliError, UsageError

__all__ = ["add_health_command"]


class _FromVariable(str):
    """A TLS option's default taken from the environment, which a message names as the
    variable the user set (`$RUNSTREAM_TLS_CERT`), not as an option never typed."""

    variable: str


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if not value:
        return None
    given = _FromVariable(value)
    given.variable = name
    return given


MAX_TIMEOUT = 3600.0
"""The longest --timeout: gRPC took 1e10 s as a deadline already past (DEADLINE_EXCEEDED
from a healthy server)."""


def _timeout(value: str) -> float:
    seconds = positive_seconds(value)
    if seconds > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TIMEOUT:g} seconds")
    return seconds


def _check_readable(args: argparse.Namespace) -> None:
    """The TLS files named by their option, or by the variable a default came from."""
    options = (
        (flag, getattr(args, flag.removeprefix("--").replace("-", "_")))
        for flag, _, _ in _TLS_OPTIONS
    )
    check_readable(
        *(
            (f"${value.variable}" if isinstance(value, _FromVariable) else flag, value)
            for flag, value in options
        )
    )


def certificate_name(cert_file: Path) -> str | None:
    """The name a PEM certificate (the first of a chain) was issued for: its first DNS name,
    else its first IP address, else its common name; None when it names nothing."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError as exc:
        raise CliError(f"--tls-cert {cert_file}: not a PEM certificate ({exc})") from None
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = None
    if names is not None:
        for kind in (x509.DNSName, x509.IPAddress):
            found = names.get_values_for_type(kind)
            if found:
                return str(found[0])
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else None


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext channel to --target, or TLS when a certificate or CA is given."""
    if (args.client_cert is None) != (args.client_key is None):
        raise UsageError("--client-cert and --client-key go together")
    _check_readable(args)
    roots = args.ca_file or args.tls_cert
    if roots is None and args.client_cert is None:
        return grpc.insecure_channel(args.target)
    options: list[tuple[str, Any]] = []
    if args.tls_cert:  # the certificate the server presents: check the name it was issued for
        name = certificate_name(Path(args.tls_cert))
        if name is not None and name != _host(args.target):
            options.append(("grpc.ssl_target_name_override", name))
    try:
        credentials = channel_credentials(roots, args.client_cert, args.client_key)
    except ValueError as exc:  # files gRPC could not use, named before anything connects
        raise CliError(f"TLS options: {exc}") from None
    assert credentials is not None  # a CA or a client certificate was given
    return grpc.secure_channel(args.target, credentials, options=options)


def _host(target: str) -> str:
    """The host part of a HOST:PORT target, an IP address in its canonical form."""
    host = target.rsplit(":", 1)[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def cmd_health(args: argparse.Namespace) -> int:
    try:
        with _channel(args) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        hint = f" ({_unanswered(args, details)})" if code == "UNAVAILABLE" else ""
        sys.stderr.write(f"runstream health: {args.target}: {code}: {details}{hint}\n")
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        sys.stderr.write(f"runstream health: {args.target}: {status}\n")
        return 1
    sys.stdout.write(f"{status}\n")
    return 0


def _unanswered(args: argparse.Namespace, details: str) -> str:
    """What a failed connection means (see runstream._unreachable), as the cause it is
    certain of when gRPC's words leave it open: not from this process's own
    RUNSTREAM_TLS_CLIENT_CA, which only the server's container has."""
    settings = TlsSettings(
        tls=bool(args.ca_file or args.tls_cert or args.client_cert),
        client_cert=args.client_cert,
        client_key=args.client_key,
        ca_option="RUNSTREAM_TLS_CERT or --ca-file",
        client_options="RUNSTREAM_CLIENT_CERT and RUNSTREAM_CLIENT_KEY",
    )
    cause = cause_of(args.target, details, settings)
    if cause is not None and not cause.certain:
        cause = asyncio.run(look_closer(args.target, settings)) or cause
    return unanswered_hint(args.target, details, settings) if cause is None else cause.text


_TLS_OPTIONS = (
    ("--tls-cert", "RUNSTREAM_TLS_CERT",
     "the server's certificate (serve --tls-cert): connect with TLS, trust it and check the "
     "name it was issued for"),
    ("--ca-file", "RUNSTREAM_CA_FILE", "connect with TLS, trusting this CA (PEM)"),
    ("--client-cert", "RUNSTREAM_CLIENT_CERT", "client certificate for mutual TLS"),
    ("--client-key", "RUNSTREAM_CLIENT_KEY", "the client certificate's key"),
)  # fmt: skip


def add_health_command(commands: Any, formatter: type[argparse.HelpFormatter]) -> Any:
    """`runstream health` (the image's HEALTHCHECK); returns its parser, which the caller
    gives the --target option all client commands share."""
    health = commands.add_parser(
        "health",
        help="exit 0 if a server's health service says SERVING (the image's health check)",
        description="Ask a server's grpc.health.v1 service whether it is SERVING; exit 0 if "
        "so, 1 otherwise. Speaks TLS when the server's certificate is named, as `serve` reads "
        "it: $RUNSTREAM_TLS_CERT.",
        formatter_class=formatter,
    )
    health.add_argument(
        "--service", default="", metavar="NAME", help="one service's health (default: the server's)"
    )
    health.add_argument(
        "--timeout",
        type=_timeout,
        default=3.0,
        metavar="SECONDS",
        help=f"how long to wait for the answer, at most {MAX_TIMEOUT:g}",
    )
    group = health.add_argument_group("TLS", "Defaults: the variables `serve` and the image read.")
    for flag, variable, text in _TLS_OPTIONS:
        group.add_argument(
            flag, default=_env(variable), metavar="PATH", help=f"{text}; ${variable}"
        )
    health.set_defaults(handler=cmd_health)
    return health
