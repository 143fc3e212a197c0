"""Envoy's CORS admits the allowed origins exactly: an origin that begins like one of them
(another port whose number starts with its port's, a name under it) is another site.

The CORS tests tried an origin of another name; one matched by prefix would pass them and
let http://127.0.0.1:8080.evil.example read every answer a user's browser gets.
"""

from __future__ import annotations

import asyncio

import pytest
from runstream.dashboard.envoy import EnvoyProxy

from .test_envoy import PAGE, gateway
from .web_support import http_request

__all__ = ["gateway"]  # the real Envoy in front of a real server, from test_envoy

PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
}


@pytest.mark.parametrize("origin", [f"{PAGE}0", f"{PAGE}.evil.example"])
async def test_an_origin_that_begins_like_an_allowed_one_gets_no_cors_headers(
    gateway: EnvoyProxy, origin: str
) -> None:
    path = "/runstream.v1.RunService/ListRuns"

    def allowed(origin: str) -> str | None:
        headers = {"origin": origin, **PREFLIGHT}
        return http_request(gateway.url, "OPTIONS", path, headers)[1].get(
            "access-control-allow-origin"
        )

    assert await asyncio.to_thread(allowed, PAGE) == PAGE
    assert await asyncio.to_thread(allowed, origin) is None
