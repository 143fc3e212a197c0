"""A run keeps at most MAX_RUN_MILESTONES milestone ids of its producer's: each stays in
memory with the run, and a producer could name as many as it liked. The server's own
(progress marks, targets reached, speed) never count and are never refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain import creating, state
from runstream_server.store import base

from tests.conftest import ConfigFactory
from tests.server.conftest import Stubs
from tests.server.support import (
    append,
    assert_refused,
    create_run,
    custom,
    ev,
    get_run,
    rpc_error,
    serving,
    status_detail,
)

LIMIT = 5


def milestone(milestone_id: str = "", **data: object) -> ev.RunEvent:
    event = ev.RunEvent(milestone=ev.Milestone(title="t", milestone_id=milestone_id))
    if data:
        event.milestone.data.update(data)
    return event


async def refusal(stubs: Stubs, run_id: str, *events: ev.RunEvent) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await append(stubs, run_id, *events)
    return info.value


async def fired(stubs: Stubs, run_id: str) -> list[str]:
    """The ids of the run's milestones in its log, in order."""
    listed = await stubs.runs.ListEvents(rs.ListEventsRequest(run_id=run_id, page_size=1000))
    return [e.milestone.milestone_id for e in listed.events if e.HasField("milestone")]


async def test_a_run_keeps_at_most_its_limit_of_milestones_also_after_a_restart(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "MAX_RUN_MILESTONES", LIMIT)
    config = server_config(tmp_path / "m.db")
    target = run_pb2.Target(metric="found", value=10)
    async with serving(config) as (_, stubs):
        run = await create_run(stubs, "a", "b", targets=[target])
        # A producer's list of marks made a milestone id of each (10,000 in one event):
        # only the server's marks are taken from it.
        marks = struct_pb2.ListValue()
        marks.extend(range(101, 1101))
        await append(stubs, run.run_id, milestone("progress-1", marks=marks))
        await append(stubs, run.run_id, *(milestone(f"m{i}") for i in range(1, LIMIT - 1)))
        await append(stubs, run.run_id, milestone("progress-102"))  # not fired by the marks
        before = (await get_run(stubs, run.run_id)).last_seq

        assert_refused(
            await refusal(stubs, run.run_id, custom(1), milestone(f"m{LIMIT}")),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"events[1].milestone.milestone_id: run {run.run_id!r} keeps {LIMIT} milestones, "
            "the most a run may keep; fire more without a milestone_id (the run keeps none of "
            "those)",
            "MILESTONE_LIMIT",
            {"event_index": "1"},
        )
        assert (await get_run(stubs, run.run_id)).last_seq == before  # nothing of it kept

        # The run takes everything else: events, milestones without an id, and the
        # producer's events that make the server fire its own (50 %, the target), which
        # count for nothing.
        await append(
            stubs,
            run.run_id,
            custom(2),
            milestone(),
            ev.RunEvent(step_started=ev.StepStarted(step_id="a")),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="a")),
            ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"found": 12})),
        )
        assert (await fired(stubs, run.run_id))[-3:] == ["", "progress-50", "target-found"]
        # The ones kept are kept: each still refused as fired.
        exc = await refusal(stubs, run.run_id, milestone("m1"))
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION

    async with serving(config) as (_, stubs):  # the run read again from its store
        exc = await refusal(stubs, run.run_id, milestone("another"))
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"keeps {LIMIT} milestones" in exc.details()
        exc = await refusal(stubs, run.run_id, milestone("progress-50"))
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        await append(
            stubs,
            run.run_id,
            ev.RunEvent(step_started=ev.StepStarted(step_id="b")),
            ev.RunEvent(step_completed=ev.StepCompleted(step_id="b")),
            ev.RunEvent(run_completed=ev.RunCompleted()),
        )
        ended = await get_run(stubs, run.run_id)
        assert ended.status == run_pb2.RUN_STATUS_SUCCEEDED
        kept = await fired(stubs, run.run_id)
        assert kept[-1] == "progress-100"  # the server's last, past the producer's limit
        assert kept[:LIMIT] == ["progress-1", "m1", "m2", "m3", "progress-102"]


async def test_two_targets_of_one_kind_on_one_metric_are_refused_at_create(
    stubs: Stubs,
) -> None:
    """Found in review: CreateRun took them, and they shared the milestone the server fires,
    so the update that reached both was refused FAILED_PRECONDITION "'target-m' already
    fired", naming no field of it, and the SDK's reporter stopped there."""
    count, quality = run_pb2.TARGET_KIND_COUNT, run_pb2.TARGET_KIND_QUALITY
    for kinds, said in [
        ((count, count), "a count target"),
        ((run_pb2.TARGET_KIND_UNSPECIFIED, count), "a count target"),  # unspecified is count
        ((quality, quality), "a quality target"),
    ]:
        targets = [
            run_pb2.Target(metric="other", value=1, kind=kinds[0]),
            run_pb2.Target(metric="m", value=1, kind=kinds[0]),
            run_pb2.Target(metric="m", value=5, kind=kinds[1]),
        ]
        exc = await rpc_error(create_run(stubs, targets=targets))
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert exc.details() == (
            f"targets[2].metric: targets[1] already declares {said} for metric 'm'; a run "
            "takes one count and one quality target per metric"
        )
        violations = status_detail(exc, error_details_pb2.BadRequest)
        assert violations is not None
        assert [v.field for v in violations.field_violations] == ["targets[2].metric"]
    assert list((await stubs.runs.ListRuns(rs.ListRunsRequest())).runs) == []

    # One of each kind on one metric: both fire, on the update that reaches both.
    run = await create_run(
        stubs,
        targets=[
            run_pb2.Target(metric="m", value=1, kind=count),
            run_pb2.Target(metric="m", value=5, kind=quality),
        ],
    )
    await append(stubs, run.run_id, ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"m": 10})))
    assert await fired(stubs, run.run_id) == ["target-m", "quality-m"]


async def test_a_run_stored_with_two_targets_of_one_id_takes_the_update_reaching_both(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run created before CreateRun refused them fires their milestone once, and the
    update that reaches both is stored."""
    monkeypatch.setattr(creating, "_check_targets", lambda targets: None)
    targets = [run_pb2.Target(metric="m", value=1), run_pb2.Target(metric="m", value=5)]
    run = await create_run(stubs, targets=targets)
    update = ev.RunEvent(metrics_update=ev.MetricsUpdate(values={"m": 10}))
    await append(stubs, run.run_id, update)
    assert await fired(stubs, run.run_id) == ["target-m"]
    assert (await get_run(stubs, run.run_id)).metrics["m"] == 10


async def test_a_restart_remembers_every_milestone_however_many_reads_that_takes(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run read again from its store rebuilds its milestones from every event of their
    kind, read a page at a time (2 events here, 10,000 in use): each one fired before the
    restart is still refused as fired, the last page's too."""
    monkeypatch.setattr(base, "EVERY_EVENT_PAGE", 2)
    config = server_config(tmp_path / "m.db")
    async with serving(config) as (_, stubs):
        run = await create_run(stubs)
        await append(stubs, run.run_id, *(milestone(f"m{i}") for i in range(1, 6)))
    async with serving(config) as (_, stubs):  # the run read again from its store
        for i in range(1, 6):
            exc = await refusal(stubs, run.run_id, milestone(f"m{i}"))
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, f"m{i}"
        assert await fired(stubs, run.run_id) == [f"m{i}" for i in range(1, 6)]
