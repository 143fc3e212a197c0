"""Reads of a run's log and of runs' snapshots hold about what a call may send (review 60, F1).

A watcher's catch-up, a ListEvents page (either order) and a ListRuns page used to read their
events or snapshots by count alone (500 events, 1,001 events, 1,001 snapshots) and cut them
to the message's byte budget afterwards: with events near the 256 KiB limit, a viewer that
stopped reading its stream pinned about 200 MB of the server, and each ListEvents call read
about 250 MB to send 2 events. These tests watch what the server asks of its store (through
the observed store every server has) and what the client gets, on every store. Loading a
run reads all its decisions and milestones, page by page (F6: one read of at most 1,000,000).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import decision_service_pb2_grpc, event_pb2, run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.limits import Limits
from runstream_server.store import base
from runstream_server.store.base import RunPage, StoredEvent

from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import append, create_run, custom, serving

BLOB = 240_000
"""A custom event's payload: about 240 KB, under the 256 KiB event limit, as in the review."""
LIMITS = Limits()


def big(n: int) -> event_pb2.RunEvent:
    event = custom(n)
    event.custom.data.update({"blob": "B" * BLOB})
    return event


def alert(n: int) -> event_pb2.RunEvent:
    return event_pb2.RunEvent(
        alert=event_pb2.Alert(message=f"alert {n} " + "A" * 3000),
        idempotency_key=f"alert-{n}",
    )


class Reads:
    """What the server's store reads returned, call by call: bytes of event data per
    read_events / read_events_before call, snapshot bytes per list_runs call."""

    def __init__(self, server: RunstreamServer, monkeypatch: pytest.MonkeyPatch) -> None:
        store = server._store
        assert store is not None
        self.events: list[int] = []
        self.snapshots: list[int] = []
        for name in ("read_events", "read_events_before"):
            monkeypatch.setattr(store, name, self._counting_events(getattr(store, name)))
        inner_list_runs = store.list_runs

        async def list_runs(*args: Any, **kwargs: Any) -> RunPage:
            page = await inner_list_runs(*args, **kwargs)
            self.snapshots.append(sum(run.ByteSize() for run in page.runs))
            return page

        monkeypatch.setattr(store, "list_runs", list_runs)

    def _counting_events(self, read: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> list[StoredEvent]:
            found: list[StoredEvent] = await read(*args, **kwargs)
            self.events.append(sum(len(e.data) for e in found))
            return found

        return counted

    def clear(self) -> None:
        self.events.clear()
        self.snapshots.clear()


async def big_run(stubs: Stubs, count: int) -> str:
    """A run of `count` events of about 240 KB, an alert of 3 KB after every fifth."""
    run = await create_run(stubs)
    events: list[event_pb2.RunEvent] = []
    for n in range(count):
        events.append(big(n))
        if n % 5 == 4:
            events.append(alert(n))
    for start in range(0, len(events), 8):
        await append(stubs, run.run_id, *events[start : start + 8])
    return run.run_id


def pages_of(sizes: list[int], budget: int, most: int) -> list[int]:
    """How many events each message of a catch-up holds when one read gets them all: pages
    of at most `most` events and `budget` bytes, one event at least (Watching._pages)."""
    counts: list[int] = []
    held = 0
    for size in sizes:
        if counts and counts[-1] < most and held + size <= budget:
            counts[-1] += 1
            held += size
        else:
            counts.append(1)
            held = size
    return counts


async def test_a_watchers_catch_up_reads_a_pages_worth_at_a_time(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher that resumes far behind gets every event once, in order, in the messages
    one read of them all would make, while no store read it causes returns more than a
    message's budget and one event (it read up to 500 events of any size at once)."""
    run_id = await big_run(stubs, 40)
    reads = Reads(server, monkeypatch)
    most = LIMITS.watch_page_bytes + LIMITS.max_event_bytes
    alerts = {seq for seq in range(2, 50) if seq % 6 == 1}  # after every fifth big event
    for kinds in ([], [event_pb2.EVENT_KIND_CUSTOM], [event_pb2.EVENT_KIND_ALERT]):
        reads.clear()
        wanted = [
            seq
            for seq in range(2, 50)
            if not kinds or (seq in alerts) == (kinds[0] == event_pb2.EVENT_KIND_ALERT)
        ]
        request = rs.WatchRunRequest(run_id=run_id, after_seq=1, kinds=kinds)
        messages = []
        received = 0
        async with asyncio.timeout(60):
            async for response in stubs.runs.WatchRun(request):
                messages.append(list(response.events))
                received += len(response.events)
                if received >= len(wanted):
                    break
        events = [e for message in messages for e in message]
        assert [e.seq for e in events] == wanted, kinds
        assert reads.events and max(reads.events) <= most, (kinds, reads.events)
        framed = [rs.WatchRunResponse(events=[e]).ByteSize() for e in events]
        assert [len(m) for m in messages] == pages_of(
            framed, LIMITS.watch_page_bytes, LIMITS.watch_page_events
        ), kinds


async def test_list_events_reads_about_one_page_in_either_order(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListEvents with page_size 1000 over events near the size limit: two events a page,
    every event once and in order, pages going on exactly where the last one stopped, and
    no store read returning more than the 512 KiB budget and one event (each call read 1,001
    events, about 250 MB, to send 2)."""
    run_id = await big_run(stubs, 20)
    reads = Reads(server, monkeypatch)
    most = LIMITS.response_bytes + LIMITS.max_event_bytes
    for order_by, filter_text in (("", ""), ("seq desc", ""), ("", "kind = CUSTOM")):
        reads.clear()
        seen: list[int] = []
        token, pages = "", 0
        while True:
            page = await stubs.runs.ListEvents(
                rs.ListEventsRequest(
                    run_id=run_id,
                    page_size=1000,
                    page_token=token,
                    order_by=order_by,
                    filter=filter_text,
                )
            )
            assert page.ByteSize() <= LIMITS.response_bytes + LIMITS.max_event_bytes
            seen += [e.seq for e in page.events]
            pages += 1
            token = page.next_page_token
            if not token:
                break
        custom_seqs = [s for s in range(2, 26) if s % 6 != 1]  # an alert after every fifth
        expected = list(range(1, 26)) if not filter_text else custom_seqs
        if order_by:
            expected.reverse()
        assert seen == expected, (order_by, filter_text)
        assert max(reads.events) <= most, (order_by, filter_text, reads.events)
        assert pages <= len(expected) // 2 + 3, (order_by, filter_text)


async def test_a_page_of_one_event_past_the_budget_still_says_whether_more_follow(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Events bigger than the whole budget come one a page, and the last page has no token:
    a read that stops at the budget still tells whether another event follows."""
    config = server_config(tmp_path / "r.db", limits=Limits(response_bytes=4000))
    async with serving(config) as (_, stubs):
        run = await create_run(stubs)
        events = [custom(n) for n in range(3)]
        for event in events:
            event.custom.data.update({"blob": "x" * 10_000})
        await append(stubs, run.run_id, *events)
        for order_by, expected in (("", [2, 3, 4]), ("seq desc", [4, 3, 2])):
            listing = rs.ListEventsRequest(run_id=run.run_id, filter="seq > 1", order_by=order_by)
            seen, pages = [], 0
            while True:
                page = await stubs.runs.ListEvents(listing)
                seen += [e.seq for e in page.events]
                pages += 1
                if not page.next_page_token:
                    break
                listing.page_token = page.next_page_token
            assert (seen, pages) == (expected, 3), order_by


async def test_a_watcher_of_one_kind_gets_its_last_event_bigger_than_a_message(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """A server whose WatchRun messages hold less than an event may: a watcher of custom
    events that catches up on an ended run gets every one, the last bigger than a whole
    message, and then the end of the stream (the catch-up read the big event alone, set it
    aside to read again with what follows, found nothing, and went live past it: the stream
    sent heartbeats and never the event)."""
    config = server_config(tmp_path / "r.db", limits=Limits(watch_page_bytes=4000))
    async with serving(config) as (_, stubs):
        run = await create_run(stubs)
        last = custom(1)
        last.custom.data.update({"blob": "x" * 10_000})
        completed = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        await append(stubs, run.run_id, custom(0), alert(0), last, alert(1), completed)
        request = rs.WatchRunRequest(
            run_id=run.run_id,
            kinds=[event_pb2.EVENT_KIND_CUSTOM],
            heartbeat_interval=Duration(seconds=2),
        )
        seen: list[int] = []
        async for response in stubs.runs.WatchRun(request, timeout=60):
            assert not response.HasField("heartbeat"), seen  # idle, an event not sent
            seen += [e.seq for e in response.events]
        assert seen == [2, 4]


async def test_list_runs_and_watch_runs_read_large_snapshots_a_budget_at_a_time(
    server: RunstreamServer, stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs whose snapshots are about 1.2 MB each (300 planned steps of 4,000-character
    descriptions) list as before, all on one page of small summaries, or page by page in
    order with page_size 2, and a WatchRuns stream is told of them all in its first message,
    while no store read returns more than the 512 KiB budget and one snapshot (one read
    took 1,001 snapshots of up to 2 MiB each for ListRuns, 200 for WatchRuns)."""
    steps = [
        run_pb2.StepSpec(step_id=f"s{i}", name=f"S{i}", description="d" * 4000) for i in range(300)
    ]
    created = []
    for n in range(6):
        response = await stubs.runs.CreateRun(
            rs.CreateRunRequest(run_id=f"fat-{n}", workflow="fat", steps=steps)
        )
        assert response.run.ByteSize() > 1_000_000
        created.append(response.run.run_id)
    most = LIMITS.response_bytes + 1_300_000  # the budget and one snapshot
    reads = Reads(server, monkeypatch)
    everything = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=1000))
    assert [r.run_id for r in everything.runs] == created[::-1]
    assert everything.next_page_token == ""
    assert not any(r.steps for r in everything.runs)
    assert max(reads.snapshots) <= most
    assert len(reads.snapshots) >= 3
    reads.clear()
    listed, token, pages = [], "", 0
    while True:
        page = await stubs.runs.ListRuns(rs.ListRunsRequest(page_size=2, page_token=token))
        listed += [r.run_id for r in page.runs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert listed == created[::-1]
    assert pages == 3
    assert max(reads.snapshots) <= most
    reads.clear()
    messages = []
    async with asyncio.timeout(30):
        async for response in stubs.runs.WatchRuns(rs.WatchRunsRequest()):
            if response.initial_state_complete:
                break
            messages.append([r.run_id for r in response.runs])
    assert messages == [created[::-1]]
    assert max(reads.snapshots) <= most


async def test_a_run_loads_every_decision_however_many_pages_they_fill(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's questions are read back page by page when a server loads it (here pages of 3,
    for 10 questions and a milestone): after a restart every question is still open and can
    be answered. One read of at most 1,000,000 left those after it out, unanswerable."""
    monkeypatch.setattr(base, "EVERY_EVENT_PAGE", 3)
    config = server_config(tmp_path / "r.db")
    asks = [
        event_pb2.RunEvent(
            decision_requested=event_pb2.DecisionRequested(
                decision_id=f"d{n}",
                prompt="Go?",
                options=[event_pb2.DecisionOption(value="yes", label="Yes")],
            )
        )
        for n in range(10)
    ]
    milestone = event_pb2.RunEvent(milestone=event_pb2.Milestone(milestone_id="m", title="M"))
    async with serving(config) as (_, stubs):
        run = await create_run(stubs)
        await append(stubs, run.run_id, *asks[:5], milestone, *asks[5:])
    async with serving(config) as (server, stubs):
        reads = Reads(server, monkeypatch)
        decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
        listed = await decisions.ListDecisions(
            ds.ListDecisionsRequest(run_id=run.run_id, filter="state = OPEN", page_size=100)
        )
        assert [d.decision_id for d in listed.decisions] == [f"d{n}" for n in range(10)]
        assert len(reads.events) >= 4  # 11 events, 3 a read
        answered = await decisions.SubmitDecision(
            ds.SubmitDecisionRequest(run_id=run.run_id, decision_id="d9", choice="yes")
        )
        assert answered.decision.choice == "yes"


async def test_get_run_counts_the_open_decisions_its_budget_left_out(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Found in review: GetRun kept the open decisions its byte budget held and said nothing
    of the others, so `runstream get` showed 2 questions of the 6 a run had open."""
    config = server_config(tmp_path / "r.db", limits=Limits(response_bytes=4000))
    asks = [
        event_pb2.RunEvent(
            decision_requested=event_pb2.DecisionRequested(
                decision_id=f"d{n}",
                prompt="Go? " + "p" * 1500,
                options=[event_pb2.DecisionOption(value="yes", label="Yes")],
            )
        )
        for n in range(6)
    ]
    async with serving(config) as (_, stubs):
        run = await create_run(stubs)
        await append(stubs, run.run_id, *asks)
        got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
        assert [d.decision_id for d in got.open_decisions] == ["d0", "d1"]
        assert got.open_decisions_left_out == 4
        decisions = decision_service_pb2_grpc.DecisionServiceStub(stubs.channel)
        for n in range(5):
            await decisions.SubmitDecision(
                ds.SubmitDecisionRequest(run_id=run.run_id, decision_id=f"d{n}", choice="yes")
            )
        got = await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
        assert [d.decision_id for d in got.open_decisions] == ["d5"]
        assert got.open_decisions_left_out == 0
