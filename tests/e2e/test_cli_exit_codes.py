"""What the CLI's exit status says, where no test looked (found by the mutation audit mu68g):
`watch` of a run that failed exits 1, as a script waiting on it needs; an empty `events`
window is a usage error; `answer` with the deadline's fallback says what it is."""

from __future__ import annotations

import asyncio

import pytest
import runstream
from runstream.cli.main import main
from runstream_server.app import RunstreamServer

from tests.clients.support import until
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
    # Without --after, what --before takes: it said "must be past --after 0" (found in review).
    with pytest.raises(SystemExit) as refused:
        main(["events", "r", "--before", "0", "--target", "127.0.0.1:1"])
    assert refused.value.code == 2
    said = capsys.readouterr().err
    assert "argument --before: must be 1 or more" in said, said
    assert "--after" not in said.splitlines()[-1], said


async def test_answering_with_the_deadlines_fallback_exits_1_saying_what_it_is(
    server: RunstreamServer,
) -> None:
    """A default none of the options is what the deadline takes; a person cannot answer it,
    and is told why rather than that it is no option."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("files")
        async with run:
            options = ["file1.pdf", "file2.xlsx"]
            asking = asyncio.create_task(
                run.ask("Which file?", options, default="analyze_all", timeout=60, decision_id="f")
            )

            async def asked() -> bool:
                return bool(await client.list_decisions(run.run_id))

            await until(asked)
            said = await cli("answer", run.run_id, "f", "analyze_all", "--target", server.target)
            await client.submit_decision(run.run_id, "f", "file1.pdf")
            assert (await asking).choice == "file1.pdf"
            await run.complete()
    assert said.returncode == 1, said.stderr
    assert "choice 'analyze_all' is what the deadline takes, none of the options" in said.stderr
