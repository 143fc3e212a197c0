"""runs=N keeps the newest N *ended* runs' logs: a run still running, however recent its
events, is none of them, and takes no ended run's place."""

from __future__ import annotations

from pathlib import Path

from runstream.v1 import run_service_pb2 as rs
from runstream_server.domain.runs import Retention

from tests.conftest import ConfigFactory
from tests.server.support import append, custom
from tests.server.test_retention import at, ended, purged, serving


async def test_a_running_run_takes_no_place_among_the_newest_ended_runs_kept(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    config = server_config(tmp_path / "r.db", retention=Retention(runs=1, interval=3600))
    async with serving(config) as (server, stubs):
        assert server.runs is not None
        await ended(stubs, "done", at(0))
        await stubs.runs.CreateRun(rs.CreateRunRequest(run_id="going", workflow="wf"))
        await append(stubs, "going", custom(1))  # reported after "done" ended
        assert await server.runs.apply_retention() == []
        assert await purged(stubs, ["done"]) == set()
