"""The CLI's identity options: tokens and TLS for client commands, keys for `serve`, and the
`runstream token` command that mints development tokens.

Client commands take the token from ``--token``, else the file named by ``--token-file``
(re-read before it expires, so a sidecar that rotates the file keeps long watches alive);
without either option, from ``$RUNSTREAM_TOKEN``, else the file ``$RUNSTREAM_TOKEN_FILE``
names: an option on the command line beats what the environment says. As in the SDK, a
token goes over plaintext only to a target on this machine, unless ``--insecure-token``.
``serve`` options default to the matching ``RUNSTREAM_*`` environment variables, which is
how the container image takes a key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import runstream
from runstream import _arguments as arguments
from runstream._auth import (
    PlaintextTokenError,
    TokenProvider,
    _claims,
    channel_credentials,
    token_as_sent,
)
from runstream._unreachable import TlsSettings, cause_of, look_closer

from .args import duration, non_negative_float, non_negative_int, non_negative_seconds
from .errors import CliError, UsageError

if TYPE_CHECKING:
    from runstream_server.auth.edge import SecurityConfig

__all__ = [
    "LIMITS_WITHOUT_AUTH",
    "LIMIT_OPTIONS",
    "ONE_REQUEST_WAIT",
    "WATCH_RECONNECT",
    "ServerUnreachable",
    "add_client_security",
    "add_serve_security",
    "add_token_command",
    "check_readable",
    "connect",
    "expired_token_file",
    "expired_token_given",
    "reconnect_timeout",
    "repeated_security",
    "security_config",
    "tls_settings",
    "unanswered_hint",
    "wait_for_server",
]

_ROLES = ("producer", "viewer", "operator", "admin")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def add_client_security(
    parser: argparse.ArgumentParser, *, reconnect: bool = True, description: str | None = None
) -> None:
    """--token, --token-file, --ca-file, --client-cert, --client-key, --insecure-token, and
    with `reconnect` --reconnect-timeout."""
    group = parser.add_argument_group("identity and TLS", description)
    group.add_argument(
        "--token",
        default=None,
        metavar="JWT",
        help="bearer token; $RUNSTREAM_TOKEN when set and neither option is given",
    )
    group.add_argument(
        "--token-file",
        default=None,
        metavar="PATH",
        help="file holding the bearer token (re-read when it nears expiry); "
        "$RUNSTREAM_TOKEN_FILE when set and neither option is given",
    )
    group.add_argument(
        "--ca-file",
        default=None,
        metavar="PATH",
        help="connect with TLS, trusting this CA (PEM); $RUNSTREAM_CA_FILE when set",
    )
    group.add_argument(
        "--client-cert", default=None, metavar="PATH", help="client certificate for mutual TLS"
    )
    group.add_argument(
        "--client-key", default=None, metavar="PATH", help="the client certificate's key"
    )
    group.add_argument(
        "--insecure-token",
        action="store_true",
        default=_env("RUNSTREAM_INSECURE_TOKEN") == "1",
        help="send the token over plaintext to a target beyond loopback: in clear, so anyone "
        "on the path can replay it (a network you trust); $RUNSTREAM_INSECURE_TOKEN=1",
    )
    if not reconnect:
        return
    parser.add_argument(
        "--reconnect-timeout",
        type=non_negative_seconds,
        default=None,
        metavar="SECONDS",
        help="how long to keep reconnecting while the server is out of reach, e.g. during a "
        f"restart or a deploy (default: {WATCH_RECONNECT:g} for a watch; 0: for ever); a "
        "command that makes one request (get, cancel, ...) waits that long for a server to "
        f"answer, then sends it (default: {ONE_REQUEST_WAIT:g})",
    )


def _token(args: argparse.Namespace) -> str | TokenProvider | None:
    token, path = getattr(args, "token", None), getattr(args, "token_file", None)
    if not token and not path:  # the command line's options first, then the environment
        token, path = _env("RUNSTREAM_TOKEN"), _env("RUNSTREAM_TOKEN_FILE")
    if token:
        return str(token)
    if not path:
        return None
    file = Path(path)

    def read() -> str:
        try:
            text = file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the token file {file}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # a binary file given by mistake: name it
            raise CliError(
                f"the token file {file} is not text (a byte 0x{exc.object[exc.start]:02x} at "
                f"{exc.start}); a token is a line of ASCII"
            ) from None
        if not text:
            raise CliError(f"the token file {file} is empty")
        try:
            return token_as_sent(text)
        except ValueError as exc:
            raise CliError(f"the token file {file}: {exc}") from None

    read()  # fail now, with a clear message, rather than on the first call
    return read


def expired_token_file(args: argparse.Namespace) -> str | None:
    """What to say of a token the server found expired when it came from a file that still
    holds an expired one (by this machine's clock too): the token in that file expired, and
    to renew it. The server's words ask whether clocks are out of sync, which misled for a
    watch whose file was re-read at expiry and gave the same token (found in review). None
    when the token came from elsewhere, or the file's token has not expired here."""
    token, path = getattr(args, "token", None), getattr(args, "token_file", None)
    if not token and not path:
        token, path = _env("RUNSTREAM_TOKEN"), _env("RUNSTREAM_TOKEN_FILE")
    if token or not path:
        return None
    exp = _claims(_read(path).strip().removeprefix("Bearer ")).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp > time.time():
        return None
    ago = time.time() - exp
    return (
        f"the token in {path} expired {ago:.0f} s ago (its exp, by this machine's clock as by "
        "the server's): renew it, writing the new token to that file"
    )


def expired_token_given(args: argparse.Namespace) -> str | None:
    """What to say of a token the SDK or server found expired when it was given as a string
    (--token, or $RUNSTREAM_TOKEN), expired by this machine's clock too: which one, and that
    a token file is read again at expiry where a string cannot be. The SDK's words speak of
    connect(token=...), which a person at this command does not call. None when the token
    came from a file, or has not expired here."""
    token, where = getattr(args, "token", None), "--token"
    if not token and not getattr(args, "token_file", None):
        token, where = _env("RUNSTREAM_TOKEN"), "$RUNSTREAM_TOKEN"
    if not token:
        return None
    exp = _claims(str(token).strip().removeprefix("Bearer ")).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp > time.time():
        return None
    return (
        f"the token given with {where} expired {time.time() - exp:.0f} s ago (its exp, by this "
        "machine's clock): give a fresh one, or --token-file PATH, read again when its token "
        "expires"
    )


def check_readable(*files: tuple[str, str | Path | None]) -> None:
    """CliError naming the option (or the variable it came from) of a TLS file that cannot be
    read, for each (name, path) given: the bare OSError named neither (`[Errno 2] No such
    file or directory: ...`)."""
    for name, path in files:
        if not path:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise CliError(f"{name} {path}: cannot read it ({exc.strerror or exc})") from None


def _credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    ca_file = getattr(args, "ca_file", None) or _env("RUNSTREAM_CA_FILE")
    check_readable(
        ("--ca-file" if getattr(args, "ca_file", None) else "$RUNSTREAM_CA_FILE", ca_file),
        ("--client-cert", getattr(args, "client_cert", None)),
        ("--client-key", getattr(args, "client_key", None)),
    )
    try:
        return channel_credentials(
            ca_file, getattr(args, "client_cert", None), getattr(args, "client_key", None)
        )
    except (OSError, ValueError) as exc:
        raise CliError(f"TLS options: {exc}") from None


def repeated_security(args: argparse.Namespace) -> tuple[str, str]:
    """What to add to a `runstream` command and to a grpcurl command so they reach the server
    as this command did (its token and TLS), for the commands a command suggests: paths and
    shell expansions, never a token itself (one given with --token reads JWT). Options the
    environment gave need nothing on `runstream`, which reads the same variables."""
    cli: list[str] = []
    grpcurl: list[str] = []
    token, path = getattr(args, "token", None), getattr(args, "token_file", None)
    if token:
        cli += ["--token", "JWT"]
        grpcurl += ["-H", "'authorization: Bearer JWT'"]
    elif path:
        cli += ["--token-file", shlex.quote(path)]
        scheme = _scheme_unless_given(_read(path))
        grpcurl += ["-H", f'"authorization: {scheme}$(cat {shlex.quote(path)})"']
    elif given := _env("RUNSTREAM_TOKEN"):
        grpcurl += ["-H", f'"authorization: {_scheme_unless_given(given)}$RUNSTREAM_TOKEN"']
    elif path := _env("RUNSTREAM_TOKEN_FILE"):
        scheme = _scheme_unless_given(_read(path))
        grpcurl += ["-H", f'"authorization: {scheme}$(cat "$RUNSTREAM_TOKEN_FILE")"']
    ca_file = getattr(args, "ca_file", None)
    if ca_file:
        cli += ["--ca-file", shlex.quote(ca_file)]
        grpcurl += ["-cacert", shlex.quote(ca_file)]
    elif _env("RUNSTREAM_CA_FILE"):
        grpcurl += ["-cacert", '"$RUNSTREAM_CA_FILE"']
    elif not getattr(args, "client_cert", None):  # a client certificate alone: system roots
        grpcurl.insert(0, "-plaintext")
    for option, flag in (("client_cert", "-cert"), ("client_key", "-key")):
        if value := getattr(args, option, None):
            cli += [f"--{option.replace('_', '-')}", shlex.quote(value)]
            grpcurl += [flag, shlex.quote(value)]
    if getattr(args, "insecure_token", False) and not _env("RUNSTREAM_INSECURE_TOKEN"):
        cli.append("--insecure-token")
    return " ".join(cli), " ".join(grpcurl)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def _scheme_unless_given(token: str) -> str:
    """ "Bearer " for a header made of `token`, unless it carries it (the CLI takes either)."""
    return "" if token.lstrip().startswith("Bearer ") else "Bearer "


WATCH_RECONNECT = 60.0
"""Seconds a watch keeps reconnecting to a server out of reach, unless told otherwise."""
ONE_REQUEST_WAIT = 5.0
"""Seconds a command that makes one request waits for a server, unless told otherwise: a
mistyped address is said in a few seconds, not a minute."""


def reconnect_timeout(args: argparse.Namespace, default: float) -> float:
    """The command's --reconnect-timeout, or `default` when it was not given (0: for ever)."""
    given: float | None = getattr(args, "reconnect_timeout", None)
    return default if given is None else given


def connect(args: argparse.Namespace, target: str | None = None) -> runstream.Client:
    """A client for the command's --target with its token and TLS options; UsageError (exit
    status 2) for a token that would go in clear beyond this machine."""
    credentials = _credentials(args)
    try:
        return runstream.connect(
            target or args.target,
            token=_token(args),
            credentials=credentials,
            reconnect_timeout=reconnect_timeout(args, WATCH_RECONNECT) or None,
            insecure_token=getattr(args, "insecure_token", False),
        )
    except PlaintextTokenError as exc:
        raise UsageError(
            _not_one("RUNSTREAM_INSECURE_TOKEN")
            + f"refusing to send the token in clear to {exc.target} (plaintext, not loopback: "
            "anyone on the path could replay it); give --ca-file for TLS, a loopback --target "
            "(a local proxy that speaks TLS onwards), or --insecure-token to send it anyway"
        ) from None
    except ValueError as exc:  # a token no header can carry
        raise CliError(str(exc)) from None


# As the SDK's channels: reconnect within 2 s of a server coming back (gRPC's own backoff
# grows to 120 s between attempts). Not grpc.min_reconnect_backoff_ms: gRPC takes it as each
# connection attempt's timeout too, and at 100 ms a TLS handshake over a link with a round
# trip of 120 ms never completed (found in review).
_PROBE_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
_PROBE_EVERY = 5.0
"""The longest one health check waits for a connection before it is tried again."""


class ServerUnreachable(runstream.UnavailableError):
    """No server served the command, with why in its message already (no hint to add)."""


def tls_settings(args: argparse.Namespace) -> TlsSettings:
    """How the command connects, for what a failed connection means (see
    runstream._unreachable)."""
    ca_file = getattr(args, "ca_file", None) or _env("RUNSTREAM_CA_FILE")
    client_cert = getattr(args, "client_cert", None)
    return TlsSettings(
        tls=bool(ca_file or client_cert),
        client_cert=client_cert,
        client_key=getattr(args, "client_key", None),
    )


async def wait_for_server(
    args: argparse.Namespace,
    client: runstream.Client,
    default: float = ONE_REQUEST_WAIT,
    *,
    certain_only: bool = False,
) -> None:
    """Returns once a server at the client's target answers, trying for --reconnect-timeout
    seconds (`default` when not given; 0: for ever); ServerUnreachable when none does, at once
    when why is certain (a TLS failure: waiting does not mend it), else with the likely cause.

    For the commands that make one request, and for `watch` and `runs --watch` before their
    first stream: started during a restart or a deploy, they wait for the server, instead of
    giving up after the few seconds the SDK retries a read, or at once for a control, which
    the SDK sends once. The request itself is then sent as before, so a control still goes
    once. A watch that was live goes on through the SDK's reconnects, which retry any failure
    of the connection. The check is gRPC's health service, which needs no token; any answer
    from it, NOT_SERVING or UNIMPLEMENTED too, means a server is there to answer the command.

    ``certain_only``: one look, for a command that serves on while its server is out of
    reach (``agui``): raises only a certain cause, and returns at once otherwise.
    """
    limit = reconnect_timeout(args, default)
    deadline = time.monotonic() + limit if limit else None
    credentials = _credentials(args)
    if credentials is None:
        channel = grpc.aio.insecure_channel(client.target, options=_PROBE_OPTIONS)
    else:
        channel = grpc.aio.secure_channel(client.target, credentials, options=_PROBE_OPTIONS)
    health = health_pb2_grpc.HealthStub(channel)
    settings = tls_settings(args)
    looked = False  # whether look_closer had its one try
    try:
        while True:
            wait = _PROBE_EVERY if deadline is None else deadline - time.monotonic()
            try:
                await health.Check(
                    health_pb2.HealthCheckRequest(), timeout=max(0.1, min(wait, _PROBE_EVERY))
                )
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    return  # a server answered, if not with a health status
                last = exc.details() or exc.code().name
                cause = cause_of(client.target, last, settings)
                if cause is not None and not cause.certain and not looked:
                    looked = True
                    cause = await look_closer(client.target, settings) or cause
                if cause is not None and cause.certain:
                    raise ServerUnreachable(f"{cause.text} (gRPC: {last})") from None
                if certain_only:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    # `demo --target` waits as long, with no flag to change it.
                    flag = " (--reconnect-timeout)" if hasattr(args, "reconnect_timeout") else ""
                    tried = f"for {limit:g}s{flag}"
                    if cause is None:
                        said = f"no server answered {tried}: " + unanswered_hint(
                            client.target, last, settings
                        )
                    else:
                        said = f"{cause.text}; tried {tried}"
                    raise ServerUnreachable(f"{said} (gRPC: {last})") from None
                await asyncio.sleep(0.2)  # between two attempts to connect
    finally:
        await channel.close(grace=None)


def add_serve_security(serve: argparse.ArgumentParser) -> None:
    """The server's token, TLS and exposure options."""
    group = serve.add_argument_group(
        "identity and TLS",
        "Without --jwt-secret-file or --jwt-public-key the server authenticates nobody and "
        "listens on loopback only (unless --insecure-no-auth).",
    )
    group.add_argument(
        "--jwt-secret-file",
        default=_env("RUNSTREAM_JWT_SECRET_FILE"),
        metavar="PATH",
        help="verify HS256 tokens with the secret in this file (32+ bytes); "
        "$RUNSTREAM_JWT_SECRET_FILE",
    )
    group.add_argument(
        "--jwt-public-key",
        default=_env("RUNSTREAM_JWT_PUBLIC_KEY"),
        metavar="PATH",
        help="verify RS256/ES256/EdDSA tokens with this PEM public key or JWKS file; "
        "$RUNSTREAM_JWT_PUBLIC_KEY",
    )
    group.add_argument(
        "--jwt-issuer",
        default=_env("RUNSTREAM_JWT_ISSUER"),
        metavar="ISS",
        help="require this iss claim; $RUNSTREAM_JWT_ISSUER",
    )
    group.add_argument(
        "--jwt-audience",
        default=_env("RUNSTREAM_JWT_AUDIENCE"),
        metavar="AUD",
        help="require this aud claim; $RUNSTREAM_JWT_AUDIENCE",
    )
    group.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=_env("RUNSTREAM_INSECURE_NO_AUTH") == "1",
        help="allow listening beyond loopback without authentication (logs a warning); "
        "$RUNSTREAM_INSECURE_NO_AUTH=1",
    )
    group.add_argument(
        "--tls-cert",
        default=_env("RUNSTREAM_TLS_CERT"),
        metavar="PATH",
        help="serve TLS with this PEM certificate (chain); $RUNSTREAM_TLS_CERT",
    )
    group.add_argument(
        "--tls-key",
        default=_env("RUNSTREAM_TLS_KEY"),
        metavar="PATH",
        help="the certificate's PEM private key; $RUNSTREAM_TLS_KEY",
    )
    _add_limit_options(serve)
    group.add_argument(
        "--tls-client-ca",
        default=_env("RUNSTREAM_TLS_CLIENT_CA"),
        metavar="PATH",
        help="mutual TLS: require client certificates signed by this CA; $RUNSTREAM_TLS_CLIENT_CA",
    )


# The server's defaults (runstream_server.auth.limits.CallerLimits), repeated for --help so client
# commands need not import the server; tests/e2e/test_identity_cli.py keeps them equal.
LIMIT_OPTIONS = (
    ("--max-watch-streams", "watch_streams_per_principal", non_negative_int, 200,
     "open WatchRun/WatchRuns/Interact streams per principal"),
    ("--max-watchers-per-run", "watchers_per_run", non_negative_int, 5000,
     "open watch streams per run"),
    ("--max-report-streams", "report_streams_per_principal", non_negative_int, 1000,
     "open Report streams per producer principal, on this server"),
    ("--max-active-runs", "active_runs_per_tenant", non_negative_int, 2000,
     "runs not yet ended per tenant"),
    ("--append-rate", "append_events_per_second", non_negative_float, 2000.0,
     "events per second each producer may append (token bucket)"),
    ("--append-burst", "append_burst", non_negative_int, 10000,
     "the bucket's size: events at once"),
)  # fmt: skip


LIMITS_WITHOUT_AUTH = frozenset({"watchers_per_run"})
"""The limits of LIMIT_OPTIONS that count without a principal (the others need auth)."""


def _add_limit_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group(
        "limits",
        "Over a limit a call gets RESOURCE_EXHAUSTED with a RetryInfo saying when to retry; "
        "0 turns a limit off. Per-principal and per-tenant limits apply with auth on (without a "
        "key, serve refuses them); --max-watchers-per-run applies always.",
    )
    for flag, field, kind, default, text in LIMIT_OPTIONS:
        group.add_argument(
            flag,
            dest=f"limit_{field}",
            type=kind,
            default=None,
            metavar="N",
            help=f"{text} (default: {default:g})",
        )


def security_config(args: argparse.Namespace, address: str) -> SecurityConfig:
    """The server's SecurityConfig from `serve` options; CliError for inconsistent ones, or
    for a non-loopback `address` without auth or --insecure-no-auth."""
    from runstream_server.auth.edge import SecurityConfig, TlsConfig, check_exposure
    from runstream_server.auth.tokens import AuthConfig, TokenVerifier

    auth = None
    if args.jwt_secret_file or args.jwt_public_key:
        auth = AuthConfig(
            secret_file=Path(args.jwt_secret_file) if args.jwt_secret_file else None,
            public_key_file=Path(args.jwt_public_key) if args.jwt_public_key else None,
            issuer=args.jwt_issuer,
            audience=args.jwt_audience,
        )
        try:
            TokenVerifier(auth)  # bad key files fail here, before the server starts
        except OSError as exc:
            option = (
                "--jwt-secret-file" if exc.filename == args.jwt_secret_file else "--jwt-public-key"
            )
            raise CliError(f"cannot read {option} {exc.filename}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CliError(f"auth: {exc}") from None
    elif args.jwt_issuer or args.jwt_audience:
        raise UsageError("--jwt-issuer/--jwt-audience need --jwt-secret-file or --jwt-public-key")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        tls = TlsConfig(
            Path(args.tls_cert),
            Path(args.tls_key),
            Path(args.tls_client_ca) if args.tls_client_ca else None,
        )
    elif args.tls_client_ca:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    from runstream_server.auth.limits import CallerLimits

    limits = CallerLimits(
        **{
            name.removeprefix("limit_"): value
            for name, value in vars(args).items()
            if name.startswith("limit_") and value is not None
        }
    )
    config = SecurityConfig(
        auth=auth, tls=tls, insecure_no_auth=args.insecure_no_auth, limits=limits
    )
    try:
        check_exposure(address, config, warn=False)  # the server warns, when it starts
    except ValueError as exc:
        raise CliError(_not_one("RUNSTREAM_INSECURE_NO_AUTH") + str(exc)) from None
    return config


def _not_one(variable: str) -> str:
    """What to say first when `variable` ($RUNSTREAM_INSECURE_NO_AUTH,
    $RUNSTREAM_INSECURE_TOKEN) holds something other than 1 (true, yes): only 1 allows what
    it names, and a refusal telling whoever set it to pass the option did not say why the
    variable was not taken."""
    value = _env(variable)
    if value is None or value == "1":
        return ""
    return f"{variable}={value[:40]!r} is not 1, so it allows nothing; "


def _named(value: str) -> str:
    """A subject or tenant: the server refuses a token whose claim is empty, longer than a
    name or holds a control character."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    try:
        return arguments.line("value", value, arguments.NAME_CHARS)
    except runstream.InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(exc.message.removeprefix("value: ")) from None


def cmd_token(args: argparse.Namespace) -> int:
    from runstream_server.auth.tokens import mint_token, read_secret

    try:  # read as the server reads it (`serve --jwt-secret-file`)
        secret = read_secret(Path(args.secret_file))
    except OSError as exc:
        raise CliError(f"cannot read the secret file {args.secret_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    token = mint_token(
        secret,
        subject=args.sub,
        tenant=args.tenant,
        roles=args.role,
        ttl=args.ttl,
        issuer=args.issuer,
        audience=args.audience,
    )
    sys.stdout.write(token + "\n")
    return 0


_LAST_SECOND = 253_402_300_799
"""9999-12-31T23:59:59Z: servers refuse a token expiring later (runstream_server.auth.tokens)."""


def _ttl(value: str) -> float:
    seconds = duration(value)
    if time.time() + seconds > _LAST_SECOND:
        raise argparse.ArgumentTypeError("must end before the year 10000, or servers refuse it")
    return seconds


def add_token_command(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """`runstream token`: print an HS256 token for development and tests."""
    token = commands.add_parser(
        "token",
        help="print a signed development token (HS256)",
        description="Print an HS256 JWT signed with the secret a server verifies with "
        "(`serve --jwt-secret-file`). For development: production tokens come from your "
        "identity provider.",
        formatter_class=formatter,
    )
    token.add_argument("--secret-file", required=True, metavar="PATH", help="the HS256 secret")
    token.add_argument(
        "--sub", required=True, type=_named, metavar="NAME", help="the subject (who)"
    )
    token.add_argument("--tenant", required=True, type=_named, metavar="NAME", help="the tenant")
    token.add_argument(
        "--role",
        action="append",
        choices=_ROLES,
        required=True,
        help="a role to grant; repeat for several",
    )
    token.add_argument(
        "--ttl", type=_ttl, default="1h", metavar="DURATION", help="lifetime, e.g. 1h"
    )
    token.add_argument("--issuer", default=None, metavar="ISS", help="the iss claim")
    token.add_argument("--audience", default=None, metavar="AUD", help="the aud claim")
    token.set_defaults(handler=cmd_token)


def unanswered_hint(target: str, details: str, settings: TlsSettings) -> str:
    """The hint for a call nothing answered: what gRPC's words mean (see
    runstream._unreachable), or else whether a server runs there at all."""
    cause = cause_of(target, details, settings)
    return cause.text if cause is not None else f"is a Runstream server running at {target}?"
