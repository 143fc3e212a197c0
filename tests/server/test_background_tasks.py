"""spawn_logged and stop_task as the server's background work uses them: a task nobody else
holds runs to its end and is then let go, a stop is no death (nothing logged), a stop waits
for the task's end, and a task given a context of its own sees nothing of its spawner's."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import weakref

import pytest
from runstream_server.background import spawn_logged, stop_task

CALLER = contextvars.ContextVar("caller", default="none")


async def test_a_task_nobody_else_holds_runs_until_it_ends_and_is_then_let_go() -> None:
    async def waits_on_its_own() -> None:
        await asyncio.get_running_loop().create_future()  # held by this task's frame alone

    task = weakref.ref(spawn_logged(waits_on_its_own(), "test-alone"))
    await asyncio.sleep(0)
    gc.collect()
    running = task()
    assert running is not None and not running.done()  # held while it runs
    await stop_task(running)
    del running
    await asyncio.sleep(0)
    gc.collect()
    assert task() is None  # let go once ended


async def test_a_stopped_task_is_no_death_and_its_stop_waits_for_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cleaned: list[str] = []

    async def cleans_up_on_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # its cleanup takes a moment
            cleaned.append("done")

    task = spawn_logged(cleans_up_on_stop(), "test-stopped")
    await asyncio.sleep(0)
    await stop_task(task)
    assert cleaned == ["done"]
    await asyncio.sleep(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_task_given_a_context_of_its_own_sees_nothing_of_its_spawners() -> None:
    CALLER.set("the call that saw the change")
    seen: list[str] = []

    async def reads() -> None:
        seen.append(CALLER.get())

    await spawn_logged(reads(), "test-context", context=contextvars.Context())
    assert seen == ["none"]
