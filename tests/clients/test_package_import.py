"""What importing the package loads: the server, which imports only the generated
``runstream.v1``, gets none of the SDK; the SDK's names still load on first use, with gRPC
core's log level defaulted before gRPC loads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest


def run_python(source: str) -> subprocess.CompletedProcess[str]:
    """Runs `source` in a fresh interpreter without GRPC_VERBOSITY, as a user's shell has it."""
    env = {name: value for name, value in os.environ.items() if name != "GRPC_VERBOSITY"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("module", ["runstream_server.domain.hub", "runstream_server.app"])
def test_importing_the_server_loads_none_of_the_sdk(module: str) -> None:
    """Every `from runstream.v1 import ...` in the server runs runstream/__init__.py first,
    which imported the whole SDK (170 ms of a 262 ms import; review rv65s). It still sets
    gRPC's documented default, GRPC_VERBOSITY=ERROR, as it always did."""
    result = run_python(
        f"""
        import json, os, sys
        import {module}
        sdk = sorted(
            name for name in sys.modules
            if name.startswith("runstream.") and not name.startswith("runstream.v1")
        )
        print(json.dumps({{"sdk": sdk, "verbosity": os.environ.get("GRPC_VERBOSITY")}}))
        """
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "runstream._client" not in loaded["sdk"]
    assert loaded["sdk"] == ["runstream._grpc_verbosity"]
    assert loaded["verbosity"] == "ERROR"


def test_exported_names_load_on_first_use() -> None:
    result = run_python(
        """
        import runstream
        from runstream import Client, RunCompleted, connect
        from runstream._client import Client as client_class
        assert Client is client_class is runstream.Client
        assert RunCompleted is runstream.RunCompleted  # generated: runstream._events
        assert callable(connect)
        namespace = {}
        exec("from runstream import *", namespace)
        assert set(runstream.__all__) <= set(namespace), set(runstream.__all__) - set(namespace)
        assert "Client" in dir(runstream)
        try:
            runstream.Clinet
        except AttributeError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "module 'runstream' has no attribute 'Clinet'"


@pytest.fixture
def plaintext_port() -> Iterator[int]:
    """A port that answers a TLS handshake with plain text, so the handshake fails."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.mark.parametrize(
    "entry",
    [
        "from runstream import Client",
        "import runstream",
        "import runstream; runstream.connect",
        "import runstream.cli.main",
        "import runstream.integrations",
    ],
)
def test_the_sdk_quiets_grpc_core_before_grpc_loads(entry: str, plaintext_port: int) -> None:
    """gRPC reads GRPC_VERBOSITY when it loads; unset, its core writes INFO lines such as
    "Handshake failed with error ..." beside a command's own one-line error."""
    result = run_python(
        f"""
        {entry}
        import grpc
        channel = grpc.secure_channel("127.0.0.1:{plaintext_port}", grpc.ssl_channel_credentials())
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            print("refused")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"
    assert "Handshake failed" not in result.stderr, result.stderr
