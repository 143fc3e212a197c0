"""Issue 8, items 1 and 3: page tokens are opaque and checked; nothing accepted breaks a read."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import (
    decision_service_pb2_grpc,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.queries import encode_token
from runstream_server.domain.runs import Limits
from runstream_server.domain.steps import MAX_RUN_STEPS

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, custom, ev, status_detail, watch_all

# Reads: the commit path changes nothing here.
STORES = BOTH_STORES


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


# What the report tried, and a few more: deep nesting, numbers SQLite and int() choke on,
# wrong shapes, bad base64, a token of this server cut short.
HOSTILE_TOKENS = {
    "deep-nesting": _b64(b"[" * 50_000),
    "huge-cursor": _b64(json.dumps({"after": [2**70, "x"]}).encode()),
    "infinite-number": _b64(b'{"after": 1e999, "offset": 1e999}'),
    "negative-offset": _b64(json.dumps({"offset": -5, "after": -5}).encode()),
    "not-base64": "!!!%%%",
    "empty-json": _b64(b"{}"),
}


def _list_calls(stubs: Stubs, run_id: str, token: str) -> dict[str, Callable[[], Any]]:
    """Each List RPC with `token`, as a function that starts the call."""
    decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
    return {
        "ListRuns": lambda: stubs.runs.ListRuns(rs.ListRunsRequest(page_token=token)),
        "ListSteps": lambda: stubs.runs.ListSteps(
            rs.ListStepsRequest(run_id=run_id, page_token=token)
        ),
        "ListEvents": lambda: stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run_id, page_token=token)
        ),
        "ListDecisions": lambda: decisions.ListDecisions(
            ds.ListDecisionsRequest(run_id=run_id, page_token=token)
        ),
    }


@pytest.mark.parametrize("name", sorted(HOSTILE_TOKENS))
async def test_every_list_rpc_answers_a_hostile_token_invalid_argument(
    stubs: Stubs, name: str
) -> None:
    run = await create_run(stubs, "a")
    for method, start in _list_calls(stubs, run.run_id, HOSTILE_TOKENS[name]).items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await start()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert (info.value.details() or "").startswith("page_token: "), method


async def test_a_token_cut_short_or_used_for_another_request_is_invalid_argument(
    stubs: Stubs,
) -> None:
    run = await create_run(stubs, *[f"s{i}" for i in range(5)])
    page = await stubs.runs.ListSteps(rs.ListStepsRequest(run_id=run.run_id, page_size=2))
    token = page.next_page_token
    other = await create_run(stubs, *[f"s{i}" for i in range(5)])
    for bad, request_run in ((token[:-3], run.run_id), (token, other.run_id)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListSteps(
                rs.ListStepsRequest(run_id=request_run, page_size=2, page_token=bad)
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith("page_token: ")
    # The real token, for its own request, still pages on.
    rest = await stubs.runs.ListSteps(
        rs.ListStepsRequest(run_id=run.run_id, page_size=10, page_token=token)
    )
    assert [s.step_id for s in rest.steps] == ["s2", "s3", "s4"]


# --- item 3: reads that gather many items stay under the message limit -----------------------


async def test_large_agent_activities_do_not_break_get_run(stubs: Stubs) -> None:
    """20 activities of 250 KB, each under the event limit: GetRun answers, newest first kept."""
    run = await create_run(stubs)
    for n in range(20):
        activity = ev.AgentActivity(
            agent_id=f"agent-{n}", activity=ev.AGENT_ACTIVITY_TYPE_PROGRESS, message=f"m{n}"
        )
        activity.data.update({"blob": "x" * 250_000})
        await append(stubs, run.run_id, ev.RunEvent(agent_activity=activity))
    got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
    messages = [e.agent_activity.message for e in got.recent_activity]
    assert messages and messages[-1] == "m19"  # the newest is there, oldest first as before
    assert messages == [f"m{n}" for n in range(20 - len(messages), 20)]
    assert got.ByteSize() < 4 * 1024 * 1024
    events = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, page_size=1000))
    assert 1 <= len(events.events) < 21 and events.next_page_token  # trimmed, not failed


async def test_big_events_page_through_list_events_without_loss(stubs: Stubs) -> None:
    run = await create_run(stubs)
    for start in range(0, 30, 10):
        batch = []
        for n in range(start, start + 10):
            event = custom(n)
            event.custom.data.update({"blob": "y" * 200_000})
            batch.append(event)
        await append(stubs, run.run_id, *batch)
    seen: list[int] = []
    token = ""
    while True:
        page = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, page_size=1000, page_token=token)
        )
        seen += [e.seq for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(1, 32))


@pytest.fixture
async def small_budget(tmp_path: Path, server_config: Any) -> AsyncIterator[Stubs]:
    """A server whose byte budget per response is 40 KB, so a few runs fill a page."""
    limits = Limits(response_bytes=40_000, max_snapshot_bytes=200_000)
    server = RunstreamServer(server_config(tmp_path / "r.db", limits=limits))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield Stubs(
                channel,
                run_service_pb2_grpc.RunServiceStub(channel),
                report_service_pb2_grpc.ReportServiceStub(channel),
            )
    finally:
        await server.stop(grace=0.5)


async def test_list_runs_and_watch_runs_split_big_runs_by_bytes(small_budget: Stubs) -> None:
    stubs = small_budget
    labels = {f"k{i}": "v" * 256 for i in range(60)}  # ~17 KB of labels, within every limit
    created = [(await create_run(stubs, labels=labels)).run_id for _ in range(7)]
    listed: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=50, page_token=token))
        assert page.ByteSize() <= 40_000 + 20_000  # the budget, plus at most one run over it
        listed += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert sorted(listed) == sorted(created) and len(listed) == 7
    assert pages >= 3
    request = rs.WatchRunsRequest(heartbeat_interval=duration_pb2.Duration(seconds=5))
    watched: list[str] = []
    async for response in stubs.runs.WatchRuns(request):
        if response.initial_state_complete:
            break
        assert response.ByteSize() <= 60_000
        watched += [r.run_id for r in response.runs]
    assert sorted(watched) == sorted(created)


def _snapshot_too_large(exc: grpc.aio.AioRpcError, run_id: str) -> bool:
    info = status_detail(exc, error_details_pb2.ErrorInfo)
    return (
        exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        and info is not None
        and info.reason == "SNAPSHOT_TOO_LARGE"
        and (exc.details() or "").startswith(
            f"events: this would grow the snapshot of run {run_id!r} to "
        )
    )


_ENDINGS = {
    "completed": (
        ev.RunEvent(run_completed=ev.RunCompleted(summary="s" * 4000)),
        run_pb2.RUN_STATUS_SUCCEEDED,
    ),
    "failed": (
        ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="m" * 4000))),
        run_pb2.RUN_STATUS_FAILED,
    ),
}


@pytest.mark.parametrize("ending", _ENDINGS)
async def test_a_run_cannot_grow_its_snapshot_past_the_limit_and_still_ends(
    small_budget: Stubs, ending: str
) -> None:
    """A run grown until a step is refused, so its snapshot is within a step of its limit,
    still ends with a summary (a long error message) of several KB, which closes its running
    steps too: its watcher sees the end."""
    stubs = small_budget
    run = await create_run(stubs)
    steps = [
        ev.RunEvent(step_started=ev.StepStarted(step_id=f"s{i}", description="d" * 4000))
        for i in range(60)  # ~240 KB of step descriptions: past the 200 KB snapshot limit
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await append(stubs, run.run_id, *steps)
    assert _snapshot_too_large(info.value, run.run_id)
    await append(stubs, run.run_id, *steps[:40])  # what fits is taken
    taken = 40
    while True:  # then one step at a time, up to the limit
        try:
            await append(stubs, run.run_id, steps[taken])
        except grpc.aio.AioRpcError as exc:
            assert _snapshot_too_large(exc, run.run_id)
            break
        taken += 1
    assert taken < 60
    watcher = asyncio.ensure_future(watch_all(stubs, run.run_id))
    end, status = _ENDINGS[ending]
    await append(stubs, run.run_id, end)
    got = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert (got.status, len(got.steps)) == (status, taken)
    assert (got.result_summary, got.error.message) == (
        end.run_completed.summary,
        end.run_failed.error.message,
    )
    watched = await asyncio.wait_for(watcher, 10)
    assert [e.seq for r in watched for e in r.events][-1] == got.last_seq
    assert watched[-1].events[-1].WhichOneof("payload") == end.WhichOneof("payload")


def _payload_of(token: str) -> dict[str, Any]:
    """What a token of this server carries (white box: version byte, JSON, 16-byte tag)."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    payload: dict[str, Any] = json.loads(raw[1:-16])
    return payload


@pytest.mark.parametrize(
    "position",
    [2**70, -1, 1e999, "x" * 1000, [[[[1]]]], [2**70, "x"], True],
    ids=["huge", "negative", "infinite", "long-string", "nested", "huge-cursor", "bool"],
)
async def test_a_well_tagged_token_with_a_hostile_position_is_invalid_argument(
    stubs: Stubs, position: object
) -> None:
    """Even a token made with the server's key (the default key is not a secret) is checked."""
    run = await create_run(stubs, *[f"s{i}" for i in range(3)])
    await create_run(stubs)
    real = {
        "ListRuns": (await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1))).next_page_token,
        "ListSteps": (
            await stubs.runs.ListSteps(rs.ListStepsRequest(run_id=run.run_id, page_size=1))
        ).next_page_token,
    }
    for method, token in real.items():
        payload = _payload_of(token)
        key = "after" if "after" in payload else "offset"
        forged = encode_token({**payload, key: position})
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _list_calls(stubs, run.run_id, forged)[method]()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, position)
        assert (info.value.details() or "").startswith("page_token: "), method


@pytest.mark.parametrize("position", [0, 1])
async def test_a_newest_first_token_forged_below_the_first_event_lists_nothing(
    stubs: Stubs, position: int
) -> None:
    """A newest-first token made with the (public) default key to list the events below
    seq 1: there are none, so the page is empty and the last, on every store (Redis refuses
    a reverse range that ends below 0-0; that error must not reach the caller)."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, custom(1), custom(2))
    first = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_size=1, order_by="seq desc")
    )
    forged = encode_token({**_payload_of(first.next_page_token), "before": position})
    rest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_token=forged, order_by="seq desc")
    )
    assert (list(rest.events), rest.next_page_token) == ([], "")


async def test_a_page_token_outlives_a_restart(tmp_path: Path, server_config: Any) -> None:
    """Tokens carry no per-process secret: after a restart (or on another replica of the same
    store) a client pages on where it was."""
    store = tmp_path / "restart.db"
    first = RunstreamServer(server_config(store))
    await first.start()
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            created = [(await create_run(Stubs(channel, runs, report))).run_id for _ in range(3)]
            page = await runs.ListRuns(rs.ListRunsRequest(page_size=2))
    finally:
        await first.stop(grace=0.5)
    second = RunstreamServer(server_config(store))
    await second.start()
    try:
        async with grpc.aio.insecure_channel(second.target) as channel:
            rest = await run_service_pb2_grpc.RunServiceStub(channel).ListRuns(
                rs.ListRunsRequest(page_size=2, page_token=page.next_page_token)
            )
    finally:
        await second.stop(grace=0.5)
    listed = [r.run_id for r in page.runs] + [r.run_id for r in rest.runs]
    assert sorted(listed) == sorted(created)


async def test_a_run_takes_at_most_max_run_steps_steps_and_still_ends(stubs: Stubs) -> None:
    """Every event recomputes the run's progress over its steps, and its end closes each
    running step with an event of its own: a run of 16,000 running steps froze the server
    for a minute as it ended (found in review). Steps past MAX_RUN_STEPS are refused."""
    run = await create_run(stubs, "planned")
    started = [
        ev.RunEvent(step_started=ev.StepStarted(step_id=f"s{i}")) for i in range(MAX_RUN_STEPS - 1)
    ]
    for first in range(0, len(started), 1000):
        await append(stubs, run.run_id, *started[first : first + 1000])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await append(
            stubs,
            run.run_id,
            custom(0),
            ev.RunEvent(step_started=ev.StepStarted(step_id="one-more")),
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (info.value.details() or "").startswith("events[1].step_started.step_id: run ")
    assert f"has {MAX_RUN_STEPS} steps" in (info.value.details() or "")
    await append(stubs, run.run_id, ev.RunEvent(step_started=ev.StepStarted(step_id="planned")))
    await append(
        stubs,
        run.run_id,
        ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="boom"))),
    )
    got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
    assert len(got.run.steps) == MAX_RUN_STEPS
    assert all(step.error.message == "the run failed: boom" for step in got.run.steps)


async def test_a_long_end_reason_is_cut_in_each_step_it_closes_and_whole_on_the_run(
    stubs: Stubs,
) -> None:
    """A cancel's reason was copied whole into each running step: a 4 KiB reason on a run
    of 1,000 running steps made a snapshot past the 4 MiB message limit, and every GetRun of
    the run failed from then on (found in review)."""
    run = await create_run(stubs)
    await append(
        stubs,
        run.run_id,
        *(ev.RunEvent(step_started=ev.StepStarted(step_id=f"s{i}")) for i in range(1000)),
    )
    reason = "r" * 4096
    await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason=reason))
    got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
    assert got.run.cancel_reason == reason
    messages = {step.error.message for step in got.run.steps}
    assert len(messages) == 1 and len(messages.pop()) < 300
    assert got.run.ByteSize() < 1024 * 1024
