"""A run's state is folded into a copy for each commit, the committed state left as it was
until the batch is stored: what the copy changes must not show through the original, which
stays the run's state when the store refuses the batch (and which others may hold)."""

from __future__ import annotations

import gc

from runstream.v1 import decision_pb2, event_pb2, run_pb2
from runstream_server.domain.artifacts import RunArtifacts
from runstream_server.domain.state import RunState


def _running_with_a_decision() -> RunState:
    state = RunState(run_pb2.Run(run_id="r", last_seq=1, status=run_pb2.RUN_STATUS_RUNNING))
    asked = event_pb2.RunEvent(
        seq=2,
        decision_requested=event_pb2.DecisionRequested(
            decision_id="d-1",
            prompt="Ship it?",
            options=[event_pb2.DecisionOption(value="yes"), event_pb2.DecisionOption(value="no")],
        ),
    )
    asked.event_time.FromSeconds(1_800_000_000)
    state.apply(asked)
    return state


def test_a_decision_answered_in_a_copy_stays_open_in_the_state_it_was_copied_from() -> None:
    state = _running_with_a_decision()
    held = state.decisions["d-1"]  # as a viewer's feed was handed it
    draft = state.copy()
    answer = event_pb2.RunEvent(
        seq=3,
        decision_resolved=event_pb2.DecisionResolved(
            decision_id="d-1", choice="yes", outcome=event_pb2.DECISION_OUTCOME_ANSWERED
        ),
    )
    answer.event_time.FromSeconds(1_800_000_010)
    draft.apply(answer)

    assert draft.decisions["d-1"].state == decision_pb2.DECISION_STATE_RESOLVED
    assert draft.decisions["d-1"].choice == "yes"
    assert state.decisions["d-1"].state == decision_pb2.DECISION_STATE_OPEN
    assert held.state == decision_pb2.DECISION_STATE_OPEN and held.choice == ""
    assert [d.decision_id for d in state.open_decisions()] == ["d-1"]
    assert state.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT
    assert draft.run.status == run_pb2.RUN_STATUS_RUNNING


def test_what_a_copy_folds_leaves_the_original_run_as_it_was() -> None:
    state = _running_with_a_decision()
    before = state.run.SerializeToString(deterministic=True)
    draft = state.copy()
    milestone = event_pb2.RunEvent(
        seq=3, milestone=event_pb2.Milestone(milestone_id="m-1", title="Halfway")
    )
    milestone.event_time.FromSeconds(1_800_000_020)
    draft.apply(milestone)

    assert draft.milestones == {"m-1"} and state.milestones == set()
    assert draft.last_seq == 3 and state.last_seq == 2
    assert state.run.SerializeToString(deterministic=True) == before


def test_a_copy_holds_every_part_of_the_state() -> None:
    """copy() builds the state without __init__: a part added to RunState must be copied too,
    or the first commit after it breaks on the missing attribute."""
    state = _running_with_a_decision()
    draft = state.copy()
    missing = [name for name in RunState.__slots__ if not hasattr(draft, name)]
    assert missing == []
    assert draft.run == state.run and draft.run is not state.run
    assert draft.decisions == state.decisions and draft.milestones == state.milestones
    assert draft.troubles.health == state.troubles.health
    assert (draft.estimated_at, draft.estimated_from) == (state.estimated_at, state.estimated_from)


def _event(seq: int, **payload: object) -> event_pb2.RunEvent:
    event = event_pb2.RunEvent(seq=seq, **payload)  # type: ignore[arg-type]
    event.event_time.FromSeconds(1_800_000_000 + seq)
    return event


def test_a_copy_shares_the_decisions_until_it_folds_a_decision_event() -> None:
    """Each commit folds into a copy of the state: copying a run's decisions for each one
    made every event of a run with 30,000 decisions cost a pass over them (found in review).
    The copy shares them, and takes its own only to change them."""
    state = _running_with_a_decision()
    for n in (2, 3):
        state.apply(
            _event(
                n + 1,
                decision_requested=event_pb2.DecisionRequested(
                    decision_id=f"d-{n}", prompt="And this?"
                ),
            )
        )
    asked = dict(state.decisions)
    draft = state.copy()
    draft.apply(_event(5, text_delta=event_pb2.TextDelta(message_id="m", delta="x")))
    assert draft.decisions is state.decisions  # nothing of them copied

    answer = event_pb2.DecisionResolved(
        decision_id="d-2", choice="yes", outcome=event_pb2.DECISION_OUTCOME_ANSWERED
    )
    draft.apply(_event(6, decision_resolved=answer))
    assert draft.decisions is not state.decisions and state.decisions == asked
    assert [d.decision_id for d in state.open_decisions()] == ["d-1", "d-2", "d-3"]
    assert [d.decision_id for d in draft.open_decisions()] == ["d-1", "d-3"]

    # The state it was copied from may take another batch (the store refused the draft's):
    # its own decisions change, the draft's stay.
    again = state.copy()
    for seq, decision_id in ((5, "d-1"), (6, "d-2"), (7, "d-3")):
        again.apply(
            _event(
                seq,
                decision_resolved=event_pb2.DecisionResolved(
                    decision_id=decision_id, outcome=event_pb2.DECISION_OUTCOME_CANCELLED
                ),
            )
        )
    assert again.open_decisions() == [] and not again.has_open_decisions
    assert again.run.status == run_pb2.RUN_STATUS_RUNNING
    assert [d.decision_id for d in draft.open_decisions()] == ["d-1", "d-3"]
    assert [d.decision_id for d in state.open_decisions()] == ["d-1", "d-2", "d-3"]
    assert state.run.status == draft.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT


def test_a_copy_shares_the_milestones_until_it_fires_one() -> None:
    """A producer names its milestones, as many as it likes, and each commit copied them all
    (found in review): the copy shares them, and takes its own only to fire one."""
    state = _running_with_a_decision()
    for n in range(3):
        state.apply(_event(3 + n, milestone=event_pb2.Milestone(milestone_id=f"m-{n}")))
    fired = set(state.milestones)
    draft = state.copy()
    draft.apply(_event(6, text_delta=event_pb2.TextDelta(message_id="m", delta="x")))
    assert draft.milestones is state.milestones  # nothing of them copied

    draft.apply(_event(7, milestone=event_pb2.Milestone(milestone_id="m-3")))
    assert draft.milestones == fired | {"m-3"} and state.milestones == fired
    # The state it was copied from may take another batch (the store refused the draft's).
    again = state.copy()
    again.apply(_event(6, milestone=event_pb2.Milestone(milestone_id="m-9")))
    assert again.milestones == fired | {"m-9"}
    assert state.milestones == fired and draft.milestones == fired | {"m-3"}


def test_a_copy_let_go_is_freed_at_once_with_no_cycle_for_the_collector() -> None:
    """A state is copied for every commit: a copy whose parts refer back to one another
    (the artifacts holding a lookup of the steps did) is freed only by the cyclic garbage
    collector, which then ran every few hundred commits and doubled the cost of a copy."""
    state = _running_with_a_decision()
    state.apply(
        event_pb2.RunEvent(
            seq=3,
            step_started=event_pb2.StepStarted(step_id="s"),
            event_time=state.run.update_time,
        )
    )
    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            draft = state.copy()
            draft.apply(
                event_pb2.RunEvent(
                    seq=4,
                    artifact_produced=event_pb2.ArtifactProduced(
                        artifact=run_pb2.Artifact(name="page", step_id="s")
                    ),
                    event_time=state.run.update_time,
                )
            )
            del draft
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_an_artifact_put_back_in_a_copy_is_not_in_the_original() -> None:
    """Every change to a copy's artifacts copies the index it shares with the original
    first, putting back an artifact of the log's too (it wrote into the shared index, so the
    original then held an id its count did not)."""
    original = RunArtifacts(run_pb2.Run(run_id="r"))
    copy = original.over(run_pb2.Run(run_id="r"))
    copy.restore(run_pb2.Artifact(artifact_id="a", name="page"))
    original.produced(
        run_pb2.Artifact(artifact_id="a", name="page"), "events[0]", lambda step_id: None
    )
    assert original.run.artifacts_summary.total == 1  # a new one here, not a replacement
