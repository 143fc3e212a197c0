"""Issue 8, item 5: Envoy answers a CORS preflight from an origin that is not allowed.

Before, Envoy forwarded it to the gRPC server, which took an OPTIONS request for a broken
call and answered ``grpc-status 13 "Error parsing ':method' metadata"``.
"""

from __future__ import annotations

import asyncio

from runstream.dashboard.envoy import EnvoyProxy

from .test_envoy import ELSEWHERE, PAGE, gateway
from .web_support import http_request

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
