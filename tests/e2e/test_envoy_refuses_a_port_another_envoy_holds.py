"""A second Envoy on the grpc-web port of one that runs fails to start, saying why.

Envoy sets SO_REUSEPORT by default, so a second Envoy (a second dashboard, a restart that
overlapped) would bind the port too and silently take half the first one's browsers; the
configuration turns that off. The dashboard command checks its --envoy-port itself before
starting Envoy, which hid this from its tests: here two Envoys meet directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runstream.dashboard.envoy import EnvoyConfig, EnvoyError, EnvoyProxy
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .test_envoy import PAGE, require_envoy
from .web_support import grpc_web_call


async def test_a_second_envoy_on_a_port_in_use_exits_saying_so_and_the_first_serves_on(
    server: RunstreamServer, tmp_path: Path
) -> None:
    require_envoy()
    config = EnvoyConfig(upstream=server.target, listen_port=free_port(), allowed_origins=(PAGE,))
    first = EnvoyProxy(config, workdir=tmp_path / "first")
    second = EnvoyProxy(config, workdir=tmp_path / "second")

    def list_runs() -> str | None:
        call = grpc_web_call(
            first.url, "runstream.v1.RunService/ListRuns", run_service_pb2.ListRunsRequest()
        )
        try:
            list(call.messages())
            return call.grpc_status()
        finally:
            call.close()

    await first.start_async()
    try:
        with pytest.raises(EnvoyError, match=r"exited with status 1 before it was ready") as e:
            await second.start_async(wait=15)
        # Envoy's own reason, alone: the CLI prints an error on one line, and the log's tail
        # of timestamps and source paths read as one.
        port = config.listen_port
        assert str(e.value) == (
            f"Envoy exited with status 1 before it was ready: cannot bind '127.0.0.1:{port}': "
            "Address already in use"
        )
        assert [await asyncio.to_thread(list_runs) for _ in range(4)] == ["0"] * 4
    finally:
        second.close()
        first.close()
