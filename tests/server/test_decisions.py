"""Decisions: first valid answer wins, idempotent repeats, durable deadlines, one log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from runstream.v1 import decision_pb2, decision_service_pb2_grpc, run_pb2
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs
from runstream_server.api.run_service import frame_event
from runstream_server.app import RunstreamServer
from runstream_server.domain import state
from runstream_server.domain.runs import Limits, Retention, RunManager
from runstream_server.errors import InvalidArgument
from runstream_server.store.sqlite import SqliteEventStore

from tests.conftest import ConfigFactory, RedisProcess, redis_store_url, serving_on
from tests.server.conftest import Stubs
from tests.server.support import (
    append,
    create_run,
    ev,
    status_detail,
    wall_clock_off,
    watch_all,
)

DECISION_PROTO = Path(__file__).resolve().parents[2] / "protos/runstream/v1/decision_service.proto"
OPTIONS = [ev.DecisionOption(value=v, label=v.title()) for v in ("gen_z", "parents", "pros")]


def ask(decision_id: str = "persona", **fields) -> ev.RunEvent:  # type: ignore[no-untyped-def]
    fields.setdefault("options", OPTIONS)
    return ev.RunEvent(
        decision_requested=ev.DecisionRequested(
            decision_id=decision_id, prompt="Which persona first?", **fields
        )
    )


@pytest.fixture
def decisions(stubs):  # type: ignore[no-untyped-def]
    return decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)


async def submit(decisions, run_id: str, choice: str = "", **fields) -> decision_pb2.Decision:  # type: ignore[no-untyped-def]
    request = ds.SubmitDecisionRequest(
        run_id=run_id, decision_id=fields.pop("decision_id", "persona"), choice=choice, **fields
    )
    return (await decisions.SubmitDecision(request)).decision


async def status_of(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details()


async def get(stubs, run_id: str) -> rs.GetRunResponse:  # type: ignore[no-untyped-def]
    return await stubs.runs.GetRun(rs.GetRunRequest(run_id=run_id))


async def test_a_question_waits_for_input_and_the_answer_resumes_the_run(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="a")), ask())
    details = await get(stubs, run.run_id)
    assert details.run.status == run_pb2.RUN_STATUS_WAITING_FOR_INPUT
    assert [d.decision_id for d in details.open_decisions] == ["persona"]
    assert [o.value for o in details.open_decisions[0].options] == ["gen_z", "parents", "pros"]
    decision = await submit(decisions, run.run_id, "parents", answered_by="alice")
    assert (decision.state, decision.outcome, decision.choice, decision.answered_by) == (
        decision_pb2.DECISION_STATE_RESOLVED,
        ev.DECISION_OUTCOME_ANSWERED,
        "parents",
        "alice",
    )
    details = await get(stubs, run.run_id)
    assert details.run.status == run_pb2.RUN_STATUS_RUNNING
    assert list(details.open_decisions) == []


async def test_answer_rules_each_get_their_status(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask(), ask("optional", can_skip=True))
    assert await status_of(submit(decisions, run.run_id, "teens")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "choice: 'teens' is not one of the options 'gen_z', 'parents', 'pros'",
    )
    code, details = await status_of(submit(decisions, run.run_id, skip=True))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "skip")
    code, details = await status_of(submit(decisions, run.run_id))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "choice")
    code, _ = await status_of(submit(decisions, run.run_id, "gen_z", decision_id="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await status_of(submit(decisions, "no-run", "gen_z"))
    assert code == grpc.StatusCode.NOT_FOUND

    first = await submit(decisions, run.run_id, "pros", answered_by="bob")
    again = await submit(decisions, run.run_id, "pros", answered_by="carol")
    assert again == first  # idempotent: the same answer returns the same result
    code, details = await status_of(submit(decisions, run.run_id, "gen_z"))
    assert code == grpc.StatusCode.ABORTED
    assert "ANSWERED with 'pros' (Pros) by bob" in details  # the label a person saw too

    skipped = await submit(decisions, run.run_id, skip=True, decision_id="optional")
    assert skipped.outcome == ev.DECISION_OUTCOME_SKIPPED

    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    # The winning answer sent again (a viewer's resend after a reconnect) still gets its result.
    assert await submit(decisions, run.run_id, "pros", answered_by="bob") == first
    code, details = await status_of(submit(decisions, run.run_id, "gen_z"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "already ended" in details
    # A request that is wrong in itself says so whatever the run's state, as while it ran.
    code, details = await status_of(submit(decisions, run.run_id, "teens"))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "choice")
    code, details = await status_of(submit(decisions, run.run_id, skip=True))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "skip")


async def test_two_viewers_answer_at_once_and_exactly_one_wins(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask())
    outcomes = await asyncio.gather(
        submit(decisions, run.run_id, "gen_z", answered_by="ann"),
        submit(decisions, run.run_id, "pros", answered_by="ben"),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if isinstance(o, decision_pb2.Decision)]
    losses = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(wins) == 1 and len(losses) == 1
    assert losses[0].code() == grpc.StatusCode.ABORTED
    assert repr(wins[0].choice) in losses[0].details()  # the loser learns the winning answer
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    log = [e for r in await watch_all(stubs, run.run_id) for e in r.events]
    resolved = [e.decision_resolved for e in log if e.HasField("decision_resolved")]
    assert [(r.choice, r.answered_by) for r in resolved] == [(wins[0].choice, wins[0].answered_by)]


async def test_interact_streams_prompts_and_answers_like_the_unary_path(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    # Separate workflows: the second run to finish must not learn speed from the first.
    unary = await create_run(stubs, workflow="unary")
    bidi = await create_run(stubs, workflow="bidi")
    await append(stubs, bidi.run_id, ask("first"))
    outgoing: asyncio.Queue[ds.InteractRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outgoing.get()

    stream = decisions.Interact(requests())
    await outgoing.put(
        ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[bidi.run_id], viewer="dana"))
    )
    first = await anext(aiter(stream))
    assert first.prompt.decision_id == "first"  # open before subscribing: sent on subscribe
    await append(stubs, bidi.run_id, ask("second"))
    assert (await anext(aiter(stream))).prompt.decision_id == "second"
    await outgoing.put(
        ds.InteractRequest(
            answer=ds.InteractAnswer(
                answer_id=7,
                decision=ds.SubmitDecisionRequest(
                    run_id=bidi.run_id, decision_id="first", choice="nope"
                ),
            )
        )
    )
    rejected = (await anext(aiter(stream))).answer_result
    assert (rejected.answer_id, rejected.code) == (7, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert rejected.decision.state == decision_pb2.DECISION_STATE_OPEN
    for n, decision_id in ((8, "first"), (9, "second")):
        await outgoing.put(
            ds.InteractRequest(
                answer=ds.InteractAnswer(
                    answer_id=n,
                    decision=ds.SubmitDecisionRequest(
                        run_id=bidi.run_id, decision_id=decision_id, choice="pros"
                    ),
                )
            )
        )
    seen = [await anext(aiter(stream)) for _ in range(4)]
    results = {
        r.answer_result.answer_id: r.answer_result for r in seen if r.HasField("answer_result")
    }
    closed = [r.closed.decision_id for r in seen if r.HasField("closed")]
    assert results[8].code == 0 and results[8].decision.answered_by == "dana"
    assert results[9].code == 0
    assert sorted(closed) == ["first", "second"]
    stream.cancel()

    # The same story through SubmitDecision gives the same log, kind for kind.
    await append(stubs, unary.run_id, ask("first"))
    await append(stubs, unary.run_id, ask("second"))
    await submit(decisions, unary.run_id, "pros", decision_id="first", answered_by="dana")
    await submit(decisions, unary.run_id, "pros", decision_id="second", answered_by="dana")
    logs = []
    for run in (bidi, unary):
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        events = [e for r in await watch_all(stubs, run.run_id) for e in r.events]
        logs.append(
            [
                (
                    e.WhichOneof("payload"),
                    e.decision_resolved.choice,
                    e.decision_resolved.answered_by,
                )
                for e in events
            ]
        )
    assert logs[0] == logs[1]


async def test_the_producer_receives_the_answer_on_its_report_stream(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    outgoing: asyncio.Queue[rp.ReportRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outgoing.get()

    stream = stubs.report.Report(requests())
    await outgoing.put(rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[ask()]))
    assert (await anext(aiter(stream))).ack.batch_id == 1
    await submit(decisions, run.run_id, "gen_z", answered_by="eve")
    answer = (await anext(aiter(stream))).decision
    assert (answer.decision_id, answer.choice, answer.answered_by) == ("persona", "gen_z", "eve")
    stream.cancel()


async def test_nobody_answers_so_the_default_applies_once_at_the_deadline(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(
        stubs,
        run.run_id,
        ask(default_option="parents", timeout=duration_pb2.Duration(nanos=200_000_000)),
        ask("open_ended", timeout=duration_pb2.Duration(nanos=200_000_000)),
    )
    asked = (await get(stubs, run.run_id)).open_decisions[0]
    assert asked.HasField("deadline")
    await asyncio.sleep(0.6)
    resolved = {
        d.decision_id: d
        for d in (
            await decisions.ListDecisions(ds.ListDecisionsRequest(run_id=run.run_id))
        ).decisions
    }
    assert (resolved["persona"].outcome, resolved["persona"].choice) == (
        ev.DECISION_OUTCOME_DEFAULTED,
        "parents",
    )
    assert resolved["open_ended"].outcome == ev.DECISION_OUTCOME_TIMED_OUT
    assert (await get(stubs, run.run_id)).run.status == run_pb2.RUN_STATUS_RUNNING
    code, details = await status_of(submit(decisions, run.run_id, "pros"))
    assert code == grpc.StatusCode.ABORTED and "DEFAULTED with 'parents'" in details


async def test_a_deadline_counts_from_when_the_server_received_the_question(stubs) -> None:  # type: ignore[no-untyped-def]
    """The event time is the producer's: a clock an hour behind, or a question held up by an
    outage the producer rode out (a soak saw one 5 s late). The deadline counts the timeout
    from when the server received the question, as event.proto says, so humans get all of it."""
    run = await create_run(stubs)
    question = ask(timeout=duration_pb2.Duration(seconds=60))
    question.event_time.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    await append(stubs, run.run_id, question)
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    stored = listed.events[-1]
    deadline = stored.decision_requested.deadline.ToDatetime()
    assert deadline == stored.receive_time.ToDatetime() + timedelta(seconds=60)
    assert (await get(stubs, run.run_id)).open_decisions[0].deadline.ToDatetime() == deadline


async def test_a_default_none_of_the_options_is_the_fallback_taken_at_the_deadline_only(
    stubs, decisions
) -> None:  # type: ignore[no-untyped-def]
    """The agentic manager's own payload: files to pick from, and "analyze_all" when nobody
    picks. Its default was refused (INVALID_ARGUMENT default_option), so a producer ported
    from it could not ask its question at all."""
    run = await create_run(stubs)
    files = [ev.DecisionOption(value=v) for v in ("file1.pdf", "file2.xlsx")]
    timeout = duration_pb2.Duration(nanos=300_000_000)
    question = ask(options=files, default_option="analyze_all", timeout=timeout)
    await append(stubs, run.run_id, question)
    asked = (await get(stubs, run.run_id)).open_decisions[0]
    assert asked.default_option == "analyze_all"
    code, details = await status_of(submit(decisions, run.run_id, "analyze_all"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("choice:")
    await asyncio.sleep(0.8)
    request = ds.GetDecisionRequest(run_id=run.run_id, decision_id="persona")
    decision = (await decisions.GetDecision(request)).decision
    assert (decision.outcome, decision.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "analyze_all")
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    events = [e for r in await watch_all(stubs, run.run_id) for e in r.events]
    resolved = [e.decision_resolved for e in events if e.HasField("decision_resolved")]
    assert [(r.outcome, r.choice) for r in resolved] == [
        (ev.DECISION_OUTCOME_DEFAULTED, "analyze_all")
    ]


async def test_an_interact_answer_that_breaks_a_field_rule_gets_its_result_and_the_stream_goes_on(
    stubs, decisions
) -> None:  # type: ignore[no-untyped-def]
    """Field rules of an answer are answered like any other refusal, in its result; and an
    answer sent in the same message as a subscription is not lost."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask())
    outgoing: asyncio.Queue[ds.InteractRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outgoing.get()

    def answer(answer_id: int, choice: str, **fields) -> ds.InteractAnswer:  # type: ignore[no-untyped-def]
        request = ds.SubmitDecisionRequest(
            run_id=run.run_id, decision_id="persona", choice=choice, **fields
        )
        return ds.InteractAnswer(answer_id=answer_id, decision=request)

    stream = decisions.Interact(requests())
    await outgoing.put(ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run.run_id])))
    assert (await anext(aiter(stream))).prompt.decision_id == "persona"
    for bad, named in (
        (answer(1, "x" * 300), "answer.decision.choice"),
        (answer(2, "pros", answered_by="y" * 300), "answer.decision.answered_by"),
        (answer(-3, "pros"), "answer.answer_id"),
        # The domain's rules name the same fields by the same paths (they said "choice",
        # "decision_id" and, for an answer without a decision, "run_id").
        (answer(5, "zz"), "answer.decision.choice"),
        (answer(6, "pros", skip=True), "answer.decision.choice"),
        (ds.InteractAnswer(answer_id=7), "answer.decision.run_id"),
        (
            ds.InteractAnswer(
                answer_id=8, decision=ds.SubmitDecisionRequest(run_id=run.run_id, choice="pros")
            ),
            "answer.decision.decision_id",
        ),
    ):
        await outgoing.put(ds.InteractRequest(answer=bad))
        result = (await asyncio.wait_for(anext(aiter(stream)), 5)).answer_result
        assert result.answer_id == bad.answer_id
        assert result.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert result.message.startswith(f"{named}:")
        if bad.decision.decision_id:  # the decision it names, still open
            assert result.decision.state == decision_pb2.DECISION_STATE_OPEN
    both = ds.InteractRequest(
        subscribe=ds.InteractSubscribe(run_ids=[run.run_id], viewer="dana"),
        answer=answer(4, "pros"),
    )
    await outgoing.put(both)
    seen = [await asyncio.wait_for(anext(aiter(stream)), 5) for _ in range(2)]
    stream.cancel()
    result = next(r.answer_result for r in seen if r.HasField("answer_result"))
    assert (result.answer_id, result.code) == (4, 0)
    assert (result.decision.choice, result.decision.answered_by) == ("pros", "dana")
    assert [r.closed.decision_id for r in seen if r.HasField("closed")] == ["persona"]


async def test_deadlines_survive_a_restart_and_fire_once(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    path = tmp_path / "d.db"
    first = RunstreamServer(server_config(path))
    await first.start()
    assert first.runs is not None
    run = await first.runs.create_run(
        run_id="r", workflow="wf", display_name="", labels={}, steps=[]
    )
    await first.runs.append(
        "r", [ask(default_option="pros", timeout=duration_pb2.Duration(seconds=1))]
    )
    await first.stop(grace=0.1)  # the server is down when the deadline passes
    await asyncio.sleep(1.2)
    for _ in range(2):  # and restarting again does not fire it twice
        again = RunstreamServer(server_config(path))
        await again.start()
        assert again.runs is not None
        for _ in range(50):
            decision = await again.runs.get_decision(run.run_id, "persona")
            if decision.state == decision_pb2.DECISION_STATE_RESOLVED:
                break
            await asyncio.sleep(0.05)
        assert (decision.outcome, decision.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "pros")
        events, _ = await again.runs.list_events(
            run.run_id, filter_text="kind = DECISION_RESOLVED", page_size=10, page_token=""
        )
        assert len(events) == 1
        await again.stop(grace=0.1)


async def test_a_paused_runs_question_gets_its_default_at_its_deadline_after_a_restart(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A run paused while a question waits keeps the question's deadline: the server that
    starts after the deadline passed closes it with its default, as for a waiting run."""
    path = tmp_path / "p.db"
    first = RunstreamServer(server_config(path))
    await first.start()
    assert first.runs is not None
    await first.runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
    await first.runs.append(
        "r", [ask(default_option="pros", timeout=duration_pb2.Duration(seconds=1))]
    )
    await first.runs.pause_run("r", reason="lunch", requested_by="ops")
    await first.stop(grace=0.1)  # the server is down when the deadline passes
    await asyncio.sleep(1.1)
    again = RunstreamServer(server_config(path))
    await again.start()
    try:
        assert again.runs is not None
        for _ in range(40):
            decision = await again.runs.get_decision("r", "persona")
            if decision.state == decision_pb2.DECISION_STATE_RESOLVED:
                break
            await asyncio.sleep(0.05)
        assert (decision.outcome, decision.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "pros")
        assert (await again.runs.get_run("r")).status == run_pb2.RUN_STATUS_PAUSED
    finally:
        await again.stop(grace=0.1)


async def test_a_restart_arms_the_open_deadlines_without_loading_the_waiting_runs(
    tmp_path: Path,
) -> None:
    """Arming the stored deadlines reads the questions and answers of the waiting runs, and
    leaves memory to the runs in use: a run is loaded when its default is written."""
    path = tmp_path / "d.db"
    store = SqliteEventStore(path)
    await store.open()
    first = RunManager(store, frame=frame_event)
    for run_id, seconds in (("soon", 1), ("later", 600), ("answered", 1)):
        await first.create_run(run_id=run_id, workflow="wf", display_name="", labels={}, steps=[])
        timeout = duration_pb2.Duration(seconds=seconds)
        await first.append(run_id, [ask(default_option="pros", timeout=timeout)])
    await first.submit_decision(
        "answered", "persona", choice="parents", skip=False, answered_by="me"
    )
    first.shutdown()
    await store.close()

    store = SqliteEventStore(path)
    await store.open()
    again = RunManager(store, frame=frame_event)
    try:
        await again.start()
        assert again.cached_runs == 0
        for _ in range(60):
            soon = await again.get_decision("soon", "persona")
            if soon.state == decision_pb2.DECISION_STATE_RESOLVED:
                break
            await asyncio.sleep(0.05)
        assert (soon.outcome, soon.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "pros")
        later = await again.get_decision("later", "persona")
        assert later.state == decision_pb2.DECISION_STATE_OPEN
        await asyncio.sleep(0.3)  # the answered question's old deadline has passed too
        answered = await again.get_decision("answered", "persona")
        assert (answered.outcome, answered.choice) == (ev.DECISION_OUTCOME_ANSWERED, "parents")
        resolutions, _ = await again.list_events(
            "answered", filter_text="kind = DECISION_RESOLVED", page_size=10, page_token=""
        )
        assert len(resolutions) == 1
    finally:
        again.shutdown()
        await store.close()


async def test_ending_a_run_cancels_its_open_decisions(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask())
    await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="stop"))
    decision = (
        await decisions.GetDecision(ds.GetDecisionRequest(run_id=run.run_id, decision_id="persona"))
    ).decision
    assert decision.outcome == ev.DECISION_OUTCOME_CANCELLED
    kinds = [e.WhichOneof("payload") for r in await watch_all(stubs, run.run_id) for e in r.events]
    assert kinds[-2:] == ["decision_resolved", "run_cancelled"]


async def _answers_about_decisions(
    stubs: Stubs, purged: str, kept: str
) -> list[tuple[grpc.StatusCode, str]]:
    """What ListDecisions, GetDecision and the winning answer sent again (unary and on an
    Interact stream) get on the `purged` run; the `kept` run still answers in full."""
    decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
    listed = await decisions.ListDecisions(ds.ListDecisionsRequest(run_id=kept))
    assert [(d.decision_id, d.choice) for d in listed.decisions] == [("persona", "pros")]
    got = await decisions.GetDecision(ds.GetDecisionRequest(run_id=kept, decision_id="persona"))
    assert got.decision.answered_by == "bo"
    never = decisions.GetDecision(ds.GetDecisionRequest(run_id=kept, decision_id="never"))
    assert (await status_of(never))[0] == grpc.StatusCode.NOT_FOUND  # never asked, not purged
    answer = ds.SubmitDecisionRequest(run_id=purged, decision_id="persona", choice="parents")
    statuses = [
        await status_of(decisions.ListDecisions(ds.ListDecisionsRequest(run_id=purged))),
        await status_of(
            decisions.ListDecisions(ds.ListDecisionsRequest(run_id=purged, filter="state = OPEN"))
        ),
        await status_of(
            decisions.GetDecision(ds.GetDecisionRequest(run_id=purged, decision_id="persona"))
        ),
        await status_of(
            decisions.GetDecision(ds.GetDecisionRequest(run_id=purged, decision_id="never"))
        ),
        await status_of(decisions.SubmitDecision(answer)),
    ]
    resent = ds.InteractRequest(answer=ds.InteractAnswer(answer_id=1, decision=answer))
    [reply] = [r async for r in decisions.Interact(iter([resent]))]
    result = reply.answer_result
    assert not result.HasField("decision")  # nothing left to show
    code = next(c for c in grpc.StatusCode if c.value[0] == result.code)
    return [*statuses, (code, result.message)]


async def test_decisions_of_a_run_whose_log_retention_purged_are_a_precondition_failure(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Decisions are kept in the run's log, so retention takes them with it: asked about, the
    run says so (FAILED_PRECONDITION, like ListEvents), rather than that they never existed
    or that it had none; also after a restart, when the run is read from the store again."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    for restarted in (False, True):
        server = RunstreamServer(config)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(server.target) as channel:
                stubs = Stubs.on(channel)
                decisions = decision_service_pb2_grpc.DecisionServiceStub(channel)
                if not restarted:
                    old, new = await create_run(stubs), await create_run(stubs)
                    for run, who in ((old, "al"), (new, "bo")):
                        await append(stubs, run.run_id, ask())
                        await submit(decisions, run.run_id, "pros", answered_by=who)
                        await append(
                            stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted())
                        )
                    assert server.runs is not None
                    assert await server.runs.apply_retention() == [old.run_id]
                snapshot = (await get(stubs, old.run_id)).run
                assert snapshot.status == run_pb2.RUN_STATUS_SUCCEEDED
                assert snapshot.purged_seq == snapshot.last_seq > 0
                listed = await stubs.runs.ListRuns(rs.ListRunsRequest())
                assert {r.run_id for r in listed.runs} == {old.run_id, new.run_id}
                events = await status_of(
                    stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id))
                )
                assert events[0] == grpc.StatusCode.FAILED_PRECONDITION
                for code, details in await _answers_about_decisions(stubs, old.run_id, new.run_id):
                    assert code == grpc.StatusCode.FAILED_PRECONDITION, (restarted, details)
                    assert "removed by the retention policy" in details, details
                    assert f"events 1..{snapshot.purged_seq} of run {old.run_id!r}" in details
        finally:
            await server.stop(grace=0.1)


async def test_paging_open_decisions_while_one_is_answered_skips_none(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    """Page tokens held an offset into the filtered list: answering a decision of page one
    shifted the open ones, so page two skipped one that was still open."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask("q1"), ask("q2"), ask("q3"))

    async def page(filter_text: str, token: str = "") -> ds.ListDecisionsResponse:
        request = ds.ListDecisionsRequest(
            run_id=run.run_id, page_size=1, page_token=token, filter=filter_text
        )
        return await decisions.ListDecisions(request)

    first = await page("state = OPEN")
    assert [d.decision_id for d in first.decisions] == ["q1"]
    await submit(decisions, run.run_id, "pros", decision_id="q1")
    second = await page("state = OPEN", first.next_page_token)
    assert [d.decision_id for d in second.decisions] == ["q2"]

    await submit(decisions, run.run_id, "pros", decision_id="q3")
    first = await page("state = RESOLVED")
    assert [d.decision_id for d in first.decisions] == ["q1"]
    await submit(decisions, run.run_id, "pros", decision_id="q2")
    seen = [d.decision_id for d in first.decisions]
    token = first.next_page_token
    while token:
        response = await page("state = RESOLVED", token)
        seen += [d.decision_id for d in response.decisions]
        token = response.next_page_token
    assert seen == ["q1", "q2", "q3"]


async def test_bad_questions_are_rejected(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask())
    code, details = await status_of(append(stubs, run.run_id, ask()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("events[0].decision_requested.decision_id:")


async def test_a_question_offering_the_same_value_twice_is_refused(stubs) -> None:  # type: ignore[no-untyped-def]
    """Two options of one value could not be told apart by the answer (the value is all an
    answer names): the question is refused, naming its options, and nothing is asked."""
    run = await create_run(stubs)
    twice = [ev.DecisionOption(value="pros", label="Pros"), ev.DecisionOption(value="pros")]
    code, details = await status_of(append(stubs, run.run_id, ask(options=twice)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "events[0].decision_requested.options: option values must be unique"
    assert (await get(stubs, run.run_id)).run.status == run_pb2.RUN_STATUS_PENDING


async def test_a_question_with_its_own_deadline_is_refused_not_left_open(stubs) -> None:  # type: ignore[no-untyped-def]
    """The server writes the deadline from the timeout; one the producer set was dropped, so
    a question meant to close in the past stayed open without any deadline."""
    run = await create_run(stubs)
    past = ask(deadline=timestamp_pb2.Timestamp(seconds=1))
    code, details = await status_of(append(stubs, run.run_id, past))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("events[0].decision_requested.deadline:")
    assert (await get(stubs, run.run_id)).run.last_seq == 1  # nothing of it was stored


async def test_an_answer_after_the_deadline_loses_even_before_the_timer_runs(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Where no timer of this process counts the deadline (the question was asked on another
    replica, whose commit this one has not heard of yet), the server's clock decides: a late
    answer finds the default taken."""
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 6, 1, tzinfo=UTC)]
    server = RunstreamServer(server_config(tmp_path / "l.db"))
    await server.start()
    try:
        runs = server.runs
        assert runs is not None
        runs._clock = lambda: now[0]  # a clock the test moves
        await runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
        await runs.append(
            "r", [ask(default_option="pros", timeout=duration_pb2.Duration(seconds=60))]
        )
        runs._decisions.deadlines.disarm("r", "persona")  # armed on another replica only
        now[0] += timedelta(seconds=61)
        with pytest.raises(Exception, match="DEFAULTED with 'pros'") as info:
            await runs.submit_decision(
                "r", "persona", choice="gen_z", skip=False, answered_by="late"
            )
        assert type(info.value).__name__ == "Aborted"
    finally:
        await server.stop(grace=0.1)


def deadline_write_fails_once(monkeypatch: pytest.MonkeyPatch, runs: RunManager) -> asyncio.Event:
    """Makes the first write of a deadline's default fail as a full disk does (nothing
    stored); the event is set when it has."""
    from runstream_server.domain.decisions import DEADLINE_KEY_PREFIX
    from runstream_server.errors import NothingStored

    store = runs._store
    failed = asyncio.Event()
    write = store.append

    async def failing_once(run_id, events, *args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = any(e.idempotency_key.startswith(DEADLINE_KEY_PREFIX) for e in events)
        if deadline and not failed.is_set():
            failed.set()
            raise NothingStored("disk full")
        return await write(run_id, events, *args, **kwargs)

    monkeypatch.setattr(store, "append", failing_once)
    return failed


async def test_an_answer_while_a_failed_deadline_write_waits_to_be_retried_loses(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline came and its write failed (a full disk): the retry waits half a second.
    An answer in between is too late all the same: the default is written first and the
    answer is ABORTED, not taken because the retry's timer has not run yet."""
    server = RunstreamServer(server_config(tmp_path / "d.db"))
    await server.start()
    try:
        runs = server.runs
        assert runs is not None
        failed = deadline_write_fails_once(monkeypatch, runs)
        await runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
        timeout = duration_pb2.Duration(nanos=100_000_000)
        await runs.append("r", [ask(default_option="pros", timeout=timeout)])
        await asyncio.wait_for(failed.wait(), 5)
        with pytest.raises(Exception, match="DEFAULTED with 'pros'") as info:
            await runs.submit_decision(
                "r", "persona", choice="gen_z", skip=False, answered_by="late"
            )
        assert type(info.value).__name__ == "Aborted"
        decision = await runs.get_decision("r", "persona")
        assert (decision.outcome, decision.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "pros")
    finally:
        await server.stop(grace=0.1)


async def test_a_wall_clock_stepped_forward_leaves_an_open_question_to_its_timer(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The server's clock stepped an hour forward (an NTP correction) 10 s into a question
    of 60 s: the human who answered then was told "already closed: DEFAULTED", though the
    deadline's timer (monotonic) had not fired and every watcher still saw it open. The
    timer this process armed decides: the answer is taken."""
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 6, 1, tzinfo=UTC)]
    server = RunstreamServer(server_config(tmp_path / "s.db"))
    await server.start()
    try:
        runs = server.runs
        assert runs is not None
        runs._clock = lambda: now[0]  # a clock the test steps; the timer stays 60 s away
        await runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
        await runs.append(
            "r", [ask(default_option="pros", timeout=duration_pb2.Duration(seconds=60))]
        )
        now[0] += timedelta(hours=1, seconds=10)
        answered = await runs.submit_decision(
            "r", "persona", choice="gen_z", skip=False, answered_by="dana"
        )
        assert (answered.outcome, answered.choice) == (ev.DECISION_OUTCOME_ANSWERED, "gen_z")
    finally:
        await server.stop(grace=0.1)


async def test_an_interact_stream_that_follows_no_run_ends_when_the_viewer_closes_its_side(
    stubs,
    decisions,  # type: ignore[no-untyped-def]
) -> None:
    """Closing the sending side with nothing followed ended nothing: the stream stayed open
    until the viewer's deadline. A viewer that follows runs keeps getting their prompts."""

    async def nothing():  # type: ignore[no-untyped-def]
        return
        yield

    async def empty_subscription():  # type: ignore[no-untyped-def]
        yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[], viewer="dana"))

    for requests in (nothing, empty_subscription):
        async with asyncio.timeout(5):
            assert [m async for m in decisions.Interact(requests())] == []
    run = await create_run(stubs)

    async def following():  # type: ignore[no-untyped-def]
        yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run.run_id]))

    stream = decisions.Interact(following())
    await append(stubs, run.run_id, ask("later"))
    async with asyncio.timeout(5):
        assert (await anext(aiter(stream))).prompt.decision_id == "later"
    stream.cancel()


async def test_get_decision_names_its_first_missing_field(stubs, decisions) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await decisions.GetDecision(ds.GetDecisionRequest())
    assert (info.value.code(), info.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id: is required",
    )


def _leading_comment(proto: Path, declaration: str) -> str:
    """The `//` comment lines just above `declaration` in a .proto file, joined."""
    lines = proto.read_text().splitlines()
    at = lines.index(declaration)
    comment: list[str] = []
    while at > 0 and lines[at - 1].startswith("//"):
        at -= 1
        comment.insert(0, lines[at].removeprefix("//").strip())
    return " ".join(comment)


async def test_an_interact_request_with_both_fields_is_what_its_comment_says(
    stubs, decisions
) -> None:  # type: ignore[no-untyped-def]
    """The contract says what the server does: subscribe and answer may come in one message,
    the subscription (runs and viewer) applied first; a message with neither ends the stream
    INVALID_ARGUMENT."""
    said = _leading_comment(DECISION_PROTO, "message InteractRequest {")
    assert "Exactly one field is set" not in said, said
    assert "When both are set, `subscribe` is applied first" in said, said
    assert "neither is INVALID_ARGUMENT" in said, said
    run = await create_run(stubs)
    await append(stubs, run.run_id, ask())
    both = ds.InteractRequest(
        subscribe=ds.InteractSubscribe(run_ids=[run.run_id], viewer="erin"),
        answer=ds.InteractAnswer(
            answer_id=1,
            decision=ds.SubmitDecisionRequest(
                run_id=run.run_id, decision_id="persona", choice="gen_z"
            ),
        ),
    )
    stream = decisions.Interact(iter([both]))
    seen = []  # the prompt (subscribed first), its closure, then the answer's result
    while not seen or not seen[-1].HasField("answer_result"):
        seen.append(await asyncio.wait_for(anext(aiter(stream)), 5))
    stream.cancel()
    assert [[f.name for f, _ in r.ListFields()] for r in seen] == [
        ["prompt"],
        ["closed"],
        ["answer_result"],
    ]
    result = seen[-1].answer_result
    assert (result.code, result.decision.choice) == (0, "gen_z")
    assert result.decision.answered_by == "erin"  # the viewer of the same message's subscribe
    stream = decisions.Interact(iter([ds.InteractRequest()]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("subscribe:")


async def test_an_interact_stream_follows_at_most_its_limit_of_runs_over_all_subscriptions(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """One message names at most 1,000 runs; more messages could widen a stream without end
    before, each run followed holding memory until the stream ends."""
    server = RunstreamServer(server_config(tmp_path / "f.db", limits=Limits(max_followed_runs=3)))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stubs = Stubs.on(channel)
            runs = [(await create_run(stubs)).run_id for _ in range(4)]
            go_on, widen = asyncio.Event(), asyncio.Event()

            async def widening():  # type: ignore[no-untyped-def]
                yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=runs[:2]))
                await go_on.wait()
                # Again one already followed: still three, within the limit.
                yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=runs[1:3]))
                await widen.wait()
                yield ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=runs[3:]))

            stream = decision_service_pb2_grpc.DecisionServiceStub(channel).Interact(widening())
            await append(stubs, runs[0], ask("first"))
            async with asyncio.timeout(10):
                assert (await anext(aiter(stream))).prompt.decision_id == "first"
                go_on.set()
                await append(stubs, runs[2], ask("third"))
                assert (await anext(aiter(stream))).prompt.decision_id == "third"
                widen.set()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await anext(aiter(stream))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.details() == (
                "subscribe.run_ids: an Interact stream follows at most 3 runs; this one "
                "follows 3, and this subscription adds 1"
            )
    finally:
        await server.stop(grace=0.5)


async def test_a_question_asked_and_closed_in_one_batch_is_prompted_open_then_closed(
    stubs, decisions
) -> None:  # type: ignore[no-untyped-def]
    """A batch that asks and ends the run (its end closes the question) gave viewers a prompt
    already RESOLVED, with the outcome filled in, where the contract says a prompt is an
    open decision (found in review)."""
    run = await create_run(stubs)
    outgoing: asyncio.Queue[ds.InteractRequest] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outgoing.get()

    stream = aiter(decisions.Interact(requests()))
    await outgoing.put(ds.InteractRequest(subscribe=ds.InteractSubscribe(run_ids=[run.run_id])))
    await append(stubs, run.run_id, ask("early"))
    assert (await anext(stream)).prompt.decision_id == "early"  # the stream follows the run
    completed = ev.RunEvent(run_completed=ev.RunCompleted(summary="done"))
    await append(stubs, run.run_id, ask("last"), completed)
    seen = [await anext(stream) for _ in range(3)]
    said = [("prompt", m.prompt) if m.HasField("prompt") else ("closed", m.closed) for m in seen]
    in_order = [(what, decision.decision_id) for what, decision in said]
    assert in_order in (
        [("prompt", "last"), ("closed", "early"), ("closed", "last")],
        [("closed", "early"), ("prompt", "last"), ("closed", "last")],
    )
    [prompt] = [decision for what, decision in said if what == "prompt"]
    assert prompt.state == decision_pb2.DECISION_STATE_OPEN
    assert (prompt.outcome, prompt.resolved_seq, prompt.answered_by) == (0, 0, "")
    assert not prompt.HasField("resolve_time")
    assert said[-1][1].outcome == ev.DECISION_OUTCOME_CANCELLED


async def test_a_replica_whose_clock_runs_ahead_leaves_a_question_its_whole_time(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """Every replica arms every deadline, and the one whose clock ran 5 minutes ahead fired
    a question asked on another at once: the human had 0 s of its 60, and its resolve_time
    was 5 minutes past its deadline. Replicas on Redis read Redis's clock: the question
    stays open its whole time and closes at its deadline, whichever replica closes it."""
    if store_kind != "redis":
        pytest.skip("replicas share a Redis store")
    from datetime import UTC, timedelta

    redis: RedisProcess = request.getfixturevalue("redis_server")
    url = redis_store_url(redis, tmp_path / "shared")
    async with (
        serving_on(url, tmp_path / "a") as a,
        serving_on(url, tmp_path / "b") as b,
        grpc.aio.insecure_channel(a.target) as channel,
    ):
        await wall_clock_off(b, 300)
        stubs = Stubs.on(channel)
        decisions = decision_service_pb2_grpc.DecisionServiceStub(channel)
        run = await create_run(stubs)
        timeout = duration_pb2.Duration(seconds=2)
        await append(stubs, run.run_id, ask(default_option="pros", timeout=timeout))
        wanted = ds.GetDecisionRequest(run_id=run.run_id, decision_id="persona")
        await asyncio.sleep(1.0)
        assert (await decisions.GetDecision(wanted)).decision.state == (
            decision_pb2.DECISION_STATE_OPEN
        )
        for _ in range(200):
            decision = (await decisions.GetDecision(wanted)).decision
            if decision.state != decision_pb2.DECISION_STATE_OPEN:
                break
            await asyncio.sleep(0.05)
        assert decision.outcome == ev.DECISION_OUTCOME_DEFAULTED
        late = decision.resolve_time.ToDatetime(UTC) - decision.deadline.ToDatetime(UTC)
        assert timedelta(0) <= late < timedelta(seconds=1)


async def test_a_run_has_at_most_its_limit_of_open_decisions_and_of_decisions_in_all(  # type: ignore[no-untyped-def]
    stubs, decisions, monkeypatch
) -> None:
    """Each open decision is closed with an event of its own as the run ends, and each stays
    in memory with the run: 30,000 of them, asked by one producer within its rate, held the
    server's event loop for 51 s of CPU as the run was cancelled (found in review)."""
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, *(ask(f"d{i}") for i in range(state.MAX_OPEN_DECISIONS)))
    before = (await get(stubs, run.run_id)).run.last_seq

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(text_delta=ev.TextDelta(message_id="m", delta="x")),
            ask(),
        )
    exc = info.value
    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (exc.details() or "").startswith(
        f"events[1].decision_requested.decision_id: run {run.run_id!r} has "
        f"{state.MAX_OPEN_DECISIONS} open decisions, the most a run may have open"
    )
    error = status_detail(exc, error_details_pb2.ErrorInfo)
    assert error is not None and error.reason == "DECISION_LIMIT"
    assert dict(error.metadata) == {"event_index": "1"}
    assert (await get(stubs, run.run_id)).run.last_seq == before  # nothing of the batch kept

    await submit(decisions, run.run_id, "pros", decision_id="d0")
    await append(stubs, run.run_id, ask())  # one answered: room for one more

    monkeypatch.setattr(state, "MAX_RUN_DECISIONS", state.MAX_OPEN_DECISIONS + 1)
    await submit(decisions, run.run_id, "pros", decision_id="d1")
    code, details = await status_of(append(stubs, run.run_id, ask("late")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"has asked {state.MAX_OPEN_DECISIONS + 1} decisions, the most a run may ask" in details

    await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="enough"))
    ended = await get(stubs, run.run_id)
    assert ended.run.status == run_pb2.RUN_STATUS_CANCELLED and not ended.open_decisions
    listed = await decisions.ListDecisions(
        ds.ListDecisionsRequest(run_id=run.run_id, page_size=1000)
    )
    outcomes = [d.outcome for d in listed.decisions]
    assert outcomes.count(ev.DECISION_OUTCOME_CANCELLED) == state.MAX_OPEN_DECISIONS - 1


async def test_a_runs_decisions_hold_at_most_their_limit_of_bytes(
    stubs, decisions, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A run's decisions stay in memory with it, prompts and contexts whole, outside its
    snapshot's cap: 1,000 questions with a 200 KB context took the server's memory from 206
    to 463 MB (found in review). A question past MAX_DECISION_BYTES is refused, also once the
    ones before it are answered (they are still held)."""
    monkeypatch.setattr(state, "MAX_DECISION_BYTES", 100_000)
    context = struct_pb2.Struct()
    context.update({"draft": "x" * 30_000})
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, ask("d0", context=context), ask("d1", context=context))
    await submit(decisions, run.run_id, "pros", decision_id="d0")
    await append(stubs, run.run_id, ask("d2", context=context))
    await submit(decisions, run.run_id, "pros", decision_id="d1")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await append(stubs, run.run_id, ask("d3", context=context))
    exc = info.value
    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (exc.details() or "").startswith(
        f"events[0].decision_requested: run {run.run_id!r} has decisions of "
    )
    assert "past the limit of 100000 bytes" in (exc.details() or "")
    error = status_detail(exc, error_details_pb2.ErrorInfo)
    assert error is not None and error.reason == "DECISION_LIMIT"
    await append(stubs, run.run_id, ask("d3"))  # one without the context still fits


@pytest.mark.parametrize(
    "negative",
    [duration_pb2.Duration(seconds=-1), duration_pb2.Duration(nanos=-1)],
    ids=["seconds", "nanos"],
)
async def test_the_domain_refuses_a_negative_timeout_without_the_request_checks(
    tmp_path: Path, negative: duration_pb2.Duration
) -> None:
    """A caller of the domain that skips the gRPC field checks (an embedding, a tool) gets
    the same refusal naming the field, and the run keeps no question that would time out
    before it was asked."""
    store = SqliteEventStore(tmp_path / "d.db")
    await store.open()
    runs = RunManager(store, frame=frame_event)
    try:
        await runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
        with pytest.raises(InvalidArgument) as refused:
            await runs.append("r", [ask(default_option="pros", timeout=negative)])
        assert refused.value.field == "events[0].decision_requested.timeout"
        assert (await runs.get_run("r")).last_seq == 1  # only the creation
    finally:
        runs.shutdown()
        await store.close()
