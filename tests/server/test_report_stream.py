"""The producers' Report stream: ordered acks, controls pushed down, precise stream errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer
from runstream_server.domain.commits import ControlSignal, Mailbox, Signal
from runstream_server.domain.reporting import Acked, ReportSession
from runstream_server.errors import NothingStored, Unavailable
from runstream_server.store.base import StoredEvent

from tests.server.support import append, create_run, custom, ev, keyless


async def refused_after(
    stubs: Any, *requests: rp.ReportRequest
) -> tuple[list[rp.ReportResponse], grpc.aio.AioRpcError]:
    """What a Report stream that sends `requests` (and then waits) receives before it is
    refused, and the refusal."""

    async def sending() -> AsyncIterator[rp.ReportRequest]:
        for request in requests:
            yield request
        await asyncio.sleep(5)

    responses = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stubs.report.Report(sending()):
            responses.append(response)
    return responses, info.value


async def test_batches_are_acked_in_order_with_their_seqs(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)

    async def batches():  # type: ignore[no-untyped-def]
        yield rp.ReportRequest(run_id=run.run_id)  # attach only
        for b in range(1, 21):
            yield rp.ReportRequest(batch_id=b, events=[custom(b * 10 + i) for i in range(3)])

    acks = []
    async for response in stubs.report.Report(batches()):
        acks.append(response.ack)
        if len(acks) == 21:
            break
    # The attach-only message is acknowledged too (batch 0, nothing appended): the producer
    # then knows it is attached and will receive controls and answers.
    assert (acks[0].batch_id, list(acks[0].events), acks[0].last_seq) == (0, [], 1)
    acks = acks[1:]
    assert [a.batch_id for a in acks] == list(range(1, 21))
    assert [e.seq for a in acks for e in a.events] == list(range(2, 62))
    assert acks[-1].last_seq == 61


async def test_cancel_reaches_the_attached_producer(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)
    outgoing: asyncio.Queue[rp.ReportRequest | None] = asyncio.Queue()
    await outgoing.put(rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[custom(1)]))

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await outgoing.get()) is not None:
            yield item

    stream = stubs.report.Report(requests())
    first = await anext(aiter(stream))
    assert first.ack.batch_id == 1
    await stubs.runs.CancelRun(
        rs.CancelRunRequest(run_id=run.run_id, reason="budget exceeded", cancelled_by="alice")
    )
    control = (await anext(aiter(stream))).control
    assert control.action == rp.CONTROL_ACTION_CANCEL
    assert control.reason == "budget exceeded"
    assert control.seq == 3
    # The producer's next batch is refused precisely and the stream ends with that status.
    await outgoing.put(rp.ReportRequest(batch_id=2, events=[custom(2)]))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await anext(aiter(stream))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CANCELLED" in info.value.details()
    await outgoing.put(None)
    snap = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert snap.cancel_reason == "budget exceeded"


async def test_a_producer_attaching_to_a_run_cancelled_while_it_was_away_is_told_at_once(  # type: ignore[no-untyped-def]
    stubs,
) -> None:
    """A producer that comes back (a worker restarted) to a run cancelled meanwhile gets the
    CANCEL control, with its reason, as it attaches: not only a refusal at its next batch."""
    run = await create_run(stubs)
    await append(stubs, run.run_id, custom(1))
    await stubs.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id, reason="budget exceeded"))
    stream = stubs.report.Report(iter([rp.ReportRequest(run_id=run.run_id)]))
    try:
        first_two = [await asyncio.wait_for(anext(aiter(stream)), 5) for _ in range(2)]
    finally:
        stream.cancel()
    [control] = [r.control for r in first_two if r.HasField("control")]
    assert (control.action, control.reason) == (rp.CONTROL_ACTION_CANCEL, "budget exceeded")
    assert (control.status, control.seq) == (run_pb2.RUN_STATUS_CANCELLED, 3)


async def test_a_batch_refused_by_a_cancel_comes_after_the_cancel_control(  # type: ignore[no-untyped-def]
    server, stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel committed while the producer's next batch is on its way: the producer gets
    the CANCEL control (with its reason), then the batch's FAILED_PRECONDITION."""
    run = await create_run(stubs)
    runs = server.runs
    original = runs.append

    async def cancelled_first(run_id, events):  # type: ignore[no-untyped-def]
        if events[0].idempotency_key == "k2":  # the cancel lands just before this batch
            await runs.cancel_run(run_id, reason="budget exceeded", cancelled_by="alice")
        return await original(run_id, events)

    monkeypatch.setattr(runs, "append", cancelled_first)

    responses, refusal = await refused_after(
        stubs,
        rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[custom(1)]),
        rp.ReportRequest(batch_id=2, events=[custom(2)]),
    )
    assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [(r.HasField("ack"), r.HasField("control")) for r in responses] == [
        (True, False),
        (False, True),
    ]
    assert responses[1].control.action == rp.CONTROL_ACTION_CANCEL
    assert responses[1].control.reason == "budget exceeded"


async def test_stream_errors_are_precise(stubs) -> None:  # type: ignore[no-untyped-def]
    run = await create_run(stubs)

    async def status_of(*requests: rp.ReportRequest) -> tuple[grpc.StatusCode, str]:
        async def gen():  # type: ignore[no-untyped-def]
            for r in requests:
                yield r
            await asyncio.sleep(5)

        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stubs.report.Report(gen()):
                pass
        return info.value.code(), info.value.details()

    assert await status_of(rp.ReportRequest(events=[custom(1)])) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "run_id: is required on the first message of a Report stream",
    )
    code, _ = await status_of(rp.ReportRequest(run_id="ghost"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await status_of(
        rp.ReportRequest(run_id=run.run_id), rp.ReportRequest(run_id="other", events=[custom(1)])
    )
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "run_id")
    code, details = await status_of(
        rp.ReportRequest(
            run_id=run.run_id,
            events=[ev.RunEvent(step_progress=ev.StepProgress(step_id="x", percent=5))],
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("events[0].step_progress.step_id:")


async def test_a_producer_that_reads_acks_late_gets_them_all(stubs) -> None:  # type: ignore[no-untyped-def]
    """Hundreds of batches sent before any ack is read: backpressure, not loss or deadlock."""
    run = await create_run(stubs)
    sent = asyncio.Event()

    async def batches():  # type: ignore[no-untyped-def]
        yield rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[custom(1)])
        for b in range(2, 301):
            yield rp.ReportRequest(batch_id=b, events=[custom(b)])
        sent.set()

    stream = stubs.report.Report(batches())
    await asyncio.sleep(0.5)  # let the server fill its outbox while nobody reads
    acks = []
    async for response in stream:
        acks.append(response.ack.batch_id)
        if len(acks) == 300:
            break
    assert acks == list(range(1, 301))
    assert sent.is_set()


async def test_batches_sent_together_keep_their_own_acks_and_refusals(stubs) -> None:  # type: ignore[no-untyped-def]
    """Batches that queue up while a commit is made are committed together; each still gets
    its own ack, and a refused one is refused precisely, after the ones before it."""
    run = await create_run(stubs)
    bad = ev.RunEvent(step_progress=ev.StepProgress(step_id="nope", percent=5))

    async def batches():  # type: ignore[no-untyped-def]
        yield rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[custom(1)])
        for b in range(2, 40):
            yield rp.ReportRequest(
                batch_id=b, events=[custom(b * 10 + i) for i in range(b % 3 + 1)]
            )
        yield rp.ReportRequest(batch_id=40, events=[custom(400), bad])
        yield rp.ReportRequest(batch_id=41, events=[custom(410)])
        await asyncio.sleep(5)

    acks = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for response in stubs.report.Report(batches()):
            acks.append(response.ack)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("events[1].step_progress.step_id:")
    assert [a.batch_id for a in acks] == list(range(1, 40))
    assert [len(a.events) for a in acks] == [1] + [b % 3 + 1 for b in range(2, 40)]
    seqs = [e.seq for a in acks for e in a.events]
    assert seqs == list(range(2, 2 + len(seqs)))
    assert [e.idempotency_key for e in acks[5].events] == [f"k{60 + i}" for i in range(6 % 3 + 1)]
    # Neither the refused batch nor the one after it was stored.
    snap = (await stubs.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))).run
    assert snap.last_seq == seqs[-1]


async def test_a_decision_the_producers_commit_closes_reaches_it_before_the_ack(stubs) -> None:  # type: ignore[no-untyped-def]
    """Completing a run closes its open decisions: the producer that completes it hears of
    the closure before the completion is acknowledged, so a wait for the answer has ended
    by the time the run's end is confirmed."""
    run = await create_run(stubs)
    asked = ev.RunEvent(
        decision_requested=ev.DecisionRequested(
            decision_id="go", prompt="ship it?", options=[ev.DecisionOption(value="yes")]
        )
    )
    outgoing: asyncio.Queue[rp.ReportRequest | None] = asyncio.Queue()
    await outgoing.put(rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[asked]))

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await outgoing.get()) is not None:
            yield item

    stream = aiter(stubs.report.Report(requests()))
    assert (await anext(stream)).ack.batch_id == 1
    completed = ev.RunEvent(run_completed=ev.RunCompleted())
    await outgoing.put(rp.ReportRequest(batch_id=2, events=[completed]))
    first, second = await anext(stream), await anext(stream)
    await outgoing.put(None)
    assert first.decision.decision_id == "go", first
    assert not first.HasField("ack")
    assert second.ack.batch_id == 2


async def _following(stubs, run_id: str, seen: list[int]) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
    """A watcher of the run that adds each seq it receives to `seen`, once its watch is open."""
    watching = asyncio.Event()

    async def follow() -> None:
        async for response in stubs.runs.WatchRun(rs.WatchRunRequest(run_id=run_id)):
            seen.extend(e.seq for e in response.events)
            watching.set()

    watcher = asyncio.create_task(follow())
    await asyncio.wait_for(watching.wait(), 10)  # the run's first event: the watch is open
    return watcher


async def test_watchers_get_each_commit_before_its_producer_gets_the_ack(stubs) -> None:  # type: ignore[no-untyped-def]
    """A commit goes out to the run's watchers first, then its ack to the producer: on one
    connection, where messages arrive in the order the server sends them, the watcher holds
    every event by the time the producer learns it is stored."""
    run = await create_run(stubs)
    seen: list[int] = []
    watcher = await _following(stubs, run.run_id, seen)
    outgoing: asyncio.Queue[rp.ReportRequest | None] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await outgoing.get()) is not None:
            yield item

    stream = aiter(stubs.report.Report(requests()))
    late = []
    try:
        for n in range(1, 31):
            await outgoing.put(rp.ReportRequest(run_id=run.run_id, batch_id=n, events=[custom(n)]))
            ack = (await anext(stream)).ack
            [stored] = ack.events
            if stored.seq not in seen:
                late.append(stored.seq)
    finally:
        await outgoing.put(None)
        watcher.cancel()
    # The order is the server's: on a loaded machine, the client's loop may still hand the
    # ack to this task before the watcher's message it already received reaches the watcher
    # task. Acking first, every event was late.
    assert len(late) <= 3, f"acked before the watcher had them: {late}"


async def test_watchers_get_each_unary_append_before_its_response(stubs) -> None:  # type: ignore[no-untyped-def]
    """AppendEvents as the stream: on one connection, the watcher holds each appended event
    by the time the producer's call returns."""
    run = await create_run(stubs)
    seen: list[int] = []
    watcher = await _following(stubs, run.run_id, seen)
    late = []
    try:
        for n in range(1, 31):
            response = await stubs.report.AppendEvents(
                rp.AppendEventsRequest(run_id=run.run_id, events=[custom(n)])
            )
            [stored] = response.events
            if stored.seq not in seen:
                late.append(stored.seq)
    finally:
        watcher.cancel()
    assert len(late) <= 3, f"answered before the watcher had them: {late}"  # as above


@pytest.mark.parametrize("stored", [True, False], ids=["maybe-stored", "nothing-stored"])
async def test_batches_committed_together_are_written_again_only_if_nothing_was_stored(
    server: RunstreamServer, stubs: Any, monkeypatch: pytest.MonkeyPatch, stored: bool
) -> None:
    """Batches without idempotency keys queue up and are committed together, and the store
    answers UNAVAILABLE. Where it may have written them (Redis took the script, the reply
    was lost) the stream ends with UNAVAILABLE and nothing is written again one batch at a
    time, where an event without a key cannot be told from a new one. Where it refused
    before storing anything (a full disk) the batches are made one at a time. Either way
    no event is stored twice."""
    run = await create_run(stubs)
    store = server._store
    assert store is not None
    original = store.append
    grouped: list[int] = []

    async def refusing(
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: Any = None,
    ) -> None:
        if len(events) == 1 and not grouped:
            await asyncio.sleep(0.05)  # the batches behind it queue up meanwhile
        elif not grouped:
            grouped.append(len(events))
            if not stored:
                raise NothingStored("disk full: nothing was stored; retry later")
            await original(run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)
            raise Unavailable("the Redis store is unreachable (ConnectionError)")
        await original(run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)

    monkeypatch.setattr(store, "append", refusing)

    async def batches():  # type: ignore[no-untyped-def]
        yield rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[keyless(1)])
        for b in range(2, 21):
            yield rp.ReportRequest(batch_id=b, events=[keyless(b)])

    acked, code = [], grpc.StatusCode.OK
    try:
        async for response in stubs.report.Report(batches()):
            acked.append(response.ack.batch_id)
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
    assert grouped, "no batches were committed together"
    await append(stubs, run.run_id, custom(100))  # the server folds in what the log holds
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run.run_id, page_size=100))
    assert listed.events[0].HasField("run_created")
    kept = [int(e.custom.data["n"]) for e in listed.events[1:]]
    if stored:
        assert (acked, code) == ([1], grpc.StatusCode.UNAVAILABLE)
        assert kept == [*range(1, 2 + grouped[0]), 100]
    else:
        assert (acked, code) == (list(range(1, 21)), grpc.StatusCode.OK)
        assert kept == [*range(1, 21), 100]


async def test_a_control_the_link_received_before_a_shutdown_goes_out_before_it(
    server: RunstreamServer, stubs: Any
) -> None:
    """A cancel reached the producer's link, then the server began shutting down, while a
    commit of the stream was made: the cancel is sent, then the commit's ack, and the
    shutdown is left for the handler to end the stream with. (Drained as one list, the
    shutdown's refusal used to swallow the cancel with it.)"""
    run = await create_run(stubs)
    assert server.runs is not None
    signals: Mailbox[Signal] = Mailbox()
    cancel = ControlSignal("cancel", "stop", run_pb2.RUN_STATUS_CANCELLED, 7)
    signals.put_nowait(cancel)
    signals.put_nowait(None)
    session: ReportSession[rp.ReportRequest] = ReportSession(server.runs, run.run_id, signals)
    batch = rp.ReportRequest(batch_id=1, events=[custom(1)])
    said = [s async for s in session.commit([batch])]
    assert said[0] == cancel
    assert isinstance(said[1], Acked) and said[1].batch is batch
    assert [a.seq for a in said[1].result.acks] == [2] and len(said) == 2
    assert signals.qsize() == 1 and signals.peek() is None


async def test_a_batch_committed_as_the_server_begins_to_stop_is_acknowledged_first(
    server: RunstreamServer, stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server begins to stop while a batch's commit is being made: the commit completes,
    and its ack goes out before the stream ends UNAVAILABLE. (The shutdown's refusal went out
    in its place: a producer that resends what was not acknowledged, without idempotency
    keys, stored the batch twice. Found in review.)"""
    run = await create_run(stubs)
    store = server._store
    assert store is not None
    original = store.append
    holding, committing, release = False, asyncio.Event(), asyncio.Event()

    async def held(
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: Any = None,
    ) -> None:
        if holding:
            committing.set()
            await release.wait()
        await original(run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)

    monkeypatch.setattr(store, "append", held)

    call = stubs.report.Report()
    await call.write(rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[keyless(1)]))
    assert (await call.read()).ack.batch_id == 1
    holding = True
    await call.write(rp.ReportRequest(batch_id=2, events=[keyless(2)]))
    await asyncio.wait_for(committing.wait(), 10)
    server.runs.shutdown()  # what stopping does first
    release.set()
    assert (await call.read()).ack.batch_id == 2
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await call.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (ended.value.details() or "")
    listed = await store.read_events(run.run_id, 0, 10)
    assert [e.seq for e in listed] == [1, 2, 3]


def test_each_control_carries_the_status_its_own_event_left() -> None:
    """A replica that folds another replica's pause and resume in one go (one commit record)
    sent the pause with the status after the resume, RUNNING, and a resume in a record that
    ends paused said PAUSED: a producer built from the protos that holds while the status
    says PAUSED stayed held after a RESUME (found in review, 2 of 40 controls)."""
    from runstream_server.domain.commits import CommitRecord, Links
    from runstream_server.domain.state import RunState

    def changed(status: int, previous: int, seq: int) -> ev.RunEvent:
        change = ev.RunStatusChanged(status=status, previous_status=previous, reason=f"#{seq}")
        return ev.RunEvent(seq=seq, run_status_changed=change)

    running, paused = run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_PAUSED
    links = Links()
    for toggles, end in (((paused, running), running), ((running, paused), paused)):
        state = RunState(run_pb2.Run(run_id="r", status=running))
        link = links.attach(state)
        events = [changed(toggles[0], toggles[1], 7), changed(toggles[1], toggles[0], 8)]
        state.run.status = end
        links.on_commit(CommitRecord(state, [], events))
        signals = [link.signals.get_nowait(), link.signals.get_nowait()]
        links.detach(link)
        said = [(s.action, s.status, s.seq) for s in signals if isinstance(s, ControlSignal)]
        expected = {paused: "pause", running: "resume"}
        assert said == [
            (expected[toggles[0]], toggles[0], 7),
            (expected[toggles[1]], toggles[1], 8),
        ]


async def test_a_batch_for_another_run_queued_behind_a_commit_is_refused_not_stored_here(
    server: RunstreamServer, stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches queue up while the stream's first commit is made; one of them names another
    run. The batches before it are committed (together) and acknowledged; it is refused,
    naming its run_id, and its events are stored on neither run."""
    run, other = await create_run(stubs), await create_run(stubs)
    store = server._store
    assert store is not None
    original = store.append
    first_commit = True

    async def slow_first(run_id: str, events: Sequence[StoredEvent], *args: Any, **kw: Any) -> None:
        nonlocal first_commit
        if first_commit:
            first_commit = False
            await asyncio.sleep(0.2)  # the batches behind it queue up meanwhile
        await original(run_id, events, *args, **kw)

    monkeypatch.setattr(store, "append", slow_first)

    responses, refusal = await refused_after(
        stubs,
        rp.ReportRequest(run_id=run.run_id, batch_id=1, events=[custom(1)]),
        *(rp.ReportRequest(batch_id=b, events=[custom(b)]) for b in (2, 3)),
        rp.ReportRequest(run_id=other.run_id, batch_id=4, events=[custom(4)]),
        rp.ReportRequest(batch_id=5, events=[custom(5)]),
    )
    assert refusal.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.details() == f"run_id: {other.run_id!r}: this stream reports on {run.run_id!r}"
    assert [r.ack.batch_id for r in responses] == [1, 2, 3]
    for run_id, kept in ((run.run_id, [1, 2, 3]), (other.run_id, [])):
        listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run_id, page_size=100))
        assert [int(e.custom.data["n"]) for e in listed.events[1:]] == kept
