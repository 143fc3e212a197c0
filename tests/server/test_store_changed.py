"""What a WatchRuns stream reads again after a gap in a replica's notices: on Redis the runs
that may have changed since the gap began (not ended, created since, or whose end was
stored since), not every stored run; SQLite, never in a gap, says it cannot tell. And many
runs' snapshots in one read, on every store (tests/faults/test_replica_resync.py checks the
streams themselves)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runstream.v1 import event_pb2, run_pb2
from runstream_server.app import RunstreamServer

from tests.server.support import append, create_run


def _now_us() -> int:
    return time.time_ns() // 1000


async def _ended(stubs: Any) -> str:
    run = await create_run(stubs)
    await append(stubs, run.run_id, event_pb2.RunEvent(run_completed=event_pb2.RunCompleted()))
    return run.run_id


async def test_changed_since_is_the_runs_not_ended_and_those_created_or_ended_since(
    server: RunstreamServer, stubs: Any
) -> None:
    """On Redis: by when each end was stored, so a run its producer dated an hour back, and
    one whose log retention purged since, are there. SQLite, written by one process that
    never misses a change, keeps no such record and cannot tell (None)."""
    store = server._store
    assert store is not None
    long_ended = await _ended(stubs)
    still_running = (await create_run(stubs)).run_id
    ends_later = (await create_run(stubs)).run_id
    dated_back = (await create_run(stubs)).run_id
    await asyncio.sleep(0.002)
    since = _now_us()
    await asyncio.sleep(0.002)
    failed = event_pb2.RunEvent(
        run_failed=event_pb2.RunFailed(error=run_pb2.ErrorInfo(message="x"))
    )
    await append(stubs, ends_later, failed)
    done_an_hour_ago = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
    done_an_hour_ago.event_time.FromMicroseconds(since - 3600 * 10**6)
    await append(stubs, dated_back, done_an_hour_ago)
    created_and_ended = await _ended(stubs)
    created = (await create_run(stubs)).run_id
    purged = await store.purge_events(ended_before_us=None, keep_newest=0)
    assert {ends_later, dated_back, created_and_ended} <= set(purged)

    changed = await store.changed_since(since)

    if not store.shared:
        assert changed is None
        return
    assert changed is not None
    expected = [still_running, ends_later, dated_back, created_and_ended, created]
    assert sorted(changed) == sorted(expected)
    assert long_ended not in changed
    assert len(changed) == len(set(changed))
    assert await store.changed_since(_now_us() - 2 * 3600 * 10**6) is None  # too far back


async def test_load_runs_reads_the_snapshots_asked_for_and_leaves_out_unknown_runs(
    server: RunstreamServer, stubs: Any
) -> None:
    store = server._store
    assert store is not None
    ended = await _ended(stubs)
    running = await create_run(stubs)
    # More unknown runs than the SQLite store reads in one query, a run asked for twice.
    unknown = [f"never-created-{n}" for n in range(600)]

    runs = await store.load_runs([*unknown, ended, running.run_id, ended])

    assert {r.run_id: r.status for r in runs} == {
        ended: run_pb2.RUN_STATUS_SUCCEEDED,
        running.run_id: running.status,
    }
    assert len(runs) == 2
    assert await store.load_runs([]) == []
