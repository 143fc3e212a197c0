"""GetStats on replicas: the runs by status and the open decisions are the store's.

Two in-process replicas on one real redis-server. Each counts the stored runs at start and
then moves its figures with every commit, its own and, through their notices, the other
replica's: a run B creates, starts and ends, and a question asked on A and answered on B,
show the same on both. (Each used to move only with its own commits: A counted a question
answered on B as open for ever, and kept runs another replica ended as running.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio
from runstream.v1 import (
    decision_pb2,
    decision_service_pb2,
    decision_service_pb2_grpc,
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    stats_service_pb2,
    stats_service_pb2_grpc,
)
from runstream_server.app import RunstreamServer
from runstream_server.observability.telemetry import Telemetry
from runstream_server.store.base import RunCounts, StoredEvent

from tests.clients.support import question
from tests.conftest import RedisProcess, redis_store_url, replicas_serving
from tests.server.support import scrape, value


@dataclass
class Replica:
    server: RunstreamServer
    runs: run_service_pb2_grpc.RunServiceStub
    report: report_service_pb2_grpc.ReportServiceStub
    decisions: decision_service_pb2_grpc.DecisionServiceStub
    stats: stats_service_pb2_grpc.StatsServiceStub
    figures: dict[str, object]

    async def read(self) -> None:
        stats = (await self.stats.GetStats(stats_service_pb2.GetStatsRequest())).stats
        self.figures.clear()
        self.figures["runs"] = {
            run_pb2.RunStatus.Name(c.status).removeprefix("RUN_STATUS_"): c.count
            for c in stats.runs_by_status
        }
        self.figures["open_decisions"] = stats.open_decisions
        samples = await scrape(self.server)
        self.figures["healthy"] = value(samples, "runstream_active_runs", health="healthy")

    async def append(self, run_id: str, *events: event_pb2.RunEvent) -> None:
        await self.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=list(events))
        )


@pytest.fixture
async def replicas(redis_server: RedisProcess, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    url = redis_store_url(redis_server, tmp_path)
    metrics = "127.0.0.1:0"
    async with replicas_serving(url, tmp_path, metrics_address=metrics) as replicas:
        yield [
            Replica(
                server,
                run_service_pb2_grpc.RunServiceStub(channel),
                report_service_pb2_grpc.ReportServiceStub(channel),
                decision_service_pb2_grpc.DecisionServiceStub(channel),
                stats_service_pb2_grpc.StatsServiceStub(channel),
                {},
            )
            for server, channel in replicas
        ]


async def both_show(replicas: list[Replica], expected: dict[str, object]) -> None:
    async def read_all() -> bool:
        for replica in replicas:
            await replica.read()
        return all(r.figures == expected for r in replicas)

    deadline = asyncio.get_running_loop().time() + 10
    while not await read_all():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"expected {expected}, got {[r.figures for r in replicas]}")
        await asyncio.sleep(0.05)


async def test_runs_by_status_and_open_decisions_follow_the_other_replicas_commits(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    created = run_service_pb2.CreateRunRequest(workflow="stats")
    held = (await b.runs.CreateRun(created)).run.run_id  # A holds it: a watcher there
    free = (await b.runs.CreateRun(created)).run.run_id  # only B touches it
    pending = (await b.runs.CreateRun(created)).run.run_id
    watch = a.runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=held))
    try:
        await watch.read()
        started = event_pb2.RunEvent(run_started=event_pb2.RunStarted())
        for run_id in (held, free):
            await b.append(run_id, started)
        running = {"runs": {"PENDING": 1, "RUNNING": 2}, "open_decisions": 0, "healthy": 2}
        await both_show(replicas, running)

        await a.report.AppendEvents(question(held, "d1"))  # asked on A, answered on B
        await b.report.AppendEvents(question(free, "d2"))
        waiting = {"PENDING": 1, "WAITING_FOR_INPUT": 2}
        await both_show(replicas, {"runs": waiting, "open_decisions": 2, "healthy": 2})
        for run_id, decision_id in ((held, "d1"), (free, "d2")):
            await b.decisions.SubmitDecision(
                decision_service_pb2.SubmitDecisionRequest(
                    run_id=run_id, decision_id=decision_id, choice="a"
                )
            )
        await both_show(replicas, running)
        # Each answer is timed once, by the replica that stored it.
        timed = [
            value(
                await scrape(r.server),
                "runstream_decision_answer_seconds_count",
                outcome="answered",
            )
            for r in replicas
        ]
        assert timed == [0, 2]

        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted(summary="done"))
        await b.append(held, done)
        await b.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=free, reason="enough"))
        await b.report.AppendEvents(question(pending, "d3"))  # starts it, and it waits
        ended = {"WAITING_FOR_INPUT": 1, "SUCCEEDED": 1, "CANCELLED": 1}
        await both_show(replicas, {"runs": ended, "open_decisions": 1, "healthy": 1})
    finally:
        watch.cancel()


async def test_a_replica_that_missed_the_others_commits_counts_the_store_again(
    replicas: list[Replica], redis_server: RedisProcess
) -> None:
    """Commits made on A while B's notice subscription was down never moved B's figures: B
    showed runs ended long ago as running, and questions answered as open, until it restarted
    (found in review, after a Redis restart). After every gap in its notices B counts the
    store's runs and open questions again."""
    a = replicas[0]
    created = run_service_pb2.CreateRunRequest(workflow="gap")
    first = (await a.runs.CreateRun(created)).run.run_id
    await both_show(replicas, {"runs": {"PENDING": 1}, "open_decisions": 0, "healthy": 0})
    async with redis.asyncio.from_url(redis_server.url) as admin:
        await admin.client_kill_filter(_type="pubsub")  # back in about 0.5 s
    # Meanwhile A's commits reach B by no notice.
    second = (await a.runs.CreateRun(created)).run.run_id
    await a.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=first, reason="gone"))
    await a.report.AppendEvents(question(second, "d1"))
    expected = {"CANCELLED": 1, "WAITING_FOR_INPUT": 1}
    await both_show(replicas, {"runs": expected, "open_decisions": 1, "healthy": 1})


def _stored(seq: int, event: event_pb2.RunEvent) -> StoredEvent:
    kind = event_pb2.RunEvent.DESCRIPTOR.fields_by_name[event.WhichOneof("payload")].number
    return StoredEvent(seq, kind, "", event.SerializeToString())


def test_a_commit_told_twice_or_made_here_is_counted_once() -> None:
    """A notice may come twice, and a process's own notices come back to it (applied as
    another replica's when it no longer holds the run): each commit moves the figures once.
    (An ended run told twice was counted twice, found in review of the change.)"""
    telemetry = Telemetry()
    asked = event_pb2.DecisionRequested(decision_id="d", prompt="?")
    commits = [
        [_stored(1, event_pb2.RunEvent(run_created=event_pb2.RunCreated(workflow="w")))],
        [_stored(2, event_pb2.RunEvent(decision_requested=asked))],
        [
            _stored(
                3, event_pb2.RunEvent(decision_resolved=event_pb2.DecisionResolved(decision_id="d"))
            ),
            _stored(4, event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())),
        ],
    ]
    for events in commits:
        for _ in range(2):
            telemetry.committed_elsewhere("elsewhere", events, None)
        assert telemetry.open_decision_count() == (1 if events[0].seq == 2 else 0)
    assert telemetry.runs.by_status() == {run_pb2.RUN_STATUS_SUCCEEDED: 1}
    started = [_stored(2, event_pb2.RunEvent(run_started=event_pb2.RunStarted()))]
    mine = run_pb2.Run(run_id="here", status=run_pb2.RUN_STATUS_RUNNING, last_seq=2)
    telemetry.committed(mine, started, 0.001)
    telemetry.committed_elsewhere("here", started, None)  # its own notice, come back
    assert telemetry.runs.by_status() == {
        run_pb2.RUN_STATUS_SUCCEEDED: 1,
        run_pb2.RUN_STATUS_RUNNING: 1,
    }


def test_moves_made_while_the_store_is_counted_again_are_kept_once() -> None:
    """The count reads the store while commits go on: a move it may or may not have seen
    is made again on it, and an end it saw already, told after it, is not counted twice."""
    telemetry = Telemetry()
    created = event_pb2.RunEvent(run_created=event_pb2.RunCreated(workflow="w"))
    started = event_pb2.RunEvent(run_started=event_pb2.RunStarted())
    completed = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
    asked = event_pb2.DecisionRequested(decision_id="d", prompt="?")
    for run_id in ("a", "b"):
        telemetry.committed_elsewhere(run_id, [_stored(1, created), _stored(2, started)], None)
    telemetry.recounting()
    telemetry.committed_elsewhere("a", [_stored(3, completed)], None)  # the count saw it not
    telemetry.committed_elsewhere("c", [_stored(1, created)], None)  # nor this one
    telemetry.committed_elsewhere(
        "e", [_stored(1, created), _stored(2, event_pb2.RunEvent(decision_requested=asked))], None
    )
    running = run_pb2.Run(run_id="a", status=run_pb2.RUN_STATUS_RUNNING)
    waiting = run_pb2.Run(run_id="e", status=run_pb2.RUN_STATUS_WAITING_FOR_INPUT)
    ended = {run_pb2.RUN_STATUS_SUCCEEDED: 1}  # b, ended before the count read it
    found = decision_pb2.Decision(decision_id="d")
    telemetry.recounted(RunCounts(ended=ended, active=[running, waiting]), [("e", found)])
    telemetry.committed_elsewhere("b", [_stored(3, completed)], None)  # told late
    assert telemetry.runs.by_status() == {
        run_pb2.RUN_STATUS_SUCCEEDED: 2,
        run_pb2.RUN_STATUS_PENDING: 1,
        run_pb2.RUN_STATUS_WAITING_FOR_INPUT: 1,
    }
    assert telemetry.open_decision_count() == 1


def test_a_recount_forgets_questions_answered_out_of_sight_and_counts_each_once() -> None:
    """The count after a gap is the store's: a question answered where no notice told this
    replica is no longer open, and one asked while the count was read, which the count also
    found, is one question, whose answer lets its run go on (not two, one left waiting)."""
    telemetry = Telemetry()
    created = event_pb2.RunEvent(run_created=event_pb2.RunCreated(workflow="w"))

    def asked(decision_id: str) -> event_pb2.RunEvent:
        return event_pb2.RunEvent(
            decision_requested=event_pb2.DecisionRequested(decision_id=decision_id, prompt="?")
        )

    telemetry.committed_elsewhere("gone", [_stored(1, created), _stored(2, asked("old"))], None)
    assert telemetry.open_decision_count() == 1
    telemetry.recounting()
    telemetry.committed_elsewhere("e", [_stored(1, created), _stored(2, asked("d"))], None)
    waiting = run_pb2.Run(run_id="e", status=run_pb2.RUN_STATUS_WAITING_FOR_INPUT)
    found = decision_pb2.Decision(decision_id="d")
    telemetry.recounted(RunCounts(ended={}, active=[waiting]), [("e", found)])
    assert telemetry.open_decision_count() == 1
    resolved = event_pb2.DecisionResolved(decision_id="d")
    telemetry.committed_elsewhere(
        "e", [_stored(3, event_pb2.RunEvent(decision_resolved=resolved))], None
    )
    assert telemetry.open_decision_count() == 0
    assert telemetry.runs.by_status() == {run_pb2.RUN_STATUS_RUNNING: 1}


async def test_runstream_stats_does_not_show_a_redis_store_as_empty(
    replicas: list[Replica],
) -> None:
    """Found in review: `runstream stats` printed "store  redis, 0 B" on every replica (the
    size is a file's; Redis reports its memory itself)."""
    from tests.e2e.test_cli import runstream_cli

    shown = await asyncio.to_thread(runstream_cli, "stats", "--target", replicas[0].server.target)
    assert shown.returncode == 0, shown.stderr
    store = next(line for line in shown.stdout.splitlines() if line.lstrip().startswith("store"))
    assert "redis (its memory: INFO memory on the Redis)" in store, store
    assert "0 B" not in store
