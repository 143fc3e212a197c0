"""The Dockerfile's server command and health check work, run as the container would run them.

No Docker engine runs on the project's machines, so the image itself is never built in
tests. What can break silently is the part written as strings: the ENTRYPOINT's command line
(flags the CLI must accept) and the HEALTHCHECK's command, over plaintext and TLS. This test
runs both outside Docker, with the address and store path moved to a free port and a
temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.identity import Pki

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


def health_check(port: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, aimed at a local port, in the container's `env`."""
    argv = instruction("HEALTHCHECK")
    assert argv[0] == "runstream"
    argv = [
        str(BIN / "runstream"),
        *(a.replace(IMAGE_HEALTH_TARGET, f"127.0.0.1:{port}") for a in argv[1:]),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**clean, **(env or {})}, check=False
    )


@contextlib.contextmanager
def image_server(tmp_path: Path, env: dict[str, str]) -> Iterator[int]:
    """The entrypoint's server, as the image runs it with `env`, on a free local port (yielded
    once its health check passes); it must stop cleanly at SIGTERM."""
    entrypoint = instruction("ENTRYPOINT")
    assert entrypoint[:2] == ["runstream", "serve"]
    assert IMAGE_ADDRESS in entrypoint and IMAGE_STORE in entrypoint
    port = free_port()
    argv = [
        str(BIN / "runstream"),
        *(
            arg.replace(IMAGE_ADDRESS, f"127.0.0.1:{port}").replace(
                IMAGE_STORE, str(tmp_path / "runstream.db")
            )
            for arg in entrypoint[1:]
        ),
    ]
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as log:
        server = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        deadline = time.monotonic() + 30  # the image allows a 10 s start period and retries
        while True:
            assert server.poll() is None, log_file.read_text()
            result = health_check(port, env)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, f"health check failed:\n{result.stderr}"
        assert result.stdout == "SERVING\n"
        yield port
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
            pytest.fail("the server ignored SIGTERM (docker stop would have to SIGKILL it)")
    assert server.returncode == 0, log_file.read_text()


def key_env(tmp_path: Path) -> dict[str, str]:
    """A key passed as the header comment says: an env variable naming a mounted file."""
    secret = tmp_path / "jwt-secret"
    secret.write_bytes(b"s" * 48)
    return {"RUNSTREAM_JWT_SECRET_FILE": str(secret)}


def test_entrypoint_serves_and_health_check_reports_serving(tmp_path: Path) -> None:
    """The entrypoint with a key: the server starts, answers health checks, and wants tokens."""
    with image_server(tmp_path, key_env(tmp_path)) as port:
        assert (tmp_path / "runstream.db").exists(), "no SQLite file at --store"
        listed = subprocess.run(
            [str(BIN / "runstream"), "runs", "--target", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            env={k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")},
            check=False,
        )
        assert listed.returncode == 1
        said = listed.stderr
        assert "unauthenticated: the server wants a bearer token and none was given" in said, said


def test_health_check_speaks_tls_when_the_server_does(tmp_path: Path) -> None:
    """TLS configured as the header comment says: the health check follows the server onto
    TLS, and accepts a certificate issued for the service's name, not for 127.0.0.1."""
    pki = Pki.make(tmp_path / "pki", server_names=("runstream.internal",))
    env = {
        **key_env(tmp_path),
        "RUNSTREAM_TLS_CERT": str(pki.server_cert),
        "RUNSTREAM_TLS_KEY": str(pki.server_key),
    }
    with image_server(tmp_path, env) as port:
        plaintext = health_check(port)  # what the image's check did before it read the env
        assert plaintext.returncode == 1
        assert "UNAVAILABLE" in plaintext.stderr, plaintext.stderr


def test_health_check_under_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    pki = Pki.make(tmp_path / "pki", server_names=("runstream.internal",))
    server_env = {
        **key_env(tmp_path),
        "RUNSTREAM_TLS_CERT": str(pki.server_cert),
        "RUNSTREAM_TLS_KEY": str(pki.server_key),
        "RUNSTREAM_TLS_CLIENT_CA": str(pki.ca_file),
    }
    env = {
        **server_env,
        "RUNSTREAM_CLIENT_CERT": str(pki.client_cert),
        "RUNSTREAM_CLIENT_KEY": str(pki.client_key),
    }
    with image_server(tmp_path, env) as port:
        without = health_check(port, server_env)
        assert without.returncode == 1
        assert "RUNSTREAM_CLIENT_CERT" in without.stderr, without.stderr


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
