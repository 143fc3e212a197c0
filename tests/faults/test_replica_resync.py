"""Gaps in a replica's notices: the resync when checking one of its runs fails, a notice it
cannot read, and a question asked on the other replica during a gap.

Real redis-server (the session's, under a key prefix of its own), two in-process replicas.
After a gap (a lost connection to the store), replica B checks every run it holds against
the store. A store error on one of them must not leave the others unchecked: their watchers
would wait for their next heartbeat, not even ending when the lost commit was the run's last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from google.protobuf import duration_pb2
from runstream.v1 import (
    decision_pb2,
    decision_service_pb2_grpc,
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import decision_service_pb2 as ds
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.following import Notices
from runstream_server.domain.reconciling import StoreChecks
from runstream_server.domain.state import RunState
from runstream_server.domain.store_passes import StorePasses
from runstream_server.errors import Unavailable
from runstream_server.store import redis_index
from runstream_server.store.base import CommitNotice, Notice
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_notices import commits_channel
from runstream_server.store.redis_url import parse_url

from tests.clients.support import eventually
from tests.conftest import RedisProcess, redis_store_url, replica_channels, replicas_serving


def losing_notices_of(lost: list[str]) -> Callable[[Notices, Notice], None]:
    """A replica's ``Notices.on_notice`` that takes each commit notice of a run in `lost` for
    a gap (the reader lost it), as a dropped connection to the store does."""
    on_notice = Notices.on_notice

    def losing(self: Notices, notice: Notice) -> None:
        gap = isinstance(notice, CommitNotice) and notice.run_id in lost
        on_notice(self, None if gap else notice)

    return losing


@pytest.mark.parametrize("bug", [False, True], ids=["store error", "bug"])
async def test_a_run_whose_check_fails_does_not_keep_the_resync_from_the_runs_after_it(
    redis_server: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    bug: bool,
) -> None:
    """B holds two runs and misses A's commits to both (a gap); the check of whichever run
    its resync checks first fails every time: the other is still checked, and its watcher
    gets every event. (Which comes first is B's business: a test that broke one named run
    failed once on a loaded machine, the resync having checked the other first.) A store
    error is one WARNING line; a bug is an ERROR with its traceback, never filed as the
    store's ("could not be checked")."""
    url = redis_store_url(redis_server, tmp_path)
    armed = asyncio.Event()  # the gaps begin
    broken: list[str] = []  # the run whose check fails: the first one checked after that
    lost: list[str] = []  # runs whose commit notices are lost (a gap) from now on
    checked: list[str] = []  # the runs B's resyncs checked, in order
    refresh = StoreChecks.refresh

    async def failing_refresh(
        self: StoreChecks, run_id: str, state: RunState, head: int | None = None
    ) -> None:
        checked.append(run_id)
        if armed.is_set() and not broken:
            broken.append(run_id)
        if run_id in broken:
            if bug:
                raise AttributeError("a bug in checking this run")
            raise Unavailable("store unreachable while checking this run")
        await refresh(self, run_id, state, head)

    monkeypatch.setattr(StoreChecks, "refresh", failing_refresh)
    monkeypatch.setattr(Notices, "on_notice", losing_notices_of(lost))
    async with replica_channels(url, tmp_path) as (on_a, on_b):
        runs_a = run_service_pb2_grpc.RunServiceStub(on_a)
        runs_b = run_service_pb2_grpc.RunServiceStub(on_b)
        run_ids = [
            (await runs_a.CreateRun(rs.CreateRunRequest(workflow="resync"))).run.run_id
            for _ in range(2)
        ]
        seen: dict[str, list[int]] = {run_id: [] for run_id in run_ids}
        opened = {run_id: asyncio.Event() for run_id in run_ids}

        async def watch(run_id: str) -> None:  # no heartbeat (and so no head check) for 5 min
            request = rs.WatchRunRequest(
                run_id=run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
            )
            async for response in runs_b.WatchRun(request):
                opened[run_id].set()
                seen[run_id].extend(e.seq for e in response.events)

        watchers = {run_id: asyncio.create_task(watch(run_id)) for run_id in run_ids}
        try:
            for run_id in run_ids:
                await asyncio.wait_for(opened[run_id].wait(), 10)
            lost.extend(run_ids)
            armed.set()
            report = report_service_pb2_grpc.ReportServiceStub(on_a)  # type: ignore[no-untyped-call]
            tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
            done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
            acked = {}
            for run_id in run_ids:
                acked[run_id] = await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick, done])
                )
            # Only the resync can tell B about the other run's commit: the check of the
            # broken one fails every time, and comes first.
            with caplog.at_level(logging.WARNING, "runstream.runs"):
                await eventually(lambda: bool(broken))
                other = next(run_id for run_id in run_ids if run_id not in broken)
                await asyncio.wait_for(watchers[other], 10)
            assert seen[other] == list(range(1, acked[other].last_seq + 1))
            run = (await runs_b.GetRun(rs.GetRunRequest(run_id=other))).run
            assert (run.status, run.last_seq) == (
                run_pb2.RUN_STATUS_SUCCEEDED,
                acked[other].last_seq,
            )
            assert checked.count(broken[0]) >= 1 and other in checked
            said = [r.getMessage() for r in caplog.records]
            filed_as_the_stores = any("could not be checked" in line for line in said)
            with_traceback = [
                r
                for r in caplog.records
                if r.levelno == logging.ERROR
                and r.exc_info is not None
                and "a bug in checking this run" in str(r.exc_info[1])
            ]
            assert (filed_as_the_stores, bool(with_traceback)) == (not bug, bug)
        finally:
            for watcher in watchers.values():
                watcher.cancel()


async def test_runs_a_resync_could_not_check_are_checked_again_once_the_store_answers(
    redis_server: RedisProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """B misses A's commits to a run it holds (a gap), and its resync cannot check the run
    (Redis still loading its data after a restart, in a soak): the run was left until its next
    notice or heartbeat, so a watcher with a 5-minute heartbeat waited for a run that had
    ended. The runs the store failed are checked again, and the watcher gets the end."""
    lost: list[str] = []  # runs whose commit notices are lost (a gap) from now on
    failures: list[float] = []  # when checks failed: all of them in the first second
    refresh = StoreChecks.refresh

    async def failing_once(
        self: StoreChecks, run_id: str, state: RunState, head: int | None = None
    ) -> None:
        if lost and (not failures or time.monotonic() - failures[0] < 1):
            # Each lost notice is a gap of its own: the resyncs of them all fail.
            failures.append(time.monotonic())
            raise Unavailable("the Redis store is unreachable (BusyLoadingError)")
        await refresh(self, run_id, state, head)

    monkeypatch.setattr(StoreChecks, "refresh", failing_once)
    monkeypatch.setattr(Notices, "on_notice", losing_notices_of(lost))
    async with two_replicas(redis_server, tmp_path) as replicas:
        run_id, watch = await watched_on_b(replicas, "recheck")
        lost.append(run_id)
        tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        acked = await replicas.report_a.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick, done])
        )
        seen = []
        with caplog.at_level(logging.INFO, "runstream.runs"):
            async with asyncio.timeout(10):  # no notice and no heartbeat: only a check again
                async for response in watch:
                    seen += [e.seq for e in response.events]
        assert seen == list(range(2, acked.last_seq + 1))
        # However many checks failed, one warning a replica (A holds the run too, and lost its
        # own notice) while the store fails, and one line once back.
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
        warned = [level for level, line in said if "could not be checked" in line]
        assert warned == [logging.WARNING] * len(warned), said
        assert len(warned) <= 2 < len(failures), (said, failures)
        assert (logging.INFO, "after a gap in notices: every held run is checked") in said


@dataclass
class Replicas:
    """Stubs to replicas A and B on one Redis store, and a client of that Redis."""

    url: str
    runs_a: Any
    runs_b: Any
    report_a: Any
    decisions_b: Any
    redis: Any


@contextlib.asynccontextmanager
async def two_replicas(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[Replicas]:
    url = redis_store_url(redis_server, tmp_path)
    async with (
        replica_channels(url, tmp_path) as (on_a, on_b),
        redis.asyncio.from_url(redis_server.url) as client,
    ):
        yield Replicas(
            url,
            run_service_pb2_grpc.RunServiceStub(on_a),
            run_service_pb2_grpc.RunServiceStub(on_b),
            report_service_pb2_grpc.ReportServiceStub(on_a),  # type: ignore[no-untyped-call]
            decision_service_pb2_grpc.DecisionServiceStub(on_b),  # type: ignore[no-untyped-call]
            client,
        )


async def watched_on_b(replicas: Replicas, workflow: str) -> tuple[str, Any]:
    """A run created on A, and a watch of it on B that has read the run's first event and
    gets no heartbeat for 5 minutes: only notices of A's commits wake it."""
    created = await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow=workflow))
    request = rs.WatchRunRequest(
        run_id=created.run.run_id, heartbeat_interval=duration_pb2.Duration(seconds=300)
    )
    watch = replicas.runs_b.WatchRun(request)
    assert [e.seq for e in (await anext(aiter(watch))).events] == [1]
    return created.run.run_id, watch


async def test_an_unreadable_notice_is_a_gap_and_live_updates_go_on(
    redis_server: RedisProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A notice a replica cannot read (from a newer or broken writer) is treated as missed:
    it resyncs and keeps following, where it used to stop following altogether, leaving its
    watchers to learn of other replicas' commits only at their next heartbeat."""
    async with two_replicas(redis_server, tmp_path) as replicas:
        channel = commits_channel(parse_url(replicas.url))
        report, publisher = replicas.report_a, replicas.redis
        run_id, watch = await watched_on_b(replicas, "garbled")
        tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
        with caplog.at_level(logging.WARNING, "runstream.store.redis"):
            for seq, garbage in ((2, b"abc\n\n1\n"), (3, b"\xff\xfe\n1\n1\n")):
                assert await publisher.publish(channel, garbage) == 2  # both replicas read it
                await report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick])
                )
                response = await asyncio.wait_for(anext(aiter(watch)), 5)
                assert [e.seq for e in response.events] == [seq]
        watch.cancel()
        assert sum("unreadable Redis notice" in r.getMessage() for r in caplog.records) >= 2


async def test_a_question_asked_on_a_during_bs_notice_gap_is_found_and_answered_on_b(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """B holds the run but misses A's notice of the question (its subscription is down for
    half a second): asked for the decision, B reads the store before saying NOT_FOUND."""
    async with two_replicas(redis_server, tmp_path) as replicas:
        report, decisions_b, admin = replicas.report_a, replicas.decisions_b, replicas.redis
        created = await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="gap"))
        run_id = created.run.run_id
        await replicas.runs_b.GetRun(rs.GetRunRequest(run_id=run_id))  # B holds the run
        question = event_pb2.DecisionRequested(
            decision_id="d1", prompt="Ship it?", options=[event_pb2.DecisionOption(value="yes")]
        )
        await admin.client_kill_filter(_type="pubsub")  # both resubscribe in about 0.5 s
        await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(
                run_id=run_id, events=[event_pb2.RunEvent(decision_requested=question)]
            )
        )
        asked = ds.GetDecisionRequest(run_id=run_id, decision_id="d1")
        found = (await decisions_b.GetDecision(asked)).decision
        assert found.state == decision_pb2.DECISION_STATE_OPEN
        answer = ds.SubmitDecisionRequest(run_id=run_id, decision_id="d1", choice="yes")
        answered = (await decisions_b.SubmitDecision(answer)).decision
        assert (answered.state, answered.choice) == (decision_pb2.DECISION_STATE_RESOLVED, "yes")


@pytest.mark.parametrize("gap", ["recent", "older-than-the-store-tells"])
async def test_watch_runs_on_b_gets_the_changes_made_on_a_during_bs_notice_gap(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gap: str
) -> None:
    """WatchRuns on B re-lists from the store after a gap in notices: a run that ended and a
    run created on A while B's subscription was down both reach it, once each; also when
    the gap began further back than Redis keeps its record of ends, and every run is read."""
    if gap != "recent":
        monkeypatch.setattr(redis_index, "MOVED_KEPT_US", 0)
    async with two_replicas(redis_server, tmp_path) as replicas:
        report = replicas.report_a
        first = (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="gap"))).run
        stream = replicas.runs_b.WatchRuns(rs.WatchRunsRequest(filter="workflow = gap"))
        told: dict[str, list[int]] = {}

        async def follow() -> None:
            async for response in stream:
                for run in response.runs:
                    told.setdefault(run.run_id, []).append(run.status)

        follower = asyncio.create_task(follow())
        try:
            await eventually(lambda: first.run_id in told)
            await replicas.redis.client_kill_filter(_type="pubsub")  # back in about 0.5 s
            done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
            await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=first.run_id, events=[done])
            )
            second = (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="gap"))).run
            ended = run_pb2.RUN_STATUS_SUCCEEDED
            await eventually(
                lambda: told.get(first.run_id, [])[-1:] == [ended] and second.run_id in told,
                within=10,
            )
            await asyncio.sleep(0.5)  # and nothing twice
            assert told[first.run_id].count(ended) == 1
            assert len(told[second.run_id]) == 1
        finally:
            follower.cancel()


async def test_after_a_notice_gap_watch_runs_reads_the_runs_that_can_have_changed_not_all(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """A gap in B's notices costs its WatchRuns streams the runs that may have changed
    meanwhile, not the store's whole history: 300 runs that ended an hour ago are not read
    again, while a run that succeeded during the gap reaches a stream of every run and one
    of `status = SUCCEEDED` (which it did not match before), once each."""
    async with two_replicas(redis_server, tmp_path) as replicas:
        keys = RedisKeys(parse_url(replicas.url).prefix)
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())

        async def complete(run_id: str) -> None:
            await replicas.report_a.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done])
            )

        history = []
        for _ in range(300):
            run = (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="old"))).run
            await complete(run.run_id)
            history.append(run.run_id)
        # Created and ended an hour ago, as far as the store's indexes tell.
        hour_us = 3600 * 10**6
        for index in (keys.runs, keys.ended, keys.moved):
            entries = await replicas.redis.zrange(index, 0, -1, withscores=True)
            await replicas.redis.zadd(index, {m: s - hour_us for m, s in entries}, xx=True)

        async def reads_in_a_gap(meanwhile: Awaitable[None]) -> int:
            """Reads of runs' records, by both replicas, in a gap in their notices."""
            before = (await replicas.redis.info("commandstats"))["cmdstat_hget"]["calls"]
            await replicas.redis.client_kill_filter(_type="pubsub")  # back in about 0.5 s
            await meanwhile
            await asyncio.sleep(1.5)  # the resyncs after the gap are done
            return (await replicas.redis.info("commandstats"))["cmdstat_hget"]["calls"] - before

        # What a gap costs the replicas without a WatchRuns stream: A checks the heads of
        # the runs it holds (the 300 it wrote).
        without_streams = await reads_in_a_gap(asyncio.sleep(0))
        warm, running = [
            (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="old"))).run
            for _ in range(2)
        ]
        told: dict[str, dict[str, list[int]]] = {"": {}, "status = SUCCEEDED": {}}
        complete_states: list[str] = []

        async def follow(filter_text: str) -> None:
            async for response in replicas.runs_b.WatchRuns(
                rs.WatchRunsRequest(filter=filter_text)
            ):
                if response.initial_state_complete:
                    complete_states.append(filter_text)
                for run in response.runs:
                    told[filter_text].setdefault(run.run_id, []).append(run.status)

        followers = [asyncio.create_task(follow(f)) for f in told]
        try:
            await eventually(lambda: len(complete_states) == 2)
            assert len(told[""]) == 302 and len(told["status = SUCCEEDED"]) == 300
            ended = run_pb2.RUN_STATUS_SUCCEEDED

            def told_ended(run_id: str) -> bool:
                return all(t.get(run_id, [])[-1:] == [ended] for t in told.values())

            # A run ending before the gap: B learns its workflow's history (one scan of the
            # store's newest runs per process, not the gap's doing).
            await complete(warm.run_id)
            await eventually(lambda: told_ended(warm.run_id))

            async def run_ends() -> None:
                await complete(running.run_id)
                await eventually(lambda: told_ended(running.run_id), within=10)

            read = await reads_in_a_gap(run_ends()) - without_streams
            assert read < 100, f"{read} more reads of runs' records after the gap"
            assert [t[running.run_id].count(ended) for t in told.values()] == [1, 1]
            assert all(len(t[r]) == 1 for t in told.values() for r in history)
        finally:
            for follower in followers:
                follower.cancel()


async def test_a_run_whose_end_is_dated_back_still_reaches_b_after_a_gap(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    """A run created long ago (its index entry an hour back) ends during B's gap with an end
    time its producer dated an hour back too: a stream on B that it matches only now (status
    = SUCCEEDED) still gets it, as the re-list reads the runs by when their ends were
    stored, not by their end times (found in review: such a run was never sent)."""
    async with two_replicas(redis_server, tmp_path) as replicas:
        keys = RedisKeys(parse_url(replicas.url).prefix)
        run = (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="dated"))).run
        hour_us = 3600 * 10**6
        created = await replicas.redis.zscore(keys.runs, run.run_id)
        await replicas.redis.zadd(keys.runs, {run.run_id: created - hour_us}, xx=True)
        request = rs.WatchRunsRequest(filter='workflow = "dated" AND status = SUCCEEDED')
        stream = replicas.runs_b.WatchRuns(request)
        assert (await stream.read()).initial_state_complete
        await replicas.redis.client_kill_filter(_type="pubsub")  # back in about 0.5 s
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        done.event_time.FromMicroseconds(time.time_ns() // 1000 - hour_us)
        await replicas.report_a.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[done])
        )
        try:
            told = await asyncio.wait_for(stream.read(), 10)
            assert [(r.run_id, r.status) for r in told.runs] == [
                (run.run_id, run_pb2.RUN_STATUS_SUCCEEDED)
            ]
        finally:
            stream.cancel()


async def test_every_run_still_going_that_changed_in_a_gap_reaches_b(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs not ended that changed while B missed their notices (started, here) all reach a
    stream on B that matches them only now: the re-list after the gap reads every run not
    ended, not the oldest of them alone."""
    lost: list[str] = []
    monkeypatch.setattr(Notices, "on_notice", losing_notices_of(lost))
    async with two_replicas(redis_server, tmp_path) as replicas:
        runs = [
            (await replicas.runs_a.CreateRun(rs.CreateRunRequest(workflow="going"))).run.run_id
            for _ in range(3)
        ]
        # Created an hour ago, as far as the store's indexes tell: not read as new runs.
        runs_index = RedisKeys(parse_url(replicas.url).prefix).runs
        created = await replicas.redis.zrange(runs_index, 0, -1, withscores=True)
        await replicas.redis.zadd(runs_index, {m: s - 3600 * 10**6 for m, s in created}, xx=True)
        request = rs.WatchRunsRequest(filter='workflow = "going" AND status = RUNNING')
        stream = replicas.runs_b.WatchRuns(request)
        assert (await stream.read()).initial_state_complete
        lost += runs  # B takes every commit of theirs for a gap from now on
        started = event_pb2.RunEvent(run_started=event_pb2.RunStarted())
        for run_id in runs:
            await replicas.report_a.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run_id, events=[started])
            )
        told: set[str] = set()
        try:
            async with asyncio.timeout(10):
                while told != set(runs):
                    response = await stream.read()
                    told.update(r.run_id for r in response.runs)
        finally:
            stream.cancel()


async def test_other_replicas_commits_do_not_wait_for_the_scan_of_stored_deadlines(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a gap (the first is the subscription itself) the stored deadlines are armed
    beside the notices, not before them: with many waiting runs in the store that scan took
    seconds, and every other replica's commit waited for it."""
    scanning = asyncio.Event()

    async def endless_scan(self: StorePasses) -> None:
        scanning.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(StorePasses, "arm_deadlines", endless_scan)
    async with two_replicas(redis_server, tmp_path) as replicas:
        await asyncio.wait_for(scanning.wait(), 10)
        run_id, watch = await watched_on_b(replicas, "scan")
        tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
        await replicas.report_a.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[tick])
        )
        response = await asyncio.wait_for(anext(aiter(watch)), 5)
        assert [e.seq for e in response.events] == [2]
        watch.cancel()


async def test_a_commit_not_applied_while_the_store_is_out_of_reach_is_one_warning(
    redis_server: RedisProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """B follows A's commits and cannot read the run from the store at that moment (Redis
    went away): one WARNING, as the rest of an outage is logged, not an ERROR with a
    traceback that alerting would page someone for (found in review)."""
    url = redis_store_url(redis_server, tmp_path)
    async with replicas_serving(url, tmp_path) as ((_, on_a), (b, on_b)):
        listing = run_service_pb2_grpc.RunServiceStub(on_b).WatchRuns(rs.WatchRunsRequest())
        await anext(aiter(listing))  # B shows runs live: it loads a run A commits to
        assert b._store is not None

        async def unreachable(run_id: str) -> Any:
            raise Unavailable("the Redis store is unreachable (ConnectionError)")

        monkeypatch.setattr(b._store, "load_run", unreachable)
        with caplog.at_level(logging.WARNING, "runstream.runs"):
            await run_service_pb2_grpc.RunServiceStub(on_a).CreateRun(
                rs.CreateRunRequest(workflow="outage")
            )
            await eventually(lambda: "was not applied" in caplog.text)
        listing.cancel()
    told = [r for r in caplog.records if "another replica's commit" in r.getMessage()]
    assert told and all(r.levelno == logging.WARNING and not r.exc_info for r in told)
    assert "unreachable" in told[0].getMessage()
