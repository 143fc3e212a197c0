"""Shared fixtures: real Runstream servers on port 0 over real SQLite files.

Every test that needs a server gets its own, with its own database file under tmp_path, and
the server is stopped in ``finally`` so a failing test never leaks a port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runstream_server.app import RunstreamServer, ServerConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunstreamServer]:
    """An in-process grpc.aio Runstream server on 127.0.0.1:<free port>, SQLite at tmp_path."""
    config = ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "runstream.db")
    srv = RunstreamServer(config)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `runstream serve` subprocess: real process, real port, real SQLite file."""

    port: int
    store_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        # Popen gives the child its own descriptor, so the file can close right away.
        with open(self.store_path.with_suffix(".log"), "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runstream.cli.main",
                    "serve",
                    "--address",
                    self.target,
                    "--store",
                    str(self.store_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("server did not start listening")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush; what was acknowledged must already be durable."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)

    def terminate(self) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(20)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A `runstream serve` subprocess; the test starts, kills and restarts it at will."""
    proc = ServerProcess(port=free_port(), store_path=tmp_path / "runstream.db")
    try:
        yield proc
    finally:
        proc.kill()
