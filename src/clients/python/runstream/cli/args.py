"""Argument types shared by the CLI's commands: argparse errors instead of tracebacks."""

from __future__ import annotations

import argparse
import math

from runstream._target import check_target, with_default_port

__all__ = [
    "DEFAULT_PORT",
    "listen_address",
    "metrics_address",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "target_address",
]

DEFAULT_PORT = 50051


def target_address(value: str) -> str:
    """A server address as gRPC takes it; a host without a port gets Runstream's 50051
    ("localhost" means localhost:50051, "[::1]" means [::1]:50051)."""
    try:
        return with_default_port(check_target(value), DEFAULT_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def positive_float(value: str) -> float:
    number = _finite(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def positive_int(value: str) -> int:
    number = _integer(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def non_negative_float(value: str) -> float:
    number = _finite(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def non_negative_int(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _finite(value: str) -> float:
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
