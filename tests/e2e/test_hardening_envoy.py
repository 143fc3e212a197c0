"""Envoy's answers to what browsers should not get through it.

Issue 8, item 5: Envoy answers a CORS preflight from an origin that is not allowed. Before,
Envoy forwarded it to the gRPC server, which took an OPTIONS request for a broken call and
answered ``grpc-status 13 "Error parsing ':method' metadata"``.

The hostile-client review's F4: a request whose Host names another site (DNS rebinding) gets
403 and never reaches the server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import unquote

import runstream
from google.protobuf.message import Message
from runstream.dashboard.envoy import EnvoyConfig, EnvoyProxy
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from tests.conftest import free_port

from .test_envoy import ELSEWHERE, PAGE, gateway, require_envoy
from .web_support import grpc_web_call, http_request

__all__ = ["gateway"]  # the real Envoy in front of a real server, from test_envoy

PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
}


async def test_envoy_answers_a_preflight_from_an_origin_not_allowed(gateway: EnvoyProxy) -> None:
    for path in ("/runstream.v1.RunService/ListRuns", "/runstream.v1.ReportService/Report"):
        status, headers = await asyncio.to_thread(
            http_request, gateway.url, "OPTIONS", path, {"origin": ELSEWHERE, **PREFLIGHT}
        )
        assert "grpc-status" not in headers and "grpc-message" not in headers, headers
        assert status < 400, (status, headers)  # an answer, not an upstream failure
        assert "access-control-allow-origin" not in headers  # so the browser refuses the call
        # The allowed page still gets its preflight answered with CORS headers.
        status, headers = await asyncio.to_thread(
            http_request, gateway.url, "OPTIONS", path, {"origin": PAGE, **PREFLIGHT}
        )
        assert status == 200 and headers["access-control-allow-origin"] == PAGE


def _as_page_of(url: str, host: str, method: str, request: Message) -> tuple[int, bytes, str]:
    """A grpc-web call as a page served as `host` sends it from a browser (its fetch is
    same-origin: Host and Origin name that page): status, body (of a refusal, its
    grpc-message) and grpc-status."""
    call = grpc_web_call(
        url, f"runstream.v1.RunService/{method}", request,
        origin=f"http://{host}", metadata={"host": host},
    )  # fmt: skip
    try:
        if call.status == 200:
            body = b"".join(call.messages())
        else:
            body = call.response.read() + unquote(call.header("grpc-message") or "").encode()
        return call.status, body, call.grpc_status() or ""
    finally:
        call.close()


async def test_a_host_that_is_not_this_machine_gets_403_against_dns_rebinding(
    server: RunstreamServer, gateway: EnvoyProxy, tmp_path: Path
) -> None:
    """A page of rebind.evil.example whose owner pointed that name at 127.0.0.1 is
    same-origin with the dashboard's Envoy in a visitor's browser: on a server without
    tokens it listed every run and cancelled one (found in review)."""
    port = gateway.config.listen_port
    async with runstream.connect(server.target) as client:
        run = await client.start_run("wf", display_name="secret-project")
        await run.flush()
        listing = run_service_pb2.ListRunsRequest()
        cancel = run_service_pb2.CancelRunRequest(run_id=run.run_id, reason="rebinding")
        for host in (f"rebind.evil.example:{port}", "rebind.evil.example", "localhost.evil"):
            for method, request in (("ListRuns", listing), ("CancelRun", cancel)):
                status, body, grpc_status = await asyncio.to_thread(
                    _as_page_of, gateway.url, host, method, request
                )
                assert (status, grpc_status) == (403, "7"), (host, method, status, body)
                assert b"--allowed-host" in body and b"secret-project" not in body, body
        assert (await client.get_run(run.run_id)).status == runstream.RunStatus.RUNNING
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "app.localhost"):
            status, body, grpc_status = await asyncio.to_thread(
                _as_page_of, gateway.url, host, "ListRuns", listing
            )
            assert (status, grpc_status) == (200, "0"), (host, status, body)
            assert b"secret-project" in body

        # Names given as allowed, and the hosts of the allowed origins, pass too.
        require_envoy()
        named = EnvoyProxy(
            EnvoyConfig(
                upstream=server.target,
                listen_port=free_port(),
                allowed_origins=(PAGE, "https://app.example.com"),
                allowed_hosts=("dash.example.com:443", "*.corp.example"),
            ),
            workdir=tmp_path / "named",
        )
        await named.start_async()
        try:
            for host, allowed in (
                ("dash.example.com", True),
                ("DASH.example.com:8081", True),
                ("app.example.com", True),
                ("runs.corp.example", True),
                ("corp.example", True),
                ("example.com", False),
                ("badcorp.example", False),
            ):
                status, body, _ = await asyncio.to_thread(
                    _as_page_of, named.url, host, "ListRuns", listing
                )
                assert status == (200 if allowed else 403), (host, status, body)
        finally:
            named.close()
        await run.close()
