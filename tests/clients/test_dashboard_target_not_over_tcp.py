"""`runstream dashboard --target` for a server Envoy cannot reach over TCP (a unix socket, an
abstract one, vsock) is refused in one line saying Envoy needs HOST:PORT, and naming the
target as given, instead of a complaint about an upstream that is no HOST:PORT."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "target", ["unix:/tmp/runstream.sock", "unix-abstract:runstream", "vsock:3:50051"]
)
def test_a_target_not_over_tcp_is_refused_saying_envoy_needs_host_and_port(target: str) -> None:
    argv = ["dashboard", "--target", target, "--port", "0", "--envoy-port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "runstream.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"runstream: Envoy reaches the server over TCP: give HOST:PORT, not {target!r}\n",
    )
