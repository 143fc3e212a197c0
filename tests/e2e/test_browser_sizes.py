"""The dashboard on a phone, a tablet and a desktop, in real Chromium through real Envoy.

At 390x844 (a phone), 768x1024 (a tablet) and 1440x900: no element is wider than the
viewport, the percent, ETA, Live badge and the decision's buttons are inside it, the run list
is reachable, and a decision is answered by tapping. Operators pause, resume and cancel from
the page; a long run opens from its snapshot and loads older history on demand; a run counted
in items shows its counter; paths, URLs and identifiers with nowhere to break wrap at 375 px
and keep a decision's options apart. Screenshots of each go to test-artifacts/.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream import StepSpec
from runstream_server.app import RunstreamServer

from .conftest import Web
from .test_browser import run_view_is
from .web_support import browser

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
            assert max(older) <= head - 200 and len(set(older)) == len(older)
            await page.screenshot("long-run-older-history.png", full_page=False)
        await run.complete()
        await run.close()
        assert await page.errors() == []


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
