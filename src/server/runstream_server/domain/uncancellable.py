"""Work that runs to its end even when the caller that started it is cancelled.

A commit must not stop halfway because the call that asked for it went away (a producer
that disconnects, a deadline), yet a commit that never waits should cost no task and no turn
of the event loop. :func:`uncancellable` gives both: the work runs in the caller's task, and
only its waits are shielded.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar, cast

_T = TypeVar("_T")


async def uncancellable(
    work: Coroutine[Any, Any, _T],
    *,
    alone: bool = False,
    under_way: set[asyncio.Task[Any]] | None = None,
) -> _T:
    """Runs `work` to completion even if the caller is cancelled meanwhile.

    `work` runs in the caller's task, so a commit that never waits (SQLite with
    ``synchronous=NORMAL``) costs no task of its own and no turn of the event loop. Only its
    waits are shielded: the caller waits on a future of its own, so cancelling the caller
    never cancels what `work` waits for; a cancelled caller hands `work` to a task that
    finishes it. That task's outcome is always retrieved, so a failure nobody waits for any
    more is not reported as a lost task exception.

    With `alone`, `work` runs in a task of its own from the start: for work whose waits time
    out through ``asyncio.timeout`` (redis-py's socket timeout), which cancels the task it
    was entered in. In the caller's task that cancellation ended the caller, as if it had
    been cancelled, instead of raising in `work`.

    `under_way`: a set that holds the task of `work` while it runs in one (with `alone`, or
    handed over by a cancelled caller), for its owner to wait for: a stop waits for the
    commits of the calls it cut before it closes their store.
    """
    if alone:
        return await asyncio.shield(_finishing(work, under_way))
    return await _drive(work, _STARTING, background=False, under_way=under_way)


def _finishing(
    work: Coroutine[Any, Any, _T], under_way: set[asyncio.Task[Any]] | None
) -> asyncio.Task[_T]:
    """`work` in a task of its own, in `under_way` until it ends, whose outcome is always
    retrieved, so a failure nobody waits for any more is not reported as a lost task
    exception."""
    task = asyncio.ensure_future(work)
    if under_way is not None:
        under_way.add(task)
        task.add_done_callback(under_way.discard)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


_STARTING: Any = object()
"""What :func:`_drive` is given for a coroutine that has not started yet."""


@types.coroutine
def _drive(
    work: Coroutine[Any, Any, _T],
    waiting: Any,
    *,
    background: bool,
    under_way: set[asyncio.Task[Any]] | None = None,
) -> Generator[Any, None, _T]:
    """Steps `work` as a task would, from where it waits on `waiting` (None: a bare yield).

    In the foreground, a cancellation hands `work` over to a task of its own and ends the
    caller; in that task, it is passed on to `work`, as to any task's coroutine (the event
    loop is closing).
    """
    resume: Callable[[Any], Any] = work.send
    argument: Any = None
    while True:
        if waiting is not _STARTING:
            try:
                yield from _until_done(waiting)
            except asyncio.CancelledError as exc:
                if not background:
                    _finishing(_finish(work, waiting), under_way)
                    raise
                resume, argument = work.throw, exc
            except GeneratorExit:  # the caller's task is gone (its loop closed without it)
                work.close()
                raise
        try:
            waiting = resume(argument)
        except StopIteration as done:
            return cast(_T, done.value)
        resume, argument = work.send, None
        if getattr(waiting, "_asyncio_future_blocking", None):
            waiting._asyncio_future_blocking = False  # taken, as a task takes it


def _until_done(waiting: Any) -> Generator[Any, None, None]:
    """Waits until `waiting` (a future `work` yielded, or None) is done, without ever
    cancelling it: a cancellation cancels a future of the caller's own."""
    if waiting is None:
        yield  # a bare yield (sleep(0)): the task steps us again on its next turn
        return
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done(_: Any) -> None:
        if not mine.done():  # else the caller was cancelled meanwhile
            mine.set_result(None)

    waiting.add_done_callback(done)
    yield from mine


async def _finish(work: Coroutine[Any, Any, _T], waiting: Any) -> _T:
    return await _drive(work, waiting, background=True)
