"""What `runstream dashboard` says as it starts, and how it refuses what it cannot do.

Found in review: in front of a server of the user's it announced an embedded server with
seeded recorded runs (it started and seeded nothing), while `--demo`, which does, no longer
said so; a bad `--origin` was found only after the page was up, exit 1 without naming the
option; a busy `--envoy-port` ended with Envoy's log crammed into one line.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys

import pytest
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .test_dashboard_starts import launch_once
from .web_support import require

pytestmark = pytest.mark.timeout(300)


def _require_envoy() -> None:
    from runstream.dashboard.envoy import envoy_binary

    try:
        envoy_binary()
    except Exception:  # any reason Envoy is unavailable
        require(False, "envoy (the envoy extra)")


def dashboard(*args: str) -> subprocess.CompletedProcess[str]:
    """`runstream dashboard ARGS`, expected to refuse and exit."""
    return subprocess.run(
        [sys.executable, "-m", "runstream.cli.main", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_in_front_of_a_users_server_it_announces_no_embedded_one(
    server: RunstreamServer,
) -> None:
    _require_envoy()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runstream.cli.main", "dashboard", "--target", server.target,
        "--port", "0", "--envoy-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while line := (await process.stdout.readline()).decode():
                seen.append(line)
                if "Press Ctrl-C" in line:
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        seen.append(rest.decode())
    said = "".join(seen)
    assert re.search(rf"grpc-web: Envoy on \S+ -> Runstream server at {server.target}", said)
    assert "embedded" not in said and "seeded" not in said, said


async def test_the_demo_announces_its_embedded_server_and_seeded_history() -> None:
    _require_envoy()
    said = await launch_once()
    assert re.search(r"Runstream server \(embedded\) on 127\.0\.0\.1:\d+", said), said
    assert "ETA history: recorded runs of the campaign seeded" in said


def test_a_bad_origin_is_a_usage_error_naming_the_option() -> None:
    done = dashboard("--target", f"127.0.0.1:{free_port()}", "--origin", "foo")
    assert done.returncode == 2, done.stderr
    assert "argument --origin: an origin is scheme://host[:port] with no path" in done.stderr
    assert "embedded" not in done.stdout


def test_a_busy_envoy_port_is_one_line_saying_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = dashboard("--target", f"127.0.0.1:{free_port()}", "--port", "0",
                         "--envoy-port", str(port))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"runstream: cannot start Envoy on 127.0.0.1:{port}: Address already in use; "
        "pass --envoy-port 0 for a free port"
    ]
