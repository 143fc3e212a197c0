"""Where a CANCEL meets the task inside ``async with run:``: an error the workflow raises of
its own while being cancelled is its own, not RunCancelledError."""

from __future__ import annotations

import asyncio

import pytest
from runstream import Client


async def test_an_error_the_workflow_raises_while_cancelled_is_not_taken_for_the_cancel(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    in_block = asyncio.Event()

    async def workflow() -> None:
        async with run:
            in_block.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                raise ValueError("could not save the draft") from None

    task = asyncio.create_task(workflow())
    await asyncio.wait_for(in_block.wait(), 10)
    await run.flush()
    await client.cancel_run(run.run_id, reason="not today")
    with pytest.raises(ValueError, match="could not save the draft"):
        await asyncio.wait_for(task, 10)
    await run.close()
