"""Appending: durable acks, idempotency, all-or-nothing batches, precise errors for bad input."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_pb2, run_service_pb2

from tests.server.support import (
    append,
    create_run,
    custom,
    ev,
    rpc_error,
    seqs,
    status_detail,
    watch_all,
)


async def test_acks_carry_contiguous_seqs(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    first = await append(stubs, run.run_id, custom(1), custom(2))
    second = await append(stubs, run.run_id, custom(3))
    assert [a.seq for a in first.events] == [2, 3]
    assert [a.seq for a in second.events] == [4]
    assert second.last_seq == 4
    assert [a.idempotency_key for a in first.events] == ["k1", "k2"]


async def test_a_batch_appended_twice_is_stored_once(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer that lost its acknowledgement resends; nothing is duplicated."""
    run = await create_run(stubs)
    batch = [custom(n) for n in range(1, 6)]
    first = await append(stubs, run.run_id, *batch)
    again = await append(stubs, run.run_id, *[custom(n) for n in range(1, 6)])
    assert [a.seq for a in again.events] == [a.seq for a in first.events]
    assert all(a.duplicate for a in again.events)
    assert not any(a.duplicate for a in first.events)
    # A partly new batch stores only the new events, in order.
    mixed = await append(stubs, run.run_id, custom(5), custom(6), custom(6))
    assert [(a.seq, a.duplicate) for a in mixed.events] == [(6, True), (7, False), (7, True)]
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    log = await watch_all(stubs, run.run_id)
    assert seqs(log) == list(range(1, 9))
    keys = [e.idempotency_key for r in log for e in r.events]
    assert keys == ["", "k1", "k2", "k3", "k4", "k5", "k6", ""]


async def test_duplicates_are_acked_even_after_the_run_ended(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer resending its last batch after a lost ack must not be told it failed."""
    run = await create_run(stubs)
    done = ev.RunEvent(idempotency_key="done", run_completed=ev.RunCompleted(summary="ok"))
    first = await append(stubs, run.run_id, custom(1), done)
    again = await append(
        stubs,
        run.run_id,
        custom(1),
        ev.RunEvent(idempotency_key="done", run_completed=ev.RunCompleted()),
    )
    assert [a.seq for a in again.events] == [a.seq for a in first.events]
    assert seqs(await watch_all(stubs, run.run_id)) == [1, 2, 3]


async def test_another_kind_of_event_under_a_stored_key_is_refused_not_dropped(stubs) -> None:  # type: ignore[no-untyped-def]
    """A producer that attached under an earlier process's key_prefix without replaying
    reuses that process's keys for new events. Answering them as duplicates would drop them
    without a word (a run_completed among them, and the run would run for ever): a key that
    holds another kind of event refuses the batch, naming the key. The same kind is a
    resend, answered with the stored seq even if its content differs."""
    run = await create_run(stubs, "a")
    started = ev.RunEvent(idempotency_key="p:1", step_started=ev.StepStarted(step_id="a"))
    progress = ev.RunEvent(
        idempotency_key="p:2", step_progress=ev.StepProgress(step_id="a", percent=40)
    )
    head = (await append(stubs, run.run_id, started, progress)).last_seq
    ending = ev.RunEvent(idempotency_key="p:2", run_completed=ev.RunCompleted(summary="done"))
    err = await rpc_error(append(stubs, run.run_id, custom(9), ending))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details().startswith("events[1].idempotency_key 'p:2' already holds event 3 ")
    assert "a step_progress, not a run_completed" in err.details()
    snap = (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    assert (snap.last_seq, snap.status) == (head, run_pb2.RUN_STATUS_RUNNING)
    # The same kind under the key, with other content, is the stored event sent again.
    again = ev.RunEvent(
        idempotency_key="p:2", step_progress=ev.StepProgress(step_id="a", percent=55)
    )
    resent = await append(stubs, run.run_id, again)
    assert [(a.seq, a.duplicate) for a in resent.events] == [(3, True)]
    # Under a new key the run completes, and the log holds each event once.
    ending.idempotency_key = "q:1"
    await append(stubs, run.run_id, custom(9), ending)
    log = await watch_all(stubs, run.run_id)
    kinds = [e.WhichOneof("payload") for r in log for e in r.events]
    assert kinds.count("run_completed") == 1 and kinds.count("custom") == 1
    assert seqs(log) == list(range(1, len(kinds) + 1))


async def test_one_key_on_two_kinds_of_one_batch_is_invalid_argument_naming_both(
    stubs: Any,
) -> None:
    """The refusal said the key "already holds event 2", an event of the refused batch
    itself that was never stored (found in review): the request contradicts itself."""
    run = await create_run(stubs)
    first = custom(1, key="k")
    second = ev.RunEvent(idempotency_key="k", milestone=ev.Milestone(milestone_id="m", title="t"))
    err = await rpc_error(append(stubs, run.run_id, first, second))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "events[1].idempotency_key: 'k' is the key of events[0] of this batch too, a custom; "
        "each event needs a key of its own"
    )
    snap = (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    assert snap.last_seq == 1


async def test_a_batch_with_one_bad_event_stores_nothing(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    err = await rpc_error(
        append(
            stubs,
            run.run_id,
            custom(1),
            ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=140)),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("events[1].step_progress.percent:")
    state_err = await rpc_error(
        append(
            stubs,
            run.run_id,
            custom(2),
            ev.RunEvent(step_progress=ev.StepProgress(step_id="nope", percent=10)),
        )
    )
    assert state_err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[1].step_progress.step_id" in state_err.details()
    snap = (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    assert snap.last_seq == 1
    assert snap.status == run_pb2.RUN_STATUS_PENDING
    # The rejected keys were not consumed: the same events append fine once fixed.
    ok = await append(stubs, run.run_id, custom(1), custom(2))
    assert [a.seq for a in ok.events] == [2, 3]


BAD_EVENTS = [
    (ev.RunEvent(), "events[0].payload"),
    (ev.RunEvent(seq=7, custom=ev.Custom(type="x")), "events[0].seq"),
    (ev.RunEvent(run_id="other", custom=ev.Custom(type="x")), "events[0].run_id"),
    (
        ev.RunEvent(idempotency_key="k" * 129, custom=ev.Custom(type="x")),
        "events[0].idempotency_key",
    ),
    (  # a deadline's key: the decision's deadline could never be written
        ev.RunEvent(idempotency_key="runstream.deadline:d", custom=ev.Custom(type="x")),
        "events[0].idempotency_key",
    ),
    (ev.RunEvent(run_created=ev.RunCreated(workflow="x")), "events[0].run_created"),
    (
        ev.RunEvent(decision_resolved=ev.DecisionResolved(decision_id="d")),
        "events[0].decision_resolved",
    ),
    (ev.RunEvent(step_started=ev.StepStarted()), "events[0].step_started.step_id"),
    (ev.RunEvent(step_started=ev.StepStarted(step_id="bad id!")), "events[0].step_started.step_id"),
    (
        ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=-1)),
        "events[0].step_progress.percent",
    ),
    (
        ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=float("nan"))),
        "events[0].step_progress.percent",
    ),
    (ev.RunEvent(step_failed=ev.StepFailed(step_id="a")), "events[0].step_failed.error.message"),
    (ev.RunEvent(run_failed=ev.RunFailed()), "events[0].run_failed.error.message"),
    (
        ev.RunEvent(agent_activity=ev.AgentActivity(activity=ev.AGENT_ACTIVITY_TYPE_STARTED)),
        "events[0].agent_activity.agent_id",
    ),
    (
        ev.RunEvent(agent_activity=ev.AgentActivity(agent_id="x")),
        "events[0].agent_activity.activity",
    ),
    (
        ev.RunEvent(
            agent_activity=ev.AgentActivity(
                agent_id="x", activity=ev.AGENT_ACTIVITY_TYPE_STARTED, step_id="nope"
            )
        ),
        "events[0].agent_activity.step_id",
    ),
    (
        ev.RunEvent(text_delta=ev.TextDelta(message_id="m", delta="hi", step_id="nope")),
        "events[0].text_delta.step_id",
    ),
    (
        ev.RunEvent(
            step_completed=ev.StepCompleted(
                step_id="a", artifacts=[run_pb2.Artifact(name="report", step_id="nope")]
            )
        ),
        "events[0].step_completed.artifacts[0].step_id",
    ),
    (
        ev.RunEvent(
            artifact_produced=ev.ArtifactProduced(
                artifact=run_pb2.Artifact(name="report", step_id="nope")
            )
        ),
        "events[0].artifact_produced.artifact.step_id",
    ),
    (ev.RunEvent(thinking=ev.Thinking(confidence=1.5)), "events[0].thinking.confidence"),
    (
        ev.RunEvent(model_allocation=ev.ModelAllocation(agent_id="x")),
        "events[0].model_allocation.model",
    ),
    (ev.RunEvent(text_delta=ev.TextDelta(delta="hi")), "events[0].text_delta.message_id"),
    (ev.RunEvent(metrics_update=ev.MetricsUpdate()), "events[0].metrics_update.values"),
    (ev.RunEvent(milestone=ev.Milestone()), "events[0].milestone.title"),
    (ev.RunEvent(alert=ev.Alert()), "events[0].alert.message"),
    (ev.RunEvent(error_recovery=ev.ErrorRecovery()), "events[0].error_recovery.error_message"),
    (
        ev.RunEvent(artifact_produced=ev.ArtifactProduced()),
        "events[0].artifact_produced.artifact.name",
    ),
    (ev.RunEvent(custom=ev.Custom()), "events[0].custom.type"),
    (
        ev.RunEvent(decision_requested=ev.DecisionRequested(decision_id="d", prompt="Which?")),
        "events[0].decision_requested.options",
    ),
    (
        ev.RunEvent(
            decision_requested=ev.DecisionRequested(
                decision_id="d",
                prompt="Which?",
                options=[ev.DecisionOption(value="a")],
                default_option="b" * 257,
            )
        ),
        "events[0].decision_requested.default_option",
    ),
    *(  # a negative wait: the decision would time out at once, with its default
        (
            ev.RunEvent(
                decision_requested=ev.DecisionRequested(
                    decision_id="d",
                    prompt="Which?",
                    options=[ev.DecisionOption(value="a")],
                    timeout=timeout,
                )
            ),
            "events[0].decision_requested.timeout",
        )
        for timeout in (
            duration_pb2.Duration(seconds=-1),
            duration_pb2.Duration(nanos=-1),
            # past a year (366 days): a question nobody would still be waiting for
            duration_pb2.Duration(seconds=366 * 24 * 3600 + 1),
        )
    ),
]


@pytest.mark.parametrize(("event", "field"), BAD_EVENTS, ids=[f for _, f in BAD_EVENTS])
async def test_malformed_events_get_invalid_argument_naming_the_field(stubs, event, field) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    err = await rpc_error(append(stubs, run.run_id, event))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(field + ":"), err.details()


async def test_a_percentage_out_of_range_is_refused_with_the_value_sent(stubs) -> None:  # type: ignore[no-untyped-def]
    """The workflow's completion_percentage is 0 to 100, as the step's percent is (1,000 was
    accepted), and a refused value is quoted as sent (100.0001 read "got 100")."""
    run = await create_run(stubs, "a")
    for event, message in (
        (
            ev.RunEvent(
                workflow_state_change=ev.WorkflowStateChange(
                    change_type="phase_transition", completion_percentage=1000
                )
            ),
            "events[0].workflow_state_change.completion_percentage: must be between 0 and "
            "100, got 1000",
        ),
        (
            ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=100.0001)),
            "events[0].step_progress.percent: must be between 0 and 100, got 100.0001",
        ),
        (
            ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=-0.0000001)),
            "events[0].step_progress.percent: must be between 0 and 100, got -1e-07",
        ),
    ):
        err = await rpc_error(append(stubs, run.run_id, event))
        assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    done = ev.WorkflowStateChange(change_type="phase_transition", completion_percentage=100)
    await append(stubs, run.run_id, ev.RunEvent(workflow_state_change=done))


async def test_a_blank_name_in_a_map_is_refused_as_such(stubs) -> None:  # type: ignore[no-untyped-def]
    """A metric or stage named "" in a map that is not empty: it said the map "is required"
    (found in review)."""
    run = await create_run(stubs, "a")
    for event, message in (
        (
            ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"ctr": 0.5, "": 1.0})),
            "events[0].metrics_update.values: a metric name must not be blank, got ''",
        ),
        (
            ev.RunEvent(item_progress=ev.ItemProgress(completed=3, by_stage={" ": 3})),
            "events[0].item_progress.by_stage: a stage name must not be blank, got ' '",
        ),
    ):
        err = await rpc_error(append(stubs, run.run_id, event))
        assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


async def test_unknown_run_is_not_found(stubs) -> None:  # type: ignore[no-untyped-def]
    err = await rpc_error(append(stubs, "no-such-run", custom(1)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-run" in err.details()
    err = await rpc_error(stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id="no-such-run")))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_run_id_and_empty_batch_are_invalid(stubs) -> None:  # type: ignore[no-untyped-def]
    err = await rpc_error(stubs.report.AppendEvents(rp.AppendEventsRequest(events=[custom(1)])))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "run_id: is required")
    run = await create_run(stubs)
    err = await rpc_error(stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run.run_id)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("events:")


async def test_events_after_a_terminal_event_fail_precondition(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    err = await rpc_error(append(stubs, run.run_id, custom(9)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUCCEEDED" in err.details()
    cancelled = await create_run(stubs)
    await stubs.runs.CancelRun(
        run_service_pb2.CancelRunRequest(run_id=cancelled.run_id, reason="stop")
    )
    err = await rpc_error(append(stubs, cancelled.run_id, custom(1)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = await rpc_error(
        stubs.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=cancelled.run_id))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_event_after_the_batchs_own_end_names_where_the_batch_ended_it(stubs) -> None:  # type: ignore[no-untyped-def]
    """The run is PENDING when the batch comes: the refusal says where the batch ends it, not
    that the run is SUCCEEDED, and stores nothing."""
    run = await create_run(stubs, "a")
    batch = [ev.RunEvent(run_completed=ev.RunCompleted(summary="done")), custom(2)]
    err = await rpc_error(append(stubs, run.run_id, *batch))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == (
        f"run {run.run_id!r} ends at events[0] of this batch; it accepts no events after "
        "that (events[1].custom)"
    )
    stored = await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))
    assert (stored.run.status, stored.run.last_seq) == (run_pb2.RUN_STATUS_PENDING, 1)


def reason_of(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    info = status_detail(err, error_details_pb2.ErrorInfo)
    assert info is not None and info.domain == "runstream", err
    return info.reason, dict(info.metadata)


async def test_refusals_say_their_reason_and_the_refused_event_for_programs(stubs) -> None:  # type: ignore[no-untyped-def]
    """What a refusal was about was only in its message: a producer written in another
    language had to parse "events[N]" out of the text to drop one event, and told "the run
    ended" (stop) from "this key holds another event" (a bug) from "events purged" only by
    reading prose, where an unanchored match took the run's end for a refusal of event 0."""
    run = await create_run(stubs, "a")
    bad = ev.RunEvent(step_progress=ev.StepProgress(step_id="a", percent=150))
    err = await rpc_error(append(stubs, run.run_id, custom(1), bad))
    assert reason_of(err) == ("INVALID_FIELD", {"event_index": "1"})
    violations = status_detail(err, error_details_pb2.BadRequest)
    assert violations is not None
    assert [(v.field, v.description) for v in violations.field_violations] == [
        ("events[1].step_progress.percent", "must be between 0 and 100, got 150")
    ]
    await append(stubs, run.run_id, custom(2, key="k"))
    clash = ev.RunEvent(idempotency_key="k", milestone=ev.Milestone(milestone_id="m", title="t"))
    err = await rpc_error(append(stubs, run.run_id, custom(3), clash))
    assert reason_of(err) == ("IDEMPOTENCY_KEY_REUSED", {"event_index": "1"})
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    again = ev.RunEvent(step_started=ev.StepStarted(step_id="a"))
    err = await rpc_error(append(stubs, run.run_id, again))
    assert reason_of(err) == ("STEP_ENDED", {"event_index": "0"})
    batch = [ev.RunEvent(run_completed=ev.RunCompleted(summary="done")), custom(4)]
    err = await rpc_error(append(stubs, run.run_id, *batch))
    assert reason_of(err) == ("RUN_ENDED", {})  # the run's, though the message names events
    await append(stubs, run.run_id, batch[0])
    err = await rpc_error(append(stubs, run.run_id, custom(5)))
    assert reason_of(err) == ("RUN_ENDED", {})
    err = await rpc_error(stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id="nope")))
    assert reason_of(err) == ("RUN_NOT_FOUND", {})
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_finished_steps_cannot_restart(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")))
    err = await rpc_error(
        append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already SUCCEEDED" in err.details()


async def test_oversized_input_is_resource_exhausted(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    big = ev.RunEvent(custom=ev.Custom(type="blob"))
    big.custom.data.update({"text": "x" * 300_000})
    err = await rpc_error(append(stubs, run.run_id, big))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("events[0]:")
    # Above the 4 MiB message limit gRPC itself refuses the message.
    huge = [ev.RunEvent(custom=ev.Custom(type="blob")) for _ in range(20)]
    for event in huge:
        event.custom.data.update({"text": "y" * 250_000})
    err = await rpc_error(append(stubs, run.run_id, *huge))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    too_many = [custom(n) for n in range(1001)]
    err = await rpc_error(append(stubs, run.run_id, *too_many))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("events:")
    snap = (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    assert snap.last_seq == 1


async def test_a_batch_of_exactly_the_most_events_a_batch_may_hold_is_stored(stubs) -> None:  # type: ignore[no-untyped-def]
    """The limit of 1000 events is the most a batch may hold, not the first it may not."""
    run = await create_run(stubs)
    result = await append(stubs, run.run_id, *(custom(n) for n in range(1000)))
    assert [a.seq for a in result.events] == list(range(2, 1002))
    assert result.last_seq == 1001


async def test_a_run_created_with_exactly_the_most_labels_a_run_may_have_is_created(stubs) -> None:  # type: ignore[no-untyped-def]
    """64 labels is the most a run may have (the field's limit and the server's agree), not
    the first count it refuses; one more is INVALID_ARGUMENT naming the labels."""
    labels = {f"k{i:02}": "v" for i in range(64)}
    run = await create_run(stubs, labels=labels)
    assert len(run.labels) == 64
    labels["k64"] = "v"
    err = await rpc_error(create_run(stubs, labels=labels))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith("labels:"), err.details()


async def test_create_run_validation(stubs) -> None:  # type: ignore[no-untyped-def]
    cases = [
        (run_service_pb2.CreateRunRequest(), "workflow"),
        (run_service_pb2.CreateRunRequest(workflow="wf", run_id="has space"), "run_id"),
        (
            run_service_pb2.CreateRunRequest(workflow="wf", labels={"bad key": "x"}),
            "labels['bad key']",
        ),
        (
            run_service_pb2.CreateRunRequest(workflow="wf", steps=[run_pb2.StepSpec()]),
            "steps[0].step_id",
        ),
        (
            run_service_pb2.CreateRunRequest(
                workflow="wf", steps=[run_pb2.StepSpec(step_id="a"), run_pb2.StepSpec(step_id="a")]
            ),
            "steps[1].step_id",
        ),
        (
            run_service_pb2.CreateRunRequest(
                workflow="wf",
                steps=[
                    run_pb2.StepSpec(step_id="a"),
                    run_pb2.StepSpec(step_id="b", depends_on=["c"]),
                ],
            ),
            "steps[1].depends_on[0]",
        ),
        (
            run_service_pb2.CreateRunRequest(
                workflow="wf", steps=[run_pb2.StepSpec(step_id="a", depends_on=["a"])]
            ),
            "steps[0].depends_on[0]",
        ),
        (
            run_service_pb2.CreateRunRequest(
                workflow="wf",
                steps=[
                    run_pb2.StepSpec(step_id="a", depends_on=["c"]),
                    run_pb2.StepSpec(step_id="b", depends_on=["a"]),
                    run_pb2.StepSpec(step_id="c", depends_on=["b"]),
                ],
            ),
            "steps[0].depends_on",
        ),
    ]
    for request, field in cases:
        err = await rpc_error(stubs.runs.CreateRun(request))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith(field + ":"), err.details()
    await stubs.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf", run_id="mine"))
    err = await rpc_error(
        stubs.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf", run_id="mine"))
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("field", ["health_changed", "estimate_updated", "run_status_changed"])
async def test_server_written_kinds_are_refused_from_producers(stubs, field) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    event = ev.RunEvent()
    getattr(event, field).SetInParent()
    err = await rpc_error(append(stubs, run.run_id, event))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(f"events[0].{field}:")


async def test_a_resent_batch_stores_its_new_event_whose_key_another_run_holds(stubs) -> None:  # type: ignore[no-untyped-def]
    """Idempotency keys are each run's own. A batch resent with one new event (its first is
    in the log, so the server looks the batch's keys up) stores the new one though another
    run holds its key: a producer that keys every run's events alike (k1, k2, ...) loses none."""
    for run_id in ("run-a", "run-b"):
        await create_run(stubs, run_id=run_id)
    await append(stubs, "run-b", custom(2))
    await append(stubs, "run-a", custom(1))
    ack = await append(stubs, "run-a", custom(1), custom(2))
    assert [(a.seq, a.duplicate) for a in ack.events] == [(2, True), (3, False)]
    log = await stubs.runs.ListEvents(run_service_pb2.ListEventsRequest(run_id="run-a"))
    assert [e.idempotency_key for e in log.events] == ["", "k1", "k2"]
