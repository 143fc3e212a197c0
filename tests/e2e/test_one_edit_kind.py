"""A new event kind that changes nothing in a run's state is one edit of event.proto: after
`scripts/gen.sh`, a server, the SDK and the terminal view made from that proto take it, check
it, store it and show it.

A copy of the project gets a kind that changes nothing in a run's state, ``budget_warning``:
its payload field with its ``(runstream.v1.kind)`` rules, its ``EventKind`` value and its
message with a ``(runstream.v1.limit)`` on its text, all in event.proto. Nothing else of the
copy is edited. Its `runstream serve` takes the kind from a producer of the same copy (the
SDK's ``report_event``), refuses a message past the annotated limit naming the field, and a
watcher of the copy reads it back as the SDK's generated ``BudgetWarning`` (filtered by its
kind), as `runstream events` prints it. The dashboard's half is in test_new_event_kinds.py.

A kind that changes the run's state (``{}``, every default) needs its fold in code too: without
one the copy's server does not start, and says where the fold goes in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import free_port

from .kind_support import CHANGES_NOTHING, copy_with_a_new_kind

pytestmark = pytest.mark.timeout(240)

CLI = (sys.executable, "-m", "runstream.cli.main")

PRODUCER = """
import asyncio, sys
import runstream
from runstream.v1 import event_pb2


async def main() -> None:
    async with runstream.connect(sys.argv[1]) as client:
        run = await client.start_run("budgeted", run_id="b1")
        await run.report_event(
            event_pb2.RunEvent(
                budget_warning=event_pb2.BudgetWarning(spent_usd=41.5, message="at 83 %")
            )
        )
        await run.flush()
        try:
            await run.report_event(
                event_pb2.RunEvent(budget_warning=event_pb2.BudgetWarning(message="m" * 41))
            )
            await run.flush()
        except runstream.RunstreamError as exc:
            print("refused:", exc.code.name, exc)
        kinds = [runstream.EventKind.BUDGET_WARNING]
        events = [e async for e in client.list_events("b1", kinds=kinds)]
        print("read:", [(e.kind.name, e.payload) for e in events])


asyncio.run(main())
"""


def test_a_kind_added_to_event_proto_alone_is_taken_checked_stored_and_shown(
    tmp_path: Path,
) -> None:
    pythonpath = copy_with_a_new_kind(tmp_path / "copy", CHANGES_NOTHING)
    env = {**os.environ, "PYTHONPATH": pythonpath, "NO_COLOR": "1"}
    target = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [*CLI, "serve", "--address", target, "--store", str(tmp_path / "r.db")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        produced = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PRODUCER), target],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert produced.returncode == 0, produced.stderr
        refused, read = produced.stdout.splitlines()
        assert refused.startswith("refused: INVALID_ARGUMENT")
        assert "budget_warning.message" in refused and "40" in refused, refused
        assert read == (
            "read: [('BUDGET_WARNING', BudgetWarning(spent_usd=41.5, message='at 83 %'))]"
        )
        shown = subprocess.run(
            [*CLI, "events", "b1", "--target", target],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        lines = [line for line in shown.stdout.splitlines() if "Budget warning" in line]
        assert len(lines) == 1, shown.stdout
        assert "spent_usd: 41.5" in lines[0] and "message: at 83 %" in lines[0], lines[0]
    finally:
        server.terminate()
        server.wait(20)


def test_a_kind_that_changes_state_without_its_fold_stops_the_server_saying_where_it_goes(
    tmp_path: Path,
) -> None:
    pythonpath = copy_with_a_new_kind(tmp_path / "copy", "{}")
    env = {**os.environ, "PYTHONPATH": pythonpath, "NO_COLOR": "1"}
    target = f"127.0.0.1:{free_port()}"
    served = subprocess.run(
        [*CLI, "serve", "--address", target, "--store", str(tmp_path / "r.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # One line, not the 23 of the traceback of the import that raised it.
    assert served.returncode == 1
    assert "Traceback" not in served.stderr, served.stderr
    [said] = served.stderr.strip().splitlines()
    assert said.startswith("runstream: event kind 'budget_warning' changes the run's state"), said
    for remedy in (
        "RunState._on_budget_warning in domain/state.py",
        "RunSteps.on_budget_warning in domain/steps.py",
        "changes_state: false",
    ):
        assert remedy in said, said
