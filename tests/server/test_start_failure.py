"""A start that fails after the store was opened undoes what it did, wherever it failed.

Only a start that could not listen cleaned up: one that failed counting the stored runs,
starting the runs' background work (on Redis already following the other replicas) or
counting the open questions left the store open and, on Redis, its tasks running in the
caller's loop (a test's, ``runstream demo``'s), and ``stop()`` found nothing to stop (found
in review). Each such start now leaves no task behind, and the next server takes the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runstream_server import app
from runstream_server.app import RunstreamServer
from runstream_server.domain.runs import RunManager
from runstream_server.observability import ObservedStore

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES
from tests.server.support import create_run, get_run, serving

# Start-up, not commits: the commit path changes nothing here.
STORES = BOTH_STORES


class StartBroke(RuntimeError):
    """The failure a test puts into one step of a start."""


def breaking(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step` done in full, then failing: the work it started is there to be undone."""

    async def broken(*args: Any, **kwargs: Any) -> None:
        await step(*args, **kwargs)
        raise StartBroke(f"{step.__qualname__} broke")

    return broken


def posture_broke(*args: Any, **kwargs: Any) -> str:
    raise StartBroke("in_force broke")


FAILURES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "counting the stored runs": lambda patch: patch.setattr(
        ObservedStore, "tally_runs", breaking(ObservedStore.tally_runs)
    ),
    "starting the runs' background work": lambda patch: patch.setattr(
        RunManager, "start", breaking(RunManager.start)
    ),
    "counting the open questions": lambda patch: patch.setattr(
        RunstreamServer, "_count_open_decisions", breaking(RunstreamServer._count_open_decisions)
    ),
    "saying what is in force, once listening": lambda patch: patch.setattr(
        app, "in_force", posture_broke
    ),
}


@pytest.mark.parametrize("failing", list(FAILURES))
async def test_a_start_that_fails_leaves_nothing_running_and_the_store_to_the_next_server(
    failing: str, tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "runstream.db"
    async with serving(server_config(store)) as (_, stubs):
        run = await create_run(stubs)

    before = asyncio.all_tasks()
    with monkeypatch.context() as patch:
        FAILURES[failing](patch)
        failed = RunstreamServer(server_config(store, metrics_address="127.0.0.1:0"))
        with pytest.raises(StartBroke):
            await failed.start()
        new = tmp_path / "new" / "runstream.db"  # what a failed start created goes with it
        with pytest.raises(StartBroke):
            await RunstreamServer(server_config(new)).start()
    left = sorted(task.get_name() for task in asyncio.all_tasks() - before)
    assert left == [], f"tasks left running after a start failed {failing}: {left}"
    assert not (tmp_path / "new").exists()

    # The same store, and the ports a start that had listened held: all free again.
    address, metrics = f"127.0.0.1:{failed.port}", f"127.0.0.1:{failed.metrics_port}"
    config = server_config(store, address=address, metrics_address=metrics)
    async with serving(config) as (_, stubs):
        assert (await get_run(stubs, run.run_id)).run_id == run.run_id


async def test_a_start_refused_a_new_stores_lock_leaves_the_store_to_the_server_holding_it(
    tmp_path: Path,
    server_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
    store_kind: str,
) -> None:
    """Two servers started at once on a store file that did not exist: the one refused the
    file's lock deleted the file the other had just created and wrote to (its files were
    listed as its own to create, then removed as a failed start's), so that server's runs
    were gone at its next restart (found in review). Its list is taken before the other
    server creates the file, as in the race."""
    if store_kind != "sqlite":
        pytest.skip("a SQLite file's lock; a Redis store has no files")
    store = tmp_path / "fresh" / "runstream.db"
    listed_before = app.store_files_to_create(server_config(store))
    monkeypatch.setattr(app, "store_files_to_create", lambda config: listed_before)
    async with serving(server_config(store)) as (_, stubs):
        run = await create_run(stubs)
        with pytest.raises(Exception, match="in use by another Runstream server"):
            await RunstreamServer(server_config(store)).start()
        assert store.exists()
    async with serving(server_config(store)) as (_, stubs):
        assert (await get_run(stubs, run.run_id)).run_id == run.run_id
