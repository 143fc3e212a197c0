"""Parts of `runstream watch`'s live view that no test looked at (found by the mutation audit
mu68g): the header's ETA range, whose estimate it is, the watchers and the events; a
question's keys past nine options, its skip key, the questions waiting behind it and what
became of an answer; the steps before and after the compact layout's window; what an active
agent is doing when it says nothing itself; how long a running step has run; the compact
layout on a short terminal, no agent column on a narrow one, a run counted in items; no ETA
or lost connection once a run ended; a failed step and a running step's sub-step in the
compact window; a prompt's default and what its deadline does; a skipped step's full bar and
its and a pending step's blank percent."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import runstream
from rich.console import Console
from runstream.cli.render import LOST_AFTER, Dashboard
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, run_pb2

from tests.e2e.test_cli_watchers import draw, event, open_prompt, snapshot


def producers_estimate() -> run_pb2.Estimate:
    """Two minutes left, likely between 1:40 and 2:20, as the producer said."""
    estimate = run_pb2.Estimate(source=run_pb2.ESTIMATE_SOURCE_PRODUCER)
    estimate.remaining.FromSeconds(120)
    estimate.remaining_low.FromSeconds(100)
    estimate.remaining_high.FromSeconds(140)
    estimate.end_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=120))
    return estimate


def test_the_header_says_the_eta_range_whose_estimate_who_watches_and_the_events() -> None:
    view = RunView.from_snapshot(
        snapshot(estimate=producers_estimate(), viewer_count=3, last_seq=42)
    )
    view.apply(event(45, alert=event_pb2.Alert(message="slow")))  # newer than the snapshot
    for width, height in ((160, 50), (80, 24)):
        screen = draw(view, width, height)
        assert " (01:3" in screen and "-02:1" in screen and "producer's" in screen, screen
    header = draw(view, 160, 50).splitlines()[2]
    assert "👁 3" in header and "events 45" in header, header


def test_a_question_of_many_options_numbers_nine_and_offers_its_skip() -> None:
    view = RunView.from_snapshot(snapshot())
    options = tuple(runstream.DecisionOption(f"tier-{n}") for n in range(1, 12))
    view.prompts["tier"] = open_prompt(decision_id="tier", options=options, can_skip=True)
    view.prompts["later"] = open_prompt(decision_id="later")
    view.answer_feedback = ("tier-3 sent; waiting for the run", "green")
    for width, height in ((160, 50), (80, 24)):
        lines = [line.strip("│ ") for line in draw(view, width, height).splitlines()]
        assert "[9] tier-9" in lines and "tier-10" in lines and "tier-11" in lines, lines
        assert "[s] skip" in lines, lines
        assert any(line.endswith("(+1 more waiting)") for line in lines), lines
        assert "tier-3 sent; waiting for the run" in lines, lines
    console = Console(width=160, height=50, record=True, color_system=None)
    console.print(Dashboard(view, interactive=True))
    assert "press 1-9 to answer, s to skip" in console.export_text()


def test_the_compact_layout_counts_the_steps_before_and_after_its_window() -> None:
    screen = draw(RunView.from_snapshot(snapshot()), 80, 16)
    assert "✔ 5 earlier" in screen and "○ 4 more" in screen, screen  # 5 + 8 shown + 4


def test_an_agent_that_says_nothing_shows_its_step_and_a_running_step_its_time() -> None:
    run = snapshot()
    agent = runstream.ActiveAgent("a1", "Planner", "", "s8", "", None)
    steps = list(run.steps)
    steps[8] = dataclasses.replace(steps[8], start_time=datetime.now(UTC) - timedelta(seconds=75))
    view = RunView.from_snapshot(dataclasses.replace(run, active_agents=[agent], steps=steps))
    screen = draw(view, 160, 50)
    assert re.search(r"Planner\s+Step 8\s", screen), screen
    step = next(line for line in screen.splitlines() if "Step 8 " in line)
    assert "1m 15s" in step, step


def test_a_short_terminal_gets_the_compact_layout_and_a_narrow_one_no_agent_column() -> None:
    run = snapshot()
    steps = list(run.steps)
    steps[9] = dataclasses.replace(steps[9], agent="copywriter")
    view = RunView.from_snapshot(dataclasses.replace(run, steps=steps))
    short = draw(view, 160, 24)
    assert short.startswith("Spring launch  ● RUNNING") and "╭─ Steps" not in short, short
    for width, agents in ((120, False), (160, True)):
        row = next(line for line in draw(view, width, 50).splitlines() if "Step 9 " in line)
        assert ("copyw" in row) is agents, (width, row)  # cut to "copywri…" if squeezed


def test_a_run_counted_in_items_says_its_count_not_its_steps() -> None:
    counted = run_pb2.Run(run_id="r2", workflow="discovery", status=run_pb2.RUN_STATUS_RUNNING)
    counted.progress.percent = 60
    counted.progress.items.completed, counted.progress.items.total = 15, 25
    counted.progress.items.unit = "companies"
    view = RunView.from_snapshot(runstream._convert.run_from_pb(counted))
    for width, height in ((160, 50), (80, 24)):
        screen = draw(view, width, height)
        assert "60%  15 of 25 companies" in screen and "/0 steps" not in screen, screen


def test_a_run_that_ended_shows_no_eta_and_no_lost_connection() -> None:
    """Its last frame stays on screen: an ETA or "connection lost" there would be wrong."""
    view = RunView.from_snapshot(snapshot(status=run_pb2.RUN_STATUS_FAILED))
    view.heard()
    view.last_heard -= LOST_AFTER + 1
    view.last_heard_at -= timedelta(seconds=LOST_AFTER + 1)
    for width, height in ((160, 50), (80, 24)):
        screen = draw(view, width, height)
        assert "ETA" not in screen and "connection lost" not in screen, screen


def test_the_compact_layout_keeps_a_failed_step_and_what_a_running_one_does_in_view() -> None:
    run = snapshot()
    # Step 3 failed, 4 to 11 went on and succeeded, 12 to 16 wait: nothing runs.
    steps = [
        dataclasses.replace(step, status=runstream.StepStatus.SUCCEEDED if i < 12 else step.status)
        for i, step in enumerate(run.steps)
    ]
    steps[3] = dataclasses.replace(steps[3], status=runstream.StepStatus.FAILED)
    failed = draw(RunView.from_snapshot(dataclasses.replace(run, steps=steps)), 80, 16)
    assert "✖  Step 3" in failed, failed
    view = RunView.from_snapshot(run)
    view.steps["s8"].sub_step = "crawling pricing pages"
    assert "Step 8  crawling pricing pages" in draw(view, 80, 16)


def test_a_prompt_marks_its_default_and_says_what_its_deadline_does() -> None:
    deadline = datetime.now(UTC) + timedelta(minutes=4, seconds=30)
    view = RunView.from_snapshot(snapshot())
    view.prompts["persona"] = open_prompt(deadline=deadline)  # "a", the default
    screen = draw(view, 160, 50)
    assert "[1] a  (default)" in screen and "default in 4m" in screen, screen
    view.prompts["persona"] = open_prompt(deadline=deadline, default_option="")
    assert "closes in 4m" in draw(view, 160, 50)


def test_a_skipped_steps_bar_is_full_and_it_and_a_pending_step_say_no_percent() -> None:
    view = RunView.from_snapshot(snapshot())
    view.steps["s9"].status = "SKIPPED"
    rows = {line.split()[3]: line for line in draw(view, 160, 50).splitlines() if "Step " in line}
    assert "━" * 10 in rows["9"], rows["9"]
    assert "%" not in rows["9"], rows["9"]  # not "0%" beside a bar that is full
    assert "%" not in rows["10"], rows["10"]
