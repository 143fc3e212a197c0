"""The overview's server panel in a real browser: Chromium, real Envoy, a real server.

After a finished run, the panel shows the figures the server itself reports through
GetStats: the run counted as succeeded, the events it appended in the last minute, no
producer left open. With more runs than the run list shows at first, the overview's counts
still agree with the panel's, and never drop when "Show more runs" opens the run stream
again; the runs not ended are listed first. A screenshot of the overview goes to
test-artifacts/server-panel.png.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import runstream
from runstream import RunStatus
from runstream.v1 import event_pb2 as ev
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.e2e.test_stats import finished_run

from .conftest import Web
from .web_support import browser

pytestmark = pytest.mark.timeout(120)

PANEL = "document.querySelector('.server-panel')"
STATS = "[...document.querySelectorAll('.overview-stats .stat-value')].map(v => v.textContent)"
LISTED = "document.querySelectorAll('#run-list li').length"


def figure(name: str) -> str:
    return f"{PANEL}.querySelector('[data-figure=\"{name}\"]')"


async def test_the_server_panel_shows_what_get_stats_says(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        done = await finished_run(client, steps=3)
        assert done.status is RunStatus.SUCCEEDED
        stats = await client.get_stats()
        assert stats.events_appended_last_minute > 0
        await page.goto(web.page.url)
        # The first poll is immediate; later ones every 5 s.
        await page.wait(
            f"{PANEL} !== null && !{PANEL}.hidden && {PANEL}.dataset.state === 'live'"
            f" && {figure('appended')}.dataset.value"
            f" === '{stats.events_appended_last_minute}'",
            within=20,
        )
        pills = await page.eval(
            f"[...{PANEL}.querySelectorAll('.server-runs li')]"
            ".map(li => [li.dataset.status, Number(li.dataset.count), li.textContent])"
        )
        assert pills == [["SUCCEEDED", 1, "Succeeded 1"]]
        assert stats.runs_by_status == {RunStatus.SUCCEEDED: 1}
        shown = json.loads(
            await page.eval(
                "JSON.stringify(Object.fromEntries([...document.querySelectorAll("
                "'.server-figure')].map(f => [f.dataset.figure, [f.dataset.value,"
                " f.querySelector('.server-figure-value').textContent]])))"
            )
        )
        assert shown["producers"] == [str(stats.producers), str(stats.producers)] == ["0", "0"]
        assert shown["appended"][1] == str(stats.events_appended_last_minute)
        uptime_ms = int(shown["uptime"][0])  # under a second old: shown in ms
        assert uptime_ms > 0 and shown["uptime"][1].endswith(" s" if uptime_ms >= 1000 else " ms")
        assert int(shown["store-size"][0]) > 0 and shown["store-size"][1].endswith("B")
        p50, p99 = (float(v) for v in shown["latency"][0].split("/"))
        assert 0 < p50 <= p99 and " ms" in shown["latency"][1]
        meta = await page.eval(f"{PANEL}.querySelector('.server-meta').textContent")
        assert meta == f"v{stats.server_version} · sqlite"
        await page.screenshot("server-panel.png")
        assert await page.errors() == []


async def many_runs(client: runstream.Client) -> runstream.Run:
    """114 runs: the oldest succeeded, the next three old-0..old-2 (the first two cancelled),
    then 110 pending new-0..new-109; returns the oldest."""
    stub = client.raw_run_service
    oldest = await finished_run(client, steps=1)
    for i in range(3):
        await stub.CreateRun(rs.CreateRunRequest(workflow="old", run_id=f"old-{i}"))
    for i in range(2):
        await client.cancel_run(f"old-{i}")
    for i in range(110):
        await stub.CreateRun(rs.CreateRunRequest(workflow="new", run_id=f"new-{i}"))
    return oldest


def stats_are(*values: str) -> str:
    """A page condition: the overview's counts read `values` (Running, Succeeded, Failed)."""
    shown = json.dumps(list(values), separators=(",", ":"))
    return f"JSON.stringify({STATS}) === {json.dumps(shown)}"


async def test_over_a_hundred_runs_the_overview_counts_every_run(
    server: RunstreamServer, web: Web
) -> None:
    """The run list shows the newest 100 runs at first; the overview's Running / Succeeded /
    Failed counts are over every run (they were over those 100: 0 / 0 / 0 here, beside a
    panel saying 1 succeeded and 2 cancelled), follow a run beyond the first hundred as it
    changes, and "Show more runs" lists the rest."""
    async with runstream.connect(server.target) as client, browser() as page:
        oldest = await many_runs(client)
        await page.goto(web.page.url)
        await page.wait(f"{PANEL}.dataset.state === 'live' && {LISTED} === 100")
        pills = await page.eval(
            f"[...{PANEL}.querySelectorAll('.server-runs li')]"
            ".map(li => [li.dataset.status, Number(li.dataset.count)])"
        )
        assert sorted(pills) == [["CANCELLED", 2], ["PENDING", 111], ["SUCCEEDED", 1]]
        assert await page.eval(STATS) == ["0", "1", "2"]
        assert await page.eval("document.querySelector('#run-count').textContent") == "114"
        # A run the list does not show yet changes: the counts follow it (WatchRuns).
        await client.cancel_run("old-2")
        await page.wait(stats_are("0", "1", "3"))
        await page.click("#runs-more")
        await page.wait(f"{LISTED} === 114")
        assert await page.eval("document.querySelector('#runs-more').hidden")
        last = await page.eval(
            "document.querySelector('#run-list li:last-child .run-item').dataset.runId"
        )
        assert last == oldest.run_id
        assert await page.errors() == []


async def test_past_a_hundred_ended_runs_the_list_reads_the_newest_and_more_on_demand(
    server: RunstreamServer, web: Web
) -> None:
    """WatchRuns brings every run not ended and only as many ended runs as the list shows,
    not the store's whole history: with 103 cancelled runs the page lists the running one
    (the oldest) and the newest 100 cancelled, Running reads an exact 1 and Failed "100+",
    and "Show more runs" opens the stream again for as many more, after which every count is
    exact and still follows a change."""
    async with runstream.connect(server.target) as client, browser() as page:
        stub = client.raw_run_service
        await stub.CreateRun(rs.CreateRunRequest(workflow="long", run_id="long-running"))
        started = ev.RunEvent(run_started=ev.RunStarted())
        await client.raw_report_service.AppendEvents(
            rp.AppendEventsRequest(run_id="long-running", events=[started])
        )
        for i in range(103):
            await stub.CreateRun(rs.CreateRunRequest(workflow="short", run_id=f"short-{i}"))
            await client.cancel_run(f"short-{i}")
        await page.goto(web.page.url)
        await page.wait(f"{LISTED} === 100 && {stats_are('1', '0+', '100+')}")
        assert await page.eval("document.querySelector('#run-count').textContent") == "101+"
        # Every Running count shown from here on (it read "1+" while the stream reopened).
        await page.eval(
            "(() => { const stats = document.querySelector('.overview-stats');"
            " window.runningShown = [];"
            " new MutationObserver(() => window.runningShown.push("
            "stats.querySelector('.stat-value').textContent))"
            ".observe(stats, {childList: true, subtree: true, characterData: true});"
            " return true; })()"
        )
        await page.click("#runs-more")
        await page.wait(f"{LISTED} === 104 && {stats_are('1', '0', '103')}")
        assert await page.eval("document.querySelector('#run-count').textContent") == "104"
        assert await page.eval("document.querySelector('#runs-more').hidden")
        assert set(await page.eval("window.runningShown")) == {"1"}
        await client.cancel_run("long-running")
        await page.wait(stats_are("0", "0", "104"))
        assert await page.errors() == []


async def test_show_more_runs_keeps_the_runs_created_while_the_page_was_open(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: "Show more runs" opens WatchRuns again for 100 more ended runs, and the
    page replaced what it knew with the new stream's runs: of the 250 it had seen, the newest
    200, and the counts fell from "250+" to "200+". The ended runs the stream left out for
    its limit stay now, and the counts only grow."""
    async with runstream.connect(server.target) as client, browser() as page:
        stub = client.raw_run_service

        async def ended(name: str) -> None:
            await stub.CreateRun(rs.CreateRunRequest(workflow="short", run_id=name))
            await client.cancel_run(name)

        for i in range(103):
            await ended(f"before-{i}")
        await page.goto(web.page.url)
        await page.wait(f"{LISTED} === 100 && {stats_are('0', '0+', '100+')}")
        for i in range(150):  # seen by the page as they are created
            await ended(f"while-{i}")
        count = "document.querySelector('#run-count').textContent"
        await page.wait(f"{count} === '250+'")
        # Every count shown from here on.
        await page.eval(
            "(() => { const stats = document.querySelector('.overview-stats');"
            " window.countsShown = [];"
            f" const record = () => window.countsShown.push([{count},"
            " stats.querySelector('[data-status=\"FAILED\"] .stat-value').textContent]);"
            " for (const el of [document.querySelector('#run-count'), stats])"
            " new MutationObserver(record)"
            ".observe(el, {childList: true, subtree: true, characterData: true});"
            " return true; })()"
        )
        await page.click("#runs-more")
        await page.wait(f"{LISTED} === 200")
        watch_runs = "runstream.v1.RunService/WatchRuns"
        for _ in range(200):
            if await page.calls(watch_runs) == 2:
                break
            await asyncio.sleep(0.05)
        assert await page.calls(watch_runs) == 2
        # A run ended after the stream was opened again: once the page shows it, the new
        # stream's initial state was taken.
        await ended("after")
        await page.wait("document.querySelector('#run-list [data-run-id=\"after\"]') !== null")
        assert await page.eval(count) == "251+"
        assert await page.eval(STATS) == ["0", "0+", "251+"]
        shown = await page.eval("window.countsShown")
        assert shown and all(
            int(total.rstrip("+")) >= 250 and int(failed.rstrip("+")) >= 250
            for total, failed in shown
        ), shown
        assert await page.errors() == []


async def test_runs_not_ended_are_listed_first_however_many_ended_runs_are_newer(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: the list showed the newest runs, so with 100 ended runs newer than
    them the runs not ended (one waiting for input) were in neither the sidebar nor the
    overview's list. They come first now, waiting for input first, as `runstream runs
    --watch` lists them; then the ended runs, newest first."""
    async with runstream.connect(server.target) as client, browser() as page:
        stub, report = client.raw_run_service, client.raw_report_service
        started = ev.RunEvent(run_started=ev.RunStarted())
        asked = ev.RunEvent(
            decision_requested=ev.DecisionRequested(
                decision_id="go", prompt="Go on?", options=[ev.DecisionOption(value="yes")]
            )
        )
        for run_id, events in (
            ("waiting", [started, asked]),
            ("pending", []),
            ("running", [started]),
            ("paused", [started]),
        ):
            await stub.CreateRun(rs.CreateRunRequest(workflow="busy", run_id=run_id))
            if events:
                await report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=events))
        await client.pause_run("paused")
        for i in range(100):
            await stub.CreateRun(rs.CreateRunRequest(workflow="done", run_id=f"done-{i}"))
            await client.cancel_run(f"done-{i}")
        await page.goto(web.page.url)
        await page.wait(f"{LISTED} === 100")
        first = ["waiting", "paused", "running", "pending", "done-99", "done-98"]
        order = "[...document.querySelectorAll('{} .run-item')].map((a) => a.dataset.runId)"
        assert (await page.eval(order.format("#run-list")))[:6] == first
        assert (await page.eval(order.format(".overview-runs")))[:6] == first
        statuses = await page.eval(
            "[...document.querySelectorAll('#run-list .status-pill')].slice(0, 4)"
            ".map((p) => p.dataset.status)"
        )
        assert statuses == ["WAITING_FOR_INPUT", "PAUSED", "RUNNING", "PENDING"]
        # The tab's title says how many runs wait for someone, then nothing once none does.
        assert await page.eval("document.title") == "(1) Runstream"
        await client.submit_decision("waiting", "go", "yes", answered_by="dana")
        await page.wait("document.title === 'Runstream'")
        assert await page.errors() == []


async def test_without_watch_runs_the_counts_say_they_are_partial(
    server: RunstreamServer, web: Web
) -> None:
    """On a server without WatchRuns the page polls ListRuns for the runs the list shows:
    its counts over those read "0+" (not a plain, wrong 0), and "Show more runs" pages on
    with page_token to every run, whose counts are exact and follow a change."""
    async with runstream.connect(server.target) as client, browser() as page:
        oldest = await many_runs(client)
        await page.unimplemented("runstream.v1.RunService/WatchRuns")
        await page.goto(web.page.url)
        await page.wait(f"{LISTED} === 100 && {stats_are('0+', '0+', '0+')}")
        assert await page.eval("document.querySelector('#run-count').textContent") == "100+"
        await page.click("#runs-more")
        await page.wait(f"{LISTED} === 114 && {stats_are('0', '1', '2')}")
        assert await page.eval("document.querySelector('#run-count').textContent") == "114"
        assert await page.eval("document.querySelector('#runs-more').hidden")
        last = await page.eval(
            "document.querySelector('#run-list li:last-child .run-item').dataset.runId"
        )
        assert last == oldest.run_id
        await client.cancel_run("old-2")
        await page.wait(stats_are("0", "1", "3"))  # the next poll, within 2.5 s
        assert await page.errors() == []
