"""`runstream demo --replicas N`: a redis-server and N replicas on it, for the demo to span.

The replicas are full Runstream servers in this process, each with its own gRPC port and its
own connection to Redis; they share nothing but Redis, exactly as separate processes would.
The demo reports to the first replica and watches through the second, so what it shows has
crossed from one replica to another.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from rich.console import Console
from rich.text import Text

from .errors import CliError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(directory: Path, fsync: str = "always") -> Iterator[str]:
    """A redis-server on a free loopback port with the AOF on (``appendfsync`` `fsync`, by
    default ``always``: nothing acknowledged is lost); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise CliError("--replicas needs redis-server (Debian: apt-get install redis-server)")
    port = _free_port()
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "yes", "--appendfsync", fsync, "--dir", str(directory),
    ]  # fmt: skip
    with open(directory / "redis.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise CliError(f"redis-server exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise CliError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.asynccontextmanager
async def replicas(count: int, console: Console) -> AsyncIterator[list[str]]:
    """Starts redis-server and `count` replicas on it; yields the replicas' targets."""
    from runstream_server.app import RunstreamServer, ServerConfig

    with (
        tempfile.TemporaryDirectory(prefix="runstream-replicas-") as directory,
        redis_server(Path(directory)) as url,
    ):
        servers = [
            RunstreamServer(ServerConfig(address="127.0.0.1:0", store_url=url))
            for _ in range(count)
        ]
        try:
            for server in servers:
                await server.start()
            console.print(
                Text.assemble(
                    ("Redis ", "bold"),
                    (url, "bold cyan"),
                    ("  replicas ", "bold"),
                    (", ".join(s.target for s in servers), "bold cyan"),
                ),
                soft_wrap=True,
            )
            yield [s.target for s in servers]
        finally:
            for server in servers:
                await server.stop(grace=1.0)
