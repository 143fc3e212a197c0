"""A producer process that exits through ``sys.exit()`` or KeyboardInterrupt raised in a task
of its own still ends its run, with every event it reported.

Such an exception leaves ``asyncio.run`` from that task, and asyncio.run cancels every task
left before the run block, cancelled with them, ends: the reporter's stream task was gone
when the block reported the run's end, so the run stayed RUNNING and the events still
unacknowledged were lost ("stopped with 4 events unacknowledged").
"""

from __future__ import annotations

import pytest
import runstream
from runstream import Custom, EventKind, RunStatus
from runstream_server.app import RunstreamServer

from tests.conftest import run_module
from tests.faults.exiting_producer import EVENTS, EXIT_STATUS


async def run_producer(target: str, how: str) -> tuple[int, bytes, bytes]:
    """Runs tests.faults.exiting_producer to its end: its exit status, stdout and stderr."""
    return await run_module("tests.faults.exiting_producer", target, how)


@pytest.mark.parametrize("how", ["exit", "interrupt", "cleanup"])
async def test_a_producer_exiting_from_another_task_ends_its_run_with_every_event(
    server: RunstreamServer, how: str
) -> None:
    """``cleanup``: the run block, cancelled as the program exits, cleans up for longer than
    the stream task takes to deliver what waited and end, then reports once more and ends
    the run; the reporter starts the stream task again for those, rather than leaving the
    run RUNNING and its last events lost ("stopped with 2 events unacknowledged")."""
    returncode, out, err = await run_producer(server.target, how)
    if how != "interrupt":
        assert returncode == EXIT_STATUS, err.decode()
    run_id = out.decode().strip()

    async with runstream.connect(server.target) as client:
        # A cancelled task, as at Ctrl-C (asyncio.run cancels the main task then too).
        assert (await client.get_run(run_id)).status == RunStatus.CANCELLED
        events = [event async for event in client.watch(run_id)]
    ticks = [e.payload.data["i"] for e in events if isinstance(e.payload, Custom)]
    # While cleaning up, one more.
    assert ticks == list(range(EVENTS + 1 if how == "cleanup" else EVENTS))
    assert events[-1].kind == EventKind.RUN_CANCELLED
    assert b"could not report how run" not in err, err.decode()


async def test_a_producer_that_returns_without_closing_its_reporter_still_delivers_its_events(
    server: RunstreamServer,
) -> None:
    """Reporting calls return before their events leave; asyncio.run then cancelled the
    stream task of a reporter nobody closed, and the events it had not sent were lost
    without a word."""
    returncode, out, err = await run_producer(server.target, "unclosed")
    assert returncode == 0, err.decode()
    run_id = out.decode().strip()

    async with runstream.connect(server.target) as client:
        events = [event async for event in client.list_events(run_id)]
        assert (await client.get_run(run_id)).status == RunStatus.RUNNING  # nobody ended it
    ticks = [e.payload.data["i"] for e in events if isinstance(e.payload, Custom)]
    assert ticks == list(range(EVENTS))
    assert err == b"", err.decode()
