"""Envoy listening on every interface (0.0.0.0, ::) or on IPv6 loopback: it starts, gives a
URL a browser on this machine can call, and answers grpc-web there.

Found by audit mu69x: a configuration for ``::`` was YAML Envoy refused to load, and with
that mended Envoy listened on IPv6 alone while the URL named 127.0.0.1, so it never became
ready; for ``::1`` the URL was ``http://::1:PORT``, no URL at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .test_envoy import PAGE, require_envoy
from .web_support import grpc_web_call


@pytest.mark.parametrize(
    ("listen_address", "loopback"),
    [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]")],
)
async def test_envoy_on_every_interface_or_ipv6_gives_a_loopback_url_that_answers(
    server: RunstreamServer, tmp_path: Path, listen_address: str, loopback: str
) -> None:
    require_envoy()
    port = free_port()
    proxy = EnvoyProxy(
        EnvoyConfig(
            upstream=server.target,
            listen_port=port,
            allowed_origins=(PAGE,),
            listen_address=listen_address,
        ),
        workdir=tmp_path / "envoy",
    )

    def list_runs() -> tuple[str | None, str | None]:
        call = grpc_web_call(
            proxy.url,
            "runstream.v1.RunService/ListRuns",
            run_service_pb2.ListRunsRequest(),
            origin=PAGE,
        )
        try:
            list(call.messages())
            return call.grpc_status(), call.header("access-control-allow-origin")
        finally:
            call.close()

    try:
        await proxy.start_async(wait=15)
        assert proxy.url == f"http://{loopback}:{port}"
        assert await asyncio.to_thread(list_runs) == ("0", PAGE)
    finally:
        proxy.close()
