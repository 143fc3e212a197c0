"""gRPC core's log level in the SDK's processes: errors only, unless the user chose one.

gRPC reads ``GRPC_VERBOSITY`` once, when it loads (set after ``import grpc`` it changes
nothing), so ``import runstream`` sets its default before any of the SDK's modules imports
gRPC; the server's modules, which import the generated ``runstream.v1``, run it too.
"""

from __future__ import annotations

import os

__all__ = ["set_default"]


def set_default() -> None:
    """Sets ``GRPC_VERBOSITY=ERROR``, gRPC's documented default, unless it is set already.

    Unset, gRPC's core also logs at INFO to stderr: a failed TLS handshake printed
    "I1205 ... Handshake failed with error ..." beside the CLI's own one-line error.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
