"""The runs-by-status gauges a server reports after a restart: the same as before it, counted
without reading the ended runs' snapshots (reading them all made every start slower with
every run ever stored: 2-2.5 s per 50,000 runs on Redis, review "scale60" finding 7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runstream.v1 import run_pb2
from runstream_server.app import RunstreamServer
from runstream_server.store import base

from tests.conftest import ConfigFactory
from tests.server.support import custom, ev, scrape


def ends() -> dict[str, ev.RunEvent]:
    """The ended runs and their ends (fresh each time: an append in process stamps them)."""
    return {
        "done-1": ev.RunEvent(run_completed=ev.RunCompleted(summary="ok")),
        "done-2": ev.RunEvent(run_completed=ev.RunCompleted(summary="ok")),
        "done-3": ev.RunEvent(run_completed=ev.RunCompleted(summary="ok")),
        "broke-1": ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="no"))),
        "broke-2": ev.RunEvent(run_failed=ev.RunFailed(error=run_pb2.ErrorInfo(message="no"))),
        "stopped": ev.RunEvent(run_cancelled=ev.RunCancelled(reason="x", cancelled_by="ana")),
    }


GAUGES = ("runstream_runs", "runstream_active_runs")


def gauges(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[object, float]:
    return {key: v for key, v in samples.items() if key[0] in GAUGES and v}


async def test_a_restart_counts_the_same_runs_without_reading_the_ended_ones(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = server_config(tmp_path / "runstream.db", metrics_address="127.0.0.1:0")
    first = RunstreamServer(config)
    await first.start()
    try:
        runs = first.runs
        assert runs is not None
        for run_id in [*ends(), "working", "waiting"]:
            await runs.create_run(
                run_id=run_id, workflow="wf", display_name="", labels={}, steps=[]
            )
        for run_id, end in ends().items():
            await runs.append(run_id, [custom(1), end])
        await runs.append("working", [custom(1)])
        before = gauges(await scrape(first))
    finally:
        await first.stop(grace=0.5)
    assert sum(v for (name, _), v in before.items() if name == "runstream_runs") == 8

    decoded: list[str] = []
    decode = base.decode_run

    def counted(run_id: str, data: bytes) -> object:
        decoded.append(run_id)
        return decode(run_id, data)

    monkeypatch.setattr(base, "decode_run", counted)
    second = RunstreamServer(config)
    await second.start()
    try:
        started = list(decoded)
        after = gauges(await scrape(second))
    finally:
        await second.stop(grace=0.5)
    assert after == before
    # Only the runs not ended were read (their health); none of the six ended ones.
    assert not set(started) & set(ends())
    assert set(started) <= {"working", "waiting"}
