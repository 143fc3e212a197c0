"""The dashboard on a phone, a tablet and a desktop, in real Chromium through real Envoy.

At 390x844 (a phone), 768x1024 (a tablet) and 1440x900: no element is wider than the
viewport, the percent, ETA, Live badge and the decision's buttons are inside it, the run list
is reachable, and a decision is answered by tapping. Operators pause, resume and cancel from
the page; a long run opens from its snapshot, fills its feed (every kind, in order) and its
panels reading back only as far as they show, loads older history on demand, a page a click
back to its start, and shows a message begun before its replayed events whole or marked
partial; a run counted in items shows its counter, a workflow's pipeline its flags; paths,
URLs and identifiers with nowhere to break wrap at 375 px and keep a decision's options apart.
Screenshots of each go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import runstream
from runstream import StepSpec
from runstream.v1 import event_pb2 as ev
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import Browser, BrowserError, browser

pytestmark = pytest.mark.timeout(240)

SIZES = (("phone", 390, 844), ("tablet", 768, 1024), ("desktop", 1440, 900))

# Elements (visible ones) whose right edge passes the viewport's: what makes a page scroll
# sideways.
OVERFLOWING = """
[...document.querySelectorAll('#app *')]
  .filter((el) => {
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return box.width > 0 && style.visibility !== 'hidden' && !el.closest('.sidebar')
      && box.right > window.innerWidth + 1;
  })
  .slice(0, 5)
  .map((el) => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`)
"""


def inside(selector: str) -> str:
    """A page condition: the element is on screen horizontally."""
    return (
        f"(() => {{ const el = document.querySelector('{selector}');"
        " if (!el) return false; const box = el.getBoundingClientRect();"
        " return box.width > 0 && box.left >= 0 && box.right <= window.innerWidth + 1; })()"
    )


async def test_the_run_page_fits_phone_tablet_and_desktop_and_a_tap_answers(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run(
            "launch-post",
            steps=[
                StepSpec(
                    "draft", "Draft copy", "Three headline variants", "Copywriter", phase="Make"
                ),
                StepSpec(
                    "visual", "Hero visual", "The banner", "Designer", track="design", phase="Make"
                ),
                StepSpec(
                    "publish", "Publish", "Post it", depends_on=("draft", "visual"), phase="Ship"
                ),
            ],
            display_name="Launch post for the Trail 2 with a long name that has to wrap somewhere",
        )
        async with run.step("draft") as step:
            await step.progress(
                60,
                "headlines",
                detail="Three headline variants written",
                estimated_time_remaining=120,  # the producer's own ETA: no history yet
            )
            await run.metrics({"impressions": 10000})
            await run.metrics({"impressions": 10500, "ctr_pct": 5.0}, units={"ctr_pct": "%"})
            ask = asyncio.create_task(
                run.ask(
                    "Which headline should lead the launch post?",
                    [
                        ("bold", "Run further. Feel lighter."),
                        ("calm", "Light shoes for long days"),
                        ("playful", "Lighter than your water bottle"),
                    ],
                    context={"variants": 3, "channel": "instagram"},
                    default="calm",
                    timeout=300,
                    can_skip=True,
                )
            )
            option = '.decision[data-state="open"] button[data-choice="bold"]'
            for name, width, height in SIZES:
                await page.call("viewport", width=width, height=height)
                await page.goto(web.run_url(run.run_id))
                await page.wait(f"document.querySelector('{option}') !== null")
                await page.wait(run_view_is("WAITING_FOR_INPUT"))
                assert await page.eval(OVERFLOWING) == [], name
                assert await page.eval(
                    "document.documentElement.scrollWidth <= window.innerWidth"
                ), name
                for key in (
                    ".percent",
                    ".eta",
                    "#conn",
                    ".run-head .status-pill",
                    ".decision .skip",
                    option,
                ):
                    assert await page.eval(inside(key)), f"{key} off screen at {name}"
                if width < 860:
                    # Decision buttons span the card; the run list is a tap away.
                    widths = await page.eval(
                        "[...document.querySelectorAll('.decision .options button')]"
                        ".map((b) => b.getBoundingClientRect().width / "
                        "b.parentElement.getBoundingClientRect().width)"
                    )
                    assert min(widths) > 0.95, widths
                    await page.click("#runs-toggle")
                    await page.wait(inside(".sidebar .run-item"))
                    await page.screenshot(f"{name}-run-list.png", full_page=False)
                    await page.click(".sidebar .run-item")
                    await page.wait(
                        "document.querySelector('#app').dataset.drawer === 'closed' && "
                        "document.querySelector('.sidebar').getBoundingClientRect().right <= 0"
                    )
                # The workflow graph: phases as headings, tracks as chips.
                phases = await page.eval(
                    "[...document.querySelectorAll('.phase-head')].map((e) => e.textContent)"
                )
                assert phases == ["Make", "Ship"]
                assert (
                    await page.eval(
                        "document.querySelector('[data-step-id=\"visual\"] .step-track')"
                        ".textContent"
                    )
                    == "design"
                )
                # Metric tiles with their unit and the change since the last value.
                tile = "document.querySelector('[data-metric=\"{}\"] .{}').textContent"
                assert await page.eval(tile.format("impressions", "tile-change")) == "+500"
                assert await page.eval(tile.format("ctr_pct", "tile-value")) == "5.0 %"
                await page.screenshot(f"{name}-run.png", full_page=False)
            # Answered by a tap on the phone.
            await page.call("viewport", width=390, height=844)
            await page.click(option)
            result = await asyncio.wait_for(ask, 20)
            assert (result.outcome, result.choice) == (runstream.DecisionOutcome.ANSWERED, "bold")
            await page.wait("document.querySelector('.decision[data-state=\"resolved\"]') !== null")
            await page.screenshot("phone-decision-answered.png", full_page=False)
        await run.complete()
        await run.close()
        assert await page.errors() == []


async def test_pause_resume_and_cancel_from_the_page(server: RunstreamServer, web: Web) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("ops", steps=["work"])
        await run.alert(
            "Projected CPC 38% above target",
            severity=runstream.Severity.HIGH,
            suggested_action="Pause campaign",
            action=runstream.AlertActionType.PAUSE_RUN,
        )
        await page.call("viewport", width=390, height=844)
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        shown = '(a) => !document.querySelector(`.controls [data-action="${a}"]`).hidden'
        assert await page.eval(f"[ 'pause', 'cancel' ].filter({shown})") == ["pause", "cancel"]
        assert not await page.eval(f"({shown})('resume')")
        # The alert's suggested action is a button: it pauses the run.
        action = '.feed .feed-action[data-action="pause"]'
        await page.wait(f"document.querySelector('{action}')?.textContent === 'Pause campaign'")
        await page.click(action)
        await page.wait(run_view_is("PAUSED"))
        assert (await client.get_run(run.run_id)).status is runstream.RunStatus.PAUSED
        await page.wait(f"({shown})('resume') && !({shown})('pause')")
        await page.click('.controls [data-action="resume"]')
        await page.wait(run_view_is("RUNNING"))
        # Cancel asks first; "Keep running" leaves the run alone.
        await page.click('.controls [data-action="cancel"]')
        await page.wait(f"({shown})('confirm-cancel') && ({shown})('keep')")
        await page.screenshot("phone-cancel-confirm.png", full_page=False)
        await page.click('.controls [data-action="keep"]')
        await page.wait(f"({shown})('cancel') && !({shown})('confirm-cancel')")
        assert (await client.get_run(run.run_id)).status is runstream.RunStatus.RUNNING
        await page.click('.controls [data-action="cancel"]')
        await page.click('.controls [data-action="confirm-cancel"]')
        await page.wait(run_view_is("CANCELLED"))
        final = await client.get_run(run.run_id)
        assert final.status is runstream.RunStatus.CANCELLED
        # A finished run offers no controls.
        await page.wait("document.querySelector('.controls').hidden")
        assert await page.errors() == []


LIST_EVENTS = "runstream.v1.RunService/ListEvents"
LONG_RUN_EVENTS = 200  # watch.ts: the newest events a long run's page replays
FEED_SEQS = "[...document.querySelectorAll('.feed .feed-item')].map((e) => Number(e.dataset.seq))"
OLDER_SEQS = (
    "[...document.querySelectorAll('.feed-older .feed-item')].map((e) => Number(e.dataset.seq))"
)
OLDER_COUNT = "document.querySelectorAll('.feed-older .feed-item').length"
OLDER_BUTTON = "document.querySelector('.load-older')"


async def test_a_long_run_opens_from_its_snapshot_and_loads_older_history_on_demand(
    server: RunstreamServer, web: Web
) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("long", steps=["crawl"])
        await run.thinking("Crawl the catalogue first", thinking_type="route_planning")
        await run.model_allocation("crawler", "o3", tier="high")
        await run.workflow_state(
            "phase_transition", current_stage="Crawl", stages=("Crawl", "Rank")
        )
        async with run.step("crawl") as step:
            for n in range(300):
                await run.custom("page", {"n": n})
            await step.progress(50, "crawling")
            await run.flush()
            head = (await client.get_run(run.run_id)).last_seq
            await page.goto(web.run_url(run.run_id))
            view = "document.querySelector('#run-view')"
            await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {head}")
            # Only the newest 200 events were replayed: the feed ends at the head and holds
            # nothing older than them, in order.
            seqs = await page.eval("window.__feedSeqs")
            assert seqs and max(seqs) == head and min(seqs) > head - 200
            # The panels show what came before them: the thinking, the model, the phases.
            await page.wait("!document.querySelector('.thinking-body').hidden")
            await page.wait("document.querySelectorAll('.models li').length === 1")
            await page.wait("!document.querySelector('.phases').hidden")
            button = ".load-older"
            await page.wait(f"!document.querySelector('{button}').hidden")
            # The live part still resumes exactly: the next event shows, once.
            await run.custom("after-open")
            await run.flush()
            await page.wait(f"Number({view}.dataset.lastSeq) === {head + 1}")
            await page.wait(f"document.querySelector('.feed [data-seq=\"{head + 1}\"]') !== null")
            await page.click(button)
            await page.wait("document.querySelectorAll('.feed-older .feed-item').length >= 100")
            older = await page.eval(
                "[...document.querySelectorAll('.feed-older .feed-item')]"
                ".map((e) => Number(e.dataset.seq))"
            )
            # They continue right below the oldest entry the feed shows (it keeps 50).
            shown = await page.eval(FEED_SEQS)
            assert max(older) == min(shown) - 1 and len(set(older)) == len(older)
            await page.screenshot("long-run-older-history.png", full_page=False)
        await run.complete()
        await run.close()
        assert await page.errors() == []


async def test_earlier_activity_loads_backwards_a_page_a_click_until_the_runs_start(
    server: RunstreamServer, web: Web
) -> None:
    """Each "Load earlier activity" shows the few hundred entries right before what the feed
    shows, newest first, in one small ListEvents call however long the log: the first click
    reads from below the feed (`seq <` it, newest first), neither the log from seq 1 (5,000
    events, at least five 1,000-event pages) nor from its head down past the 200 events the
    page replayed. Further clicks go further back; at the run's start the page says so."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("long", steps=["crawl"])
        async with run.step("crawl"):
            for n in range(5000):
                await run.custom("page", {"n": n})
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.goto(web.run_url(run.run_id))
        view = "document.querySelector('#run-view')"
        await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {head}")
        start = head - LONG_RUN_EVENTS  # the newest event not replayed
        # The feed shows the newest 50 of the replayed events; the rest of them load first.
        shown: list[int] = await page.eval(FEED_SEQS)
        below = min(shown) - 1
        assert below > start
        label = f"Load earlier activity (events 1\N{EN DASH}{below})"
        await page.wait(f"!{OLDER_BUTTON}.hidden && {OLDER_BUTTON}.textContent === '{label}'")
        calls = await page.calls(LIST_EVENTS)
        await page.click(".load-older")
        idle = f"{OLDER_BUTTON}.textContent.startsWith('Load earlier activity (')"
        await page.wait(f"{OLDER_COUNT} > 0 && {idle}")
        first: list[int] = await page.eval(OLDER_SEQS)
        # Every event of this run is a feed entry: the page right before what the feed
        # shows, newest on top, with no gap, through the events before the replayed part,
        # and only a page of them (not the run's first events).
        assert first == list(range(below, below - len(first), -1))
        assert start in first and 200 <= len(first) <= 500
        assert await page.calls(LIST_EVENTS) - calls == 1
        assert await page.eval(f"{OLDER_BUTTON}.textContent") == (
            f"Load earlier activity (events 1\N{EN DASH}{min(first) - 1})"
        )
        await page.screenshot("long-run-earlier-page.png", full_page=False)
        # The next click goes one page further back, under the first page.
        await page.click(".load-older")
        await page.wait(f"{OLDER_COUNT} > {len(first)} && {idle}")
        second: list[int] = await page.eval(OLDER_SEQS)
        assert second[: len(first)] == first
        assert second == list(range(below, below - len(second), -1))
        assert len(second) - len(first) <= 500
        # On to the run's start: then no button, and the page says where the run began.
        clicks = 2
        while await page.eval(f"!{OLDER_BUTTON}.hidden"):
            count = len(await page.eval(OLDER_SEQS))
            await page.click(".load-older")
            clicks += 1
            await page.wait(f"{OLDER_COUNT} > {count} && ({idle} || {OLDER_BUTTON}.hidden)")
        assert clicks >= 10  # 4,800 entries a few hundred at a time
        assert await page.eval(OLDER_SEQS) == list(range(below, 0, -1))
        end = "document.querySelector('.older-end')"
        assert await page.eval(f"!{end}.hidden && {end}.textContent") == (
            "This is the start of the run."
        )
        await run.complete()
        await run.close()
        assert await page.errors() == []


async def test_a_long_runs_feed_shows_every_kind_in_order_and_earlier_activity_goes_on_from_it(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a long run streaming text has few feed entries in its newest 200
    events, and its page filled the feed from the snapshot's recent activity, which holds
    agent activity only: below the replayed events the steps and alerts were missing though
    the list looked whole, "Load earlier activity" offered the events from below the replayed
    ones, and what it loaded went under the agent activity, out of order. The feed now shows
    the run's newest 50 entries of every kind, earlier activity goes on from its oldest, and
    the entries live events push out of the feed stay, on top of the earlier ones."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("mixed")
        for i in range(30):  # 24 events each, 4 of them feed entries
            async with run.step(f"s{i}", name=f"Stage {i}"):
                await run.activity("worker", runstream.ActivityType.PROGRESS, f"on {i}")
                await run.alert(f"alert {i}", severity=runstream.Severity.MEDIUM)
                for k in range(20):
                    await run.text("worker", f"m{i}", f"w{k} ", final=k == 19, step_id=f"s{i}")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.goto(web.run_url(run.run_id))
        view = "document.querySelector('#run-view')"
        idle = f"{OLDER_BUTTON}.textContent.startsWith('Load earlier activity (')"
        await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {head} && {idle}")
        kinds = set(
            (await page.eval("document.querySelector('.feed').dataset.feedKinds")).split(",")
        )

        async def logged() -> list[int]:
            """The seqs of the run's feed entries, newest first."""
            events = client.list_events(run.run_id, newest_first=True)
            return [event.seq async for event in events if event.kind.name in kinds]

        entries = await logged()
        shown: list[int] = await page.eval(FEED_SEQS)
        assert shown == entries[:50]
        assert min(shown) < head - LONG_RUN_EVENTS  # filled in from before the replayed events
        label = f"Load earlier activity (events 1\N{EN DASH}{min(shown) - 1})"
        assert await page.eval(f"{OLDER_BUTTON}.textContent") == label
        await page.click(".load-older")
        end = "document.querySelector('.older-end')"
        await page.wait(f"{OLDER_COUNT} > 0 && !{end}.hidden")
        older: list[int] = await page.eval(OLDER_SEQS)
        assert shown + older == entries
        # Live entries push the oldest out of the feed: they go on top of the earlier ones.
        for n in range(60):
            await run.custom("live", {"n": n})
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        await page.wait(f"Number({view}.dataset.lastSeq) === {head}")
        entries = await logged()
        shown = await page.eval(FEED_SEQS)
        assert shown == entries[:50]
        assert shown + await page.eval(OLDER_SEQS) == entries
        await run.complete()
        await run.close()
        assert await page.errors() == []


PANELS = """({
  thinking: document.querySelector('.thinking-card').innerText,
  models: [...document.querySelectorAll('.models li')].map((e) => e.innerText),
  phases: document.querySelector('.phases').hidden
    ? null
    : [...document.querySelectorAll('.phases li')].map((e) => e.className + ' ' + e.innerText),
})"""


async def test_a_long_runs_panels_read_back_only_as_far_as_they_show(
    server: RunstreamServer, web: Web
) -> None:
    """A page opening a long run fills the thinking, models and phases panels from before
    the replayed events as a page open all along shows them (the newest six thoughts, the
    eight agents allocated last, the phase named last with the stages listed before it),
    reading newest first: one call per panel, not the 4,000 thoughts from seq 1."""
    async with (
        runstream.connect(server.target) as client,
        browser() as along,
        browser() as page,
    ):
        run = await client.start_run("long", steps=["crawl"])
        await run.flush()
        await along.goto(web.run_url(run.run_id))
        await along.wait("document.querySelector('#run-view') !== null")
        for agent in range(12):
            model = "o3" if agent % 2 else "haiku"
            await run.model_allocation(f"agent-{agent}", model, tier="high")
        await run.workflow_state(
            "phase_transition", current_stage="Crawl", stages=("Crawl", "Rank", "Ship")
        )
        for n in range(4000):
            await run.thinking(f"Thought {n}", thinking_type="route_planning", stage=f"S{n}")
        await run.model_allocation("agent-3", "o3-pro", tier="highest")
        for n in range(100):
            await run.custom("page", {"n": n})
        # Inside the replayed events: a change that names only the current stage.
        await run.workflow_state("phase_transition", current_stage="Rank")
        for n in range(150):
            await run.custom("page", {"n": n})
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        view = "document.querySelector('#run-view')"
        await along.wait(f"Number({view}.dataset.lastSeq) === {head}")
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {head}")
        await page.wait("document.querySelectorAll('.models li').length === 8")
        await page.wait("!document.querySelector('.phases').hidden")
        expected = await along.eval(PANELS)
        assert expected["phases"] is not None and len(expected["models"]) == 8
        assert "Thought 3999" in expected["thinking"]
        for _ in range(100):
            if await page.eval(PANELS) == expected:
                break
            await asyncio.sleep(0.1)
        assert await page.eval(PANELS) == expected
        assert await page.calls(LIST_EVENTS) <= 3
        await run.complete()
        await run.close()
        assert await along.errors() == [] and await page.errors() == []


async def test_a_run_counted_in_items_shows_its_counter(server: RunstreamServer, web: Web) -> None:
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("discovery")
        await run.items(15, 25, unit="companies", by_stage={"found": 15, "enriched": 9})
        await run.flush()
        await page.call("viewport", width=390, height=844)
        await page.goto(web.run_url(run.run_id))
        await page.wait(
            "document.querySelector('.steps-count')?.textContent === '15 of 25 companies'"
        )
        assert await page.eval("document.querySelector('.item-count').textContent") == "15"
        assert await page.eval("document.querySelector('.percent').textContent") == "60%"
        stages = await page.eval(
            "[...document.querySelectorAll('.item-stages li')].map((e) => e.textContent)"
        )
        assert sorted(stages) == ["Enriched 9", "Found 15"]  # a map: no order
        await page.screenshot("phone-item-progress.png", full_page=False)
        await run.complete()
        await run.close()


# Text with nowhere to break: a path, a URL, an agent's run-on output, an identifier.
FOLDER = "/srv/runstream/campaigns/trail-2-launch/assets/instagram/headlines/final-variants/"
URL = (
    "https://cdn.example.com/campaigns/trail-2/launch/assets/hero-banner-1080x1350-approved.png"
    "?signature=0123456789abcdef0123456789abcdef0123456789abcdef"
)
NAME = "trail_2_launch_assets_instagram_headlines_final_variants_approved_by_the_brand_team"


async def test_long_unbroken_text_wraps_on_a_phone_and_options_stay_apart(
    server: RunstreamServer, web: Web
) -> None:
    steps = [StepSpec("write", NAME, FOLDER, NAME)]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("paths", steps=steps, display_name=NAME)
        async with run.step("write") as step:
            await step.progress(40, NAME, detail=URL)
            await run.thinking(f"Read {URL} and {FOLDER}", thinking_type="route_planning")
            await run.text(NAME, "m1", URL + NAME, final=True, step_id="write")
            await run.activity(NAME, runstream.ActivityType.PROGRESS, URL, step_id="write")
            await run.metrics({NAME: 1})
            await run.alert(NAME, severity=runstream.Severity.HIGH, suggested_action=NAME)
            ask = asyncio.create_task(
                run.ask(
                    f"Which file leads? {FOLDER}",
                    [
                        ("bold", NAME + "_bold.txt"),
                        ("calm", NAME + "_calm.txt"),
                    ],
                    context={"source": URL, NAME: NAME},
                    timeout=300,
                )
            )
            await page.goto(web.run_url(run.run_id))
            await page.wait("document.querySelectorAll('.decision .options .option').length === 2")
            await page.wait("document.querySelector('.output-text')?.textContent.length > 0")
            await page.wait(run_view_is("WAITING_FOR_INPUT"))
            for name, width, height in (("phone", 375, 812), ("desktop", 1440, 900)):
                await page.call("viewport", width=width, height=height)
                await page.screenshot(f"{name}-long-text.png")
                assert await page.eval(OVERFLOWING) == [], name
                assert await page.eval(
                    "document.documentElement.scrollWidth <= window.innerWidth"
                ), name
                # Each option shows its whole label, so the two differ on screen where they
                # differ: at the end.
                shown = await page.eval(
                    "[...document.querySelectorAll('.decision .option')].map((b) => {"
                    " const label = b.querySelector('.option-label');"
                    " const box = b.getBoundingClientRect();"
                    " return label.scrollWidth <= label.clientWidth + 1"
                    "  && b.scrollWidth <= b.clientWidth + 1"
                    "  && b.scrollHeight <= b.clientHeight + 1"
                    "  && box.left >= 0 && box.right <= window.innerWidth + 1"
                    "  && b.innerText.trim() === label.textContent; })"
                )
                assert shown == [True, True], name
            await page.call("viewport", width=375, height=812)
            await page.click('.decision .option[data-choice="calm"]')
            result = await asyncio.wait_for(ask, 20)
            assert result.choice == "calm"
        await run.complete()
        await run.close()
        assert await page.errors() == []


async def test_six_agents_writing_at_once_each_show_their_whole_text(
    server: RunstreamServer, web: Web
) -> None:
    """A fan-out of writers (six judges scoring at once): each message keeps every word,
    live and once written. The page kept four messages and showed three, so with five or
    more writers each new word of one pushed out another, whose next word came back alone."""
    writers = [f"judge-{n}" for n in range(6)]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("council")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        for word in range(12):
            for agent in writers:
                await run.text(agent, f"{agent}-verdict", f"{agent}:w{word} ", final=word == 11)
            await run.flush()
        whole = {
            f"{agent}-verdict": "".join(f"{agent}:w{n} " for n in range(12)) for agent in writers
        }
        shown = (
            "Object.fromEntries([...document.querySelectorAll('.output')]"
            ".map((el) => [el.dataset.messageId, el.querySelector('.output-text').textContent]))"
        )
        await page.wait(f"Object.keys({shown}).length === 6")
        await page.wait(
            "[...document.querySelectorAll('.output')].every((el) => el.dataset.final === 'true')"
        )
        texts = await page.eval(shown)
        assert {k: v.strip() for k, v in texts.items()} == {k: v.strip() for k, v in whole.items()}
        await run.complete()
        await run.close()
        assert await page.errors() == []


def deltas(agent: str, message: str, pieces: list[str], final: bool = True) -> list[ev.RunEvent]:
    """A message's text deltas, the last one final unless `final` is False."""
    return [
        ev.RunEvent(
            text_delta=ev.TextDelta(
                agent_id=agent,
                message_id=message,
                delta=piece,
                final=final and n == len(pieces) - 1,
            )
        )
        for n, piece in enumerate(pieces)
    ]


async def run_of(client: runstream.Client, run_id: str, *parts: list[ev.RunEvent]) -> list[int]:
    """A started run holding the events of each part in turn, appended 1,000 at a time;
    returns the seq of each part's first event."""
    await client.raw_run_service.CreateRun(rs.CreateRunRequest(workflow="writers", run_id=run_id))
    started = [ev.RunEvent(run_started=ev.RunStarted())]
    firsts = []
    for part in (started, *parts):
        for start in range(0, len(part), 1000):
            request = rp.AppendEventsRequest(run_id=run_id, events=part[start : start + 1000])
            reply = await client.raw_report_service.AppendEvents(request)
            if start == 0:
                firsts.append(reply.events[0].seq)
    return firsts[1:]


OUTPUTS = """Object.fromEntries([...document.querySelectorAll('.output')].map((el) => [
  el.dataset.messageId,
  [el.querySelector('.output-text').textContent, el.querySelector('.output-state').textContent,
   el.dataset.partial],
]))"""


async def outputs_become(page: Browser, expected: dict[str, list[str]]) -> None:
    """Waits until the output panel shows `expected` (message id: its text, its state, and
    whether it is marked partial); fails saying what it shows otherwise."""
    want = json.dumps(json.dumps(expected))
    with contextlib.suppress(BrowserError):
        await page.wait(
            f"(() => {{ const want = JSON.parse({want}); const got = {OUTPUTS};"
            " return Object.keys(got).length === Object.keys(want).length"
            " && Object.keys(want).every((k) =>"
            " JSON.stringify(got[k]) === JSON.stringify(want[k])); })()"
        )
    assert await page.eval(OUTPUTS) == expected


async def test_a_message_begun_before_the_replayed_events_shows_its_start_or_where_it_begins(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a long run's page replays its newest 200 events, so a message begun
    before them showed from the middle (54 of 2,761 characters), marked "done" like a whole
    one, and a message past 6,000 characters lost its beginning without a sign. The page now
    reads the start back (two ListEvents calls at most); a message still lacking it, or cut
    at 6,000 characters, shows "…" in front and where its text begins, as the CLI's
    "from #N on"."""
    whole = [f"w{n} " for n in range(240)]
    fresh = [f"f{n} " for n in range(20)]
    big = [f"{n:03d}:" + "x" * 96 + "\n" for n in range(70)]  # 7,000 characters
    tail = [f"t{n} " for n in range(41)]
    noise = [f"n{n} " for n in range(2500)]
    view = "document.querySelector('#run-view')"
    async with runstream.connect(server.target) as client:
        # 332 events: the replayed 200 begin inside "whole", and the 60 deltas before them
        # are read back to the run's start.
        await run_of(
            client,
            "read-back",
            deltas("scribe", "whole", whole),
            deltas("scribe", "fresh", fresh),
            deltas("scribe", "big", big),
        )
        async with browser() as page:
            await page.goto(web.run_url("read-back"))
            await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === 332")
            await outputs_become(
                page,
                {
                    "whole": ["".join(whole), "done", "false"],
                    "fresh": ["".join(fresh), "done", "false"],
                    "big": [
                        "\N{HORIZONTAL ELLIPSIS}" + "".join(big)[-6000:],
                        "done \N{MIDDLE DOT} last 6,000 characters",
                        "true",
                    ],
                },
            )
            assert await page.errors() == []
        # "tail" begins 2,500 deltas before the replayed events: past what the page reads.
        _, _, resumed = await run_of(
            client,
            "too-far",
            deltas("scribe", "tail", tail[:1], final=False),
            deltas("noisy", "noise", noise),
            deltas("scribe", "tail", tail[1:], final=False),
        )
        async with browser() as page:
            await page.goto(web.run_url("too-far"))
            await page.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {resumed + 39}")
            await outputs_become(
                page,
                {
                    "tail": [
                        "\N{HORIZONTAL ELLIPSIS}" + "".join(tail[1:]),
                        f"writing\N{HORIZONTAL ELLIPSIS} \N{MIDDLE DOT} from #{resumed} on",
                        "true",
                    ],
                    "noise": [
                        "\N{HORIZONTAL ELLIPSIS}" + "".join(noise)[-6000:],
                        "done \N{MIDDLE DOT} last 6,000 characters",
                        "true",
                    ],
                },
            )
            # The three panels and the feed read a page each; the text two pages of 1,000,
            # not the three back to the run's start.
            for _ in range(100):
                if await page.calls(LIST_EVENTS) >= 6:
                    break
                await asyncio.sleep(0.05)
            assert await page.errors() == []
            assert await page.calls(LIST_EVENTS) == 6


async def test_a_browser_clock_minutes_off_the_servers_still_reads_a_deadline_right(
    server: RunstreamServer, web: Web
) -> None:
    """With the browser's clock 3 minutes fast, an open decision with two minutes left read
    "closes in 0 ms" and the elapsed time was 3 minutes long (found in review): the page
    takes the server's clock from its streams' heartbeats."""
    async with runstream.connect(server.target) as client, browser() as page:
        await page.call("skew", seconds=180)
        run = await client.start_run("launch")
        ask = asyncio.create_task(run.ask("Which headline?", ["bold", "calm"], timeout=120))
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("WAITING_FOR_INPUT"))
        # Once a heartbeat came (the idle streams send one every 10 s): about 2 minutes.
        deadline = "document.querySelector('.decision-deadline')?.textContent ?? ''"
        await page.wait(f"/closes in 1 m [0-9]+ s/.test({deadline})", within=30)
        elapsed = await page.eval("document.querySelector('.run-view .elapsed').textContent")
        assert " m " not in elapsed, elapsed  # seconds, not 3 minutes
        ask.cancel()
        await run.complete()
        await run.close()
        assert await page.errors() == []


async def test_the_home_page_and_an_etaless_run_say_what_is_so(
    server: RunstreamServer, web: Web
) -> None:
    """The home page said "No runs yet?" under a list of runs, and a run whose workflow has
    no history said "ETA estimating…" for as long as it ran, where the server says nothing
    rather than guess and the CLI says "unknown" (found in review)."""
    async with runstream.connect(server.target) as client, browser() as page:
        await page.goto(web.page.url)
        hint = "document.querySelector('.overview .hint')"
        await page.wait(f"{hint} !== null && !{hint}.hidden")  # no runs at all: the hint
        run = await client.start_run("first-of-its-kind", steps=["a"])
        await run.flush()
        await page.wait(f"document.querySelector('.overview-runs li') !== null && {hint}.hidden")
        await page.goto(web.run_url(run.run_id))
        await page.wait(run_view_is("RUNNING"))
        eta = "document.querySelector('.run-view .eta').textContent"
        await page.wait(f"{eta} === 'ETA unknown (no history yet)'")
        await run.complete()
        await run.close()
        assert await page.errors() == []


FLAGS = "[...document.querySelectorAll('.pipeline li')].map((e) => [e.innerText, e.dataset.done])"


async def test_a_runs_pipeline_flags_show_live_and_from_before_the_replayed_events(
    server: RunstreamServer, web: Web
) -> None:
    """The manager reference sends its pipeline's flags (`pipeline_status`, "files_processed":
    true) with its workflow state changes; the page showed the phases and left them out
    (found in review, parity52). By name, as a map has no order; the newest change that
    gives flags is shown, one that gives none leaves them, and a page opened after them, past
    the replayed events, reads them back."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("estimate")
        await run.workflow_state(
            "phase_transition",
            current_stage="Intake",
            stages=("Intake", "Mapping"),
            pipeline_status={"files_processed": True, "trades_mapped": False},
        )
        await run.flush()
        await page.goto(web.run_url(run.run_id))
        await page.wait("!document.querySelector('.pipeline').hidden")
        assert await page.eval(FLAGS) == [
            ["\u2713\nfiles processed", "true"],
            ["\u25cb\ntrades mapped", "false"],
        ]
        await run.workflow_state(
            "phase_transition",
            current_stage="Mapping",
            pipeline_status={
                "trades_mapped": True,
                "export_ready": False,
                "files_processed": True,
                "QA_passed": False,  # names as given, in code point order as the CLI has them
            },
        )
        # No flags: they stay. These list the stages, so a page reading back from the
        # newest change has its phases in its first page and must read on for the flags.
        for _ in range(120):
            await run.workflow_state(
                "agents_changed", current_stage="Mapping", stages=("Intake", "Mapping")
            )
        for n in range(250):
            await run.custom("page", {"n": n})
        await run.flush()
        shown = [
            ["\u25cb\nQA passed", "false"],
            ["\u25cb\nexport ready", "false"],
            ["\u2713\nfiles processed", "true"],
            ["\u2713\ntrades mapped", "true"],
        ]
        head = (await client.get_run(run.run_id)).last_seq
        view = "document.querySelector('#run-view')"
        await page.wait(f"Number({view}.dataset.lastSeq) === {head}")
        assert await page.eval(FLAGS) == shown
        async with browser() as later:  # opens past the flags: the newest 200 events replayed
            await later.goto(web.run_url(run.run_id))
            await later.wait(f"{view} !== null && Number({view}.dataset.lastSeq) === {head}")
            await later.wait("!document.querySelector('.pipeline').hidden")
            assert await later.eval(FLAGS) == shown
            assert await later.errors() == []
        await run.complete()
        await run.close()
        assert await page.errors() == []
