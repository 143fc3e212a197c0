"""What the framework integrations share: ordered reporting from callbacks, and step ids.

Framework callbacks arrive in awkward places: the OpenAI Agents SDK calls its tracing
processors synchronously, and LangChain runs an async handler's callbacks in a fresh event
loop on a worker thread when a model only streams synchronously. A ``RunReporter`` belongs to
the event loop that created it, so every reporting call goes through an ``OrderedReports``
queue that runs the calls one at a time, in the order the callbacks happened, on that loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from runstream._errors import RunCancelledError, RunstreamError
from runstream._event_builders import HAPPENED_NS, REFUSALS_TO
from runstream._types import StepStatus

if TYPE_CHECKING:
    from runstream._reporter import RunReporter
    from runstream.v1 import event_pb2

__all__ = [
    "FINISHED_STEP",
    "ImportHint",
    "ModelUse",
    "OrderedReports",
    "StepIds",
    "require",
    "shared",
    "short",
]

_log = logging.getLogger("runstream.integrations")

_ID_INVALID = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_ID = 120
# Steps that cannot start again (the server refuses it); a failed one can, as its next attempt.
FINISHED_STEP = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})
# Long tool inputs and outputs are cut before they become event data: the event log is for
# watching a run, not for archiving payloads.
_MAX_TEXT = 2000


def short(text: object, limit: int = _MAX_TEXT) -> str:
    """``text`` as a string of at most ``limit`` characters (cut ones end with an ellipsis)."""
    value = text if isinstance(text, str) else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


class ImportHint(ImportError):
    """A framework an integration needs is not installed; the message names the extra."""


def require(module: str, extra: str) -> None:
    """Raises ImportHint naming ``pip install 'runstream[extra]'`` when ``module`` is missing."""
    try:
        __import__(module)
    except ImportError as exc:
        raise ImportHint(
            f"this Runstream integration needs {module!r}: pip install 'runstream[{extra}]'"
        ) from exc


class StepIds:
    """Turns framework names (graph nodes, agents) into valid step ids, unique in their run.

    A step id holds ASCII letters, digits, '.', '_' and '-' and starts with a letter or digit.
    A name that runs again after its step finished gets a new step ("write", then "write-2"),
    because a finished step cannot start again. Every handler of a run shares the run's
    ``StepIds.of(run)``, so a chat app that runs its graph once a turn, each turn with a new
    handler, gets "respond", then "respond-2". A generated suffix skips the ids given before,
    the names reserved for a graph's nodes (a node named "draft-2" keeps its name when "draft"
    runs twice) and the steps the run had finished when this process started or attached it.
    """

    def __init__(
        self, finished_before: Iterable[str] = (), running_before: Iterable[str] = ()
    ) -> None:
        self._lock = threading.Lock()
        self._given: set[str] = set()
        self._reserved: set[str] = set()
        self.finished_before = frozenset(finished_before)
        """The run's steps that had finished (cannot start again) when its StepIds was made."""
        self.running_before = set(running_before)
        """The run's steps that were running then (a producer restarted while a node waited
        at ``interrupt()``): a replay reaching one goes on with it, without starting it again
        (another attempt), until it is taken."""
        self.interrupted: dict[str, str] = {}
        """Steps that a LangGraph node left running when ``interrupt()`` stopped it, by the
        node's checkpoint namespace: the graph resumed with a new handler (a web app's next
        request) finishes the same step."""

    @classmethod
    def of(cls, run: RunReporter) -> StepIds:
        """The StepIds every integration reporting to ``run`` shares."""

        def make() -> StepIds:
            finished = (s.step_id for s in run.run.steps if s.status in FINISHED_STEP)
            running = (s.step_id for s in run.run.steps if s.status == StepStatus.RUNNING)
            return cls(finished, running)

        return shared(run, cls, make)

    def take_running(self, step_id: str) -> bool:
        """Whether ``step_id`` was running when the run was attached and nobody went on with
        it yet; the caller now does."""
        with self._lock:
            if step_id in self.running_before:
                self.running_before.discard(step_id)
                return True
            return False

    @staticmethod
    def clean(name: str) -> str:
        """``name`` as a valid step id (not necessarily unused)."""
        cleaned = _ID_INVALID.sub("-", name).strip("-._")[:_MAX_ID]
        return cleaned or "step"

    def reserve(self, names: Iterable[str]) -> None:
        """Keeps generated ids off ``names`` (a graph's nodes): each stays its own node's id."""
        with self._lock:
            self._reserved.update(self.clean(name) for name in names)

    def new(self, name: str, *, replay: bool = False) -> str:
        """A step id for ``name`` that no earlier call for the run returned.

        ``name`` itself when it is free, else the name with the next suffix ("-2", "-3", ...)
        that is free and not reserved. A step in ``finished_before`` is not free, unless
        ``replay``: the caller replays the run's steps in the order it first ran them (a
        LangGraph graph run again from its start) and does not start finished ones again.
        """
        base = self.clean(name)
        with self._lock:
            taken = self._given if replay else self._given | self.finished_before
            step_id, suffix = base, 1
            while step_id in taken or (suffix > 1 and step_id in self._reserved):
                suffix += 1
                step_id = f"{base}-{suffix}"
            self._given.add(step_id)
            return step_id


class ModelUse:
    """A run's model calls and tokens, as run metrics: ``input_tokens``, ``output_tokens`` and
    ``total_tokens`` summed over the run, and ``model_calls``.

    Every integration reporting to the run adds to the same sums (``ModelUse.of(run)``): a
    chat's turns, each with a handler or ``runstream_trace`` block of its own, and a producer
    that attached the run again goes on from the metrics the run holds; each integration
    counting from 0 set the run's totals back at every turn.
    """

    NAMES = ("input_tokens", "output_tokens", "total_tokens", "model_calls")

    def __init__(self, metrics: Mapping[str, float]) -> None:
        self._lock = threading.Lock()
        self._sums = {name: float(metrics.get(name, 0.0)) for name in self.NAMES}

    @classmethod
    def of(cls, run: RunReporter) -> ModelUse:
        """The ModelUse every integration reporting to ``run`` shares."""
        return shared(run, cls, lambda: cls(run.run.metrics))

    def add(self, usage: Mapping[str, Any] | None) -> None:
        """Counts one model call, and the ``input_tokens`` and ``output_tokens`` of its
        ``usage`` (when it says)."""
        with self._lock:
            sums = self._sums
            for name in ("input_tokens", "output_tokens"):
                value = (usage or {}).get(name)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    sums[name] += value
            sums["total_tokens"] = sums["input_tokens"] + sums["output_tokens"]
            sums["model_calls"] += 1

    def sums(self) -> dict[str, float]:
        """The run's metrics of its model use now."""
        with self._lock:
            return dict(self._sums)


_T = TypeVar("_T")
# What the integrations reporting to one run share (its StepIds, its ModelUse), for as long
# as its reporter lives.
_SHARED: weakref.WeakKeyDictionary[RunReporter, dict[type, Any]] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared(run: RunReporter, kind: type[_T], make: Callable[[], _T]) -> _T:
    """The run's one ``kind``, made by ``make()`` for the first integration that asks."""
    with _SHARED_LOCK:
        of_run = _SHARED.setdefault(run, {})
        found = of_run.get(kind)
        if found is None:
            found = of_run[kind] = make()
        return cast(_T, found)


class OrderedReports:
    """Runs reporting calls one at a time, in submission order, on the run's event loop.

    ``submit()`` may be called from any thread and never blocks; ``drain()`` (on the run's
    loop) waits until everything submitted so far has been reported, and so does the run's
    end (``complete()``, ``fail()``: see ``RunReporter._ends_after``). A reporting call that
    fails is logged and does not stop the calls after it: a framework's run goes on when
    watching it fails (the reporter's own failure still surfaces at ``run.complete()``). So
    does an event the server refuses after its call returned (a step the run has no room
    for): it is logged, handed to ``on_refused``, and not raised by the reporter's
    ``flush()`` or ``complete()``.
    Events carry the time their call was submitted, when the framework told of it: a call
    may run much later, behind a step start that a paused run holds while the framework's
    own work goes on (a synchronous tracing processor, a graph on a worker thread).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        on_refused: Callable[[event_pb2.RunEvent, RunstreamError], None] | None = None,
    ) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "create Runstream framework handlers inside the event loop that runs the "
                    "run (in async code), or pass loop="
                ) from None
        self._loop = loop
        self._thread = threading.get_ident()
        self._queue: deque[tuple[Callable[[], Awaitable[object]], int]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._failures = 0
        self._on_refused = on_refused

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the run's reporter belongs to."""
        return self._loop

    @property
    def failures(self) -> int:
        """How many reporting calls failed (each was logged)."""
        return self._failures

    def on_loop(self) -> bool:
        """Whether the caller runs on the run's loop (its thread), where it may await."""
        return threading.get_ident() == self._thread

    def makes_calls_in(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` is the one making the queued calls."""
        return task is not None and task is self._worker

    def submit(self, call: Callable[[], Awaitable[object]]) -> None:
        """Queues ``call()``; it runs after every call submitted before it, and the events
        it reports carry this moment as their time."""
        happened = time.time_ns()
        if self.on_loop():
            self._enqueue(call, happened)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, call, happened)

    def _enqueue(self, call: Callable[[], Awaitable[object]], happened: int) -> None:
        self._queue.append((call, happened))
        self._idle.clear()
        if self._worker is None or self._worker.done():
            self._worker = self._loop.create_task(self._work(), name="runstream-integration")

    async def _work(self) -> None:
        # Runs until the queue is empty; the next submit starts a new worker. Nothing awaits
        # between the last check and returning, so no call can slip in unseen. The events
        # the calls queue are refused to _refused(), not to the reporter's next flush().
        REFUSALS_TO.set(self._refused)
        while self._queue:
            call, happened = self._queue.popleft()
            stamped = HAPPENED_NS.set(happened)
            try:
                await call()
            except RunCancelledError as exc:
                # Expected once the run is cancelled: the run's owner hears of it already.
                self._failures += 1
                _log.debug("not reported, %s", exc)
            except RunstreamError as exc:
                self._failed(exc)
            finally:
                HAPPENED_NS.reset(stamped)
        self._idle.set()

    def report_now(self, run: RunReporter, event: event_pb2.RunEvent, key: str) -> None:
        """Queues ``event`` on ``run`` at once, out of turn, under the idempotency ``key``,
        with its refusal taken as the calls' are: what the server's refusal of an event
        makes the integration say, which must reach the run before its end (that waits for
        the refusals to come, not for these calls)."""
        token = REFUSALS_TO.set(self._refused)
        try:
            run._report_now(event, key)
        except RunstreamError as exc:
            self._failed(exc)
        finally:
            REFUSALS_TO.reset(token)

    def _failed(self, error: RunstreamError) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        _log.log(level, "reporting to Runstream failed: %s", error)

    def _refused(self, event: event_pb2.RunEvent, error: RunstreamError) -> None:
        """The server refused an event a call queued: a failed call, after the fact."""
        self._failed(error)
        if self._on_refused is not None:
            self._on_refused(event, error)

    async def drain(self) -> None:
        """Waits until every call submitted so far (from this loop) has run."""
        # Calls submitted from other threads land through call_soon_threadsafe; one pass of
        # the loop lets those already scheduled join the queue first.
        await asyncio.sleep(0)
        await self._idle.wait()
