"""``start_run`` when the server takes longer than the client's deadline to create the run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import runstream
from runstream_server.app import RunstreamServer


async def test_start_run_rides_out_a_create_slower_than_its_deadline(
    server: RunstreamServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that stalls once past the client's call deadline (a slow disk, a Redis
    failover) costs the producer a retry, not its run: the call is asked again, and the run
    is made once, whether or not the first attempt went through."""
    assert server.runs is not None
    create = server.runs.create_run
    attempts = 0

    async def slow_once(**fields: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(1.0)  # the client's deadline is 0.5 s
        return await create(**fields)

    monkeypatch.setattr(server.runs, "create_run", slow_once)
    async with runstream.connect(server.target, timeout=0.5) as client:
        run = await client.start_run("campaign")
        assert attempts >= 2
        assert [r.run_id async for r in client.list_runs()] == [run.run_id]
        await run.complete()
        await run.close()
