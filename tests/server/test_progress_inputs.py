"""A kind that moves none of the estimate's inputs leaves the run's progress as it was.

``RunState.apply`` makes the progress (percent, step counts, current step) again only after
a kind that may move the estimate (``KindRules.moves_estimate``): every other kind would loop
over every step of the run to make the same figures. Each of those kinds is folded here, with
its fields filled in, into a run in the middle of its steps and items, and the progress it
leaves must be what making it again gives. A kind marked as not moving the estimate that does
move progress fails here.
"""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from runstream.v1 import event_pb2, run_pb2
from runstream_server.domain.events import KINDS
from runstream_server.domain.state import RunState

STILL = sorted(name for name, rules in KINDS.items() if not rules.moves_estimate)


def _examples() -> dict[str, event_pb2.RunEvent]:
    e = event_pb2
    data = struct_pb2.Struct()
    data.update({"n": 1})
    payloads = {
        "agent_activity": e.AgentActivity(
            agent_id="writer",
            agent_name="Writer",
            activity=e.AGENT_ACTIVITY_TYPE_STARTED,
            step_id="draft",
            message="drafting",
        ),
        "thinking": e.Thinking(analysis="the tone should be lighter", confidence=0.7),
        "model_allocation": e.ModelAllocation(model="gpt-x", expected_cost_usd=0.2),
        "text_delta": e.TextDelta(message_id="m1", step_id="draft", delta="Hello"),
        "metrics_update": e.MetricsUpdate(values={"quality": 0.8}, step_id="draft"),
        "milestone": e.Milestone(title="Halfway there"),
        "alert": e.Alert(message="rate limited", step_id="draft"),
        "error_recovery": e.ErrorRecovery(error_message="timeout", step_id="draft"),
        "artifact_produced": e.ArtifactProduced(
            artifact=run_pb2.Artifact(name="outline.md", step_id="plan")
        ),
        "workflow_state_change": e.WorkflowStateChange(
            change_type="phase", current_stage="review", completion_percentage=60
        ),
        "custom": e.Custom(type="note", data=data),
    }
    examples = {}
    for name, payload in payloads.items():
        event = e.RunEvent(run_id="r", seq=9)
        getattr(event, name).CopyFrom(payload)
        event.event_time.GetCurrentTime()
        examples[name] = event
    return examples


EXAMPLES = _examples()


def _run_in_the_middle() -> RunState:
    """A run with a step done, one running at 40 %, one pending, and item counts."""
    done, running, pending = (
        run_pb2.STEP_STATUS_SUCCEEDED,
        run_pb2.STEP_STATUS_RUNNING,
        run_pb2.STEP_STATUS_PENDING,
    )
    run = run_pb2.Run(
        run_id="r",
        last_seq=8,
        status=run_pb2.RUN_STATUS_RUNNING,
        current_step_id="draft",
        steps=[
            run_pb2.Step(step_id="plan", status=done, percent=100),
            run_pb2.Step(step_id="draft", status=running, percent=40, agent="writer"),
            run_pb2.Step(step_id="review", status=pending),
        ],
    )
    run.progress.items.completed, run.progress.items.total = 3, 10
    state = RunState(run)
    state.steps.recompute_progress()
    return state


@pytest.mark.parametrize("name", STILL)
def test_a_kind_that_moves_no_estimate_input_leaves_the_progress_as_made_again(
    name: str,
) -> None:
    assert name in EXAMPLES, f"add an example of {name} with its fields filled in"
    state = _run_in_the_middle()
    state.apply(EXAMPLES[name])
    left = (run_pb2.Run(progress=state.run.progress), state.run.current_step_id)
    state.steps.recompute_progress()
    assert (run_pb2.Run(progress=state.run.progress), state.run.current_step_id) == left
    assert state.run.progress.completed_steps == 1 and state.run.progress.percent > 0
