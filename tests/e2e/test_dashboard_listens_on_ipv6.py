"""`runstream dashboard --host` on IPv6 and by name: the page, Envoy and the browser's calls.

The page's server listened on IPv4 alone, so an IPv6 `--host` was refused as a usage error;
a name (`--host localhost`, which the help offered) reached Envoy as its listen address and
Envoy exited with "malformed IP address". Now `::` serves the page and Envoy on IPv6 and IPv4
alike (as servers on every interface do), `::1` or `[::1]` on IPv6 loopback, and a name on
its first IPv4 address; the page's origins by each address let its calls through Envoy's CORS.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest
import runstream
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from .test_dashboard_cli import Dashboard, _require_envoy
from .web_support import browser, grpc_web_call

pytestmark = pytest.mark.timeout(120)


async def _run(server: RunstreamServer) -> str:
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("ipv6", display_name="seen over IPv6")
        await run.close()
    return run.run_id


def _page_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(answer.status)


def _listed(envoy: str, origin: str) -> tuple[str | None, str | None, list[str]]:
    """ListRuns through Envoy as the page at `origin` calls it: the CORS header Envoy gives
    that origin, the grpc-status, and the runs' display names."""
    call = grpc_web_call(
        envoy, "runstream.v1.RunService/ListRuns", run_service_pb2.ListRunsRequest(),
        origin=origin,
    )  # fmt: skip
    try:
        names = [
            run.display_name
            for message in call.messages()
            for run in run_service_pb2.ListRunsResponse.FromString(message).runs
        ]
        return call.header("access-control-allow-origin"), call.grpc_status(), names
    finally:
        call.close()


async def _up(dashboard: Dashboard) -> tuple[str, str]:
    """The page's URL and Envoy's, as the command prints them."""
    page = (await dashboard.said("Runstream dashboard:")).split()[-1]
    envoy = "http://" + await dashboard.envoy_target()
    return page, envoy


async def test_on_every_interface_the_page_and_its_calls_answer_on_ipv6_and_ipv4(
    server: RunstreamServer,
) -> None:
    _require_envoy()
    await _run(server)
    dashboard = await Dashboard.start(server.target, 0, 0, "--host", "::")
    try:
        page, envoy = await _up(dashboard)
        assert re.fullmatch(r"http://\[::1\]:\d+/", page), page
        assert re.fullmatch(r"http://\[::1\]:\d+", envoy), envoy
        page_port, envoy_port = page.rstrip("/").rsplit(":", 1)[1], envoy.rsplit(":", 1)[1]
        for host in ("[::1]", "127.0.0.1"):
            origin = f"http://{host}:{page_port}"
            assert await asyncio.to_thread(_page_status, f"{origin}/") == 200, host
            listed = await asyncio.to_thread(_listed, f"http://{host}:{envoy_port}", origin)
            assert listed == (origin, "0", ["seen over IPv6"]), host
    finally:
        await dashboard.stop()


async def test_a_name_is_served_on_its_address_and_origins_are_allowed_as_browsers_send_them(
    server: RunstreamServer,
) -> None:
    """Also `--origin` as typed or copied (`HTTP://Dash.Example:80/`): Envoy compares origins
    exactly, and a browser sends `http://dash.example`."""
    _require_envoy()
    await _run(server)
    given = ("--host", "localhost", "--origin", "HTTP://Dash.Example:80/")
    dashboard = await Dashboard.start(server.target, 0, 0, *given)
    try:
        page, envoy = await _up(dashboard)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", page), page
        page_port = page.rstrip("/").rsplit(":", 1)[1]
        for origin in (f"http://localhost:{page_port}", page.rstrip("/"), "http://dash.example"):
            listed = await asyncio.to_thread(_listed, envoy, origin)
            assert listed == (origin, "0", ["seen over IPv6"]), origin
    finally:
        await dashboard.stop()


async def test_a_page_on_ipv6_loopback_shows_the_run_in_a_browser(
    server: RunstreamServer,
) -> None:
    _require_envoy()
    run_id = await _run(server)
    dashboard = await Dashboard.start(server.target, 0, 0, "--host", "[::1]")
    try:
        page, _ = await _up(dashboard)
        assert re.fullmatch(r"http://\[::1\]:\d+/", page), page
        async with browser() as chromium:
            await chromium.goto(f"{page}#/runs/{run_id}")
            await chromium.wait(
                "document.querySelector('.run-title').textContent === 'seen over IPv6'"
                " && document.querySelector('#app').dataset.connection === 'live'"
            )
            assert await chromium.errors() == []
    finally:
        await dashboard.stop()
