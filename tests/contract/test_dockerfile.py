"""The Dockerfile's server command and health check work, run as the container would run them.

No Docker engine runs on the project's machines, so the image itself is never built in
tests. What can break silently is the part written as strings: the ENTRYPOINT's command line
(flags the CLI must accept) and the HEALTHCHECK's Python one-liner. This test runs both
outside Docker, with the address and store path moved to a free port and a temporary file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_ADDRESS = "0.0.0.0:50051"
IMAGE_HEALTH_TARGET = "127.0.0.1:50051"
IMAGE_STORE = "/data/runstream.db"
BIN = Path(sys.executable).parent


def instruction(name: str) -> list[str]:
    """The exec-form (JSON array) arguments of a Dockerfile instruction, continuations joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    matches = re.findall(rf"^{name}\s+(?:.*?\s)?(?:CMD\s+)?(\[.*\])\s*$", text, flags=re.MULTILINE)
    assert len(matches) == 1, f"expected one exec-form {name} in the Dockerfile"
    argv = json.loads(matches[0])
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_check(port: int) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, aimed at a local port."""
    argv = instruction("HEALTHCHECK")
    assert argv[0] == "python"
    argv = [
        sys.executable,
        *(a.replace(IMAGE_HEALTH_TARGET, f"127.0.0.1:{port}") for a in argv[1:]),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_entrypoint_serves_and_health_check_reports_serving(tmp_path: Path) -> None:
    """The entrypoint with a key passed as the header comment says (an env variable naming a
    mounted file): the server starts, answers health checks, and wants tokens."""
    entrypoint = instruction("ENTRYPOINT")
    assert entrypoint[:2] == ["runstream", "serve"]
    assert IMAGE_ADDRESS in entrypoint and IMAGE_STORE in entrypoint
    port = free_port()
    store = tmp_path / "runstream.db"
    argv = [
        str(BIN / "runstream"),
        *(
            arg.replace(IMAGE_ADDRESS, f"127.0.0.1:{port}").replace(IMAGE_STORE, str(store))
            for arg in entrypoint[1:]
        ),
    ]
    secret = tmp_path / "jwt-secret"
    secret.write_bytes(b"s" * 48)
    env = {**os.environ, "RUNSTREAM_JWT_SECRET_FILE": str(secret)}
    with (tmp_path / "server.log").open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30  # the image allows a 10 s start period and retries
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            result = health_check(port)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, f"health check failed:\n{result.stderr}"
        assert store.exists(), "the server did not create its SQLite file at --store"
        listed = subprocess.run(
            [str(BIN / "runstream"), "runs", "--target", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")},
            check=False,
        )
        assert listed.returncode == 1
        assert "unauthenticated: missing authorization" in listed.stderr, listed.stderr
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
            pytest.fail("the server ignored SIGTERM (docker stop would have to SIGKILL it)")
    assert server.returncode == 0, (tmp_path / "server.log").read_text()


def test_entrypoint_without_a_key_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    """The image listens on 0.0.0.0: without a key it must not start open to everyone."""
    entrypoint = instruction("ENTRYPOINT")
    argv = [
        str(BIN / "runstream"),
        *(arg.replace(IMAGE_STORE, str(tmp_path / "runstream.db")) for arg in entrypoint[1:]),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=False)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0:50051 without authentication" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_health_check_fails_when_nothing_serves() -> None:
    result = health_check(free_port())
    assert result.returncode != 0
    assert "UNAVAILABLE" in result.stderr, result.stderr  # refused, not a broken one-liner
