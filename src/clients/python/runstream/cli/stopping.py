"""Running a command's coroutine (:func:`run_async`), and stopping it as Ctrl-C does, whatever
signal asks for it.

Python turns SIGINT into KeyboardInterrupt, which unwinds the command: live views close and
give the terminal its cursor back, a prompt restores the terminal's modes, the demo cancels
its run. SIGTERM (``kill``, ``timeout``, a supervisor, an IDE's stop button) and SIGHUP (the
terminal closed) killed the process on the spot instead, leaving the cursor hidden and the
terminal without echo, and a demo's run RUNNING on the server. Under :func:`cancelled_by_signals`
they cancel the command's task, which unwinds it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from rich.console import Console

__all__ = ["cancelled_by_signals", "run_async", "terminated"]

T = TypeVar("T")

SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []


@contextlib.asynccontextmanager
async def cancelled_by_signals() -> AsyncIterator[None]:
    """While inside, SIGTERM and SIGHUP cancel the current task (the command's)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - always called from the command's coroutine
        yield
        return

    def cancel(signum: int) -> None:
        _received.append(signum)
        task.cancel()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, cancel, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


def terminated(console: Console) -> int:
    """Says the command was stopped; the exit status a shell gives a process that signal
    killed (143 for SIGTERM)."""
    console.print("terminated", style="grey62")
    return 128 + (_received[-1] if _received else signal.SIGTERM)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine on uvloop when it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
