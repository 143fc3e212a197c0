"""A watcher resumes on replica B from a seq B has not heard of yet (A's notice of the
commit is still on its way): B reads the run's head from the store before it answers, and
takes the watch rather than refuse it OUT_OF_RANGE as beyond the run's last seq.

Real redis-server, two in-process replicas (test_replica_resync's): A writes, B streams.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from runstream.v1 import report_service_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.following import Notices
from runstream_server.store.base import CommitNotice, Notice

from tests.conftest import RedisProcess
from tests.faults.test_replica_resync import two_replicas, watched_on_b
from tests.server.support import custom


async def test_a_resume_past_what_b_heard_of_is_taken(
    redis_server: RedisProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unheard: set[str] = set()
    on_notice = Notices.on_notice

    def slow_to_hear(self: Notices, notice: Notice) -> None:
        if not (isinstance(notice, CommitNotice) and notice.run_id in unheard):
            on_notice(self, notice)

    monkeypatch.setattr(Notices, "on_notice", slow_to_hear)
    async with two_replicas(redis_server, tmp_path) as replicas:
        run_id, pinning = await watched_on_b(replicas, "behind")  # B holds the run at seq 1
        unheard.add(run_id)
        request = report_service_pb2.AppendEventsRequest(run_id=run_id, events=[custom(1)])
        await replicas.report_a.AppendEvents(request)  # seq 2, which B does not hear of
        resumed = replicas.runs_b.WatchRun(
            rs.WatchRunRequest(
                run_id=run_id,
                after_seq=2,
                heartbeat_interval=duration_pb2.Duration(nanos=100_000_000),
            )
        )
        try:
            first = await asyncio.wait_for(anext(aiter(resumed)), 10)
            assert first.heartbeat.head_seq == 2 and not first.events
        finally:
            resumed.cancel()
            pinning.cancel()
