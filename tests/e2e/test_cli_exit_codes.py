"""What the CLI's exit status says, where no test looked (found by the mutation audit mu68g):
`watch` of a run that failed exits 1, as a script waiting on it needs; an empty `events`
window is a usage error."""

from __future__ import annotations

import pytest
import runstream
from runstream.cli.main import main
from runstream_server.app import RunstreamServer

from tests.e2e.test_cli import cli


async def test_watch_exits_1_for_a_run_that_failed_and_0_for_one_that_succeeded(
    server: RunstreamServer,
) -> None:
    async with runstream.connect(server.target) as client:
        failed = await client.start_run("campaign")
        async with failed:
            await failed.fail("model quota exhausted")
        done = await client.start_run("campaign")
        async with done:
            await done.complete()
    for run, status in ((failed, 1), (done, 0)):
        watched = await cli("watch", run.run_id, "--target", server.target, "--plain")
        assert watched.returncode == status, watched.stdout + watched.stderr
        assert f"Run {run.run_id} ended: " in watched.stdout


def test_an_events_window_with_nothing_in_it_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["events", "r", "--after", "5", "--before", "5", "--target", "127.0.0.1:1"]
    assert main(args) == 2
    assert "--before 5 must be past --after 5" in capsys.readouterr().err
