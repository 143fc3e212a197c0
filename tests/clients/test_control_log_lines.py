"""What a producer's log says when an operator pauses or cancels its run: who did what, and
why only when a reason was given."""

from __future__ import annotations

import logging

import pytest
from runstream import Client

from tests.clients.support import eventually


async def test_the_producer_logs_a_pause_with_its_reason_and_a_cancel_without_one(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runstream.reporter")
    run = await client.start_run("campaign", cancel_task=False)
    await run.flush()
    await client.pause_run(run.run_id, reason="lunch")
    await eventually(lambda: run.paused)
    await client.cancel_run(run.run_id)
    await eventually(lambda: run.cancelled)
    await run.close()
    said = [r.getMessage() for r in caplog.records if r.name == "runstream.reporter"]
    assert f"run {run.run_id} was paused: lunch" in said, said
    assert f"run {run.run_id} was cancelled" in said, said  # no ": " with nothing after it
