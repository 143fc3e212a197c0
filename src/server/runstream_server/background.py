"""Long-lived background tasks whose death is heard.

A task nobody awaits that dies of an error says nothing until it is garbage-collected (at
best asyncio's "Task exception was never retrieved"), and the work it did every few seconds
(health following the store, clock sync, viewer counts, limit sharing) stops in silence.
:func:`spawn_logged` keeps a reference to the task and logs such a death at once, with its
traceback. It sits beside the layers (store/, auth/, domain/, app.py all use it), importing
none of them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["spawn_logged", "stop_task"]

log = logging.getLogger("runstream.server")

_running: set[asyncio.Task[Any]] = set()
"""Every task spawned here until it ends: the loop keeps only weak references to tasks."""


def spawn_logged(
    work: Coroutine[Any, Any, None],
    name: str,
    on_death: Callable[[BaseException], None] | None = None,
    *,
    context: contextvars.Context | None = None,
) -> asyncio.Task[None]:
    """Runs `work` in a task named `name`, held until it ends; should it die of an error,
    the error is logged at ERROR with its traceback and handed to `on_death` (a cancelled
    task is no death: it was stopped)."""
    task = asyncio.get_running_loop().create_task(work, name=name, context=context)
    _running.add(task)

    def ended(task: asyncio.Task[None]) -> None:
        _running.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("background task %s stopped", name, exc_info=exc)
        if on_death is not None:
            on_death(exc)

    task.add_done_callback(ended)
    return task


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancels `task` and waits for its end; a death it died earlier is not raised again
    (it was logged when it happened), and a cancellation of the caller itself goes on."""
    task.cancel()
    await asyncio.wait({task})
