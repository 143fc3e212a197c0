"""A decision's deadline timer, as a human answering late sees it: an answer that reaches a
server too busy to have run the timer yet still loses to the default, and a default whose
write failed (a full disk for a moment) is written soon after, not half a minute later."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import RunManager

from tests.conftest import ConfigFactory
from tests.server.support import ev
from tests.server.test_decisions import ask, deadline_write_fails_once


@contextlib.asynccontextmanager
async def serving_runs(path: Path, server_config: ConfigFactory) -> AsyncIterator[RunManager]:
    """The run manager of a server on its own store at `path`."""
    server = RunstreamServer(server_config(path))
    await server.start()
    try:
        assert server.runs is not None
        yield server.runs
    finally:
        await server.stop(grace=0.1)


async def asked(runs: RunManager, timeout_ns: int) -> None:
    """Run r asks "persona", default "pros", closing `timeout_ns` after it is received."""
    await runs.create_run(run_id="r", workflow="wf", display_name="", labels={}, steps=[])
    timeout = duration_pb2.Duration(nanos=timeout_ns)
    await runs.append("r", [ask(default_option="pros", timeout=timeout)])


async def test_an_answer_that_finds_the_loop_late_on_the_deadlines_timer_loses(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """The event loop was busy past the deadline (a long pass, a slow callback): the timer's
    time had come but its callback had not run when the answer arrived. The timer's time
    decides, not whether it ran: the default is written first and the answer is ABORTED."""
    async with serving_runs(tmp_path / "b.db", server_config) as runs:
        await asked(runs, 50_000_000)
        time.sleep(0.2)  # noqa: ASYNC251 (the loop busy past the deadline: its timer not run)
        with pytest.raises(Exception, match="DEFAULTED with 'pros'") as info:
            await runs.submit_decision(
                "r", "persona", choice="gen_z", skip=False, answered_by="late"
            )
        assert type(info.value).__name__ == "Aborted"


async def test_a_default_whose_writes_fail_is_tried_again_ever_later_until_written(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first two writes of the default fail as a full disk does; nobody answers. The
    write is tried again half a second later, then a second after that (at once, a disk full
    for minutes would be retried in a tight loop, a warning each time), and the question
    closes DEFAULTED then."""
    async with serving_runs(tmp_path / "f.db", server_config) as runs:
        second = deadline_write_fails_once(monkeypatch, runs)  # the inner wrapper: 2nd write
        first = deadline_write_fails_once(monkeypatch, runs)
        await asked(runs, 100_000_000)
        await asyncio.wait_for(first.wait(), 5)
        first_failed = time.monotonic()
        await asyncio.wait_for(second.wait(), 3)
        second_failed = time.monotonic()
        while (decision := await runs.get_decision("r", "persona")).outcome == 0:
            assert time.monotonic() - second_failed < 3, "the default was not written again"
            await asyncio.sleep(0.02)
        written = time.monotonic()
        assert (decision.outcome, decision.choice) == (ev.DECISION_OUTCOME_DEFAULTED, "pros")
        assert 0.4 < second_failed - first_failed < 1.5
        assert written - second_failed > 0.9
