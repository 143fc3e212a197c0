"""The dashboard in a real browser: Debian's Chromium, through real Envoy, to a real server.

What a person sees is what is checked: the demo run reaching 100 % on screen with every step
done, a decision answered by clicking one of its buttons, an answer that fails while the
server is away said in words and cleared by a later answer, and a page that carries on after
Envoy is killed and restarted mid-run, with no activity-feed entry missing or shown twice,
a run whose log retention removed opening from its snapshot as ended (and its earlier
activity saying it was removed), a run opened while its server is frozen saying
"Reconnecting…" until the server answers again, and a watch silent for 25 s given up for a
new one while one that hears something is kept.
Screenshots go to test-artifacts/ (one per scene) for a human to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import runstream
from runstream import ActivityType, StepSpec
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import Retention

from tests.conftest import ConfigFactory, ServerProcess

from .conftest import Web, dashboard
from .web_support import browser, require_chromium

pytestmark = pytest.mark.timeout(180)

VIEW = "document.querySelector('#run-view')"
CONNECTION = "document.querySelector('#app').dataset.connection"


def run_view_is(status: str, last_seq: int | None = None) -> str:
    """A page condition: the open run shows `status` (and has applied `last_seq`), and its
    snapshot (steps, agents, progress) has caught up with the events it applied."""
    seq = f" && {VIEW}.dataset.lastSeq === '{last_seq}'" if last_seq is not None else ""
    return (
        f"{VIEW} !== null && {VIEW}.dataset.status === '{status}'{seq}"
        f" && {VIEW}.dataset.snapshotSeq === {VIEW}.dataset.lastSeq"
    )


async def cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runstream.cli.main",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(process: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    """Reads the process's output until a line matches; fails with the output otherwise."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while line := (await process.stdout.readline()).decode():
            seen.append(line)
            if match := re.search(pattern, line):
                return match
    raise AssertionError(f"no line matched {pattern!r}:\n{''.join(seen)}")


# The progress bar's fill has finished its CSS transition (for the screenshots).
BAR_SETTLED = (
    "(() => { const bar = document.querySelector('.progress');"
    " const fill = bar.querySelector('.progress-fill');"
    " return bar.getBoundingClientRect().width - fill.getBoundingClientRect().width < 1; })()"
)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_demo_run_reaches_100_percent_on_screen(server: RunstreamServer) -> None:
    require_chromium()
    dashboard = await cli(
        "dashboard", "--target", server.target, "--port", "0", "--envoy-port", "0"
    )
    try:
        url = (await read_until(dashboard, r"Runstream dashboard: (\S+)"))[1]
        envoy_port = int((await read_until(dashboard, r"Envoy on http://[\d.]+:(\d+)"))[1])
        async with browser() as page:
            await page.goto(url)
            await page.wait(f"{CONNECTION} === 'live'")
            demo = await cli("demo", "--target", server.target, "--speed", "10", "--plain")
            # The run appears in the list by itself (WatchRuns); open it as a person would.
            await page.wait("document.querySelector('.run-item[data-run-id]') !== null")
            await page.click(".run-item[data-run-id]")
            with contextlib.suppress(AssertionError):
                # Mid-run, if the page catches the run before it ends (best effort).
                await page.wait(
                    f"{run_view_is('RUNNING')} && "
                    "Number(document.querySelector('.progress').dataset.percent) >= 30",
                    within=5,
                )
                await page.screenshot("demo-running.png")
            await page.wait(run_view_is("SUCCEEDED"), within=60)
            await page.wait("document.querySelector('.progress').dataset.percent === '100'")
            assert await page.eval("document.querySelector('.percent').textContent") == "100%"
            steps = await page.eval(
                "[...document.querySelectorAll('.step')].map(s => "
                "[s.dataset.status, s.querySelector('.step-time').textContent])"
            )
            assert len(steps) == 17
            assert all(status == "SUCCEEDED" and took for status, took in steps), str(steps)
            assert await page.eval(
                "document.querySelector('.feed [data-kind=\"RUN_COMPLETED\"]') !== null"
            )
            await page.wait(BAR_SETTLED)
            await page.screenshot("demo-finished.png")
            assert await page.errors() == []
        assert await asyncio.wait_for(demo.wait(), 60) == 0
    finally:
        if dashboard.returncode is None:
            dashboard.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(dashboard.wait(), 20)
    # `runstream dashboard` stops its Envoy when it exits.
    assert code == 0
    assert port_is_closed(envoy_port)


async def test_a_decision_is_answered_by_clicking(server: RunstreamServer, web: Web) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run(
            "launch-post",
            steps=[
                StepSpec("draft", "Draft copy", agent="Copywriter"),
                StepSpec("publish", "Publish"),
            ],
            display_name="Launch post for the Trail 2",
        )
        await page.goto(web.run_url(run.run_id))
        async with run.step("draft") as step:
            await step.progress(60, "headlines", detail="Three headline variants written")
            ask = asyncio.create_task(
                run.ask(
                    "Which headline should lead the launch post?",
                    [
                        ("bold", "Run further. Feel lighter."),
                        ("calm", "Light shoes for long days"),
                        ("playful", "Lighter than your water bottle"),
                    ],
                    decision_type="headline_choice",
                    context={"variants": 3, "channel": "instagram"},
                    default="calm",
                    timeout=300,
                    can_skip=True,
                )
            )
            option = '.decision[data-state="open"] button[data-choice="bold"]'
            await page.wait(f"document.querySelector('{option}') !== null")
            await page.wait(run_view_is("WAITING_FOR_INPUT"))
            await page.screenshot("decision-open.png")
            await page.click(option)
            result = await asyncio.wait_for(ask, 20)
            assert result.outcome is runstream.DecisionOutcome.ANSWERED
            assert result.choice == "bold"
            assert result.answered_by == "dashboard"
            await page.wait(
                "document.querySelector('.decision[data-state=\"resolved\"]') !== null && "
                "document.querySelector('.feed [data-kind=\"DECISION_RESOLVED\"]') !== null"
            )
            outcome = await page.eval("document.querySelector('.decision-outcome').textContent")
            assert "Run further. Feel lighter." in outcome and "dashboard" in outcome
            await page.wait(run_view_is("RUNNING"))
            await page.screenshot("decision-answered.png")
        async with run.step("publish"):
            pass
        await run.complete(summary="Published with the bold headline")
        await run.close()
        await page.wait(run_view_is("SUCCEEDED"))
        assert await page.errors() == []


async def test_the_watcher_count_follows_watchers_that_come_and_go_while_the_run_is_quiet(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: the count came only with the snapshot, read again after an event, so
    it stood still while a run waited for its user, the moment someone looks at it."""
    watching = f"{VIEW}.querySelector('.viewers span').textContent"
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("quiet", steps=[StepSpec("wait", "Wait for the user")])
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{CONNECTION} === 'live' && {watching} === '1 watching'")
        quiet_at = (await client.get_run(run.run_id)).last_seq

        async def follow() -> None:
            async for _ in client.watch(run.run_id):
                pass

        other = asyncio.create_task(follow())
        try:
            await page.wait(f"{watching} === '2 watching'", within=10)
        finally:
            other.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await other
        await page.wait(f"{watching} === '1 watching'", within=10)
        assert (await client.get_run(run.run_id)).last_seq == quiet_at  # no event meanwhile
        await run.close()
        assert await page.errors() == []


async def test_a_failed_answer_says_so_plainly_and_a_later_answer_clears_it(
    server: RunstreamServer, web: Web
) -> None:
    """The server goes away under two open decisions: Envoy answers the clicks itself
    ("upstream connect error or disconnect/reset before headers ..."), and each card says so
    in words. Once the server is back, a retried click, or someone else's answer, clears it."""
    error = "document.querySelector('[data-decision-id=\"{}\"] .decision-error').textContent"
    option = '[data-decision-id="{}"][data-state="open"] button[data-choice="calm"]'
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("answers", steps=["draft"])
        asks = {
            name: asyncio.create_task(
                run.ask(f"Which {name}?", [("bold", "Bold"), ("calm", "Calm")], decision_id=name)
            )
            for name in ("headline", "image")
        }
        await page.goto(web.run_url(run.run_id))
        for name in asks:
            await page.wait(f"document.querySelector('{option.format(name)}') !== null")
        await server.stop(grace=0.5)
        again = RunstreamServer(dataclasses.replace(server.config, address=server.target))
        try:
            await page.wait(f"{CONNECTION} === 'reconnecting'")
            for name in asks:
                await page.click(option.format(name))
                await page.wait(f"{error.format(name)} !== ''")
                assert await page.eval(error.format(name)) == (
                    "Could not reach the server; try again"
                )
            await page.screenshot("decision-answer-failed.png")
            await again.start()  # the same port and store
            await page.wait(f"{CONNECTION} === 'live'")
            await page.click(option.format("headline"))  # the retry
            # Someone else answers the other, from a client of their own (the producer's
            # channel may still be backing off from the outage).
            async with runstream.connect(again.target) as other:
                await other.submit_decision(run.run_id, "image", "bold", answered_by="dana")
            for name, choice in (("headline", "calm"), ("image", "bold")):
                result = await asyncio.wait_for(asks[name], 60)  # the producer reconnects too
                assert (result.outcome, result.choice) == (
                    runstream.DecisionOutcome.ANSWERED,
                    choice,
                )
                await page.wait(
                    f"document.querySelector('[data-decision-id=\"{name}\"]')"
                    ".dataset.state === 'resolved'"
                )
                assert await page.eval(error.format(name)) == ""
            await run.close()
            # Chromium logs the requests the outage refused; nothing else.
            errors = await page.errors()
            assert [e for e in errors if "Failed to load resource" not in e] == []
        finally:
            await again.stop(grace=0.5)


async def test_an_answer_whose_reply_is_lost_after_it_was_stored_shows_no_error(
    server: RunstreamServer, web: Web
) -> None:
    """The answer is stored and its DecisionResolved reaches the page on the watch stream, then
    the reply of the call is lost: the card showed "Could not reach the server" beside
    "Decision made"."""
    card = '[data-decision-id="tone"]'
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("answers", steps=["draft"])
        asking = asyncio.create_task(run.ask("Which tone?", ["bold", "calm"], decision_id="tone"))
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"document.querySelector('{card}[data-state=\"open\"]') !== null")
        await page.reply_lost("runstream.v1.DecisionService/SubmitDecision", delay=1.0)
        await page.click(f'{card} button[data-choice="calm"]')
        assert (await asyncio.wait_for(asking, 30)).choice == "calm"
        await page.wait(f"document.querySelector('{card}').dataset.state === 'resolved'")
        await asyncio.sleep(1.5)  # past the lost reply
        assert (
            await page.eval(f"document.querySelector('{card} .decision-error').textContent") == ""
        )
        await run.close()


async def test_page_resumes_after_envoy_restart_with_no_feed_event_missing_or_doubled(
    server: RunstreamServer, web: Web
) -> None:
    stages = [StepSpec(f"stage-{n}", f"Stage {n}", agent=f"Agent {n}") for n in range(1, 9)]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run(
            "resume-check", steps=stages, display_name="Resume after an Envoy restart"
        )

        async def play(*numbers: int) -> int:
            """Reports whole stages; returns the run's last seq once they are durable."""
            for n in numbers:
                agent = f"Agent {n}"
                async with run.step(f"stage-{n}") as step:
                    await run.activity(agent, ActivityType.STARTED, f"Stage {n} picked up")
                    for percent in (30, 70):
                        await step.progress(percent, "working", detail=f"{percent}% of stage {n}")
                        await run.activity(agent, ActivityType.PROGRESS, f"{percent}% of stage {n}")
                    await run.text(agent, f"note-{n}", f"Stage {n} ", step_id=f"stage-{n}")
                    await run.text(agent, f"note-{n}", "done.", final=True, step_id=f"stage-{n}")
                    await step.artifact(f"stage-{n}.md", kind="document")
                    await run.activity(agent, ActivityType.COMPLETED, f"Stage {n} finished")
            await run.flush()
            return (await client.get_run(run.run_id)).last_seq

        await page.goto(web.run_url(run.run_id))
        head = await play(1, 2)
        await page.wait(f"{CONNECTION} === 'live' && {VIEW}.dataset.lastSeq === '{head}'")

        web.envoy.kill()  # a crash: every browser connection through it drops at once
        await page.wait(f"{CONNECTION} === 'reconnecting'")
        await play(3, 4, 5)  # reported while the page cannot reach the server
        await page.screenshot("envoy-down-reconnecting.png")

        await web.envoy.start_async()  # same ports, new process
        await page.wait(f"{CONNECTION} === 'live'", within=30)
        await play(6, 7, 8)
        await run.complete(summary="eight stages")
        await run.close()
        final = (await client.get_run(run.run_id)).last_seq
        await page.wait(run_view_is("SUCCEEDED", final))
        await page.wait(BAR_SETTLED)
        await page.screenshot("envoy-restarted-finished.png")

        # Every feed entry the page ever added (recorded as it was added, even those the
        # feed later dropped past its 50), against the server's log filtered the same way.
        shown: list[int] = await page.eval("window.__feedSeqs")
        kinds = set(
            (await page.eval("document.querySelector('.feed').dataset.feedKinds")).split(",")
        )
        expected = [
            event.seq async for event in client.watch(run.run_id) if event.kind.name in kinds
        ]
        assert len(expected) > 50  # so the check spans more than what the feed keeps
        assert shown == expected, (
            f"missing: {sorted(set(expected) - set(shown))}, "
            f"doubled: {sorted({s for s in shown if shown.count(s) > 1})}"
        )
        # Chromium logs the refused and cut-off requests of the outage; nothing else.
        errors = await page.errors()
        assert [e for e in errors if "Failed to load resource: net::" not in e] == []


@contextlib.asynccontextmanager
async def keeping_one_run(
    tmp_path: Path, server_config: ConfigFactory, events: tuple[int, ...]
) -> AsyncIterator[tuple[RunstreamServer, list[str]]]:
    """A server whose retention keeps the newest finished run's log, with one finished run
    per number in `events` (that many events of its own each), oldest first: the next
    apply_retention purges all but the last."""
    require_chromium()
    server = RunstreamServer(
        server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    )
    await server.start()
    try:
        run_ids = []
        async with runstream.connect(server.target) as client:
            for count in events:
                run = await client.start_run("purged", steps=[StepSpec("draft", "Draft")])
                async with run:
                    async with run.step("draft"):
                        for n in range(count):
                            await run.custom("page", {"n": n})
                    await run.complete(summary="done")
                run_ids.append(run.run_id)
        yield server, run_ids
    finally:
        await server.stop(grace=0.5)


async def test_a_run_whose_log_retention_removed_opens_ended_from_its_snapshot(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Retention purged the run's events: WatchRun answers FAILED_PRECONDITION, for good.
    The page shows the run's final snapshot and 'Run ended' with the server's reason, rather
    than 'Reconnecting…' and a new GetRun and WatchRun every few seconds for ever."""
    async with keeping_one_run(tmp_path, server_config, (0, 0)) as (server, run_ids):
        assert server.runs is not None
        assert await server.runs.apply_retention() == run_ids[:1]
        async with dashboard(server.target, tmp_path) as web, browser() as page:
            await page.goto(web.run_url(run_ids[0]))
            await page.wait(f"{CONNECTION} === 'ended'")
            assert await page.eval(f"{VIEW}.dataset.status") == "SUCCEEDED"
            title = await page.eval("document.querySelector('#conn').title")
            assert "removed by the retention policy" in title, title


async def test_earlier_activity_of_a_long_run_says_when_retention_removed_it(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A long run's page offers its earlier activity; retention purges the log while the page
    is open: the click gets FAILED_PRECONDITION, and the page says the activity was removed
    instead of offering the button again. Opened after the purge, the page says so at once."""
    async with keeping_one_run(tmp_path, server_config, (300, 0)) as (server, run_ids):
        assert server.runs is not None
        button = "document.querySelector('.load-older')"
        end = "document.querySelector('.older-end')"
        removed = "Earlier activity was removed by the server's retention policy."
        async with dashboard(server.target, tmp_path) as web, browser() as page:
            await page.goto(web.run_url(run_ids[0]))
            await page.wait(run_view_is("SUCCEEDED") + f" && {CONNECTION} === 'ended'")
            await page.wait(f"!{button}.hidden")
            assert await page.eval(f"{end}.hidden")
            assert await server.runs.apply_retention() == run_ids[:1]
            # The page may learn of the purge before the click can land (the run's new
            # purged_seq reaches it live) and take the button away itself, as it should.
            await page.eval(f"{button}.hidden || {button}.click()")
            await page.wait(f"{button}.hidden && !{end}.hidden")
            assert await page.eval(f"{end}.textContent") == removed
            older = "document.querySelectorAll('.feed-older .feed-item').length"
            assert await page.eval(older) == 0
            await page.goto(web.run_url(run_ids[1]))
            await page.wait(run_view_is("SUCCEEDED"))
            await page.goto(web.run_url(run_ids[0]))
            await page.wait(f"{CONNECTION} === 'ended' && !{end}.hidden")
            assert await page.eval(f"{button}.hidden && {end}.textContent") == removed
            assert await page.errors() == []


async def test_a_run_opened_while_its_server_is_frozen_reconnects_until_the_server_answers(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """A stopped server (SIGSTOP) answers nothing and drops nothing: the page's GetRun waited
    on it, at "Connecting…", until Envoy's keepalive gave up on the server 50 s later. Now the
    call has a deadline: the page says "Reconnecting…", keeps trying, and is live once the
    server answers again."""
    require_chromium()
    server_process.start()
    assert server_process.process is not None
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("frozen", steps=[StepSpec("draft", "Draft")])
        await run.flush()
        async with dashboard(server_process.target, tmp_path) as web, browser() as page:
            server_process.process.send_signal(signal.SIGSTOP)
            try:
                await page.goto(web.run_url(run.run_id))
                await page.wait(f"{CONNECTION} === 'reconnecting'", within=30)
            finally:
                server_process.process.send_signal(signal.SIGCONT)
            await page.wait(f"{CONNECTION} === 'live' && {run_view_is('RUNNING')}", within=30)
        await run.close()


async def test_a_watch_that_stays_silent_is_given_up_after_25_s_and_one_that_speaks_never_is(
    server: RunstreamServer, web: Web
) -> None:
    """The page gives up on a watch that has heard nothing for 25 s (two and a half heartbeat
    intervals: a half-open connection ends with no error) and opens another; a watch that
    hears something at least that often is kept however long it lasts. No test passed the
    25 s: a page that gave up on a quiet watch after 2.5 s, or never, or kept counting from
    the watch's start, passed them all. The page's clock is the test's, jumped ahead."""
    watch_run = "runstream.v1.RunService/WatchRun"
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("quiet", steps=[StepSpec("draft", "Draft")])
        await run.flush()
        await page.call("skew", seconds=0)  # the page's timers run on the test's clock
        await page.hang(watch_run)  # its first watch gets no answer, not even headers
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{VIEW}?.dataset.status === 'RUNNING' && {CONNECTION} === 'connecting'")
        for _ in range(200):  # its stall timer runs from the call: wait for it (10 s at most)
            if await page.calls(watch_run) == 1:
                break
            await asyncio.sleep(0.05)
        assert await page.calls(watch_run) == 1
        await page.fastforward(20)
        await page.unhang(watch_run)  # the next watch is answered
        assert (await page.eval(CONNECTION), await page.calls(watch_run)) == ("connecting", 1)
        await page.fastforward(6)  # 26 s of silence: given up, and a new watch is live
        await page.wait(f"{CONNECTION} === 'live'", within=30)
        assert await page.calls(watch_run) == 2
        await page.eval(
            "window.linkStates = [];"
            " new MutationObserver(() => linkStates.push("
            f"{CONNECTION})).observe(document.querySelector('#app'),"
            " {attributes: true, attributeFilter: ['data-connection']})"
        )
        # An event every 15 s keeps the watch: 30 s after it opened, it is still the same one.
        for name in ("first", "second", "third"):
            await run.custom(name)
            await run.flush()
            seq = (await client.get_run(run.run_id)).last_seq
            await page.wait(run_view_is("RUNNING", seq))
            if name != "third":
                await page.fastforward(15)
        assert (await page.eval("linkStates"), await page.calls(watch_run)) == ([], 2)
        assert await page.errors() == []
        await run.close()


async def test_a_run_at_its_watcher_limit_is_not_shown_live_and_is_asked_for_when_told(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """Found in review: the page said Live as soon as it asked for a run's events, before the
    server answered, and counted that as connected. A watch the server refused at the run's
    watcher limit (RESOURCE_EXHAUSTED, with a RetryInfo of 5 s) flashed Live between tries,
    and the tries never backed off: a GetRun and a WatchRun every 250 ms for as long as the
    page stayed open, from every page open on the run. Now Live comes with the server's
    answer (its response headers), and the page waits as long as the refusal asks."""
    require_chromium()
    server_process.extra = ("--max-watchers-per-run", "1")
    server_process.start()
    watch_run = "runstream.v1.RunService/WatchRun"
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("limited")
        await run.custom("started")
        await run.flush()

        watching = asyncio.Event()

        async def follow() -> None:
            async for _ in client.watch(run.run_id):
                watching.set()

        holder = asyncio.create_task(follow())  # the run's one watcher
        try:
            await asyncio.wait_for(watching.wait(), 10)
            async with dashboard(server_process.target, tmp_path) as web, browser() as page:
                await page.goto(web.run_url(run.run_id))
                await page.eval(
                    "window.linkStates = [];"
                    " new MutationObserver(() => linkStates.push("
                    f"{CONNECTION})).observe(document.querySelector('#app'),"
                    " {attributes: true, attributeFilter: ['data-connection']})"
                )
                await page.wait(f"{CONNECTION} === 'reconnecting'")
                refused = await page.calls(watch_run)
                assert refused >= 1
                await asyncio.sleep(3)  # within the 5 s the refusal asked the page to wait
                assert await page.calls(watch_run) == refused
                detail = await page.eval("document.querySelector('#conn').title")
                assert "the most allowed" in detail
                assert "live" not in await page.eval("linkStates")
                holder.cancel()  # the run's watcher leaves: the page's next try is let in
                await page.wait(f"{CONNECTION} === 'live' && {run_view_is('RUNNING')}", within=15)
                assert await page.errors() == []
        finally:
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holder
        await run.close()


async def test_a_run_linked_before_it_exists_opens_when_picked_from_the_list(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a link to a run with a chosen id, opened just before the run was
    created, stayed on "cannot be shown" with a red "Offline" though the connection was fine;
    the run then appeared in the list, highlighted, and clicking it did nothing (the address
    did not change), so only a reload showed it."""
    async with runstream.connect(server.target) as client, browser() as page:
        await page.goto(web.run_url("launch-0427"))
        await page.wait(f"{CONNECTION} === 'failed'")
        label = await page.eval("document.querySelector('#conn .conn-label').textContent")
        assert label == "Cannot show"  # the run is unknown: no network trouble
        run = await client.start_run("launch", run_id="launch-0427")
        item = '#run-list [data-run-id="launch-0427"]'
        await page.wait(f"document.querySelector('{item}') !== null")
        await page.click(item)
        await page.wait(run_view_is("RUNNING"))
        await run.complete()
        await run.close()
        await page.wait(run_view_is("SUCCEEDED"))
        assert await page.errors() == []


async def test_the_home_page_does_not_say_there_are_no_runs_before_it_has_read_them(
    tmp_path: Path,
) -> None:
    """Found in review: with the server out of reach as the page loaded, it said "No runs
    yet.", "0 Running / 0 Succeeded / 0 Failed" and how to report a first run, of a server
    holding 140 runs; only a small light said it was reconnecting."""
    require_chromium()
    with socket.socket() as taken:  # a port where no server answers
        taken.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{taken.getsockname()[1]}"
    async with dashboard(nowhere, tmp_path) as web, browser() as page:
        await page.goto(web.page.url)
        await page.wait(f"{CONNECTION} === 'reconnecting'")
        shown = await page.eval(
            "[!document.querySelector('#runs-empty').hidden,"
            " !document.querySelector('.overview .hint').hidden,"
            " [...document.querySelectorAll('.overview-stats .stat-value')]"
            ".map((e) => e.textContent)]"
        )
        assert shown == [False, False, ["\u2013"] * 3], shown  # an en dash: not known yet
