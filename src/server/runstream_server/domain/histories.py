"""The step durations each workflow's past runs took, which estimates are made from.

Histories are kept per (tenant, workflow): a tenant's estimates never come from, or tell
anything about, another tenant's runs. A workflow's history is read from the store once and
then kept up to date by the commits this process folds; on a shared store it is read again
every `history_refresh` seconds, for the runs that other replicas completed. At most
`history_workflows` are kept, the least recently used dropped: producers that put ids in their
workflow names would otherwise add one for ever per run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict

from runstream.v1 import run_pb2

from runstream_server.domain import insight
from runstream_server.errors import Unavailable
from runstream_server.store.base import EventStore

log = logging.getLogger("runstream.runs")

_Key = tuple[str, str]

HISTORY_WAIT = 0.5
"""Seconds a caller waits for a workflow's history being read, at most: a commit then goes on
without it, as when it cannot be read, and the read goes on for the next commit. A store's
read takes milliseconds; one that stops answering (a frozen Redis) took its whole socket
timeout, 8 s, and the commit after it as long again, past the clients' 10 s deadline (a
second here left the commit's own 8 s too little room under load)."""


class WorkflowHistories:
    """Each workflow's history, read once and shared by its callers."""

    def __init__(self, store: EventStore, policy: insight.InsightPolicy) -> None:
        self._store = store
        self._policy = policy
        self._history: OrderedDict[_Key, insight.WorkflowHistory] = OrderedDict()
        self._read_at: dict[_Key, float] = {}  # when, by time.monotonic()
        self._reads: dict[_Key, asyncio.Future[None]] = {}  # under way
        self._unread: set[_Key] = set()  # whose last read failed (said once)

    async def get(self, tenant: str, workflow: str) -> insight.WorkflowHistory:
        """The workflow's history, read from the store when not held (or stale)."""
        key = (tenant, workflow)
        limit = self._policy.history_runs
        history = self._history.get(key)
        if history is not None:
            self._history.move_to_end(key)
        stale = self._store.shared and (
            time.monotonic() - self._read_at.get(key, 0.0) > self._policy.history_refresh
        )
        if history is None or stale:
            reading = self._reads.get(key)
            if reading is None:  # one read at a time per workflow, shared by its callers
                reading = self._reads[key] = asyncio.ensure_future(self._read(key))
                reading.add_done_callback(lambda done: self._read_ended(key, done))
            try:
                # Waited for without a timeout that cancels: a commit on an embedded store runs
                # in its caller's task, where asyncio.timeout's cancel ended the caller
                # (uncancellable takes any cancel of it as the caller's).
                await asyncio.wait({reading}, timeout=HISTORY_WAIT)
                if not reading.done():
                    raise TimeoutError
                reading.result()
            except (Unavailable, TimeoutError) as exc:
                # The part of the store that holds it is out of reach (a Redis Cluster shard
                # lost, or failing over) or slow to answer: commits go on with what is held,
                # or with no history (read again at the next commit), rather than failing,
                # or holding up, a run whose own keys are served. The estimate catches up
                # once the store answers.
                if key not in self._unread:
                    self._unread.add(key)
                    slow = isinstance(exc, TimeoutError)
                    why = f"no answer in {HISTORY_WAIT:g} s" if slow else exc
                    log.warning("estimates of %s go on without its history for now: %s",
                                key[1], why)  # fmt: skip
                return history or insight.WorkflowHistory(limit)
            self._unread.discard(key)
            held = self._history.get(key)  # None: dropped already by other workflows' reads
            history = held if held is not None else insight.WorkflowHistory(limit)
        return history

    def _read_ended(self, key: _Key, reading: asyncio.Future[None]) -> None:
        self._reads.pop(key, None)
        if not reading.cancelled():
            reading.exception()  # taken: its callers may all have stopped waiting for it

    def __len__(self) -> int:
        """How many workflows' histories are held."""
        return len(self._history)

    def learn(self, run: run_pb2.Run) -> None:
        """Adds a run that just succeeded to its workflow's history, when that is held."""
        history = self._history.get((run.tenant, run.workflow))
        if history is not None:
            history.learn(run)

    async def _read(self, key: _Key) -> None:
        started = time.monotonic()
        limit = self._policy.history_runs
        read = insight.WorkflowHistory(limit)
        runs = await self._store.succeeded_runs(*key, limit)
        for run in reversed(runs):  # oldest first, so the newest stay in the window
            read.learn(run)
        if self._read_at.get(key, -math.inf) < started:  # no newer read meanwhile
            self._history[key] = read
            self._history.move_to_end(key)
            self._read_at[key] = started
            while len(self._history) > self._policy.history_workflows:
                dropped, _ = self._history.popitem(last=False)
                self._read_at.pop(dropped, None)
