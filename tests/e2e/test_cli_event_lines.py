"""The line `runstream watch --plain` and `runstream events` print for each kind of event,
with every part its producer can give: which parts were printed no test said (found by the
mutation audit mu68g), and that a streamed message prints one line, once finished."""

from __future__ import annotations

from typing import Any

import pytest
import runstream
from google.protobuf import duration_pb2
from runstream.cli.view import RunView
from runstream.v1 import event_pb2, run_pb2

from tests.e2e.test_cli_watchers import event, snapshot


def seconds(n: int) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromSeconds(n)
    return duration


def held_producers_estimate() -> run_pb2.Estimate:
    estimate = run_pb2.Estimate(held=True, source=run_pb2.ESTIMATE_SOURCE_PRODUCER)
    estimate.remaining.FromSeconds(90)
    return estimate


E = event_pb2
CASES: dict[str, tuple[list[tuple[str, Any]], str]] = {
    "run created": (
        [("run_created", E.RunCreated(workflow="campaign", display_name="Spring launch"))],
        "Run created: Spring launch (0 steps planned)",
    ),
    "run started": (
        [("run_started", E.RunStarted(message="warming up"))],
        "Run started: warming up",
    ),
    "status changed": (
        [
            (
                "run_status_changed",
                E.RunStatusChanged(
                    previous_status=run_pb2.RUN_STATUS_RUNNING,
                    status=run_pb2.RUN_STATUS_PAUSED,
                    reason="operator break",
                ),
            )
        ],
        "Status RUNNING → PAUSED (operator break)",
    ),
    "run cancelled": (
        [("run_cancelled", E.RunCancelled(reason="budget spent", cancelled_by="ana"))],
        "Run cancelled by ana — budget spent",
    ),
    "step started again": (
        [("step_started", E.StepStarted(step_id="s9", agent="writer"))] * 2,
        "Step 9 started (retry) · writer",
    ),
    "step progress": (
        [
            (
                "step_progress",
                E.StepProgress(step_id="s8", percent=60, sub_step="crawl", detail="p3"),
            )
        ],
        "Step 8 60% crawl — p3",
    ),
    "step completed": (
        [("step_completed", E.StepCompleted(step_id="s8", duration=seconds(75), summary="ok"))],
        "Step 8 done in 1m 15s (9/17) — ok",
    ),
    "step failed": (
        [("step_failed", E.StepFailed(step_id="s8", error=run_pb2.ErrorInfo(message="quota")))],
        "Step 8 failed — quota",
    ),
    "step skipped": (
        [("step_skipped", E.StepSkipped(step_id="s9", reason="not needed"))],
        "Step 9 skipped — not needed",
    ),
    "agent named, no message": (
        [
            (
                "agent_activity",
                E.AgentActivity(agent_name="Planner", activity=E.AGENT_ACTIVITY_TYPE_COMPLETED),
            )
        ],
        "Planner: finished",
    ),
    "thinking in a stage": (
        [
            (
                "thinking",
                E.Thinking(
                    agent_id="planner",
                    analysis="compare tiers",
                    stage="pricing",
                    confidence=0.8,
                    factors=["a", "b", "c", "d", "e"],
                ),
            )
        ],
        "planner: in pricing — compare tiers (80% confident) · factors: a, b, c +2 more",
    ),
    "model allocation": (
        [
            (
                "model_allocation",
                E.ModelAllocation(
                    agent_id="planner", model="gpt-x", tier="premium", reasoning="hard task"
                ),
            )
        ],
        "planner ← gpt-x [premium] — hard task",
    ),
    "step metrics": (
        [("metrics_update", E.MetricsUpdate(step_id="s8", values={"pages": 12}))],
        "Step 8 metrics: Pages 12",
    ),
    "items by stage": (
        [
            (
                "item_progress",
                E.ItemProgress(completed=3, total=10, unit="companies", by_stage={"crawled": 3}),
            )
        ],
        "3 of 10 companies (crawled 3)",
    ),
    "alert with a suggestion": (
        [
            (
                "alert",
                E.Alert(
                    severity=run_pb2.SEVERITY_HIGH,
                    message="slow",
                    suggested_action="pause it",
                    step_id="s8",
                ),
            )
        ],
        "HIGH: slow → pause it [Step 8]",
    ),
    "alert with an action": (
        [
            (
                "alert",
                E.Alert(
                    severity=run_pb2.SEVERITY_MEDIUM,
                    message="slow",
                    action=E.AlertAction(type=E.ALERT_ACTION_TYPE_PAUSE_RUN),
                ),
            )
        ],
        "MEDIUM: slow → pause run",
    ),
    "recovery that needs a person": (
        [
            (
                "error_recovery",
                E.ErrorRecovery(
                    error_message="timeout",
                    recovery_strategy="retry",
                    step_id="s8",
                    attempt=2,
                    can_continue=False,
                    user_action_required=True,
                ),
            )
        ],
        "timeout; retry [Step 8] (attempt 2); cannot continue; user action required",
    ),
    "recovery with a severity": (
        [
            (
                "error_recovery",
                E.ErrorRecovery(
                    error_message="timeout", severity=run_pb2.SEVERITY_LOW, can_continue=True
                ),
            )
        ],
        "LOW: timeout",
    ),
    "artifact": (
        [
            (
                "artifact_produced",
                E.ArtifactProduced(artifact=run_pb2.Artifact(name="r.pdf", kind="pdf")),
            )
        ],
        "Artifact r.pdf (pdf)",
    ),
    "phase": (
        [
            (
                "workflow_state_change",
                E.WorkflowStateChange(
                    change_type="phase_transition",
                    current_stage="review",
                    completion_percentage=40,
                    pipeline_status={"drafted": True, "reviewed": False},
                ),
            )
        ],
        "phase_transition · Phase: review (40%) · ✓ drafted · ○ reviewed",
    ),
    "decision answered by label": (
        [
            (
                "decision_requested",
                E.DecisionRequested(
                    decision_id="d1",
                    prompt="Go?",
                    options=[E.DecisionOption(value="y", label="Yes")],
                ),
            ),
            (
                "decision_resolved",
                E.DecisionResolved(
                    decision_id="d1",
                    outcome=E.DECISION_OUTCOME_ANSWERED,
                    choice="y",
                    answered_by="ana",
                ),
            ),
        ],
        "Decision d1 answered by ana: Yes (y)",
    ),
    "held producer's estimate": (
        [("estimate_updated", E.EstimateUpdated(estimate=held_producers_estimate()))],
        "ETA on hold at ~1m 30s left (producer's)",
    ),
}


@pytest.mark.parametrize(("events", "line"), CASES.values(), ids=CASES.keys())
def test_each_event_prints_every_part_its_producer_gave(
    events: list[tuple[str, Any]], line: str
) -> None:
    view = RunView.from_snapshot(snapshot())
    notes = [
        view.apply(event(100 + n, **{field: message})) for n, (field, message) in enumerate(events)
    ]
    assert notes[-1] is not None and notes[-1].text == line


def test_a_message_prints_one_line_when_it_is_finished_not_one_per_delta() -> None:
    view = RunView.from_snapshot(snapshot())
    pieces = [("Launch ", False), ("faster", True)]
    notes = [
        view.apply(event(100 + n, text_delta=E.TextDelta(agent_id="writer", delta=d, final=f)))
        for n, (d, f) in enumerate(pieces)
    ]
    assert notes[0] is None
    assert notes[1] is not None and notes[1].text == "writer wrote 2 words"


def test_a_step_done_is_counted_against_the_steps_known_then_not_the_run_s_total_now() -> None:
    """`runstream events` reads the run's snapshot, then its log from seq 1. An agent run's
    steps appear as they start, so the first step's line said "(1/17)" once the run had 17
    steps, and "(1/1)" while it had one: the same stored event, numbered two ways."""
    # As show_events makes it, from the snapshot taken now: 17 steps by seq 40.
    view = RunView(run=snapshot(last_seq=40), seen_after=0)
    log = [
        ("run_created", E.RunCreated(workflow="agents")),  # no plan: steps come as they start
        ("step_started", E.StepStarted(step_id="a", name="Research")),
        ("step_completed", E.StepCompleted(step_id="a", duration=seconds(5))),
        ("step_started", E.StepStarted(step_id="b", name="Write")),
        ("step_started", E.StepStarted(step_id="c", name="Review")),
        ("step_completed", E.StepCompleted(step_id="b", duration=seconds(7))),
    ]
    notes = [view.apply(event(1 + n, **{field: message})) for n, (field, message) in enumerate(log)]
    done = [note.text for note in notes if note is not None and " done " in note.text]
    assert done == ["Research done in 5.0s (1/1)", "Write done in 7.0s (2/3)"]


def test_a_watch_of_step_completions_alone_counts_the_steps_its_later_snapshot_knows() -> None:
    """`runstream watch --kinds step_completed` sees no step start; the snapshot it takes
    again (here one older than the events it has, which keeps its rows) knows of step c,
    started since: counted, as it was a step of the run when b and a were done."""

    def run_at(seq: int, steps: str) -> runstream.Run:
        run = run_pb2.Run(run_id="r1", status=run_pb2.RUN_STATUS_RUNNING, last_seq=seq)
        for step_id in steps:
            run.steps.add(step_id=step_id, name=step_id.upper(), status=run_pb2.STEP_STATUS_RUNNING)
        run.progress.total_steps = len(steps)
        return runstream._convert.run_from_pb(run)

    view = RunView.from_snapshot(run_at(10, "ab"))
    done_b = view.apply(event(20, step_completed=E.StepCompleted(step_id="b")))
    view.apply_snapshot(run_at(15, "abc"))  # c started at seq 12
    done_a = view.apply(event(25, step_completed=E.StepCompleted(step_id="a")))
    assert done_b is not None and done_b.text.endswith("(1/2)"), done_b
    assert done_a is not None and done_a.text.endswith("(2/3)"), done_a
