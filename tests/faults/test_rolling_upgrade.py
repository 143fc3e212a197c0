"""A rolling upgrade on Redis: a replica of an earlier release and one of this code share one
Redis while producers and watchers use both (a Kubernetes rollout replaces one pod at a time).

Found in review: a new replica's start publishes a probe on the notice channel (to find an
ACL that refuses it at start), which the releases before 2026-12-02 could not read: their
notice reader died, and their watchers got other replicas' events only at their heartbeat,
4 to 14 s late, while they said SERVING.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import tarfile
from pathlib import Path

import grpc
import pytest
from runstream.v1 import event_pb2, report_service_pb2_grpc, run_service_pb2_grpc
from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs

from tests.conftest import RedisProcess, ServerProcess, free_port, redis_store_url

REPO = Path(__file__).resolve().parents[2]
EARLIER = "a2f8209^"  # the release of 2026-12-02, the last whose notice reader a probe killed


def earlier_release(directory: Path) -> str:
    """The earlier release's src/ unpacked under `directory`; its PYTHONPATH."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", EARLIER, "src"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no git history to take release {EARLIER} from: {exc}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return f"{directory}/src/server:{directory}/src/clients/python"


async def test_a_replica_of_the_earlier_release_keeps_hearing_commits_as_a_new_one_starts(
    redis_server: RedisProcess, tmp_path: Path
) -> None:
    url = redis_store_url(redis_server, tmp_path)
    old = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "old.db",
        store_url=url,
        pythonpath=earlier_release(tmp_path / "earlier"),
    )
    new = ServerProcess(port=free_port(), store_path=tmp_path / "new.db", store_url=url)
    old.start()
    try:
        async with grpc.aio.insecure_channel(old.target) as on_old:
            runs = run_service_pb2_grpc.RunServiceStub(on_old)
            run_id = (await runs.CreateRun(rs.CreateRunRequest(workflow="rollout"))).run.run_id
            watch = runs.WatchRun(rs.WatchRunRequest(run_id=run_id))
            assert [e.seq for e in (await watch.read()).events] == [1]
            new.start()  # the rollout's new pod, on the same Redis
            await asyncio.sleep(1)  # its start-up checks are done
            async with grpc.aio.insecure_channel(new.target) as on_new:
                report = report_service_pb2_grpc.ReportServiceStub(on_new)
                tick = event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"))
                await report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=[tick]))
                # Live through the old replica: it heard the new one's commit notice.
                async with asyncio.timeout(3):
                    assert [e.seq for e in (await watch.read()).events] == [2]
            watch.cancel()
    finally:
        new.kill()
        old.kill()
