"""Run insight through the SDK, against real servers: ETA, health, milestones, many runs,
viewers, history and retention.

The ETA test runs a seeded simulated workflow a few times, then measures how far the
server's estimate of a new run's remaining time lands from the truth; it prints the measured
error (run pytest with -s to see it) and asserts a generous bound. The workflow's events carry
the times of its own simulated clock, so how busy the machine is moves none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import runstream
from runstream import (
    Client,
    EstimateUpdated,
    Event,
    EventKind,
    FailedPreconditionError,
    HealthChanged,
    Milestone,
    MilestoneType,
    RunHealth,
    RunStatus,
    StepSpec,
    Target,
    TargetKind,
    _event_builders,
)
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.insight import InsightPolicy
from runstream_server.domain.runs import Retention

from tests.clients.support import TcpProxy, eventually
from tests.conftest import ServerProcess


@contextlib.asynccontextmanager
async def custom_server(tmp_path: Path, **config: object) -> AsyncIterator[RunstreamServer]:
    srv = RunstreamServer(
        ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "insight.db", **config)  # type: ignore[arg-type]
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


async def log_of(client: Client, run_id: str) -> list[Event]:
    return [event async for event in client.list_events(run_id)]


# --- ETA ---------------------------------------------------------------------------------

# A simulated ETL-like workflow: base seconds per step; every run draws each step's actual
# duration around its base from a seeded generator.
SIM_STEPS = (("extract", 0.5), ("clean", 0.9), ("enrich", 0.4), ("score", 0.7), ("load", 0.5))
SIM_JITTER = 0.12
SIM_SEED = 20261122
HISTORY_RUNS = 3


@dataclass
class Reading:
    """One look at the estimate during the measured run, right after one of its events."""

    label: str
    at: datetime
    """When, by the simulation's clock: the time of the event just reported."""
    remaining: timedelta | None
    low: timedelta | None
    high: timedelta | None
    history_runs: int
    seen: int
    """The run's last seq then: the estimate in force is the last one told up to it."""


@dataclass
class SimClock:
    """The simulated workflow's clock. Its events carry the times its plan says, so the steps
    the server learns from and judges take exactly the drawn durations: a sleep that
    overshoots or a call that waits for the CPU on a loaded machine moves no event's time,
    where on the wall clock alone a 0.3 s stall in the last steps made a 30 % error. The
    test sleeps to keep it beside the wall clock, as a producer's clock is."""

    ns: int = field(default_factory=time.time_ns)

    def catch_up(self) -> None:
        """Moves to the wall clock if that went ahead (between runs)."""
        self.ns = max(self.ns, time.time_ns())
        _event_builders.HAPPENED_NS.set(self.ns)

    async def advance(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)
        _event_builders.HAPPENED_NS.set(self.ns)
        await asyncio.sleep(max(0.0, (self.ns - time.time_ns()) / 1e9))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.ns / 1e9, UTC)


async def play_sim_run(
    client: Client,
    clock: SimClock,
    rng: random.Random,
    readings: list[Reading] | None = None,
    pace: float = 1.0,
) -> tuple[datetime, list[Event]]:
    """Plays one run of the simulated workflow (``pace`` times slower than usual) on `clock`;
    returns when it ended (by that clock) and its log."""
    run = await client.start_run("eta-sim", steps=[StepSpec(s) for s, _ in SIM_STEPS])
    happening = _event_builders.HAPPENED_NS.set(None)
    try:
        clock.catch_up()
        async with run:
            for step_id, base in SIM_STEPS:
                seconds = pace * base * rng.uniform(1 - SIM_JITTER, 1 + SIM_JITTER)
                async with run.step(step_id) as step:
                    for quarter in range(4):
                        if quarter:
                            await step.progress(quarter * 25)
                        if readings is not None and quarter in (0, 2):
                            await run.flush()
                            snapshot = await client.get_run(run.run_id)
                            estimate = snapshot.estimate
                            readings.append(
                                Reading(
                                    f"{step_id}@{quarter * 25}%",
                                    clock.now(),
                                    estimate.remaining if estimate else None,
                                    estimate.remaining_low if estimate else None,
                                    estimate.remaining_high if estimate else None,
                                    estimate.history_runs if estimate else 0,
                                    snapshot.last_seq,
                                )
                            )
                        await clock.advance(seconds / 4)
            await run.complete()
    finally:
        _event_builders.HAPPENED_NS.reset(happening)
    final = await client.get_run(run.run_id)
    assert final.status == RunStatus.SUCCEEDED and final.end_time is not None
    return final.end_time, await log_of(client, run.run_id)


async def test_eta_of_a_new_run_lands_near_the_true_remaining_time(client: Client) -> None:
    rng = random.Random(SIM_SEED)
    clock = SimClock()
    first: list[Reading] = []
    await play_sim_run(client, clock, rng, first)
    # No history: the server says it does not know rather than guessing.
    assert all(r.remaining is None for r in first)
    for _ in range(HISTORY_RUNS - 1):
        await play_sim_run(client, clock, rng)

    readings: list[Reading] = []
    ended, log = await play_sim_run(client, clock, rng, readings)
    mean_error, _ = eta_errors(readings, log, ended, HISTORY_RUNS, "on pace")
    assert mean_error <= 0.30

    # A run that goes 1.5x slower than its history: once it has finished a few steps, the
    # estimate should follow its pace rather than the history's.
    slow: list[Reading] = []
    ended, log = await play_sim_run(client, clock, rng, slow, pace=1.5)
    slow_mean, _ = eta_errors(slow[len(slow) // 2 :], log, ended, HISTORY_RUNS + 1, "1.5x slower")
    assert slow_mean <= 0.30


# What the server writes itself: any other event of the simulated run is the producer's.
SERVER_KINDS = frozenset(
    {
        EventKind.RUN_CREATED,
        EventKind.ESTIMATE_UPDATED,
        EventKind.MILESTONE,
        EventKind.HEALTH_CHANGED,
    }
)


def told_ends(log: list[Event]) -> dict[int, datetime]:
    """The end each estimate told in the log (by its seq) foresaw, by the producer's clock:
    the time of the producer's event it was made after plus the remaining time it said. Not
    its end_time, which counts from when that event arrived by the server's clock: a loaded
    machine put that up to 0.35 s after the event's own time."""
    ends: dict[int, datetime] = {}
    made_after: datetime | None = None
    for event in log:
        if event.kind not in SERVER_KINDS:
            made_after = event.event_time
        elif isinstance(event.payload, EstimateUpdated) and event.payload.estimate is not None:
            remaining = event.payload.estimate.remaining
            if remaining is not None and made_after is not None:
                ends[event.seq] = made_after + remaining
    return ends


def eta_errors(
    readings: list[Reading], log: list[Event], ended: datetime, history: int, label: str
) -> tuple[float, float]:
    """Mean and worst relative error of the readings' ETAs against the true end; prints them."""
    ends = told_ends(log)
    errors: list[float] = []
    lines = []
    for reading in readings:
        assert reading.remaining is not None, reading.label
        assert reading.remaining >= timedelta(0)
        assert reading.history_runs == history
        assert reading.low is not None and reading.high is not None
        assert reading.low <= reading.remaining <= reading.high, reading
        told = max(seq for seq in ends if seq <= reading.seen)
        true = (ended - reading.at).total_seconds()
        estimated = max(0.0, (ends[told] - reading.at).total_seconds())
        lines.append(f"  {reading.label:<14} true {true:5.2f}s  estimated {estimated:5.2f}s")
        if true >= 0.5:  # tiny denominators say nothing about the estimator
            errors.append(abs(estimated - true) / true)
    mean_error, worst = statistics.mean(errors), max(errors)
    print(
        f"\nETA, {label}, after {history} runs of a seeded simulated workflow "
        f"(jitter ±{SIM_JITTER:.0%}): mean relative error {mean_error:.1%}, "
        f"worst {worst:.1%} over {len(errors)} readings\n" + "\n".join(lines)
    )
    return mean_error, worst


# --- health --------------------------------------------------------------------------------


async def test_a_silent_producer_is_stalled_then_healthy_again_when_it_speaks(
    tmp_path: Path,
) -> None:
    policy = InsightPolicy(stall_after=0.5, stall_min=0.5)
    async with (
        custom_server(tmp_path, insight=policy) as srv,
        runstream.connect(srv.target) as client,
    ):
        run = await client.start_run("stall", steps=["crawl"])
        step = await run.start_step("crawl")
        await step.progress(10, "crawling")
        await run.flush()
        changes: list[HealthChanged] = []

        async def watch_health() -> None:
            async for event in client.watch(run.run_id, kinds=[EventKind.HEALTH_CHANGED]):
                assert isinstance(event.payload, HealthChanged)
                changes.append(event.payload)

        watcher = asyncio.create_task(watch_health())
        # The producer goes quiet...
        await eventually(lambda: any(c.health == RunHealth.STALLED for c in changes))
        stalled = await client.get_run(run.run_id)
        assert stalled.health == RunHealth.STALLED
        assert stalled.status == RunStatus.RUNNING  # stalled is health, not status
        reason = next(c.reason for c in changes if c.health == RunHealth.STALLED)
        assert "crawl" in reason
        assert stalled.health_reason == reason  # the run says why, no event to look up
        # ...and speaks again.
        await step.progress(20, "crawling")
        await eventually(lambda: changes[-1].health == RunHealth.HEALTHY)
        healthy = await client.get_run(run.run_id)
        assert (healthy.health, healthy.health_reason) == (RunHealth.HEALTHY, "")
        await step.complete()
        await run.complete()
        await run.close()
        await asyncio.wait_for(watcher, 20)
    assert [(c.previous_health, c.health) for c in changes][-2:] == [
        (RunHealth.HEALTHY, RunHealth.STALLED),
        (RunHealth.STALLED, RunHealth.HEALTHY),
    ]


# --- milestones ----------------------------------------------------------------------------

TARGETS = [
    Target("companies_found", 50, TargetKind.COUNT, "Find 50 companies"),
    Target("avg_score", 4.0, TargetKind.QUALITY, "Average score 4.0"),
]


async def play_milestone_run(client: Client) -> str:
    run = await client.start_run(
        "prospecting", steps=["search", "qualify", "score", "report"], targets=TARGETS
    )
    async with run:
        for step_id, found, score in (
            ("search", 20, 3.1),
            ("qualify", 55, 3.6),  # the count target is crossed here...
            ("score", 60, 4.2),  # ...and stays crossed; the quality target is met here
            ("report", 70, 4.5),
        ):
            async with run.step(step_id):
                await run.metrics({"companies_found": found, "avg_score": score})
        await run.complete()
    return run.run_id


def milestones(events: list[Event]) -> list[tuple[int, str, MilestoneType]]:
    return [
        (e.seq, e.payload.milestone_id, e.payload.type)
        for e in events
        if isinstance(e.payload, Milestone) and e.payload.milestone_id
    ]


async def test_milestones_fire_once_each_in_order_and_replay_identically(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run_id = await play_milestone_run(client)
        snapshot = await client.get_run(run_id)
        assert list(snapshot.targets) == TARGETS
        live = [event async for event in client.watch(run_id)]
    fired = milestones(live)
    ids = [milestone_id for _, milestone_id, _ in fired]
    assert len(ids) == len(set(ids)), ids  # each once
    progress = [i for i in ids if i.startswith("progress-")]
    assert progress == ["progress-25", "progress-50", "progress-75", "progress-100"]
    assert "target-companies_found" in ids
    assert "quality-avg_score" in ids
    assert ids.index("target-companies_found") < ids.index("quality-avg_score")
    types = {milestone_id: kind for _, milestone_id, kind in fired}
    assert types["target-companies_found"] == MilestoneType.TARGET_REACHED
    assert types["quality-avg_score"] == MilestoneType.QUALITY
    assert types["progress-50"] == MilestoneType.PROGRESS
    # The count target fired right after the metric that crossed it, not at the end.
    crossing = next(
        e.seq
        for e in live
        if e.kind == EventKind.METRICS_UPDATE
        and getattr(e.payload, "values", {}).get("companies_found", 0) >= 50
    )
    target_seq = next(seq for seq, i, _ in fired if i == "target-companies_found")
    assert crossing < target_seq < live[-1].seq

    # A restarted server replays the same milestones at the same seqs, and adds none.
    server_process.kill()
    await asyncio.to_thread(server_process.start)
    async with runstream.connect(server_process.target) as client:
        replayed = await until_reachable(lambda: log_of(client, run_id))
    assert milestones(replayed) == fired
    assert [e.seq for e in replayed] == [e.seq for e in live]


async def until_reachable(call: object) -> list[Event]:
    for _ in range(200):
        try:
            return await call()  # type: ignore[operator, no-any-return]
        except runstream.UnavailableError:
            await asyncio.sleep(0.1)
    return await call()  # type: ignore[operator, no-any-return]


# --- many runs at once ---------------------------------------------------------------------


async def test_watch_runs_follows_concurrent_runs_and_one_started_while_watching(
    client: Client,
) -> None:
    other = await client.start_run("unrelated")
    first = await client.start_run("team-board", steps=["a", "b"])
    second = await client.start_run("team-board", steps=["a", "b"])
    for run in (first, second, other):
        await run.flush()
    latest: dict[str, runstream.Run] = {}
    initial: list[set[str]] = []
    changed: set[str] = set()

    async def follow() -> None:
        async for update in client.watch_runs('workflow = "team-board"'):
            if update.initial:
                initial.append({r.run_id for r in update.runs})
                latest.clear()
            else:
                changed.update(r.run_id for r in update.runs)
            for run in update.runs:
                assert run.workflow == "team-board"
                assert run.steps == ()  # run-level changes only
                latest[run.run_id] = run

    watcher = asyncio.create_task(follow())
    try:
        await eventually(lambda: bool(initial))
        assert initial[0] == {first.run_id, second.run_id}

        third = await client.start_run("team-board", steps=["a", "b"])
        await eventually(lambda: third.run_id in latest)

        async def play(run: runstream.RunReporter) -> None:
            async with run:
                for step_id in ("a", "b"):
                    async with run.step(step_id) as step:
                        await step.progress(50)
                        await asyncio.sleep(0.05)
                await run.complete()

        await asyncio.gather(play(first), play(second), play(third))
        ours = (first.run_id, second.run_id, third.run_id)
        await eventually(lambda: all(latest[r].status == RunStatus.SUCCEEDED for r in ours))
        assert all(latest[r].progress.percent == 100 for r in ours)
        assert changed >= set(ours)
        assert other.run_id not in latest
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await other.close()


async def test_watch_runs_with_an_ended_limit_hands_over_the_live_runs_and_the_newest_ended(
    client: Client,
) -> None:
    live = await client.start_run("limited")
    await live.flush()
    ended = []
    for _ in range(3):
        run = await client.start_run("limited")
        async with run:
            await run.complete()
        ended.append(run.run_id)
    updates = client.watch_runs('workflow = "limited"', initial_ended_limit=2)
    try:
        first = await anext(updates)
        assert first.initial and first.ended_runs_left_out
        assert {r.run_id for r in first.runs} == {live.run_id, *ended[1:]}
        async with live:
            await live.complete()
        changed = await anext(updates)
        assert [(r.run_id, r.status) for r in changed.runs] == [(live.run_id, RunStatus.SUCCEEDED)]
        assert not changed.initial and not changed.ended_runs_left_out
    finally:
        await updates.aclose()
    everything = client.watch_runs('workflow = "limited"')
    try:
        first = await anext(everything)
        assert len(first.runs) == 4 and not first.ended_runs_left_out
    finally:
        await everything.aclose()


async def test_watch_runs_hands_over_the_whole_state_again_after_a_reconnect(
    server: RunstreamServer,
) -> None:
    proxy = TcpProxy(server.port)
    await proxy.start()
    updates: list[runstream.RunsUpdate] = []
    try:
        async with (
            runstream.connect(server.target) as producer_side,
            runstream.connect(proxy.target) as watching,
        ):
            before = await producer_side.start_run("reconnecting")
            await before.flush()

            async def follow() -> None:
                async for update in watching.watch_runs('workflow = "reconnecting"'):
                    updates.append(update)

            watcher = asyncio.create_task(follow())
            await eventually(lambda: bool(updates))
            proxy.cut()
            # Changes while cut off: one run ends, another starts.
            await before.complete()
            await before.close()
            during = await producer_side.start_run("reconnecting")
            await during.flush()
            proxy.restore()
            await eventually(lambda: sum(u.initial for u in updates) >= 2, within=30)
            again = next(u for u in updates[1:] if u.initial)
            state = {run.run_id: run.status for run in again.runs}
            assert state == {before.run_id: RunStatus.SUCCEEDED, during.run_id: RunStatus.RUNNING}
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await during.close()
    finally:
        await proxy.close()
    assert updates[0].initial
    assert [run.run_id for run in updates[0].runs] == [before.run_id]


# --- viewers and history ------------------------------------------------------------------


async def test_the_snapshot_counts_the_runs_current_watchers(client: Client) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    assert (await client.get_run(run.run_id)).viewer_count == 0
    watchers = [
        asyncio.create_task(_drain(client.watch(run.run_id, keep_open=True))) for _ in range(2)
    ]
    try:
        await _eventually_async(lambda: _viewers(client, run.run_id), 2)
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    await _eventually_async(lambda: _viewers(client, run.run_id), 0)
    await run.close()


async def _drain(events: AsyncIterator[Event]) -> None:
    async for _ in events:
        pass


async def _viewers(client: Client, run_id: str) -> int:
    return (await client.get_run(run_id)).viewer_count


async def _eventually_async(probe: object, expected: int) -> None:
    value = None
    for _ in range(400):
        value = await probe()  # type: ignore[operator]
        if value == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"viewer_count stayed {value}, expected {expected}")


async def test_run_details_hold_the_last_50_activities_and_the_open_decisions(
    client: Client,
) -> None:
    run = await client.start_run("campaign", cancel_task=False)
    for i in range(60):
        await run.activity("bot", runstream.ActivityType.PROGRESS, f"found company {i}")
    asking = asyncio.create_task(run.ask("Keep going?", ["yes", "no"], decision_id="go"))
    await eventually(lambda: run.events_acknowledged >= 62)
    details = await client.get_run_details(run.run_id)
    messages = [getattr(e.payload, "message", None) for e in details.recent_activity]
    assert messages == [f"found company {i}" for i in range(10, 60)]
    assert all(e.kind == EventKind.AGENT_ACTIVITY for e in details.recent_activity)
    assert [d.decision_id for d in details.open_decisions] == ["go"]
    await client.submit_decision(run.run_id, "go", "yes")
    await asyncio.wait_for(asking, 20)
    await run.complete()
    await run.close()


async def test_list_events_pages_through_history_and_filters_by_kind(client: Client) -> None:
    run = await client.start_run("campaign", steps=["a"])
    async with run:
        async with run.step("a") as step:
            for percent in range(0, 100, 10):
                await step.progress(percent)
                await run.custom("tick", {"p": percent})
        await run.complete()
    everything = [e async for e in client.list_events(run.run_id, page_size=7)]
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))
    watched = [e async for e in client.watch(run.run_id)]
    assert [(e.seq, e.kind) for e in everything] == [(e.seq, e.kind) for e in watched]

    page, token = await client.list_events_page(run.run_id, page_size=5)
    assert [e.seq for e in page] == [1, 2, 3, 4, 5] and token

    kinds = [EventKind.STEP_PROGRESS, EventKind.RUN_COMPLETED]
    filtered = [e async for e in client.list_events(run.run_id, kinds=kinds, page_size=3)]
    assert [e.kind for e in filtered] == [EventKind.STEP_PROGRESS] * 10 + [EventKind.RUN_COMPLETED]
    assert [e.seq for e in filtered] == sorted(e.seq for e in filtered)
    with pytest.raises(runstream.NotFoundError):
        [e async for e in client.list_events("no-such-run")]


async def test_resuming_into_purged_history_is_a_precise_error(tmp_path: Path) -> None:
    retention = Retention(runs=1, interval=0.1)
    async with (
        custom_server(tmp_path, retention=retention) as srv,
        runstream.connect(srv.target) as client,
    ):
        old = await client.start_run("campaign")
        async with old:
            await old.custom("tick")
            await old.complete()
        new = await client.start_run("campaign")
        async with new:
            await new.complete()

        async def purged() -> int:
            return (await client.get_run(old.run_id)).purged_seq

        await _eventually_async(purged, old.last_seq)
        snapshot = await client.get_run(old.run_id)
        assert snapshot.status == RunStatus.SUCCEEDED  # the snapshot outlives the log
        assert snapshot.purged_seq == snapshot.last_seq

        with pytest.raises(FailedPreconditionError) as watching:
            [e async for e in client.watch(old.run_id, after_seq=1)]
        assert "purged" in watching.value.message or "retention" in watching.value.message
        assert "after_seq" in watching.value.message
        with pytest.raises(FailedPreconditionError):
            [e async for e in client.list_events(old.run_id)]
        # The newest run keeps its history.
        assert next(e.seq for e in await log_of(client, new.run_id)) == 1
