"""What the tables of `runstream runs`, `steps`, `get` and `decisions` say of each part of a
run, a step and a question, as a person reads them on a wide terminal (no colour)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from runstream._convert import decision_from_pb, event_from_pb, run_from_pb
from runstream.cli.tables import decisions_table, run_details, runs_table, steps_table
from runstream.cli.view import RunView
from runstream.v1 import decision_pb2, event_pb2, run_pb2

NOW = datetime.now(UTC)
"""The time the tables are read at: each test's own start (set by :func:`read_now`), so the
runs' elapsed times and deadlines are as old as the test says, however long after the
module's import the test runs (minutes, under a busy pytest-xdist worker)."""


@pytest.fixture(autouse=True)
def read_now() -> None:
    global NOW
    NOW = datetime.now(UTC)


def shown(renderable: RenderableType, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def cells(table: Table, header: str) -> list[str]:
    """What the column under ``header`` shows, row by row (not there: a narrow table)."""
    column = next(column for column in table.columns if column.header == header)
    return [cell.plain if isinstance(cell, Text) else str(cell) for cell in column.cells]


def a_run(run_id: str = "r1", **fields: object) -> run_pb2.Run:
    fields.setdefault("status", run_pb2.RUN_STATUS_RUNNING)
    fields.setdefault("health", run_pb2.RUN_HEALTH_HEALTHY)
    run = run_pb2.Run(run_id=run_id, workflow="campaign", **fields)  # type: ignore[arg-type]
    run.create_time.FromDatetime(NOW - timedelta(minutes=3))
    run.start_time.FromDatetime(NOW - timedelta(minutes=2))
    return run


def with_estimate(run: run_pb2.Run, seconds: int) -> run_pb2.Run:
    run.estimate.remaining.FromSeconds(seconds)
    run.estimate.end_time.FromDatetime(NOW + timedelta(seconds=seconds))
    return run


def test_runs_names_only_a_name_unlike_the_workflow_and_counts_what_the_run_counts() -> None:
    same = a_run("same", display_name="campaign", viewer_count=3)
    named = a_run("named", display_name="Spring launch")
    items = a_run("items")
    items.progress.percent = 40
    items.progress.items.completed = 12
    items.progress.items.total = 30
    open_ended = a_run("open")
    open_ended.progress.items.completed = 7
    planned = a_run("planned")
    planned.progress.items.completed = 7
    planned.progress.completed_steps = 1
    planned.progress.total_steps = 4
    table = runs_table([run_from_pb(r) for r in (same, named, items, open_ended, planned)])
    assert cells(table, "NAME")[:2] == ["", "Spring launch"]
    # Counted in items when it has no plan (not "0/0" steps; without a total, no "/0").
    assert cells(table, "PROGRESS")[2:] == ["40%  12/30", "0%  7", "0%  1/4"]


def test_runs_shows_viewers_only_when_there_are_some_and_an_eta_only_while_running() -> None:
    watched = with_estimate(a_run("watched", viewer_count=3), 130)
    alone = with_estimate(a_run("alone"), 130)
    ended = with_estimate(a_run("ended", status=run_pb2.RUN_STATUS_SUCCEEDED), 130)
    ended.end_time.FromDatetime(NOW)
    hours = with_estimate(a_run("hours"), 7300)
    table = runs_table([run_from_pb(r) for r in (watched, alone, ended, hours)])
    assert cells(table, "👁") == ["3", "", "", ""]  # not "0"
    eta = cells(table, "ETA")
    assert re.fullmatch(r"0[12]:\d\d", eta[0]) and eta[2] == "", eta
    assert re.fullmatch(r"2:01:\d\d", eta[3]), eta  # not "121:40"


def test_steps_says_what_each_step_is_doing_or_came_to_by_its_status() -> None:
    run = a_run()
    draft = run.steps.add(step_id="draft", name="Draft", status=run_pb2.STEP_STATUS_RUNNING)
    draft.description = "Writes the copy"
    draft.start_time.FromDatetime(NOW - timedelta(seconds=90))
    draft.percent, draft.attempts = 40, 2
    draft.sub_step, draft.detail = "outline", "writing"
    draft.sub_step_details.operation, draft.sub_step_details.model = "calling_model", "m1"
    draft.artifacts.add(artifact_id="x1")
    draft.artifacts.add(artifact_id="x2")
    plan = run.steps.add(step_id="plan", name="Plan", status=run_pb2.STEP_STATUS_SUCCEEDED)
    plan.start_time.FromDatetime(NOW - timedelta(seconds=100))
    plan.end_time.FromDatetime(NOW - timedelta(seconds=90))
    plan.duration.FromSeconds(10)
    plan.percent, plan.attempts, plan.summary, plan.sub_step = 100, 1, "3 ideas", "ranking"
    plan.sub_step_details.model = "m0"
    plan.artifacts.add(artifact_id="x3")
    fetch = run.steps.add(step_id="fetch", name="Fetch", status=run_pb2.STEP_STATUS_FAILED)
    fetch.error.message = "the API timed out"
    review = run.steps.add(step_id="review", name="Review", status=run_pb2.STEP_STATUS_SKIPPED)
    review.skip_reason = "not needed"
    table = steps_table(run_from_pb(run).steps)
    assert cells(table, "NAME") == ["Draft\nWrites the copy", "Plan", "Fetch", "Review"]
    assert cells(table, "%") == ["40%", "100%", "0%", ""]  # a skipped step did nothing
    assert cells(table, "DURATION")[:2] == ["1m 30s", "10.0s"]  # running: so far
    assert cells(table, "DETAIL") == [
        "outline — writing — calling model — m1 (attempt 2) [2 artifacts]",
        "3 ideas [1 artifact]",  # what it came to, not its last sub-step
        "the API timed out",
        "not needed",
    ]


def details_of(run: run_pb2.Run, *open_decisions: decision_pb2.Decision) -> str:
    decisions = [decision_from_pb(d) for d in open_decisions]
    return shown(run_details(run_from_pb(run), 200, decisions))


def line_of(text: str, label: str) -> str:
    """What `get` says beside ``label`` (the panel's border and padding left out)."""
    found = re.search(rf"│ {label}  +(.*?) *│", text)
    assert found is not None, (label, text)
    return found[1]


def test_get_says_each_part_of_a_run_that_ran_into_trouble() -> None:
    run = a_run(health=run_pb2.RUN_HEALTH_DEGRADED, health_reason="no event for 5m")
    run.labels["team"] = "ads"
    run.labels["env"] = "prod"
    run.progress.percent = 40
    run.progress.items.completed, run.progress.items.total = 12, 30
    run.progress.items.unit = "companies"
    run.progress.items.by_stage["fetched"] = 12
    run.steps.add(step_id="draft", name="Draft", status=run_pb2.STEP_STATUS_RUNNING)
    run.current_step_id = "draft"
    run.active_agents.add(agent_id="a1", name="Writer")
    run.active_agents.add(agent_id="a2")
    run.last_seq, run.purged_seq = 40, 10
    run.targets.add(metric="clicks", value=500)
    run.metrics["clicks"] = 500
    run.artifacts_summary.total = 3
    run.artifacts_summary.by_kind.update({"image": 2, "doc": 1})
    text = details_of(with_estimate(run, 130))
    assert line_of(text, "Labels") == "env=prod, team=ads"
    assert line_of(text, "Health") == "DEGRADED  no event for 5m"
    assert line_of(text, "Estimate").startswith("~2m 09s left")
    assert line_of(text, "Progress") == "40%  (12 of 30 companies; fetched 12)"
    assert line_of(text, "Current step") == "Draft (draft)"
    assert line_of(text, "Active agents") == "Writer, a2"
    assert line_of(text, "Events") == "40 (1..10 purged by retention)"
    assert line_of(text, "Targets") == "clicks: 500/500 ✔"  # reached at equality
    assert line_of(text, "Artifacts") == "3 (doc 1, image 2)"


def test_get_says_how_an_ended_run_ended_and_no_estimate() -> None:
    failed = with_estimate(a_run(status=run_pb2.RUN_STATUS_FAILED), 130)
    failed.error.code, failed.error.message = "RATE_LIMIT", "too many calls"
    failed.steps.add(step_id="draft", name="draft", status=run_pb2.STEP_STATUS_FAILED)
    failed.current_step_id = "draft"
    text = details_of(failed)
    assert line_of(text, "Error") == "[RATE_LIMIT] too many calls"
    assert line_of(text, "Current step") == "draft"  # its name is its id: said once
    assert "Estimate" not in text
    cancelled = a_run(status=run_pb2.RUN_STATUS_CANCELLED, cancel_reason="wrong brief")
    assert line_of(details_of(cancelled), "Cancelled") == "wrong brief"


def a_question(decision_id: str = "persona", **fields: object) -> decision_pb2.Decision:
    decision = decision_pb2.Decision(
        run_id="r1",
        decision_id=decision_id,
        prompt="Which persona first?",
        options=[
            event_pb2.DecisionOption(value="a", label="Adventurer"),
            event_pb2.DecisionOption(value="b"),
        ],
        state=decision_pb2.DECISION_STATE_OPEN,
        **fields,  # type: ignore[arg-type]
    )
    decision.create_time.FromDatetime(NOW - timedelta(minutes=1))
    return decision


def test_get_shows_an_open_question_with_its_labels_default_deadline_and_skip() -> None:
    question = a_question(default_option="b", can_skip=True)
    question.deadline.FromDatetime(NOW + timedelta(minutes=5))
    text = details_of(a_run(), question)
    assert "1) a  Adventurer" in text, text
    assert "2) b  (default)" in text, text
    assert re.search(r"closes in 4m 5\ds, then takes b", text), text
    assert "runstream answer r1 persona CHOICE (or --skip)" in text, text


def test_decisions_marks_the_default_says_a_fallback_and_how_each_closed() -> None:
    asked = a_question("asked", default_option="a")
    asked.deadline.FromDatetime(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    fallback = a_question("fallback", default_option="later")
    answered = a_question("answered", choice="b", answered_by="ana")
    answered.state = decision_pb2.DECISION_STATE_RESOLVED
    answered.outcome = event_pb2.DECISION_OUTCOME_ANSWERED
    answered.deadline.FromDatetime(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    answered.resolve_time.FromDatetime(datetime(2026, 2, 1, 12, 0, tzinfo=UTC))
    table = decisions_table([decision_from_pb(d) for d in (asked, fallback, answered)])
    assert cells(table, "OPTIONS") == ["a* | b", "a | b · default later", "a | b"]
    assert cells(table, "STATE") == ["◐ OPEN", "◐ OPEN", "ANSWERED: b"]
    closed = cells(table, "CLOSED/DEADLINE")
    assert closed[0].startswith("2026-03-0") and closed[2].startswith("2026-0"), closed
    assert closed[2] != closed[0], closed  # when it closed, not its deadline


def test_steps_give_durations_in_the_largest_units_that_fit() -> None:
    run = a_run()
    for seconds, step_id in ((0.25, "quarter"), (1, "one"), (59.5, "almost"), (60, "minute")):
        step = run.steps.add(step_id=step_id, name=step_id, status=run_pb2.STEP_STATUS_SUCCEEDED)
        step.end_time.FromDatetime(NOW)
        step.duration.FromTimedelta(timedelta(seconds=seconds))
    for seconds, step_id in ((65, "past"), (3599, "hour-less"), (3600, "hour"), (7380, "two")):
        step = run.steps.add(step_id=step_id, name=step_id, status=run_pb2.STEP_STATUS_SUCCEEDED)
        step.end_time.FromDatetime(NOW)
        step.duration.FromSeconds(seconds)
    ahead = run.steps.add(step_id="ahead", name="ahead", status=run_pb2.STEP_STATUS_RUNNING)
    ahead.start_time.FromDatetime(NOW + timedelta(seconds=5))  # its producer's clock is ahead
    assert cells(steps_table(run_from_pb(run).steps), "DURATION") == [
        "250ms", "1.0s", "59.5s", "1m 00s", "1m 05s", "59m 59s", "1h 00m", "2h 03m", "0ms"
    ]  # fmt: skip


def test_a_run_not_yet_assessed_shows_a_dash_for_its_health_and_free_text_keeps_its_lines() -> None:
    run = a_run(health=run_pb2.RUN_HEALTH_UNSPECIFIED, display_name="two\nlines \x1b[2J")
    run.steps.add(step_id="s", name="S", description="first\tline\nsecond line \x1b[2J")
    table = runs_table([run_from_pb(run)])
    assert cells(table, "HEALTH") == ["—"]
    assert cells(table, "NAME") == ["two\\nlines \\x1b[2J"]  # a name stays on its line
    assert cells(steps_table([run_from_pb(run).steps[0]]), "NAME") == [
        "S\nfirst\tline\nsecond line \\x1b[2J"
    ]  # a description keeps its lines and tabs, and escapes the rest


def test_metrics_read_as_rates_money_and_counts_most_looked_for_first() -> None:
    run = a_run()
    run.metrics.update({"impressions": 10500, "ctr": 0.05, "conversion_rate": 0.25})
    run.metrics.update({"cost_usd": 1.5, "cost": 3, "fps": 30, "lift": 0.5})
    run.metric_units["share"] = "%"
    run.metrics["share"] = 12.5
    run.metric_changes["impressions"] = 0
    shown_metrics = line_of(details_of(run), "Metrics").split(", ")
    assert shown_metrics == (  # as the live view and the event lines order them
        [
            "Impressions 10,500 (+0)",
            "CTR 5.00%",
            "Cost (USD) $1.50",
            "Conversion rate 25.00%",
            "Cost $3.00",
            "FPS 30",
            "Lift 0.50",
            "Share 12.5 %",
        ]
    )
    update = event_pb2.RunEvent(run_id="r1", seq=2)
    update.metrics_update.values.update({"zeta": 1, "clicks": 2, "impressions": 3, "alpha": 4})
    update.event_time.GetCurrentTime()
    note = RunView.from_snapshot(run_from_pb(run)).apply(event_from_pb(update))
    assert note is not None
    assert note.text == "metrics: Impressions 3, Clicks 2, Alpha 4, Zeta 1"


def test_estimates_say_their_range_confidence_source_and_end_or_that_they_are_held() -> None:
    run = with_estimate(a_run("live"), 130)
    run.estimate.remaining_low.FromSeconds(100)
    run.estimate.remaining_high.FromSeconds(200)
    run.estimate.confidence, run.estimate.history_runs = 0.7, 1
    run.estimate.source = run_pb2.ESTIMATE_SOURCE_PRODUCER
    said = line_of(details_of(run), "Estimate")
    assert re.fullmatch(
        r"~2m 0\ds left \(the producer's estimate, 1m [34]\ds to 3m [12]\ds, 70% confidence, "
        r"from 1 run\), ends ~\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
        said,
    ), said
    point = with_estimate(a_run("point"), 130)
    point.estimate.remaining_low.FromSeconds(130)
    point.estimate.remaining_high.FromSeconds(130)
    assert " to " not in line_of(details_of(point), "Estimate")  # no range of one point
    held = with_estimate(a_run("held"), 130)
    held.estimate.held = True
    held.estimate.end_time.FromDatetime(NOW - timedelta(minutes=5))  # as of when it held
    due = with_estimate(a_run("due"), 0)
    assert line_of(details_of(held), "Estimate") == "on hold at ~2m 10s"
    assert line_of(details_of(due), "Estimate").startswith("any moment, ends ~")
    assert cells(runs_table([run_from_pb(held), run_from_pb(due)]), "ETA") == [
        "hold 02:10",
        "<00:01",
    ]


def test_get_counts_items_without_a_total_and_says_when_nobody_watches() -> None:
    run = a_run()
    run.progress.items.completed = 7
    run.metric_units["spend"] = "USD"
    run.metrics["spend"] = 1200
    text = details_of(run)
    assert line_of(text, "Progress") == "0%  (7 items)"
    assert line_of(text, "Viewers") == "no viewers"
    assert line_of(text, "Metrics") == "Spend 1,200 USD"
