"""A kind that moves none of the estimate's inputs leaves the run's progress as it was.

``RunState.apply`` makes the progress (percent, step counts, current step) again only after
a kind that may move the estimate (``KindRules.moves_estimate``): every other kind would make
the same figures again. Each of those kinds is folded here, with its fields filled in, into a
run in the middle of its steps and items, and the progress it leaves must be what making it
again gives. A kind marked as not moving the estimate that does
move progress fails here.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf import struct_pb2
from runstream.v1 import event_pb2, run_pb2
from runstream_server.domain.events import KINDS
from runstream_server.domain.state import RunState, copied
from runstream_server.domain.steps import DONE_STEP, RunSteps

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


def test_progress_kept_up_to_date_by_each_event_is_what_counting_every_step_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event makes the progress from counts its step's fold keeps, not from a pass over
    the run's steps: on a run of 2,000 steps, 1,000 step_progress events cost 3.1 s of CPU
    (found in review). Through starts, progress at any percent, restarts, completions,
    failures and skips, folded into copies (some of them dropped, as a refused batch is),
    the progress is the one counting every step gives, and no event counts them."""
    rng = random.Random(7)
    step_ids = [f"s{i}" for i in range(300)]
    run = run_pb2.Run(run_id="r", status=run_pb2.RUN_STATUS_RUNNING)
    state = RunState(run)
    for step_id in step_ids[:200]:
        state.steps.add(step_id, step_id, "", "")
    counted = []
    count = RunSteps._count
    monkeypatch.setattr(RunSteps, "_count", lambda steps: counted.append(1) or count(steps))
    e = event_pb2
    seq = 0
    for batch in range(150):
        draft = state.copy()
        for _ in range(rng.randrange(1, 12)):
            step_id = rng.choice(step_ids)
            step = draft.step(step_id)
            percent = rng.choice([rng.uniform(0, 100), float(rng.randrange(101)), 0.1, 33.3])
            if step is None or step.status == run_pb2.STEP_STATUS_PENDING:
                event = e.RunEvent(step_started=e.StepStarted(step_id=step_id))
            elif step.status in DONE_STEP:
                continue
            elif step.status == run_pb2.STEP_STATUS_FAILED:
                event = e.RunEvent(step_started=e.StepStarted(step_id=step_id))  # a retry
            else:
                event = rng.choice(
                    [e.RunEvent(step_progress=e.StepProgress(step_id=step_id, percent=percent))] * 6
                    + [
                        e.RunEvent(step_completed=e.StepCompleted(step_id=step_id)),
                        e.RunEvent(step_failed=e.StepFailed(step_id=step_id)),
                        e.RunEvent(step_skipped=e.StepSkipped(step_id=step_id)),
                    ]
                )
            seq += 1
            event.seq = seq
            event.event_time.FromSeconds(1_800_000_000 + seq)
            draft.apply(event)
        if batch % 5 == 4:
            continue  # the store refused it: the state stays as it was
        state = draft
        assert counted == []
        left = (run_pb2.Run(progress=state.run.progress), state.run.current_step_id)
        again = RunState(copied(state.run))  # its steps counted from the snapshot
        again.steps.recompute_progress()
        assert (run_pb2.Run(progress=again.run.progress), again.run.current_step_id) == left
        counted.clear()
    assert 0 < state.run.progress.completed_steps < len(state.run.steps)
