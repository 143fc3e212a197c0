"""Types of `runstream serve` options bounded by what the server can use: a value past the
bounds is a usage error at start (exit status 2), not a server that fails once it serves.

The bounds are the server's own, imported only when such an option is given, so client
commands never load the server.
"""

from __future__ import annotations

import argparse

from .args import finite_float, non_negative_seconds, seconds

__all__ = [
    "drain_seconds",
    "grpc_seconds",
    "heartbeat_seconds",
    "retention_days",
    "send_timeout_seconds",
    "shutdown_grace_seconds",
]


def heartbeat_seconds(value: str) -> float:
    """--heartbeat: a default a watch could not ask for would refuse every watch that does
    not set its own heartbeat."""
    from runstream_server.domain.watching import HEARTBEAT_SECONDS

    return _within(seconds(value), *HEARTBEAT_SECONDS, "seconds")


def send_timeout_seconds(value: str) -> float:
    """--watch-send-timeout: 0 (never), or a timeout the hub's clock can keep."""
    from runstream_server.domain.hub import SEND_TIMEOUT_SECONDS

    number = non_negative_seconds(value)
    return _within(number, *SEND_TIMEOUT_SECONDS, "seconds (or 0: never)") if number else 0.0


def grpc_seconds(value: str) -> float:
    """A duration the server hands to gRPC, in milliseconds that must fit a C int."""
    from runstream_server.app import MAX_GRPC_SECONDS

    return _within(seconds(value), 0, MAX_GRPC_SECONDS, "seconds")


def drain_seconds(value: str) -> float:
    """--drain-delay: 0 (none), or a delay a stop can wait out (`5000`, milliseconds meant,
    was an 83-minute stop)."""
    from runstream_server.app import MAX_STOP_SECONDS

    number = non_negative_seconds(value)
    return _within(number, 0, MAX_STOP_SECONDS, "seconds") if number else 0.0


def shutdown_grace_seconds(value: str) -> float:
    """--shutdown-grace: as long as a stop may wait for calls in flight."""
    from runstream_server.app import MAX_STOP_SECONDS

    return _within(seconds(value), 0, MAX_STOP_SECONDS, "seconds")


def retention_days(value: str) -> float:
    """--retention-days: each retention pass subtracts it from now."""
    from runstream_server.domain.limits import MAX_RETENTION_DAYS

    return _within(finite_float(value), 0, MAX_RETENTION_DAYS, "days")


def _within(number: float, lowest: float, highest: float, unit: str) -> float:
    # With a lowest bound, a number below it (0 too) is told the range it must be in.
    if not lowest and number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    if lowest <= number <= highest:
        return number
    if lowest:
        raise argparse.ArgumentTypeError(f"must be between {lowest:.15g} and {highest:.15g} {unit}")
    raise argparse.ArgumentTypeError(f"must be at most {highest:.15g} {unit}")
