"""ListRuns, ListSteps and ListEvents: AIP pagination, filters and ordering; health and
reflection always on."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from runstream.v1 import event_pb2, run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.queries import encode_token
from runstream_server.domain.runs import Limits, Retention

from tests.conftest import ConfigFactory, index_entries_only
from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, custom, ev, refused, serving

# Reads: the commit path changes nothing here.
STORES = BOTH_STORES


async def two_ended_runs(stubs: Stubs) -> tuple[run_pb2.Run, run_pb2.Run]:
    """Two runs of ten events or so each, the first ended first."""
    runs = await create_run(stubs), await create_run(stubs)
    for run in runs:
        await append(stubs, run.run_id, *(custom(n) for n in range(8)))
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    return runs


async def all_pages(stubs, **fields) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    ids: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_token=token, **fields))
        ids += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            return ids, pages


async def test_list_runs_pages_newest_first_without_gaps(stubs) -> None:  # type: ignore[no-untyped-def]
    created = [
        (await create_run(stubs, "a", workflow="wf", run_id=f"run-{i:02}")).run_id for i in range(7)
    ]
    ids, pages = await all_pages(stubs, page_size=3)
    assert ids == created[::-1]
    assert pages == 3
    first = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=3))
    assert all(len(r.steps) == 0 for r in first.runs)  # steps come from ListSteps/GetRun


async def test_a_page_of_more_than_500_runs_lists_every_one(stubs) -> None:  # type: ignore[no-untyped-def]
    """A page may hold 1,000 runs; the store reads their snapshots 500 ids per query (SQLite
    takes a bounded number of parameters), and Redis reads its index 200 entries at a time:
    none is left out where one read ends, and none is listed twice."""
    created = [(await create_run(stubs, run_id=f"run-{i:03}")).run_id for i in range(501)]
    page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1000))
    assert [r.run_id for r in page.runs] == created[::-1]
    assert not page.next_page_token


async def test_list_runs_filters(stubs) -> None:  # type: ignore[no-untyped-def]
    a = await create_run(stubs, workflow="campaign", labels={"team": "growth"})
    b = await create_run(stubs, workflow="campaign", labels={"team": "brand"})
    c = await create_run(stubs, workflow="story", labels={"team": "growth"})
    await append(stubs, a.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    await append(stubs, c.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))

    async def ids(filter_text: str) -> set[str]:
        return set((await all_pages(stubs, filter=filter_text))[0])

    assert await ids('workflow = "campaign"') == {a.run_id, b.run_id}
    assert await ids("status = RUNNING") == {a.run_id}
    assert await ids("status = RUN_STATUS_PENDING") == {b.run_id}
    assert await ids('labels.team = "growth"') == {a.run_id, c.run_id}
    assert await ids("labels.team = growth AND workflow = story") == {c.run_id}
    assert await ids('status=succeeded AND labels.team="growth"') == {c.run_id}
    assert await ids("") == {a.run_id, b.run_id, c.run_id}


async def test_runs_of_several_statuses_are_listed_and_followed_by_one_or_group(
    stubs: Stubs,
) -> None:
    """`status = FAILED OR status = CANCELLED`, the runs that went wrong, as the README's
    listing by ended status names it: refused as unparsable, where ListEvents took its
    kinds joined by OR. OR binds tighter than AND, with or without parentheses."""
    failed = await create_run(stubs, workflow="story")
    cancelled = await create_run(stubs, workflow="story")
    await create_run(stubs, workflow="story")  # pending
    other = await create_run(stubs, workflow="campaign")
    failure = ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="boom")))
    await append(stubs, failed.run_id, failure)
    await append(stubs, other.run_id, failure)
    await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=cancelled.run_id))
    gone_wrong = "status = FAILED OR status = CANCELLED"
    for text, expected in [
        (gone_wrong, [other.run_id, cancelled.run_id, failed.run_id]),
        (f'{gone_wrong} AND workflow = "story"', [cancelled.run_id, failed.run_id]),
        (f'workflow = "story" AND ({gone_wrong})', [cancelled.run_id, failed.run_id]),
        (f'workflow = "story" AND({gone_wrong})', [cancelled.run_id, failed.run_id]),
        ("status = FAILED OR status = RUN_STATUS_FAILED", [other.run_id, failed.run_id]),
    ]:
        assert (await all_pages(stubs, filter=text))[0] == expected, text
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter=f"status = RUNNING OR {gone_wrong}"))
    runs, _ = await initial_state(stream)
    assert sorted(r.run_id for r in runs) == sorted([other.run_id, cancelled.run_id, failed.run_id])
    started = await create_run(stubs, workflow="story")
    await append(stubs, started.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    assert [r.run_id for r in (await anext(aiter(stream))).runs] == [started.run_id]
    stream.cancel()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("status = FAILED OR workflow = story", "OR joins statuses only, in one group"),
        ("workflow = story OR status = FAILED", "OR joins statuses only, in one group"),
        ("status = FAILED AND status = CANCELLED", "statuses are compared in one OR group"),
        ("(status = FAILED OR status = CANCELLED", "a '(' is not closed"),
        ("status = FAILED OR", "cannot parse 'status = FAILED OR'"),
        # Listing the failed runs of "story" and every cancelled run would take OR between
        # groups, which the filter has not: refused, not read as "story" runs of either.
        (
            '(workflow = "story" AND status = FAILED) OR status = CANCELLED',
            'parentheses hold statuses joined by OR, not AND: \'workflow = "story" AND (status',
        ),
        ('workflow = "story")', "cannot parse"),
        ("(workflow = )", "a '(' is not closed"),
        ("status = FAILED OR bogus OR status = CANCELLED", "cannot parse 'bogus';"),
    ],
)
async def test_an_or_group_it_cannot_read_is_invalid_argument_saying_how(
    stubs: Stubs, bad: str, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListRuns(rs.ListRunsRequest(filter=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("filter:")
    assert message in info.value.details()


@pytest.mark.parametrize(
    "bad",
    [
        "status = DANCING",
        "owner = bob",
        "status RUNNING",
        "labels.bad key = x",
        "workflow = a AND workflow = b",
        "labels.team = a AND labels.team = b",
    ],
)
async def test_bad_filter_is_invalid_argument(stubs, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListRuns(rs.ListRunsRequest(filter=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("filter:")


async def test_a_single_quoted_value_is_invalid_argument_saying_to_use_double_quotes(  # type: ignore[no-untyped-def]
    stubs,
) -> None:
    """`workflow = 'campaign'`, as a Python user writes it, took the quotes as part of the
    value and listed no runs, without a word."""
    await create_run(stubs, workflow="campaign", labels={"team": "growth"})
    for single, double in [
        ("workflow = 'campaign'", 'workflow = "campaign"'),
        ("labels.team = 'growth' AND status = PENDING", 'labels.team = "growth"'),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListRuns(rs.ListRunsRequest(filter=single))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().endswith(f"quote a value with double quotes, {double}")
    assert (
        len((await stubs.runs.ListRuns(rs.ListRunsRequest(filter="labels.team = o'brien"))).runs)
        == 0
    )


async def test_page_tokens_are_checked(stubs) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        await create_run(stubs, workflow="wf", run_id=f"r{i}")
    page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1, filter="workflow = wf"))
    for request in [
        rs.ListRunsRequest(page_token="garbage!!"),
        rs.ListRunsRequest(page_token=page.next_page_token, filter="workflow = other"),
        rs.ListRunsRequest(page_size=-1),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListRuns(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().split(":")[0] in ("page_token", "page_size")


async def test_a_signed_runs_token_whose_position_leaves_int64_is_refused(stubs) -> None:  # type: ignore[no-untyped-def]
    """A token signed with the server's key (its default key is public) whose create time
    is a number string past int64: SQLite could not bind it (INTERNAL), Redis listed on."""
    for i in range(2):
        await create_run(stubs, workflow="wf", run_id=f"r{i}")
    page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1))
    raw = base64.urlsafe_b64decode(page.next_page_token + "=" * (-len(page.next_page_token) % 4))
    scope = json.loads(raw[1:-16])["scope"]
    for position in (str(2**63), str(-(2**63) - 1), "-1"):
        forged = encode_token({"scope": scope, "after": [position, "r0"]})
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1, page_token=forged))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("page_token: ")


async def test_a_page_size_over_1000_is_taken_as_1000(stubs) -> None:  # type: ignore[no-untyped-def]
    """As the contract says (and AIP-158 asks): more than the maximum is not an error; the
    page holds 1,000 and says where the rest begins."""
    run = await create_run(stubs)
    for start in (0, 600):
        await append(stubs, run.run_id, *(custom(n) for n in range(start, start + 600)))
    first = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, page_size=5000))
    assert [e.seq for e in first.events] == list(range(1, 1001))
    assert first.next_page_token
    rest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_size=5000, page_token=first.next_page_token)
    )
    assert [e.seq for e in rest.events] == list(range(1001, 1202))
    assert not rest.next_page_token


async def event_pages(
    stubs: Stubs, run_id: str, **fields: object
) -> tuple[list[int], list[rs.ListEventsResponse]]:
    """Every page of a ListEvents listing, following its tokens: the seqs and the pages."""
    seqs: list[int] = []
    pages: list[rs.ListEventsResponse] = []
    token = ""
    while True:
        page = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run_id, page_token=token, **fields)  # type: ignore[arg-type]
        )
        seqs += [e.seq for e in page.events]
        pages.append(page)
        token = page.next_page_token
        if not token:
            return seqs, pages


def alert(n: int) -> ev.RunEvent:
    return ev.RunEvent(alert=ev.Alert(message=f"alert {n}"), idempotency_key=f"alert{n}")


async def test_newest_first_lists_the_last_events_of_a_run_first(stubs: Stubs) -> None:
    """A watcher asks for the newest 5 of 31 events and gets seqs 31..27, without reading
    the log from its start; "seq" (or nothing) still lists the oldest first."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(30)))  # seqs 2..31

    async def first_page(order_by: str) -> list[int]:
        request = rs.ListEventsRequest(run_id=run.run_id, page_size=5, order_by=order_by)
        return [e.seq for e in (await stubs.runs.ListEvents(request)).events]

    assert await first_page("seq desc") == [31, 30, 29, 28, 27]
    assert await first_page("  seq   desc ") == [31, 30, 29, 28, 27]  # AIP-132: spaces
    assert await first_page("") == [1, 2, 3, 4, 5]
    assert await first_page("seq") == [1, 2, 3, 4, 5]
    newest = (
        await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=run.run_id, page_size=1, order_by="seq desc")
        )
    ).events[0]
    assert newest.custom.data["n"] == 29  # the event appended last, whole


async def test_newest_first_pages_through_the_whole_log_once(stubs: Stubs) -> None:
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(30)))
    seqs, pages = await event_pages(stubs, run.run_id, page_size=7, order_by="seq desc")
    assert seqs == list(range(31, 0, -1))  # every event, once, newest to RunCreated
    assert [len(p.events) for p in pages] == [7, 7, 7, 7, 3]
    assert pages[-1].events[-1].HasField("run_created")


async def test_newest_first_with_a_kind_filter_pages_through_those_kinds(stubs: Stubs) -> None:
    """The last alerts of a run whose log is mostly other events: newest first, each once."""
    run = await create_run(stubs)
    for n in range(6):
        await append(stubs, run.run_id, *(custom(10 * n + i) for i in range(9)), alert(n))
    newest_two = await stubs.runs.ListEvents(
        rs.ListEventsRequest(
            run_id=run.run_id, page_size=2, order_by="seq desc", filter="kind = ALERT"
        )
    )
    assert [e.alert.message for e in newest_two.events] == ["alert 5", "alert 4"]
    assert newest_two.next_page_token
    seqs, pages = await event_pages(
        stubs, run.run_id, page_size=4, order_by="seq desc", filter="kind = alert"
    )
    messages = [e.alert.message for p in pages for e in p.events]
    assert messages == [f"alert {n}" for n in range(5, -1, -1)]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 6


async def test_a_page_token_continues_only_the_order_it_came_from(stubs: Stubs) -> None:
    """A token of a newest-first listing used oldest first (or the other way round, or with
    another filter) would page from the wrong end: INVALID_ARGUMENT naming page_token."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(10)))
    newest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_size=3, order_by="seq desc")
    )
    oldest = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, page_size=3))
    other = await create_run(stubs)
    for request in [
        # Another run's: the message named only the filter and order, which were the same.
        rs.ListEventsRequest(run_id=other.run_id, page_token=oldest.next_page_token),
        rs.ListEventsRequest(run_id=run.run_id, page_token=newest.next_page_token),
        rs.ListEventsRequest(run_id=run.run_id, page_token=newest.next_page_token, order_by="seq"),
        rs.ListEventsRequest(
            run_id=run.run_id, page_token=oldest.next_page_token, order_by="seq desc"
        ),
        rs.ListEventsRequest(
            run_id=run.run_id,
            page_token=newest.next_page_token,
            order_by="seq desc",
            filter="kind = CUSTOM",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListEvents(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert info.value.details() == (
            "page_token: belongs to another request; repeat the original run_id, filter and "
            "order_by"
        )
    # With the order (and filter) it came from, each token goes on where its page ended.
    again = await stubs.runs.ListEvents(
        rs.ListEventsRequest(
            run_id=run.run_id, page_size=3, page_token=newest.next_page_token, order_by="seq desc"
        )
    )
    assert [e.seq for e in again.events] == [8, 7, 6]


@pytest.mark.parametrize("bad", ["seq asc", "desc", "time desc", "seq desc, kind", "SEQ DESC"])
async def test_an_order_other_than_seq_is_invalid_argument_naming_order_by(
    stubs: Stubs, bad: str
) -> None:
    run = await create_run(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, order_by=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        f'order_by: cannot order by {bad!r}; use "seq" (oldest first, the default) '
        'or "seq desc" (newest first)'
    )


async def test_newest_first_at_the_purge_boundary_is_the_precondition_failure_seq_order_gives(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Retention removes an ended run's log. Newest first then answers as seq order does: a
    first page, or a token from before the purge, gets FAILED_PRECONDITION naming run_id or
    page_token and the purged seqs, never an empty page that looks like a run without
    events. A run whose log is kept lists down to seq 1, its last page without a token."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1))
    async with serving(config) as (server, stubs):
        old, kept = await two_ended_runs(stubs)
        newest = await stubs.runs.ListEvents(
            rs.ListEventsRequest(run_id=old.run_id, page_size=4, order_by="seq desc")
        )
        head = newest.events[0].seq
        assert newest.events[0].HasField("run_completed")
        assert [e.seq for e in newest.events] == [head, head - 1, head - 2, head - 3]
        oldest = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id, page_size=4))
        assert server.runs is not None
        assert await server.runs.apply_retention() == [old.run_id]

        purged = f"events 1..{head} of run {old.run_id!r} were removed by the retention policy"
        for request, field, removed in [
            (rs.ListEventsRequest(run_id=old.run_id, order_by="seq desc"), "run_id", purged),
            (
                rs.ListEventsRequest(
                    run_id=old.run_id, order_by="seq desc", page_token=newest.next_page_token
                ),
                "page_token",
                purged,
            ),
            (
                rs.ListEventsRequest(
                    run_id=old.run_id, order_by="seq desc", filter="kind = RUN_COMPLETED"
                ),
                "run_id",
                purged,
            ),
            (rs.ListEventsRequest(run_id=old.run_id), "run_id", purged),
            (
                rs.ListEventsRequest(run_id=old.run_id, page_token=oldest.next_page_token),
                "page_token",
                f"events 5..{head} of run {old.run_id!r} were removed",
            ),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stubs.runs.ListEvents(request)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, request
            assert info.value.details().startswith(f"{field}: {removed}"), (
                request,
                info.value.details(),
            )

        seqs, pages = await event_pages(stubs, kept.run_id, page_size=4, order_by="seq desc")
        last = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=kept.run_id))).run.last_seq
        assert seqs == list(range(last, 0, -1))
        assert pages[-1].events[-1].HasField("run_created")


async def test_a_window_from_the_seq_before_a_purged_head_is_the_precondition_failure(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Retention removed the whole log, the run's last event with it: a listing from the seq
    just before that event (``seq > head - 1``, ``seq >= head``) starts inside purged history
    too, and says so (FAILED_PRECONDITION naming the filter and the one seq gone), not an
    empty page that looks like a run with nothing after that seq."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1))
    async with serving(config) as (server, stubs):
        old, _ = await two_ended_runs(stubs)
        head = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=old.run_id))).run.last_seq
        assert server.runs is not None
        assert await server.runs.apply_retention() == [old.run_id]
        for window in (f"seq > {head - 1}", f"seq >= {head}"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id, filter=window))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, window
            assert info.value.details().startswith(
                f"filter: events {head}..{head} of run {old.run_id!r} were removed"
            ), info.value.details()


async def test_list_steps_pages_in_plan_order(stubs) -> None:  # type: ignore[no-untyped-def]
    names = [f"s{i:02}" for i in range(17)]
    run = await create_run(stubs, *names)
    got: list[str] = []
    token = ""
    while True:
        page = await stubs.runs.ListSteps(
            rs.ListStepsRequest(run_id=run.run_id, page_size=5, page_token=token)
        )
        got += [s.step_id for s in page.steps]
        token = page.next_page_token
        if not token:
            break
    assert got == names
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListSteps(rs.ListStepsRequest(run_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # Another run's token names what to repeat: the run (ListSteps has no filter, which the
    # message told the caller to repeat; found in review).
    first = await stubs.runs.ListSteps(rs.ListStepsRequest(run_id=run.run_id, page_size=5))
    other = await create_run(stubs, *names)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListSteps(
            rs.ListStepsRequest(run_id=other.run_id, page_token=first.next_page_token)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "page_token: belongs to another request; repeat the original run_id"
    )


async def test_health_and_reflection_are_served(stubs) -> None:  # type: ignore[no-untyped-def]
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in ("", "runstream.v1.RunService", "runstream.v1.ReportService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)

    async def ask():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    services = set()
    async for reply in reflect.ServerReflectionInfo(ask()):
        services |= {s.name for s in reply.list_services_response.service}
    assert {
        "runstream.v1.RunService",
        "runstream.v1.ReportService",
        "grpc.health.v1.Health",
    } <= services


async def test_a_health_check_of_a_long_unknown_name_is_not_found_naming_its_start(stubs) -> None:  # type: ignore[no-untyped-def]
    """Health needs no token: a name of 20,000 characters repeated whole in the status
    passed the 16 KiB a grpcio client takes in trailers, and the client read
    RESOURCE_EXHAUSTED in place of NOT_FOUND."""
    health = health_pb2_grpc.HealthStub(stubs.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await health.Check(health_pb2.HealthCheckRequest(service="x" * 20_000))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    details = info.value.details() or ""
    assert details.startswith(f"service: no service '{'x' * 100}...'")
    assert len(details) < 200


async def test_a_second_server_cannot_take_a_busy_port(server, tmp_path, server_config) -> None:  # type: ignore[no-untyped-def]
    from runstream_server.app import RunstreamServer

    second = RunstreamServer(server_config(tmp_path / "other.db", address=server.target))
    with pytest.raises(OSError, match=r"cannot listen"):
        await second.start()


async def test_a_server_that_cannot_listen_leaves_no_new_store(  # type: ignore[no-untyped-def]
    server, tmp_path, server_config, monkeypatch
) -> None:
    """A busy port is found before the store is opened; and should it be taken only after
    that look (here: the look sees nothing), the store this start created is removed with the
    directories made for it."""
    from runstream_server import app

    new = tmp_path / "new" / "deeper" / "runstream.db"
    busy = f"cannot listen on {server.target}: the port is in use"
    with pytest.raises(OSError, match=f"^{re.escape(busy)}$"):
        await app.RunstreamServer(server_config(new, address=server.target)).start()
    assert not (tmp_path / "new").exists()
    monkeypatch.setattr(app, "bind_error", lambda address: None)
    with pytest.raises(OSError, match=r"cannot listen"):
        await app.RunstreamServer(server_config(new, address=server.target)).start()
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept.db"  # a store that exists stays, with what it holds
    first = app.RunstreamServer(server_config(kept))
    await first.start()
    run = await first.runs.create_run(
        run_id="r", workflow="wf", display_name="", labels={}, steps=[]
    )
    await first.stop(grace=0)
    with pytest.raises(OSError, match=r"cannot listen"):
        await app.RunstreamServer(server_config(kept, address=server.target)).start()
    again = app.RunstreamServer(server_config(kept))
    await again.start()
    try:
        assert (await again.runs.get_run("r")).run_id == run.run_id
    finally:
        await again.stop(grace=0)


async def test_reflection_is_served_as_v1_too(stubs) -> None:  # type: ignore[no-untyped-def]
    """grpc.reflection.v1, which newer grpcurl, grpcui and Postman ask for first: a raw call
    on its method path lists the services and finds a service's file. (v1's messages are
    v1alpha's field for field, so v1alpha's classes encode and decode them.)"""
    info = stubs.channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    asked = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="runstream.v1.RunService"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service"),
    ]
    listed, found, missing = [reply async for reply in info(iter(asked))]
    services = {s.name for s in listed.list_services_response.service}
    assert {"runstream.v1.RunService", "runstream.v1.ReportService"} <= services
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    [run_service] = [f for f in files if any(s.name == "RunService" for s in f.service)]
    assert run_service.package == "runstream.v1"
    [service] = run_service.service
    assert {"CreateRun", "GetRun", "WatchRun"} <= {m.name for m in service.method}
    assert found.original_request.file_containing_symbol == "runstream.v1.RunService"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_reflection_finds_the_file_of_a_method_and_not_of_a_misspelt_one(stubs) -> None:  # type: ignore[no-untyped-def]
    """``grpcurl describe runstream.v1.RunService.GetRun`` finds RunService's file; a method
    the service does not have is NOT_FOUND, as a misspelt service is, not its service's file."""
    reflect = reflection_pb2_grpc.ServerReflectionStub(stubs.channel)
    asked = [
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol=f"runstream.v1.RunService.{m}"
        )
        for m in ("GetRun", "GetRunn")
    ]
    found, missing = [reply async for reply in reflect.ServerReflectionInfo(iter(asked))]
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    assert any(s.name == "RunService" for f in files for s in f.service)
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert not missing.HasField("file_descriptor_response")


async def test_a_seq_window_lists_its_events_each_once_in_either_order(stubs: Stubs) -> None:
    """`seq > 10 AND seq <= 20` reads a window of a long log (events 11 to 20) without
    paging from its start or its head, oldest or newest first, ending at the far bound."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(30)))  # seqs 2..31
    window = "seq > 10 AND seq <= 20"
    seqs, pages = await event_pages(stubs, run.run_id, page_size=4, filter=window)
    assert seqs == list(range(11, 21))
    assert [len(p.events) for p in pages] == [4, 4, 2]
    seqs, pages = await event_pages(
        stubs, run.run_id, page_size=4, filter=window, order_by="seq desc"
    )
    assert seqs == list(range(20, 10, -1))
    assert [len(p.events) for p in pages] == [4, 4, 2]
    # One bound: from there to the log's end, or down to its start.
    assert (await event_pages(stubs, run.run_id, filter="seq >= 28"))[0] == [28, 29, 30, 31]
    below, _ = await event_pages(stubs, run.run_id, filter="seq < 4", order_by="seq desc")
    assert below == [3, 2, 1]
    assert (await event_pages(stubs, run.run_id, filter="seq = 7"))[0] == [7]
    # Parentheses around a term or the kinds, and AND right before one.
    for written in ("(seq > 28)", "seq > 28 AND(kind = CUSTOM)", "(kind = CUSTOM) AND seq > 28"):
        assert (await event_pages(stubs, run.run_id, filter=written))[0] == [29, 30, 31]
    either = "(kind = RUN_CREATED) OR (kind = CUSTOM) AND seq < 4"
    assert (await event_pages(stubs, run.run_id, filter=either))[0] == [1, 2, 3]
    # A window no event fits, or past the head: an empty last page.
    for empty in ("seq > 5 AND seq < 6", "seq > 31", "seq < 1", "seq > 20 AND seq < 10"):
        for order in ("", "seq desc"):
            page = await stubs.runs.ListEvents(
                rs.ListEventsRequest(run_id=run.run_id, filter=empty, order_by=order)
            )
            assert (list(page.events), page.next_page_token) == ([], ""), (empty, order)


async def test_a_seq_window_and_kinds_read_the_page_before_what_a_viewer_shows(
    stubs: Stubs,
) -> None:
    """A viewer showing a run's newest alerts loads the ones before them: newest first
    below the oldest seq it shows, of its kinds only. OR binds tighter than AND (AIP-160),
    and the kinds may be in parentheses."""
    run = await create_run(stubs)
    for n in range(6):
        await append(stubs, run.run_id, *(custom(10 * n + i) for i in range(3)), alert(n))
    newest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(
            run_id=run.run_id, page_size=2, order_by="seq desc", filter="kind = ALERT"
        )
    )
    shown = newest.events[-1].seq  # alert 4
    for kinds in ("kind = ALERT", "(kind = ALERT)", "kind = ALERT OR kind = MILESTONE"):
        earlier = await stubs.runs.ListEvents(
            rs.ListEventsRequest(
                run_id=run.run_id,
                page_size=2,
                order_by="seq desc",
                filter=f"seq < {shown} AND {kinds}",
            )
        )
        assert [e.alert.message for e in earlier.events] == ["alert 3", "alert 2"], kinds
        rest = await stubs.runs.ListEvents(
            rs.ListEventsRequest(
                run_id=run.run_id,
                page_size=2,
                order_by="seq desc",
                filter=f"seq < {shown} AND {kinds}",
                page_token=earlier.next_page_token,
            )
        )
        assert [e.alert.message for e in rest.events] == ["alert 1", "alert 0"], kinds
        assert rest.next_page_token == ""
    after, _ = await event_pages(
        stubs, run.run_id, filter=f"(kind = ALERT OR kind = CUSTOM) AND seq > {shown}"
    )
    assert len(after) == 4  # the three customs after alert 4, and alert 5
    assert after == sorted(after) and all(s > shown for s in after)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "seq > x",
            "cannot parse 'seq > x'; expected e.g. 'seq > 100' (seq compared with "
            "<, <=, >, >= or = to a whole number)",
        ),
        (
            "seq > -1",
            "cannot parse 'seq > -1'; expected e.g. 'seq > 100' (seq compared with "
            "<, <=, >, >= or = to a whole number)",
        ),
        (
            "seq != 4",
            "cannot parse 'seq != 4'; expected e.g. 'seq > 100' (seq compared with "
            "<, <=, >, >= or = to a whole number)",
        ),
        ("seq > 4611686018427387904", "seq 4611686018427387904 is out of range (below 2^62)"),
        # Past int64 too: out of range, not "cannot parse" (found in review).
        (
            "seq > 99999999999999999999",
            "seq 99999999999999999999 is out of range (below 2^62)",
        ),
        (
            "SEQ > 5",
            "cannot parse 'SEQ > 5'; expected e.g. 'seq > 100' (seq compared with "
            "<, <=, >, >= or = to a whole number)",
        ),
        (
            "kind = ALERT AND kind = CUSTOM",
            "kinds are compared in one OR group, e.g. 'kind = THINKING OR kind = MILESTONE'",
        ),
        (
            "() AND seq > 1",
            "cannot parse '()'; expected e.g. 'kind = STEP_PROGRESS' or 'seq > 100'",
        ),
        (
            "time > 5",
            "cannot parse 'time > 5'; expected e.g. 'kind = STEP_PROGRESS' or 'seq > 100'",
        ),
    ],
)
async def test_a_filter_it_cannot_read_is_invalid_argument_naming_filter(
    stubs: Stubs, bad: str, message: str
) -> None:
    run = await create_run(stubs)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, filter=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == f"filter: {message}"


async def test_a_token_of_a_window_continues_only_that_window(stubs: Stubs) -> None:
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(10)))
    first = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=run.run_id, page_size=3, filter="seq < 10")
    )
    assert [e.seq for e in first.events] == [1, 2, 3]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListEvents(
            rs.ListEventsRequest(
                run_id=run.run_id, page_token=first.next_page_token, filter="seq < 11"
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("page_token: belongs to another request")


async def test_a_seq_window_into_purged_history_is_failed_precondition_naming_filter(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Retention removed an ended run's log: a window into it, in either order, is
    FAILED_PRECONDITION naming filter (where the listing starts), never an empty page, also
    when its upper bound lies past the run's head. A kept run's window still lists."""
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1))
    async with serving(config) as (server, stubs):
        old, kept = await two_ended_runs(stubs)
        assert server.runs is not None
        assert await server.runs.apply_retention() == [old.run_id]
        for window, order in [
            ("seq < 1000", "seq desc"),
            ("seq > 3 AND seq < 1000", "seq desc"),
            ("seq > 3", ""),
            ("seq > 3 AND seq < 6", ""),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stubs.runs.ListEvents(
                    rs.ListEventsRequest(run_id=old.run_id, filter=window, order_by=order)
                )
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, window
            details = info.value.details()
            assert details.startswith("filter: events "), (window, details)
            assert "were removed by the retention policy" in details
        window = rs.ListEventsRequest(
            run_id=kept.run_id, filter="seq > 3 AND seq < 6", order_by="seq desc"
        )
        assert [e.seq for e in (await stubs.runs.ListEvents(window)).events] == [5, 4]


async def test_a_listing_or_resume_that_meets_a_purge_not_yet_taken_in_is_told_so(
    server: RunstreamServer, stubs: Stubs
) -> None:
    """A retention pass writes every purge of its batch, then tells the runs in memory. In
    between (on SQLite, for as long as the rest of the pass took), a listing or a resume
    past the purged seqs found an empty page and ended as if the log ended there: no error
    on SQLite, FAILED_PRECONDITION on Redis, which reads the stored run (found in review)."""
    old, _ = await two_ended_runs(stubs)
    first = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=old.run_id, page_size=4))
    newest = await stubs.runs.ListEvents(
        rs.ListEventsRequest(run_id=old.run_id, page_size=4, order_by="seq desc")
    )
    store = server._store
    assert store is not None
    assert await store.purge_events(ended_before_us=None, keep_newest=1) == [old.run_id]
    for request in (
        rs.ListEventsRequest(run_id=old.run_id, page_token=first.next_page_token),
        rs.ListEventsRequest(
            run_id=old.run_id, order_by="seq desc", page_token=newest.next_page_token
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.runs.ListEvents(request)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, request
        assert "removed by the retention policy" in info.value.details()
    resume = stubs.runs.WatchRun(rs.WatchRunRequest(run_id=old.run_id, after_seq=4))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(10):
            async for _ in resume:
                pass
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details().startswith("after_seq: events 5..")


async def test_the_stores_read_no_further_than_a_windows_far_bound(
    server: RunstreamServer, stubs: Stubs
) -> None:
    """What the stores read for a window ends at its far bound, in either direction, also
    when none of the window's events is of the kinds asked for (the alert lies past it)."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, *(custom(n) for n in range(30)), alert(0))
    store = server._store
    assert store is not None
    forward = await store.read_events(run.run_id, 10, 100, before_seq=15)
    assert [e.seq for e in forward] == [11, 12, 13, 14]
    backward = await store.read_events_before(run.run_id, 20, 100, after_seq=15)
    assert [e.seq for e in backward] == [19, 18, 17, 16]
    alerts = (ev.EVENT_KIND_ALERT,)
    assert await store.read_events(run.run_id, 10, 100, alerts, before_seq=20) == []
    assert [e.seq for e in await store.read_events(run.run_id, 10, 100, alerts)] == [32]
    assert await store.read_events_before(run.run_id, None, 100, alerts, after_seq=32) == []
    assert await store.read_events_before(run.run_id, 5, 100, after_seq=4) == []
    assert await store.read_events(run.run_id, 4, 100, before_seq=5) == []


async def runs_created_apart(stubs: Stubs, count: int) -> list[run_pb2.Run]:
    """`count` runs, each created at least a few milliseconds after the one before."""
    created = []
    for n in range(count):
        if n:
            await asyncio.sleep(0.005)
        created.append(await create_run(stubs, workflow="timed", run_id=f"timed-{n}"))
    return created


def rfc3339(run: run_pb2.Run) -> str:
    return str(run.create_time.ToJsonString())


async def test_list_runs_by_create_time_lists_those_created_in_the_window(stubs: Stubs) -> None:
    """`create_time` compared with <, <=, > or >= to an RFC 3339 time: the runs created in
    a window, newest first, paged with the same filter, combined with other comparisons."""
    first, second, third, fourth = await runs_created_apart(stubs, 4)
    assert first.create_time.ToMicroseconds() < second.create_time.ToMicroseconds()

    async def ids(filter_text: str, page_size: int = 0) -> list[str]:
        return (await all_pages(stubs, filter=filter_text, page_size=page_size))[0]

    assert await ids(f'create_time > "{rfc3339(first)}"') == ["timed-3", "timed-2", "timed-1"]
    assert await ids(f'create_time >= "{rfc3339(second)}"', page_size=1) == [
        "timed-3",
        "timed-2",
        "timed-1",
    ]
    window = f'create_time > "{rfc3339(first)}" AND create_time <= "{rfc3339(third)}"'
    assert await ids(window) == ["timed-2", "timed-1"]
    assert await ids(window, page_size=1) == ["timed-2", "timed-1"]
    assert await ids(f'create_time < "{rfc3339(second)}" AND workflow = "timed"') == ["timed-0"]
    # The same instant written with another offset.
    moment = datetime.fromisoformat(rfc3339(third)).astimezone(timezone(timedelta(hours=5)))
    assert await ids(f'create_time >= "{moment.isoformat()}"') == ["timed-3", "timed-2"]
    # Half a microsecond after the fourth run was created (nanoseconds in the time).
    created = fourth.create_time.ToNanoseconds()
    later = type(fourth.create_time)()
    later.FromNanoseconds(created + 500)
    half = later.ToJsonString()
    assert half.endswith("500Z")
    assert await ids(f'create_time < "{half}" AND create_time > "{rfc3339(third)}"') == ["timed-3"]
    assert await ids(f'create_time >= "{half}"') == []
    assert await ids(f'create_time <= "{half.lower()}" AND create_time >= "{rfc3339(fourth)}"') == [
        "timed-3"
    ]


async def test_watch_runs_by_create_time_follows_the_runs_created_since(stubs: Stubs) -> None:
    before, since = await runs_created_apart(stubs, 2)
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter=f'create_time >= "{rfc3339(since)}"'))
    initial = await anext(aiter(stream))
    assert [r.run_id for r in initial.runs] == [since.run_id]
    assert (await anext(aiter(stream))).initial_state_complete
    await append(stubs, before.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    new = await create_run(stubs, workflow="timed")
    assert [r.run_id for r in (await anext(aiter(stream))).runs] == [new.run_id]
    stream.cancel()


async def test_watch_runs_after_a_runs_own_create_time_leaves_that_run_out(stubs: Stubs) -> None:
    """`create_time > T`, T a run's create time copied from a listing: ListRuns leaves that
    run out, and so does a stream, both at first and when the run later moves on."""
    await create_run(stubs, workflow="timed", run_id="edge")
    (edge,) = (await stubs.runs.ListRuns(rs.ListRunsRequest(filter='workflow = "timed"'))).runs
    after_edge = f'create_time > "{rfc3339(edge)}"'
    assert (await all_pages(stubs, filter=after_edge))[0] == []
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(filter=after_edge))
    assert await initial_state(stream) == ([], False)
    await append(stubs, edge.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    new = await create_run(stubs, workflow="timed")
    assert [r.run_id for r in (await anext(aiter(stream))).runs] == [new.run_id]
    stream.cancel()


async def initial_state(stream: Any) -> tuple[list[run_pb2.Run], bool]:
    """The runs of a WatchRuns stream's initial state, and its ended_runs_left_out."""
    runs: list[run_pb2.Run] = []
    async for response in stream:
        runs.extend(response.runs)
        if response.initial_state_complete:
            return runs, response.ended_runs_left_out
    raise AssertionError("the stream ended")


async def test_watch_runs_initial_ended_limit_sends_every_live_run_and_the_newest_ended(
    stubs: Stubs,
) -> None:
    """With initial_ended_limit, a stream's initial state holds every matching run not
    ended (the oldest here) and the newest N that ended, and says it left the rest out;
    the stream then follows every change, of a new run or of one left out."""
    live = await create_run(stubs, workflow="limits", run_id="live")
    ended = []
    for n in range(5):
        run = await create_run(stubs, workflow="limits", run_id=f"ended-{n}")
        await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
        ended.append(run.run_id)
    matching = 'workflow = "limits"'

    def watch(limit: int, filter_text: str = matching) -> Any:
        return stubs.runs.WatchRuns(
            rs.WatchRunsRequest(filter=filter_text, initial_ended_limit=limit)
        )

    stream = watch(2)
    runs, left_out = await initial_state(stream)
    assert sorted(r.run_id for r in runs) == sorted(["live", "ended-4", "ended-3"])
    assert left_out
    await append(stubs, live.run_id, ev.RunEvent(run_started=ev.RunStarted()))
    new = await create_run(stubs, workflow="limits", run_id="new")
    changed = [(await anext(aiter(stream))).runs[0].run_id for _ in range(2)]
    assert changed == ["live", new.run_id]
    stream.cancel()

    for limit, expected, more in ((5, 6, False), (6, 6, False), (4, 5, True)):
        runs, left_out = await initial_state(stream := watch(limit))
        stream.cancel()
        assert (len(runs), left_out) == (expected + 1, more), limit  # and the new run
    # A filter by status: of the ended runs only; of live runs only, nothing left out.
    runs, left_out = await initial_state(stream := watch(1, f"{matching} AND status = SUCCEEDED"))
    stream.cancel()
    assert ([r.run_id for r in runs], left_out) == (["ended-4"], True)
    runs, left_out = await initial_state(stream := watch(1, f"{matching} AND status = RUNNING"))
    stream.cancel()
    assert ([r.run_id for r in runs], left_out) == (["live"], False)
    assert ended[0] == "ended-0"


async def test_watch_runs_initial_ended_limit_sends_the_runs_of_every_ended_status(
    stubs: Stubs,
) -> None:
    """The newest ended runs of an initial state are those of every ended status, failed
    and cancelled as well as succeeded (the Redis store reads one index for a single
    ended status, and must not take the three of a stream without a status filter for one)."""
    endings = {
        "done": ev.RunEvent(run_completed=ev.RunCompleted()),
        "failed": ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="boom"))),
        "cancelled": ev.RunEvent(run_cancelled=ev.RunCancelled()),
    }
    for run_id, ending in endings.items():
        await create_run(stubs, workflow="endings", run_id=run_id)
        await append(stubs, run_id, ending)
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(initial_ended_limit=10))
    runs, left_out = await initial_state(stream)
    stream.cancel()
    assert sorted(r.run_id for r in runs) == sorted(endings)
    assert not left_out


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        (-1, "must not be negative, got -1"),
        (100_001, "must be between 0 (every run) and 100,000, got 100001"),
    ],
)
async def test_watch_runs_refuses_an_initial_ended_limit_out_of_range(
    stubs: Stubs, limit: int, problem: str
) -> None:
    stream = stubs.runs.WatchRuns(rs.WatchRunsRequest(initial_ended_limit=limit))
    error = await refused(stream)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"initial_ended_limit: {problem}"


async def test_watch_runs_takes_the_largest_initial_ended_limit_it_names(stubs: Stubs) -> None:
    """100,000 is the largest limit the refusal names, so it is taken, not refused."""
    run = await create_run(stubs, workflow="most")
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    stream = stubs.runs.WatchRuns(
        rs.WatchRunsRequest(filter='workflow = "most"', initial_ended_limit=100_000)
    )
    runs, left_out = await initial_state(stream)
    stream.cancel()
    assert ([r.run_id for r in runs], left_out) == ([run.run_id], False)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            'create_time = "2026-12-01T09:00:00Z"',
            'compare create_time with <, <=, > or >=, e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01"',
            "create_time: '2026-12-01' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01T09:00:00"',
            "create_time: '2026-12-01T09:00:00' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01T09:00:00+25:00"',
            "create_time: '2026-12-01T09:00:00+25:00' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01T09:00:00+1:00"',
            "create_time: '2026-12-01T09:00:00+1:00' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        # Found in review: protobuf's parser took full-width digits and a dot with no
        # fraction, and called a time its offset takes past 9999 misspelt.
        (
            'create_time > "\uff12\uff10\uff12\uff16-12-01T09:00:00Z"',
            "create_time: '\uff12\uff10\uff12\uff16-12-01T09:00:00Z' is not an RFC 3339 time "
            'with its offset, e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01T09:00:00.Z"',
            "create_time: '2026-12-01T09:00:00.Z' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "9999-12-31T23:59:59-23:59"',
            "create_time: '9999-12-31T23:59:59-23:59' is outside the times a filter compares, "
            "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z",
        ),
        ("status > RUNNING", "status is compared with =; only create_time takes >"),
        (
            "create_time > '2026-12-01T09:00:00Z'",
            "create_time > '2026-12-01T09:00:00Z': quote a value with double quotes, "
            'create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            'create_time > "2026-12-01 09:00:00Z"',
            "create_time: '2026-12-01 09:00:00Z' is not an RFC 3339 time with its offset, "
            'e.g. create_time > "2026-12-01T09:00:00Z"',
        ),
        (
            "start_time > 5",
            "unknown field 'start_time'; use status, workflow, labels.<key> or create_time",
        ),
        ('workflow <= "a"', "workflow is compared with =; only create_time takes <="),
        # Found in review: ':' was taken as '=', so AIP-160's labels.team:* (has the label)
        # asked for the value "*" and listed no runs, without a word.
        (
            "labels.team:*",
            "labels.team is compared with =; ':' is not supported (the filter cannot ask "
            "whether a label is present, labels.team:*)",
        ),
        (
            'status = PENDING AND labels.team:"growth"',
            "labels.team is compared with =; ':' is not supported (the filter cannot ask "
            "whether a label is present, labels.team:*)",
        ),
        ("workflow:hl", "workflow is compared with =; ':' is not supported"),
        ("status : PENDING", "status is compared with =; ':' is not supported"),
    ],
)
async def test_a_run_filter_it_cannot_read_is_invalid_argument_naming_filter(
    stubs: Stubs, bad: str, message: str
) -> None:
    for call in (
        stubs.runs.ListRuns(rs.ListRunsRequest(filter=bad)),
        anext(aiter(stubs.runs.WatchRuns(rs.WatchRunsRequest(filter=bad)))),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == f"filter: {message}"


async def test_a_page_cut_short_by_its_size_goes_on_right_after_its_last_run(
    tmp_path: Path, server_config: ConfigFactory, store_kind: str
) -> None:
    """Runs too big for one response make ListRuns pages end early; the next page starts
    right after the last run sent, so every run is listed once, in the store's order. Also
    a run whose create a crash cut short and the producer retried: on Redis it keeps its
    first attempt's place in the index, before the run created between the two attempts."""
    config = server_config(tmp_path / "r.db", limits=Limits(response_bytes=4000))
    big = {f"k{i}": "x" * 200 for i in range(8)}  # about 1.7 KB a run: two fit a response
    async with serving(config) as (_, stubs):
        created = [(await create_run(stubs, labels=big)).run_id for _ in range(2)]
        if store_kind == "redis":  # what a replica killed between index and script leaves
            assert config.store_url is not None
            await index_entries_only(config.store_url, "retried", "", int(time.time() * 1_000_000))
        created.append((await create_run(stubs, labels=big)).run_id)
        created.append((await create_run(stubs, run_id="retried", labels=big)).run_id)
        listed: list[str] = []
        token, pages = "", 0
        while pages < 10:  # round in circles before: the cursor was the run's create time
            page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=10, page_token=token))
            listed += [r.run_id for r in page.runs]
            pages, token = pages + 1, page.next_page_token
            if not token:
                break
        assert sorted(listed) == sorted(created)  # each once
        assert pages == 2
        if store_kind == "redis":
            assert listed == [created[2], "retried", created[1], created[0]]
        else:
            assert listed == created[::-1]


async def test_a_kind_from_a_newer_contract_is_refused_naming_it(stubs: Stubs) -> None:
    """A client built from a newer contract, talking to this server during a rollout, is
    told which kind this server does not know (README, Upgrading), in a WatchRun's kinds
    and in a ListEvents filter, rather than given a watch or listing that silently lacks it;
    the run's log is untouched."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, custom(1))
    newer = max(event_pb2.EventKind.values()) + 1
    watch = rs.WatchRunRequest(run_id=run.run_id, kinds=[event_pb2.EVENT_KIND_ALERT, newer])
    err = await refused(stubs.runs.WatchRun(watch))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"kinds[1]: {newer} is not a known EventKind value" in (err.details() or "")
    listing = rs.ListEventsRequest(run_id=run.run_id, filter="kind = ALERT OR kind = NEW_KIND")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stubs.runs.ListEvents(listing)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "filter: unknown event kind 'NEW_KIND'" in (info.value.details() or "")
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id))
    assert [e.custom.data["n"] for e in listed.events if e.HasField("custom")] == [1]
