"""Envoy does not outlive what started it: EnvoyProxy.close(), or a `runstream dashboard`
killed outright (SIGKILL, an OOM kill), leaves no Envoy holding the grpc-web port.

Envoy runs in a session of its own (so Ctrl-C reaches the dashboard, which stops it in
order); without the parent-death signal a killed dashboard left it serving for ever, and
the next `runstream dashboard` found its port taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .test_dashboard_cli import Dashboard
from .test_envoy import PAGE, require_envoy


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def gone(port: int, within: float = 10) -> bool:
    """Whether nothing listens on `port` any more, waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    while await asyncio.to_thread(listening, port):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def kill_envoy_on(port: int) -> None:
    """Kills an Envoy left behind on `port` (its --base-id is its port), so that a failing
    test leaks no process."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"--base-id" in argv and argv[argv.index(b"--base-id") + 1] == str(port).encode():
                os.kill(int(entry.name), signal.SIGKILL)


async def test_close_stops_envoy_and_frees_its_port(
    server: RunstreamServer, tmp_path: Path
) -> None:
    require_envoy()
    port = free_port()
    proxy = EnvoyProxy(
        EnvoyConfig(upstream=server.target, listen_port=port, allowed_origins=(PAGE,)),
        workdir=tmp_path / "envoy",
    )
    await proxy.start_async()
    assert proxy.process is not None
    pid = proxy.process.pid
    try:
        proxy.close()
        assert await gone(port, within=0)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # no such process: Envoy exited and was reaped
    finally:
        proxy.close()
        kill_envoy_on(port)


async def test_a_dashboard_killed_outright_leaves_no_envoy_on_its_port(
    server: RunstreamServer,
) -> None:
    require_envoy()
    port = free_port()
    dashboard = await Dashboard.start(server.target, 0, port)
    try:
        await dashboard.envoy_target()
        dashboard.process.kill()
        await dashboard.process.wait()
        assert await gone(port)
    finally:
        await dashboard.ended()
        kill_envoy_on(port)
