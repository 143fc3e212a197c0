"""Argument types shared by the CLI's commands: argparse errors instead of tracebacks."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

from google.protobuf import timestamp_pb2

from runstream._target import check_target, with_default_port

from .errors import UsageError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TARGET",
    "TARGET_ENV",
    "finite_float",
    "listen_address",
    "metrics_address",
    "non_negative_float",
    "non_negative_int",
    "otlp_endpoint",
    "otlp_endpoint_from_environment",
    "port",
    "positive_float",
    "positive_int",
    "redacted",
    "redacted_arguments",
    "target_address",
    "target_from_environment",
]

DEFAULT_PORT = 50051
DEFAULT_TARGET = f"127.0.0.1:{DEFAULT_PORT}"
TARGET_ENV = "RUNSTREAM_TARGET"


def target_address(value: str) -> str:
    """A server address as gRPC takes it; a host without a port gets Runstream's 50051
    ("localhost" means localhost:50051, "[::1]" means [::1]:50051)."""
    try:
        return with_default_port(check_target(value), DEFAULT_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def target_from_environment() -> str | None:
    """$RUNSTREAM_TARGET checked as --target is, or None when it is not set. A bad value is
    a UsageError naming the variable: the user never typed a --target."""
    value = os.environ.get(TARGET_ENV)
    if not value:
        return None
    try:
        return target_address(value)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"environment variable {TARGET_ENV}: {exc}") from None


def listen_address(value: str) -> str:
    """An address to listen on: HOST:PORT or [IPV6]:PORT, the port 0 to 65535 (0 picks a
    free one), or a unix: socket as it is. A host alone is refused: gRPC would take it for
    port 443, and a port past 65535 would wrap around."""
    if value.startswith(("unix:", "unix-abstract:")):
        return value
    host, colon, number = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    stray_brackets_or_colons = not bracketed and ("[" in host or ":" in host)
    if not (colon and number) or stray_brackets_or_colons:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT or [IPV6]:PORT")
    port(number)
    return value


def metrics_address(value: str) -> str:
    """An address to serve metrics on: as :func:`listen_address`, or a PORT alone for every
    interface (returned as ``:PORT``)."""
    return listen_address(f":{value}" if value.isdigit() else value)


OTLP_EXAMPLE = "http://localhost:4317"


# The variables the OTLP exporter reads when --otlp-endpoint is not given, in its order.
OTLP_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def otlp_endpoint_from_environment() -> str | None:
    """The collector the OTLP variables name (the first set, as the exporter reads them),
    checked as --otlp-endpoint is, or None when neither is set. A bad value is a UsageError
    naming the variable: the exporter would dial it and retry in silence."""
    for name in OTLP_ENVS:
        value = os.environ.get(name)
        if value:
            try:
                return otlp_endpoint(value)
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"environment variable {name}: {exc}") from None
    return None


def otlp_endpoint(value: str) -> str:
    """An OTLP/gRPC collector: http://HOST[:PORT] (plaintext) or https://HOST[:PORT] (TLS),
    or HOST:PORT as the exporter also takes it. Anything else was taken without a word and
    no trace ever left (the exporter dials it as a gRPC target and retries in silence).
    A password in the URL is never repeated back."""
    scheme, has_scheme, _ = value.partition("://")
    parsed = urlsplit(value if has_scheme else f"http://{value}")
    shown = repr(_without_credentials(value))
    expected = f"give http://HOST:PORT or https://HOST:PORT, e.g. {OTLP_EXAMPLE}"
    # Any '@': a password with '/', '?' or '#' ends the URL's netloc early, and urlsplit
    # then finds no user or password at all.
    if "@" in value or parsed.username is not None or parsed.password is not None:
        raise argparse.ArgumentTypeError(
            f"{shown} has a user or password, which the OTLP/gRPC exporter does not send; "
            "give credentials as headers in $OTEL_EXPORTER_OTLP_HEADERS"
        )
    if any(c.isspace() for c in value):  # ' http://...' said " http:// is not http://"
        raise argparse.ArgumentTypeError(f"{shown} has white space in it; {expected}")
    if has_scheme and scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(
            f"{shown}: {scheme}:// is not http:// or https://; {expected}"
        )
    if not parsed.hostname:
        raise argparse.ArgumentTypeError(f"{shown} is not a URL with a host; {expected}")
    try:
        number = parsed.port
    except ValueError:
        number = -1
    if number is not None and not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{shown}: the port must be 1 to 65535; {expected}")
    if not has_scheme and number is None:
        raise argparse.ArgumentTypeError(f"{shown} is not a URL; {expected}")
    if parsed.path.strip("/") or parsed.query or parsed.fragment:
        # The OTLP/gRPC exporter drops them: .../v1/traces is OTLP/HTTP's address, whose
        # port (4318) answers no gRPC, and nothing would say so but its retries.
        raise argparse.ArgumentTypeError(
            f"{shown} has a path or query, which OTLP/gRPC does not use (an OTLP/HTTP URL "
            f"such as :4318/v1/traces?); {expected}"
        )
    return value


def _without_credentials(value: str) -> str:
    """The endpoint as messages may show it: :func:`redacted`, with whatever comes before
    its last '@' (after the scheme, when it has one) as ``***``."""
    if "@" in value:
        # Up to the last '@', whatever it holds: redacted() stops at white space, and a
        # password holding a space was repeated back whole (found in review).
        scheme, has_scheme, rest = value.partition("://")
        host = rest.rpartition("@")[2] if has_scheme else value.rpartition("@")[2]
        value = f"{scheme}://***@{host}" if has_scheme else f"***@{host}"
    return redacted(value)


_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)\S*@")
_SECRET_PARAMETER = re.compile(r"((?:password|passwd|token|secret)[^=&\s'\"]*=)[^&\s'\"]*", re.I)
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
_SECRET_WORDS = ("token", "jwt", "secret", "password", "passwd", "key", "credential", "auth")


def redacted(text: str) -> str:
    """`text` as an error message may repeat it: the credentials of a URL in it (whatever
    comes before the last '@' of a word, which may hold '/', ':' or '?'), the values of its
    ``password=``, ``token=`` or ``secret=`` parameters, and anything shaped like a JWT, as
    ``***``."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _SECRET_PARAMETER.sub(r"\1***", text)
    return _JWT.sub("***", text)


def _names_a_secret(option: str) -> bool:
    """Whether `option` (``--tokn``, ``--jwt-secet-file``) is, or nearly is, the name of an
    option that takes a secret: a misspelt one is what an error repeats."""
    words = re.split(r"[-_]+", option.lstrip("-").partition("=")[0].lower())
    return any(
        any(secret in word for secret in _SECRET_WORDS)
        or difflib.get_close_matches(word, _SECRET_WORDS, n=1, cutoff=0.75)
        for word in words
        if word
    )


def redacted_arguments(arguments: list[str]) -> list[str]:
    """Command-line words as an error may repeat them (`unrecognized arguments: ...`), each
    :func:`redacted`, and the value of an option whose name suggests a secret, after it or
    after its '=', as ``***``: `--tokn SECRET` and `--sotre redis://:PASSWORD@host` were
    printed as given, into CI and container logs."""
    shown: list[str] = []
    hide_next = False
    for word in arguments:
        if hide_next and not word.startswith("-"):
            shown.append("***")
        elif word.startswith("-") and "=" in word and _names_a_secret(word):
            shown.append(f"{word.partition('=')[0]}=***")
        else:
            shown.append(redacted(word))
        hide_next = word.startswith("-") and "=" not in word and _names_a_secret(word)
    return shown


class Parser(argparse.ArgumentParser):
    """Refuses a bad command line in one line naming the option, as the README promises:
    argparse's usage block (18 lines for `serve`) buried the one line that mattered.
    Subcommands' parsers are of this class too (argparse makes them of the parent's).

    The line repeats no secret (see :func:`redacted_arguments`), and an option is
    taken only as spelt in full: with abbreviations, `--max-active 5` meant
    `--max-active-runs 5`, and an option added later could change what a command line
    meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, unrecognized = self.parse_known_args(args, namespace)
        if unrecognized:
            said = " ".join(redacted_arguments(unrecognized))
            self.error(f"unrecognized arguments: {said}{self._hint(parsed, unrecognized)}")
        return parsed

    def _hint(self, parsed: argparse.Namespace, unrecognized: list[str]) -> str:
        """What the user may have meant by the first mistyped option, among those of the
        command given: `--address` to a command that talks to a server (where `serve`
        and `demo` take it), the one option it abbreviates, or a close spelling."""
        command = self._command_parser(getattr(parsed, "command", None))
        taken = [
            option
            for action in command._actions
            for option in action.option_strings
            if option.startswith("--")
        ]
        for word in unrecognized:
            name = word.partition("=")[0]
            if not name.startswith("--"):
                continue
            if "--target" in taken and difflib.get_close_matches(name, ["--address"], cutoff=0.8):
                return " (--target names the server to talk to; --address is where serve listens)"
            # An abbreviation (no longer taken) first: --upstream-ca is --upstream-ca-file's.
            close = [option for option in taken if option.startswith(name)]
            close = close if len(close) == 1 else difflib.get_close_matches(name, taken, 1, 0.75)
            return f" (did you mean {close[0]}?)" if close else ""
        return ""

    def _command_parser(self, command: str | None) -> argparse.ArgumentParser:
        """The parser of the subcommand named `command`, or this one."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                chosen: argparse.ArgumentParser = action.choices[command]
                return chosen
        return self

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {redacted(message)}\n")


def positive_float(value: str) -> float:
    return _positive(finite_float(value))


def non_negative_float(value: str) -> float:
    return _non_negative(finite_float(value))


def _positive(number: float) -> float:
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def _non_negative(number: float) -> float:
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


_MOST = 2**31 - 1
"""The largest count an option takes: far beyond any limit, and within what every store and
counter holds (2**63 - 1 overflowed SQLite's integers once a run was created)."""


def positive_int(value: str) -> int:
    """A count from 1 to :data:`_MOST`: `serve --retention-runs 99999999999999999999999`
    started, then failed every retention pass with a traceback (SQLite's integers overflowed)
    while the server served on without retention."""
    number = _integer(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    if number > _MOST:
        raise argparse.ArgumentTypeError(f"must be at most {_MOST}")
    return number


def non_negative_int(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    if number > _MOST:
        raise argparse.ArgumentTypeError(f"must be at most {_MOST} (0 turns a limit off)")
    return number


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: str) -> float:
    """Seconds, as every option in seconds takes them: a number (90, 0.5), or one with its
    unit, 90s, 30m, 1h or 7d."""
    match = _DURATION.fullmatch(value)
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    try:
        return finite_float(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {value!r} (seconds, or e.g. 90s, 30m, 1h, 7d)"
        ) from None


def positive_seconds(value: str) -> float:
    return _positive(seconds(value))


def non_negative_seconds(value: str) -> float:
    return _non_negative(seconds(value))


duration = positive_seconds
"""A duration: :func:`seconds`, more than 0."""


def duration_or_off(value: str) -> float | None:
    """A :func:`duration`, or ``off`` for none."""
    if value.strip().lower() == "off":
        return None
    return duration(value)


_CENTURY_SECONDS = 100 * 366 * 86400


def since(value: str) -> str:
    """`runs --since`: a duration back from now (90s, 15m, 2h, 3d) or an RFC 3339 time with
    its offset (2026-12-01T09:00:00Z); that time, in RFC 3339."""
    moment = timestamp_pb2.Timestamp()
    try:
        seconds = duration(value)
    except argparse.ArgumentTypeError:
        try:
            moment.FromJsonString(value.strip().upper())
        except ValueError:
            raise argparse.ArgumentTypeError(
                "not a duration such as 2h or 30m, nor an RFC 3339 time with its offset such "
                f"as 2026-12-01T09:00:00Z: {value[:64]!r}"
            ) from None
        return str(moment.ToJsonString())
    if seconds > _CENTURY_SECONDS:
        raise argparse.ArgumentTypeError(f"more than 100 years back: {value!r}")
    moment.FromDatetime(datetime.now(UTC) - timedelta(seconds=seconds))
    return str(moment.ToJsonString())


def finite_float(value: str) -> float:
    """A number, refused when it is not one or is infinite or NaN."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"not a finite number: {value!r}")
    return number


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 to 65535")
    return number
