"""Decisions on the run page, in real Chromium through real Envoy to a real server.

Answering one of many open decisions moves no card: each stays in the order asked and shows
its outcome in place, and focus goes on to the next open decision's first option, so a
second click, or a held Enter, cannot answer a question the person did not look at. A screen
reader names each card by its question and says it with each option; the progress bar and the
activity feed have names. An answer that came after someone else's shows the outcome that won,
with the option's label, and says it was not taken, also when the page heard of the winner
first; one that came after the run ended says that. A decision's context is listed by name,
six entries and how many more.
On a server without auth the answers go by the name given once on the page (kept for the
browser), and so does a pause; with a token, by the token's subject, and the page offers no name.
"""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream_server.app import RunstreamServer

from tests.clients.support import question
from tests.clients.test_decisions import open_decision

from .conftest import Web
from .test_browser import run_view_is
from .test_browser_sizes import LONG_RUN_EVENTS
from .web_support import Browser, browser

pytestmark = pytest.mark.timeout(180)

OPTIONS = [("approve", "Approve"), ("revise", "Send back for revision"), ("reject", "Reject")]
ORDER = "[...document.querySelectorAll('.decision')].map((d) => d.dataset.decisionId)"
TOPS = (
    "[...document.querySelectorAll('.decision')]"
    ".map((d) => d.getBoundingClientRect().top + window.scrollY)"
)
OUTCOMES = (
    "Object.fromEntries([...document.querySelectorAll('.decision')]"
    ".map((d) => [d.dataset.decisionId, d.querySelector('.decision-outcome').textContent]))"
)
FOCUSED_CARD = "document.activeElement.closest('[data-decision-id]')?.dataset.decisionId"


def option(decision: str, choice: str) -> str:
    return f'[data-decision-id="{decision}"] button[data-choice="{choice}"]'


def state(decision: str) -> str:
    return f"document.querySelector('[data-decision-id=\"{decision}\"]').dataset.state"


async def test_answering_one_of_many_decisions_moves_no_card_and_focus_goes_to_the_next(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: the card answered moved to the end of the list, the next one slid
    under the pointer and a second click answered it; an answer could leave the page
    unconfirmed, and keyboard focus fell back to the page's top."""
    ids = [f"d{n}" for n in range(5)]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        asks = {
            i: asyncio.create_task(run.ask(f"Approve asset {i}?", OPTIONS, decision_id=i))
            for i in ids
        }
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{ORDER}.length === 5 && {run_view_is('WAITING_FOR_INPUT')}")
        assert await page.eval(ORDER) == ids
        # The tab's title says how many questions are open, for a tab in the background.
        await page.wait("document.title === '(5) 0% \u00b7 review-board \u00b7 Runstream'")
        tops = await page.eval(TOPS)
        # Where the pointer is as it clicks d0's Reject.
        x, y = await page.eval(
            f"(() => {{ const box = document.querySelector('{option('d0', 'reject')}')"
            ".getBoundingClientRect(); return [box.x + box.width / 2, box.y + box.height / 2]; })()"
        )
        await page.click(option("d0", "reject"))
        assert (await asyncio.wait_for(asks["d0"], 20)).choice == "reject"
        await page.wait(f"{state('d0')} === 'resolved'")
        await page.wait("document.title.startsWith('(4) 0% ')")
        # Nothing moved: a second click at the same spot meets the answered card's button.
        assert await page.eval(ORDER) == ids
        assert await page.eval(TOPS) == tops
        under = await page.eval(
            f"(() => {{ const el = document.elementFromPoint({x}, {y}).closest('button');"
            " return [el.closest('[data-decision-id]').dataset.decisionId, el.dataset.choice,"
            " el.disabled]; })()"
        )
        assert under == ["d0", "reject", True]
        # Focus went on to the next open decision's first option: Enter answers it, and a
        # held Enter does not go on to answer the decision focus moves to next.
        await page.wait(f"{FOCUSED_CARD} === 'd1'")
        assert await page.eval("document.activeElement.dataset.choice") == "approve"
        await page.keydown("Enter")
        assert (await asyncio.wait_for(asks["d1"], 20)).choice == "approve"
        await page.wait(f"{FOCUSED_CARD} === 'd2'")
        await page.keydown("Enter")  # repeats
        await page.keyup("Enter")
        two_frames = "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        await page.eval(two_frames)
        assert await page.eval(state("d2")) == "open"
        # Answered out of order, each answer stays in sight with its outcome, where it was.
        for decision in ("d4", "d3"):
            await page.click(option(decision, "revise"))
            await asyncio.wait_for(asks[decision], 20)
            await page.wait(f"{state(decision)} === 'resolved'")
        assert await page.eval(ORDER) == ids
        assert await page.eval(TOPS) == tops
        assert await page.eval(OUTCOMES) == {
            "d0": "Answered \u201cReject\u201d by dashboard",
            "d1": "Answered \u201cApprove\u201d by dashboard",
            "d2": "",
            "d3": "Answered \u201cSend back for revision\u201d by dashboard",
            "d4": "Answered \u201cSend back for revision\u201d by dashboard",
        }
        await page.screenshot("decisions-answered-in-place.png", full_page=False)
        # Once none is open, the two answered last stay.
        await page.click(option("d2", "approve"))
        await asyncio.wait_for(asks["d2"], 20)
        await page.wait(f"{ORDER}.join() === 'd2,d3'")
        await page.wait("document.title === '0% \u00b7 review-board \u00b7 Runstream'")
        await run.close()
        assert await page.errors() == []


async def test_decisions_and_panels_have_names_a_screen_reader_says(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: 30 cards read "Input needed" with "Approve" x30 and nothing tying a
    button to its question; the progress bar and the activity feed had no name."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        asks = [
            asyncio.create_task(run.ask(f"Approve asset {i}?", OPTIONS, decision_id=i))
            for i in ("d0", "d1")
        ]
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{ORDER}.length === 2")
        for i in ("d0", "d1"):
            question = f"Approve asset {i}?"
            card = await page.accessible(f'[data-decision-id="{i}"]')
            assert (card["role"], card["name"]) == ("group", question)
            said = await page.accessible(option(i, "approve"))
            assert said == {"role": "button", "name": "Approve", "description": question}
        progress = await page.accessible(".progress")
        assert (progress["role"], progress["name"]) == ("progressbar", "Run progress")
        assert (await page.accessible(".feed"))["name"] == "Activity"
        # Two people answer at once and the other's answer is taken first: the page hears of
        # it on its watch before its own answer is refused, and still says it was not taken.
        # (Found in review: the card showed the winner alone, as if this click had agreed.)
        submit = "runstream.v1.DecisionService/SubmitDecision"
        await page.hold(submit)
        await page.click(option("d0", "reject"))
        await page.wait(f"{state('d0')} === 'submitting'")
        await client.submit_decision(run.run_id, "d0", "approve", answered_by="dana")
        d0 = "document.querySelector('[data-decision-id=\"d0\"]')"
        winner = "Answered \u201cApprove\u201d by dana"
        await page.wait(f"{d0}.querySelector('.decision-outcome').textContent === '{winner}'")
        await page.release(submit)
        await page.wait(
            f"{d0}.querySelector('.decision-error').textContent"
            " === 'Your answer was not taken: the decision was already closed.'"
        )
        assert await page.eval(f"{d0}.querySelector('.decision-outcome').textContent") == winner
        await asks[0]
        # The run ends while this page's answer is on its way: said as the lost race is
        # (found in review: the server's "run '94b1c4a1…' already ended (CANCELLED); ...").
        await page.hold(submit)
        await page.click(option("d1", "reject"))
        await page.wait(f"{state('d1')} === 'submitting'")
        await client.cancel_run(run.run_id, cancelled_by="dana")
        await page.wait(run_view_is("CANCELLED"))
        await page.release(submit)
        d1_error = "document.querySelector('[data-decision-id=\"d1\"] .decision-error')"
        await page.wait(
            f"{d1_error}.textContent === 'Your answer was not taken: the run had ended.'"
        )
        with pytest.raises(runstream.RunstreamError):
            await asks[1]
        await run.close()
        assert await page.errors() == []


async def test_an_answer_that_came_too_late_shows_what_the_decision_was_closed_with(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: a decision answered elsewhere before the page heard of it read
    "Decision made", "Answered" (as if this answer was taken) and the server's "Already
    decided: ... ANSWERED with 'revise' by alice", a value the page never showed. One whose
    deadline passed before the page heard of its closing says so."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"], linger=0.05)
        for n in range(LONG_RUN_EVENTS + 10):
            await run.custom("page", {"n": n})
        asking = asyncio.create_task(run.ask("Approve asset d0?", OPTIONS, decision_id="d0"))
        await open_decision(client, run.run_id, "d0")
        later = asyncio.create_task(
            run.ask("Approve asset d1?", OPTIONS, default="revise", timeout=600, decision_id="d1")
        )
        await open_decision(client, run.run_id, "d1")
        # A long run opens from its snapshot, open decisions and all; with its watch
        # refused, the page hears of nothing after that.
        await page.unimplemented("runstream.v1.RunService/WatchRun")
        await page.call("skew", seconds=0)  # the page's clock is the test's
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{state('d0')} === 'open'")
        await client.submit_decision(run.run_id, "d0", "revise", answered_by="alice")
        await page.click(option("d0", "reject"))
        await page.wait(f"{state('d0')} === 'resolved'")
        card = "document.querySelector('[data-decision-id=\"d0\"]')"
        said = await page.eval(
            f"[{card}.querySelector('.decision-outcome').textContent,"
            f" {card}.querySelector('.decision-error').textContent]"
        )
        assert said == [
            "Answered \u201cSend back for revision\u201d by alice",
            "Your answer was not taken: the decision was already closed.",
        ]
        assert (await asyncio.wait_for(asking, 20)).choice == "revise"
        # Past a deadline, the page not hearing from the server: no countdown stands at
        # "closes in 0 ms" (found in review: it did, for as long as the link was lost).
        await page.fastforward(601)
        deadline = "document.querySelector('[data-decision-id=\"d1\"] .decision-deadline')"
        await page.wait(
            f"{deadline}.textContent"
            " === 'deadline passed: closing with \u201cSend back for revision\u201d'"
        )
        later.cancel()
        await run.close()


async def test_a_long_run_opens_with_every_open_decision_past_get_runs_budget(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: GetRun holds the open decisions its 512 KiB budget has room for, and
    a long run's page, which opens from that snapshot, showed 2 of the run's 3 questions."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", linger=0.05)
        await run.flush()
        for decision_id in ("q0", "q1", "q2"):
            await client.raw_report_service.AppendEvents(
                question(run.run_id, decision_id, large=True)
            )
        for n in range(LONG_RUN_EVENTS + 10):  # the questions before the events replayed
            await run.custom("page", {"n": n})
        await run.flush()
        await page.unimplemented("runstream.v1.RunService/WatchRun")  # the snapshot alone
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{state('q0')} === 'open'")
        await page.wait(f"{ORDER}.join() === 'q0,q1,q2'")
        await run.close()
        assert await page.errors() == []


async def test_a_decisions_context_is_listed_by_name_with_how_many_more(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: nine keys showed six, in the order given, with no "+3 more"; the
    CLI lists them by name."""
    names = ["zeta", "theta", "sigma", "omega", "kappa", "gamma", "delta", "beta", "alpha"]
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        context = {name: n for n, name in enumerate(names)}
        asking = asyncio.create_task(
            run.ask("Pick one", ["a", "b"], context=context, decision_id="q1")
        )
        await page.goto(web.run_url(run.run_id))
        await page.wait("document.querySelectorAll('.decision-context li').length > 0")
        listed = await page.eval(
            "[...document.querySelectorAll('.decision-context li')].map((li) => li.textContent)"
        )
        assert listed == [
            "Alpha 8",
            "Beta 7",
            "Delta 6",
            "Gamma 5",
            "Kappa 4",
            "Omega 3",
            "+3 more",
        ]
        await client.submit_decision(run.run_id, "q1", "a", answered_by="dana")
        await asyncio.wait_for(asking, 20)
        await run.close()


NAME_NOTE = "document.querySelector('.answer-as-note').textContent"


async def type_name(page: Browser, name: str) -> None:
    """Types a name into the page's "Answering as" field, key by key, as its user would."""
    await page.click("#answer-name")
    for key in name:
        await page.press(key)


async def test_answers_go_by_the_name_given_once_on_the_page(
    server: RunstreamServer, web: Web
) -> None:
    """Found in review: on a server without auth every answer from the browser was recorded
    "by dashboard" (the CLI has --by and $RUNSTREAM_USER), so a team lost its audit trail.
    A name given once is kept for the browser and sent with each answer."""
    async with runstream.connect(server.target) as client, browser() as page:
        run = await client.start_run("review-board", steps=["review"])
        first = asyncio.create_task(run.ask("Approve asset d0?", OPTIONS, decision_id="d0"))
        await page.goto(web.run_url(run.run_id))
        await page.wait(f"{state('d0')} === 'open'")
        assert await page.eval(NAME_NOTE) == "(recorded as \u201cdashboard\u201d)"
        await type_name(page, "ana.lima")
        await page.click(option("d0", "approve"))
        result = await asyncio.wait_for(first, 20)
        assert (result.choice, result.answered_by) == ("approve", "ana.lima")
        await page.wait(f"{state('d0')} === 'resolved'")
        outcome = "document.querySelector('[data-decision-id=\"d0\"] .decision-outcome')"
        assert (
            await page.eval(f"{outcome}.textContent") == "Answered \u201cApprove\u201d by ana.lima"
        )
        # Opened again later, the page still knows the name: the next answer goes by it too.
        second = asyncio.create_task(run.ask("Approve asset d1?", OPTIONS, decision_id="d1"))
        await open_decision(client, run.run_id, "d1")
        await page.call("goto", url=web.run_url(run.run_id))
        await page.wait(f"{state('d1')} === 'open'")
        assert await page.eval("document.querySelector('#answer-name').value") == "ana.lima"
        assert await page.eval(NAME_NOTE) == ""
        await page.screenshot("decision-answering-as.png", full_page=False)
        await page.click(option("d1", "reject"))
        assert (await asyncio.wait_for(second, 20)).answered_by == "ana.lima"
        # So does a pause from the page.
        await page.click('.controls [data-action="pause"]')
        await page.wait(run_view_is("PAUSED"))
        kinds = [runstream.EventKind.RUN_STATUS_CHANGED]
        changes = [e async for e in client.list_events(run.run_id, kinds=kinds)]
        assert changes[-1].payload.changed_by == "ana.lima"
        await run.close()
        assert await page.errors() == []
