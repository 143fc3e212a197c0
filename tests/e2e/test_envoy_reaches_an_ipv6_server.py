"""Envoy reaches a server given by an IPv6 address, ``[::1]:PORT`` as a target writes it:
the brackets belong to the target, not to the address Envoy connects to.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from tests.conftest import ConfigFactory, free_port

from .test_envoy import PAGE, require_envoy
from .web_support import grpc_web_call


async def test_a_grpc_web_call_reaches_a_server_on_ipv6_loopback_through_envoy(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    require_envoy()
    server = RunstreamServer(server_config(tmp_path / "runstream.db", address="[::1]:0"))
    await server.start()
    proxy = EnvoyProxy(
        EnvoyConfig(upstream=server.target, listen_port=free_port(), allowed_origins=(PAGE,)),
        workdir=tmp_path / "envoy",
    )

    def list_runs() -> str | None:
        call = grpc_web_call(
            proxy.url, "runstream.v1.RunService/ListRuns", run_service_pb2.ListRunsRequest()
        )
        try:
            list(call.messages())
            return call.grpc_status()
        finally:
            call.close()

    try:
        assert server.target.startswith("[::1]:")
        await proxy.start_async()
        assert await asyncio.to_thread(list_runs) == "0"
    finally:
        proxy.close()
        await server.stop(grace=0.5)
