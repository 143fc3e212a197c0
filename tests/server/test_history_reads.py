"""How a process holds workflows' histories: the least recently *used* one is dropped
beyond ``history_workflows`` (not the one read first), and a history read that does not
answer within HISTORY_WAIT holds no commit up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from runstream.v1 import run_pb2
from runstream_server.api.run_service import frame_event
from runstream_server.domain.histories import HISTORY_WAIT
from runstream_server.domain.runs import RunManager
from runstream_server.store.sqlite import SqliteEventStore

from tests.server.test_workflow_history import (
    CountingHistoryReads,
    counted_histories,
    create,
    started,
)


async def test_a_history_used_again_is_kept_over_one_read_after_it(tmp_path: Path) -> None:
    async with counted_histories(tmp_path, history_workflows=2) as (manager, counting):
        for name in ("a", "b", "a", "c"):  # a used again after b: b is the one dropped
            await manager.append(await create(manager, name), [started()])
        assert counting.reads == 3
        await manager.append(await create(manager, "a"), [started()])  # held: no read
        assert counting.reads == 3


SLOW = HISTORY_WAIT + 1.0


class SlowHistoryReads(CountingHistoryReads):
    """A store whose history reads take SLOW seconds (a frozen shard, a stalled disk), all
    else as usual; shared (as Redis: each commit runs in a task of its own) or not (as
    SQLite: a commit runs in the caller's task)."""

    def __init__(self, inner: SqliteEventStore, *, shared: bool) -> None:
        super().__init__(inner)
        self.shared = shared

    async def succeeded_runs(self, tenant: str, workflow: str, limit: int) -> list[run_pb2.Run]:
        await asyncio.sleep(SLOW)
        return await self.inner.succeeded_runs(tenant, workflow, limit)

    async def list_runs(self, run_filter: Any, page_size: int, cursor: Any) -> Any:
        if run_filter.statuses == {run_pb2.RUN_STATUS_SUCCEEDED}:
            await asyncio.sleep(SLOW)
        return await self.inner.list_runs(run_filter, page_size, cursor)


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "embedded"])
async def test_a_commit_goes_on_without_a_history_slow_to_read(
    tmp_path: Path, shared: bool
) -> None:
    """Embedded: the wait's timeout cancelled the caller's task, in which the commit runs,
    and the producer's append failed with CancelledError (its commit finished unseen)."""
    store = SqliteEventStore(tmp_path / "h.db")
    await store.open()
    slow = SlowHistoryReads(store, shared=shared)
    manager = RunManager(slow, frame=frame_event)  # type: ignore[arg-type]
    try:
        run_id = await create(manager, "frozen")
        began = time.monotonic()
        assert await manager.append(run_id, [started()]) is not None
        assert time.monotonic() - began < SLOW - 0.3
        await asyncio.sleep(SLOW)  # the read ends before its store closes
    finally:
        manager.shutdown()
        await store.close()
