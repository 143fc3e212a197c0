"""A watcher catching up from the store while retention purges the run's log ends with the
precise FAILED_PRECONDITION (EVENTS_PURGED, naming after_seq), never left waiting for events
the store no longer holds.

The domain is driven directly (a RunManager over a real SQLite file) to hold the watcher
between two pages of its catch-up while the purge lands.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from runstream.v1 import run_service_pb2
from runstream_server.api.run_service import frame_event
from runstream_server.domain.runs import Limits, Retention, RunManager, WatchItem
from runstream_server.errors import FailedPrecondition
from runstream_server.store.sqlite import SqliteEventStore

from tests.server.support import custom, ev


def seqs(item: WatchItem) -> list[int]:
    assert isinstance(item, bytes), item
    return [e.seq for e in run_service_pb2.WatchRunResponse.FromString(item).events]


async def test_a_purge_between_two_pages_of_a_catch_up_ends_the_watch(tmp_path: Path) -> None:
    store = SqliteEventStore(tmp_path / "purged.db")
    await store.open()
    limits, retention = Limits(watch_page_events=20), Retention(runs=1)
    runs = RunManager(store, limits=limits, retention=retention, frame=frame_event)
    try:
        ended = []
        for _ in range(2):
            run = await runs.create_run(
                run_id="", workflow="wf", display_name="", labels={}, steps=[]
            )
            await runs.append(run.run_id, [custom(n) for n in range(60)])
            await runs.append(run.run_id, [ev.RunEvent(run_completed=ev.RunCompleted())])
            ended.append(run.run_id)
        watch = runs.watching.watch(ended[0])
        assert seqs(await anext(watch)) == list(range(1, 21))  # the first page of 62 events
        assert await runs.apply_retention() == [ended[0]]  # the newer one keeps its log
        with pytest.raises(FailedPrecondition) as refused:
            await asyncio.wait_for(anext(watch), 5)
        assert refused.value.reason == "EVENTS_PURGED"
        assert str(refused.value).startswith("after_seq: events 21..62 of run")
        await watch.aclose()
    finally:
        runs.shutdown()
        await store.close()
