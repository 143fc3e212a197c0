"""A run whose producer never started it, in the dashboard: Chromium, real Envoy, a server.

The run list showed such a run as "Pending" forever, like one about to start. Once the server
marks it STALLED (``InsightPolicy.start_within``), the list says "Stalled" beside "Pending",
the run's page shows the health and the reason in its activity, and no ETA; both health
marks carry the server's reason (``Run.health_reason``) as their title; when its
producer starts it after all, the list drops the mark, as it does when the run is cancelled
(an ended run moves no more). A screenshot goes to test-artifacts/never-started.png.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import ConfigFactory

from .conftest import dashboard
from .web_support import browser, require_chromium

pytestmark = pytest.mark.timeout(120)

NEVER_STARTED = (
    r"created \d+s ago and never started: its producer may have stopped before its first event"
)


@pytest.fixture
async def impatient_server(
    tmp_path: Path, server_config: ConfigFactory
) -> AsyncIterator[RunstreamServer]:
    """A server on which a run not started within half a second is STALLED."""
    server = RunstreamServer(
        server_config(tmp_path / "n.db", insight=InsightPolicy(start_within=0.5))
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.1)


def item(run_id: str) -> str:
    return f"document.querySelector('.run-item[data-run-id=\"{run_id}\"]')"


@asynccontextmanager
async def stalled_in_the_list(
    server: RunstreamServer, tmp_path: Path
) -> AsyncIterator[tuple[grpc.aio.Channel, Any, rs.Run, str]]:
    """A run created and never started, open in the dashboard once its list item shows the
    stall mark: the channel, the page, the run and the mark's selector."""
    require_chromium()
    async with (
        grpc.aio.insecure_channel(server.target) as channel,
        dashboard(server.target, tmp_path) as web,
        browser() as page,
    ):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        run = (await runs.CreateRun(rs.CreateRunRequest(workflow="nightly"))).run
        await page.goto(web.page.url)
        stall = f"{item(run.run_id)}.querySelector('.health-pill')"
        await page.wait(f"{item(run.run_id)} !== null && !{stall}.hidden", within=20)
        yield channel, page, run, stall


async def test_the_run_list_says_a_run_never_started_is_stalled(
    impatient_server: RunstreamServer, tmp_path: Path
) -> None:
    async with stalled_in_the_list(impatient_server, tmp_path) as (channel, page, run, stall):
        assert await page.eval(f"{stall}.textContent") == "Stalled"
        assert await page.eval(f"{item(run.run_id)}.querySelector('.status-pill').textContent") == (
            "Pending"
        )
        # Its tooltip is the server's reason, saying how long ago the run was created.
        assert re.fullmatch(NEVER_STARTED, await page.eval(f"{stall}.title"))

        await page.click(f'.run-item[data-run-id="{run.run_id}"]')
        health = "document.querySelector('#run-view .health-pill')"
        await page.wait(f"{health} !== null && !{health}.hidden")
        assert await page.eval(f"{health}.textContent") == "Stalled"
        assert re.fullmatch(NEVER_STARTED, await page.eval(f"{health}.title"))
        status = "document.querySelector('#run-view .status-pill').textContent"
        assert await page.eval(status) == "Pending"
        await page.wait("document.querySelector('.feed [data-kind=\"HEALTH_CHANGED\"]') !== null")
        detail = await page.eval(
            "document.querySelector('.feed [data-kind=\"HEALTH_CHANGED\"] .feed-detail')"
            ".textContent"
        )
        assert "never started: its producer may have stopped before its first event" in detail
        assert await page.eval("document.querySelector('.eta').textContent") == ""
        await page.screenshot("never-started.png")

        # Its producer was only late: it starts the run, and the mark goes.
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(
                run_id=run.run_id, events=[event_pb2.RunEvent(run_started=event_pb2.RunStarted())]
            )
        )
        await page.wait(
            f"{item(run.run_id)}.querySelector('.status-pill').textContent === 'Running'"
            f" && {stall}.hidden"
        )
        await page.wait(f"{health}.textContent === 'Healthy'")
        assert await page.eval(f"{health}.title") == ""  # nothing to explain any more
        assert await page.errors() == []


async def test_a_stalled_run_that_is_cancelled_loses_its_stall_mark_in_the_list(
    impatient_server: RunstreamServer, tmp_path: Path
) -> None:
    """A never-started run cancelled after it was marked STALLED kept "Stalled" beside
    "Cancelled" in the list, with the tooltip "never started": a run that has ended cannot
    stall."""
    async with stalled_in_the_list(impatient_server, tmp_path) as (channel, page, run, stall):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        await runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="not needed"))
        status = f"{item(run.run_id)}.querySelector('.status-pill').textContent"
        await page.wait(f"{status} === 'Cancelled' && {stall}.hidden")
        assert await page.eval(f"{stall}.title") == ""
        assert await page.errors() == []
