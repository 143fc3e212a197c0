"""`runs --watch` on a terminal keeps to its --limit of ended runs as runs end under it, and
`--json` prints a context's whole numbers as the producer gave them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import runstream
from rich.console import Console
from runstream._convert import run_from_pb
from runstream.cli.tables import as_dict, print_json, watch_runs
from runstream.v1 import decision_pb2, run_pb2

NOW = datetime.now(UTC)


def a_run(run_id: str, minutes_ago: int, status: int) -> runstream.Run:
    run = run_pb2.Run(run_id=run_id, workflow="campaign", status=status)  # type: ignore[arg-type]
    run.create_time.FromDatetime(NOW - timedelta(minutes=minutes_ago))
    return run_from_pb(run)


async def test_the_live_runs_table_drops_the_oldest_ended_run_when_another_ends() -> None:
    ended = run_pb2.RUN_STATUS_SUCCEEDED
    updated = asyncio.Event()

    class Server:
        async def watch_runs(
            self, filter: str, *, initial_ended_limit: int | None = None
        ) -> AsyncIterator[runstream.RunsUpdate]:
            yield runstream.RunsUpdate(
                runs=(
                    a_run("r-live", 1, run_pb2.RUN_STATUS_RUNNING),
                    a_run("r-newer", 2, ended),
                    a_run("r-oldest", 3, ended),
                ),
                initial=True,
            )
            yield runstream.RunsUpdate(runs=(a_run("r-live", 1, ended),), initial=False)
            updated.set()
            await asyncio.Event().wait()

        async def list_runs_page(self, filter: str, *, page_size: int) -> None:
            return None

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    watching = asyncio.create_task(
        watch_runs(Server(), console, filter="", ended_limit=2, live=True)  # type: ignore[arg-type]
    )
    await asyncio.wait_for(updated.wait(), 10)
    await asyncio.sleep(0.1)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    frames = screen.getvalue().split("Runs  all")
    first = next(frame for frame in frames if "r-oldest" in frame)
    assert "r-live" in first and "r-newer" in first, first
    last = frames[-1]
    assert "r-live" in last and "r-newer" in last, last
    assert "r-oldest" not in last, last  # the newest 2 ended, as --limit 2 says


def test_json_gives_a_contexts_whole_numbers_as_integers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    decision = decision_pb2.Decision(run_id="r1", decision_id="q", prompt="How many?")
    decision.context.update({"count": 3, "share": 0.5, "nested": {"pages": [1, 2]}})
    print_json([as_dict(decision)])
    printed = capsys.readouterr().out
    assert re.search(r'"count": 3\s*[,}]', printed), printed  # not 3.0
    assert re.search(r'"pages": \[\s*1,\s*2\s*\]', printed), printed
    assert json.loads(printed)[0]["context"] == {
        "count": 3,
        "share": 0.5,
        "nested": {"pages": [1, 2]},
    }
