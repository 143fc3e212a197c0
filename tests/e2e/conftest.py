"""Fixtures of the end-to-end tests: the dashboard page and its Envoy, in the test's process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream.dashboard.server import DashboardServer
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .web_support import require_chromium


@dataclass
class Web:
    """The dashboard page and its Envoy, run in the test's process for full control."""

    page: DashboardServer
    envoy: EnvoyProxy

    def run_url(self, run_id: str) -> str:
        return f"{self.page.url}#/runs/{run_id}"


@contextlib.asynccontextmanager
async def dashboard(target: str, tmp_path: Path) -> AsyncIterator[Web]:
    """The dashboard page and its Envoy in front of the server at `target`."""
    envoy_port = free_port()
    page = DashboardServer(port=0, api_port=envoy_port)
    page.start()
    envoy = EnvoyProxy(
        EnvoyConfig(
            upstream=target,
            listen_port=envoy_port,
            allowed_origins=(page.url.rstrip("/"),),
        ),
        workdir=tmp_path / "envoy",
    )
    try:
        await envoy.start_async()
        yield Web(page, envoy)
    finally:
        envoy.close()
        page.stop()


@pytest.fixture
async def web(server: RunstreamServer, tmp_path: Path) -> AsyncIterator[Web]:
    require_chromium()
    async with dashboard(server.target, tmp_path) as web:
        yield web
