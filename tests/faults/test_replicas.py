"""Must show: several `runstream serve` processes on one Redis serve the same runs.

Real processes throughout: a redis-server with AOF on (appendfsync always), two replicas
started with ``--store redis://...``, clients over gRPC. Replicas are killed with SIGKILL
(no shutdown hooks): whatever they acknowledged must already be in Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
import runstream
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import (
    decision_service_pb2,
    decision_service_pb2_grpc,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import event_pb2 as ev

from tests.clients.support import eventually, until
from tests.conftest import RedisProcess, ServerProcess, replicas_on_redis


@dataclass
class Cluster:
    """One Redis and two replicas on it."""

    redis: RedisProcess
    a: ServerProcess
    b: ServerProcess


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with replicas_on_redis(tmp_path, "replicas") as (redis, a, b):
        yield Cluster(redis, a, b)


@dataclass
class Stubs:
    runs: run_service_pb2_grpc.RunServiceStub
    report: report_service_pb2_grpc.ReportServiceStub
    decisions: decision_service_pb2_grpc.DecisionServiceStub
    health: health_pb2_grpc.HealthStub


@pytest.fixture
async def connect() -> AsyncIterator[object]:
    channels: list[grpc.aio.Channel] = []

    def make(target: str) -> Stubs:
        channel = grpc.aio.insecure_channel(target)
        channels.append(channel)
        return Stubs(
            run_service_pb2_grpc.RunServiceStub(channel),
            report_service_pb2_grpc.ReportServiceStub(channel),
            decision_service_pb2_grpc.DecisionServiceStub(channel),
            health_pb2_grpc.HealthStub(channel),
        )

    try:
        yield make
    finally:
        for channel in channels:
            await channel.close()


def tick(n: int) -> ev.RunEvent:
    event = ev.RunEvent(custom=ev.Custom(type="tick"), idempotency_key=f"t{n}")
    event.custom.data.update({"n": n})
    return event


def ask(decision_id: str, seconds: int = 0) -> ev.RunEvent:
    """A question with options x and y; with `seconds`, x is taken at the deadline."""
    asked = ev.DecisionRequested(
        decision_id=decision_id,
        prompt="pick",
        options=[ev.DecisionOption(value="x"), ev.DecisionOption(value="y")],
    )
    if seconds:
        asked.default_option = "x"
        asked.timeout.CopyFrom(duration_pb2.Duration(seconds=seconds))
    return ev.RunEvent(decision_requested=asked, idempotency_key=f"ask-{decision_id}")


async def log_of(stubs: Stubs, run_id: str) -> list[ev.RunEvent]:
    """The run's whole stored log, page by page (ListEvents)."""
    events: list[ev.RunEvent] = []
    token = ""
    while True:
        page = await stubs.runs.ListEvents(
            run_service_pb2.ListEventsRequest(run_id=run_id, page_size=1000, page_token=token)
        )
        events += page.events
        token = page.next_page_token
        if not token:
            return events


async def follow(
    targets: list[str], run_id: str, *, flaky: bool, seed: int, connect: object
) -> list[int]:
    """A watcher that disconnects at random and resumes with after_seq, on any replica."""
    rng = random.Random(seed)
    seen: list[int] = []
    while True:
        stubs = connect(rng.choice(targets))  # type: ignore[operator]
        call = stubs.runs.WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id, after_seq=seen[-1] if seen else 0)
        )
        budget = rng.randint(1, 40) if flaky else 10**9
        try:
            async for response in call:
                seen += [e.seq for e in response.events]
                budget -= 1
                if budget == 0:
                    call.cancel()
                    break
            else:
                return seen  # the stream ended by itself: the run ended
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
            await asyncio.sleep(0.05)


async def test_two_replicas_twenty_flaky_watchers_see_every_event_once_in_order(
    cluster: Cluster, connect: object
) -> None:
    """Producer on A; 20 watchers spread over A and B, each disconnecting at random and
    resuming on a random replica while 10,000 events are reported."""
    a: Stubs = connect(cluster.a.target)  # type: ignore[operator]
    run = (await a.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="fan"))).run
    targets = [cluster.a.target, cluster.b.target]
    watchers = [
        asyncio.create_task(follow(targets, run.run_id, flaky=True, seed=i, connect=connect))
        for i in range(20)
    ]
    total = 10_000
    for start in range(0, total, 200):
        batch = [tick(n) for n in range(start, start + 200)]
        await a.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=batch)
        )
    done = ev.RunEvent(run_completed=ev.RunCompleted(), idempotency_key="done")
    last = await a.report.AppendEvents(
        report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[done])
    )
    results = await asyncio.wait_for(asyncio.gather(*watchers), 120)
    head = last.last_seq
    assert head >= total + 2
    for seen in results:
        assert seen == list(range(1, head + 1))


async def test_sigkill_of_the_producers_replica_the_sdk_carries_on_through_the_other(
    cluster: Cluster, connect: object
) -> None:
    """The SDK's target lists both replicas (gRPC picks the first that answers); A dies
    mid-run; the producer resends through B; a watcher of A resumes on B."""
    both = f"ipv4:127.0.0.1:{cluster.a.port},127.0.0.1:{cluster.b.port}"
    events = 3000
    async with runstream.connect(both) as client:
        run = await client.start_run("survivor")

        async def produce() -> None:
            for i in range(events):
                await run.custom("tick", {"i": i})
                if i % 10 == 0:
                    await asyncio.sleep(0.002)
            await run.complete("survived")

        producer = asyncio.create_task(produce())
        on_a = asyncio.create_task(
            follow([cluster.a.target, cluster.b.target], run.run_id, flaky=False, seed=1,
                   connect=connect)
        )  # fmt: skip
        await eventually(lambda: run.events_acknowledged >= 500)
        cluster.a.kill()
        assert run.events_reported < events, "the producer finished before the kill"
        await asyncio.wait_for(producer, 60)
        await run.close()
        assert run.events_acknowledged == run.events_reported == events + 2
    b: Stubs = connect(cluster.b.target)  # type: ignore[operator]
    stored = await log_of(b, run.run_id)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    ticks = [int(e.custom.data["i"]) for e in stored if e.HasField("custom")]
    assert ticks == list(range(events))  # each reported event stored once, in order
    watched = await asyncio.wait_for(on_a, 30)
    assert watched == [e.seq for e in stored]


async def test_concurrent_writes_from_two_replicas_one_log_one_state(
    cluster: Cluster, connect: object
) -> None:
    """Producer on A asks and reports; B answers every question and finally cancels."""
    a: Stubs = connect(cluster.a.target)  # type: ignore[operator]
    b: Stubs = connect(cluster.b.target)  # type: ignore[operator]
    run = (await a.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="duo"))).run
    questions = 30

    async def produce() -> None:
        for q in range(questions):
            batch = [ask(f"d{q}"), *(tick(q * 10 + i) for i in range(10))]
            await a.report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=batch)
            )

    async def answer() -> None:
        answered: set[str] = set()
        while len(answered) < questions:
            listed = await b.decisions.ListDecisions(
                decision_service_pb2.ListDecisionsRequest(run_id=run.run_id, filter="state = OPEN")
            )
            for decision in listed.decisions:
                await b.decisions.SubmitDecision(
                    decision_service_pb2.SubmitDecisionRequest(
                        run_id=run.run_id,
                        decision_id=decision.decision_id,
                        choice="y",
                        answered_by="b",
                    )
                )
                answered.add(decision.decision_id)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(produce(), answer()), 60)
    await b.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run.run_id, reason="enough"))
    stored = await log_of(a, run.run_id)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    resolved = [e.decision_resolved.decision_id for e in stored if e.HasField("decision_resolved")]
    assert sorted(resolved) == sorted(f"d{q}" for q in range(questions))  # once each
    assert stored[-1].HasField("run_cancelled")
    on_a = (await a.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    on_b = (await b.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run.run_id))).run
    assert on_a == on_b
    assert on_a.status == run_pb2.RUN_STATUS_CANCELLED and on_a.last_seq == stored[-1].seq


async def test_a_deadline_armed_on_both_replicas_fires_once_even_when_one_dies(
    cluster: Cluster, connect: object
) -> None:
    a: Stubs = connect(cluster.a.target)  # type: ignore[operator]
    b: Stubs = connect(cluster.b.target)  # type: ignore[operator]
    run = (await a.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="late"))).run
    # B holds the run too (a watcher), so both replicas arm the same deadline.
    watcher = b.runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run.run_id))
    await anext(aiter(watcher))
    await a.report.AppendEvents(
        report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[ask("both", 1)])
    )

    async def resolutions(stubs: Stubs) -> list[str]:
        return [
            e.decision_resolved.decision_id
            for e in await log_of(stubs, run.run_id)
            if e.HasField("decision_resolved")
        ]

    for _ in range(200):
        if "both" in await resolutions(b):
            break
        await asyncio.sleep(0.05)
    # Then A asks again and dies at once: B, which learned of the question, closes it.
    await a.report.AppendEvents(
        report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[ask("orphan", 1)])
    )
    cluster.a.kill()
    for _ in range(200):
        if "orphan" in await resolutions(b):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # room for a second, wrong resolution to show up
    assert await resolutions(b) == ["both", "orphan"]
    watcher.cancel()
    decision = await b.decisions.GetDecision(
        decision_service_pb2.GetDecisionRequest(run_id=run.run_id, decision_id="orphan")
    )
    assert decision.decision.outcome == ev.DECISION_OUTCOME_DEFAULTED


@pytest.mark.parametrize("cut_off", [False, True], ids=["notice", "notice-lost"])
async def test_a_replica_that_never_held_the_run_closes_its_question_when_the_other_dies(
    cluster: Cluster, connect: object, cut_off: bool
) -> None:
    """Deadlines do not rest on one replica: B never held the run, and learns of A's
    question from A's commit notice, or (`cut_off`: B's notice subscription was lost while
    A asked) from the store once it subscribes again; it defaults the question once A is
    gone."""
    a: Stubs = connect(cluster.a.target)  # type: ignore[operator]
    b: Stubs = connect(cluster.b.target)  # type: ignore[operator]
    channel = "replicas:commits"
    redis = aioredis.from_url(cluster.redis.url)
    try:

        async def subscribed() -> bool:
            return bool((await redis.pubsub_numsub(channel))[0][1] == 2)

        await until(subscribed)  # both replicas follow the notices
        run = (await a.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="unheld"))).run
        if cut_off:
            await redis.client_kill_filter(_type="pubsub")  # the replicas subscribe again
        ticks = [tick(n) for n in range(5)]  # events of other kinds in the same commit
        await a.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(
                run_id=run.run_id, events=[*ticks, ask("unheld", 2)]
            )
        )
        await until(subscribed)
    finally:
        await redis.aclose()
    await asyncio.sleep(0.2)  # room for the notice to reach B
    cluster.a.kill()

    async def defaulted() -> bool:
        got = await b.decisions.GetDecision(
            decision_service_pb2.GetDecisionRequest(run_id=run.run_id, decision_id="unheld")
        )
        return bool(got.decision.outcome == ev.DECISION_OUTCOME_DEFAULTED)

    await until(defaulted, within=10)


async def test_sigkill_of_redis_with_aof_always_loses_nothing_acknowledged(
    cluster: Cluster, connect: object
) -> None:
    """Appends race a kill -9 of redis-server; health goes NOT_SERVING and back; every
    acknowledged event is at its seq after Redis restarts from its AOF."""
    a: Stubs = connect(cluster.a.target)  # type: ignore[operator]
    run = (await a.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="aof"))).run
    acked: dict[str, int] = {}
    stop = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop.is_set():
            try:
                answer = await a.report.AppendEvents(
                    report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[tick(n)])
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                await asyncio.sleep(0.05)
                continue  # resend the same event: its key makes it land once
            acked[f"t{n}"] = answer.events[0].seq
            n += 1

    async def serving() -> int:
        return (await a.health.Check(health_pb2.HealthCheckRequest())).status

    producer = asyncio.create_task(produce())
    await eventually(lambda: len(acked) >= 200)
    cluster.redis.kill()
    for _ in range(100):
        if await serving() == health_pb2.HealthCheckResponse.NOT_SERVING:
            break
        await asyncio.sleep(0.05)
    assert await serving() == health_pb2.HealthCheckResponse.NOT_SERVING
    before = len(acked)
    await asyncio.to_thread(cluster.redis.start)  # same port, same directory: the AOF
    await eventually(lambda: len(acked) >= before + 200, within=30)
    stop.set()
    await producer
    for _ in range(100):  # health follows Redis within its probe interval
        if await serving() == health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.05)
    assert await serving() == health_pb2.HealthCheckResponse.SERVING
    stored = await log_of(a, run.run_id)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    at = {e.idempotency_key: e.seq for e in stored}
    for key, seq in acked.items():
        assert at[key] == seq
    assert len([e for e in stored if e.HasField("custom")]) == len(acked)
