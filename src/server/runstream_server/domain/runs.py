"""The run manager: what happens when a run is created, an event arrives or a watcher follows.

Appending an event, in order:

1. its shape is validated (``validate_produced_event``); a bad batch is rejected whole;
2. under the run's lock, idempotency keys the log already holds are answered with their
   original seqs and not stored again;
3. the new events are numbered and folded into a copy of the run's derived state, which
   rejects events the run's state does not allow (after a terminal event, for instance);
4. events and the new snapshot are written in one durable transaction;
5. only then does the in-memory state move on, watchers get the events from the hub, and
   the producer gets its acknowledgement.

Steps 2-5 run in a task the caller awaits through ``asyncio.shield``: a producer that
disconnects mid-append can't leave the durable log and the in-memory state disagreeing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from runstream.v1 import event_pb2, run_pb2

from runstream_server.domain.events import (
    KIND_BY_FIELD,
    VALID_KINDS,
    EncodedEvent,
    check_id,
    validate_produced_event,
)
from runstream_server.domain.hub import Hub
from runstream_server.domain.state import RunState, now_utc, status_name, to_timestamp
from runstream_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from runstream_server.store.base import EventStore, RunFilter


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits that protect the server from oversized or abusive input."""

    max_event_bytes: int = 256 * 1024
    max_batch_events: int = 1000
    max_steps: int = 1000
    max_labels: int = 64
    watch_page_events: int = 500


@dataclass(frozen=True, slots=True)
class EventAck:
    """The outcome of appending one event."""

    seq: int
    idempotency_key: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The acknowledgements of one batch and the run's last seq after it."""

    acks: list[EventAck]
    last_seq: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An idle watch stream's proof of life: every matching event up to head_seq was sent."""

    head_seq: int
    server_time: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run as of `run.last_seq`, sent first to watchers that ask for it."""

    run: run_pb2.Run


WatchItem = list[EncodedEvent] | Heartbeat | Snapshot


@dataclass(frozen=True, slots=True)
class ControlSignal:
    """An instruction for a run's producers: "cancel", "pause" or "resume"."""

    action: str
    reason: str
    status: int
    seq: int


@dataclass(eq=False)
class ProducerLink:
    """A producer attached to a run, receiving its control signals."""

    run_id: str
    signals: asyncio.Queue[ControlSignal | None] = field(default_factory=asyncio.Queue)


_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_FILTER_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_.-]*)\s*(?:=|:)\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))\s*""",
    re.VERBOSE,
)


def parse_filter(text: str) -> RunFilter:
    """Parses the ListRuns filter: `field = value` comparisons joined by AND."""
    statuses: set[int] = set()
    workflow: str | None = None
    labels: dict[str, str] = {}
    text = text.strip()
    if not text:
        return RunFilter()
    for term in re.split(r"\s+AND\s+", text):
        match = _FILTER_TERM.fullmatch(term)
        if match is None:
            raise InvalidArgument(
                "filter",
                f"cannot parse {term.strip()!r}; expected e.g. "
                "'status = RUNNING AND labels.team = \"growth\"'",
            )
        name = match["field"]
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        value = re.sub(r"\\(.)", r"\1", value)
        if name == "status":
            key = value.upper()
            key = key if key.startswith("RUN_STATUS_") else f"RUN_STATUS_{key}"
            if key == "RUN_STATUS_UNSPECIFIED" or key not in run_pb2.RunStatus.keys():  # noqa: SIM118
                raise InvalidArgument("filter", f"unknown status {value!r}")
            if statuses:
                raise InvalidArgument("filter", "status can be compared once")
            statuses.add(run_pb2.RunStatus.Value(key))
        elif name == "workflow":
            workflow = value
        elif name.startswith("labels."):
            label = name.removeprefix("labels.")
            if not _LABEL_KEY.match(label):
                raise InvalidArgument("filter", f"invalid label key {label!r}")
            labels[label] = value
        else:
            raise InvalidArgument(
                "filter", f"unknown field {name!r}; use status, workflow or labels.<key>"
            )
    return RunFilter(frozenset(statuses), workflow, labels)


def _page_size(value: int, default: int, field_name: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field_name, "must not be negative")
    return default if value == 0 else min(value, 1000)


def _encode_token(payload: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_token(token: str, scope: str) -> dict[str, object]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
    if not isinstance(payload, dict) or payload.get("scope") != scope:
        raise InvalidArgument(
            "page_token", "belongs to another request; repeat the original filter"
        )
    return payload


class RunManager:
    """Creates runs, appends events, answers queries and feeds watchers. Knows no gRPC."""

    def __init__(
        self,
        store: EventStore,
        hub: Hub | None = None,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._store = store
        self._hub = hub or Hub()
        self._limits = limits or Limits()
        self._clock = clock
        self._states: dict[str, RunState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._producers: dict[str, set[ProducerLink]] = {}
        self._closed_reason: str | None = None

    # --- state access ---------------------------------------------------------------------

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _state(self, run_id: str) -> RunState:
        state = self._states.get(run_id)
        if state is not None:
            return state
        check_id("run_id", run_id)
        async with self._lock(run_id):
            state = self._states.get(run_id)
            if state is None:
                snapshot = await self._store.load_run(run_id)
                if snapshot is None:
                    raise NotFound(f"run {run_id!r} not found")
                state = self._states[run_id] = RunState(snapshot)
        return state

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise Unavailable(self._closed_reason)

    # --- creating and querying ----------------------------------------------------------------

    async def create_run(
        self,
        *,
        run_id: str,
        workflow: str,
        display_name: str,
        labels: Mapping[str, str],
        steps: Sequence[run_pb2.StepSpec],
    ) -> run_pb2.Run:
        self._check_open()
        if run_id:
            check_id("run_id", run_id)
        else:
            run_id = uuid.uuid4().hex
        if not workflow.strip():
            raise InvalidArgument("workflow", "is required")
        if len(workflow) > 128:
            raise InvalidArgument("workflow", "is longer than 128 characters")
        if len(labels) > self._limits.max_labels:
            raise InvalidArgument("labels", f"at most {self._limits.max_labels} labels")
        for key in labels:
            if not _LABEL_KEY.match(key):
                raise InvalidArgument(f"labels[{key!r}]", "invalid label key")
        if len(steps) > self._limits.max_steps:
            raise InvalidArgument("steps", f"at most {self._limits.max_steps} steps")
        seen: set[str] = set()
        for i, spec in enumerate(steps):
            check_id(f"steps[{i}].step_id", spec.step_id)
            if spec.step_id in seen:
                raise InvalidArgument(f"steps[{i}].step_id", f"duplicate step id {spec.step_id!r}")
            seen.add(spec.step_id)
        created = event_pb2.RunEvent(
            run_id=run_id,
            seq=1,
            run_created=event_pb2.RunCreated(
                workflow=workflow, display_name=display_name, labels=labels, steps=steps
            ),
        )
        created.event_time.CopyFrom(to_timestamp(self._clock()))
        return await _uncancellable(self._create_locked(run_id, created))

    async def _create_locked(self, run_id: str, created: event_pb2.RunEvent) -> run_pb2.Run:
        async with self._lock(run_id):
            if run_id in self._states:
                raise AlreadyExists(f"run {run_id!r} already exists")
            state = RunState.new(run_id)
            state.apply(created)
            encoded = EncodedEvent.of(
                1, KIND_BY_FIELD["run_created"], "", created.SerializeToString()
            )
            await self._store.append(run_id, [encoded], state.run, create=True)
            self._states[run_id] = state
            self._hub.publish(run_id, [encoded])
            return _copy(state.run)

    async def get_run(self, run_id: str) -> run_pb2.Run:
        return _copy((await self._state(run_id)).run)

    async def list_runs(
        self, *, filter_text: str, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Run], str]:
        run_filter = parse_filter(filter_text)
        size = _page_size(page_size, 50)
        scope = hashlib.sha256(f"runs|{filter_text.strip()}".encode()).hexdigest()[:16]
        cursor: tuple[int, str] | None = None
        if page_token:
            payload = _decode_token(page_token, scope)
            after = payload.get("after")
            if not (isinstance(after, list) and len(after) == 2):
                raise InvalidArgument("page_token", "is not a token this server issued")
            cursor = (int(after[0]), str(after[1]))
        page = await self._store.list_runs(run_filter, size, cursor)
        for run in page.runs:
            run.ClearField("steps")
        token = (
            _encode_token({"scope": scope, "after": list(page.next_cursor)})
            if page.next_cursor
            else ""
        )
        return page.runs, token

    async def list_steps(
        self, run_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[run_pb2.Step], str]:
        state = await self._state(run_id)
        size = _page_size(page_size, 100)
        start = 0
        if page_token:
            offset = _decode_token(page_token, f"steps|{run_id}").get("offset")
            if not isinstance(offset, int) or offset < 0:
                raise InvalidArgument("page_token", "is not a token this server issued")
            start = offset
        steps = [_copy(s) for s in state.run.steps[start : start + size]]
        end = start + len(steps)
        more = end < len(state.run.steps)
        token = _encode_token({"scope": f"steps|{run_id}", "offset": end}) if more else ""
        return steps, token

    # --- appending ------------------------------------------------------------------------------

    async def append(self, run_id: str, events: Sequence[event_pb2.RunEvent]) -> AppendResult:
        """Appends a producer's batch: all of it, durably, or none of it."""
        self._check_open()
        check_id("run_id", run_id)
        if not events:
            raise InvalidArgument("events", "at least one event is required")
        if len(events) > self._limits.max_batch_events:
            raise ResourceExhausted(
                f"events: {len(events)} events in one batch; the limit is "
                f"{self._limits.max_batch_events}"
            )
        for i, event in enumerate(events):
            validate_produced_event(f"events[{i}]", event, run_id, self._limits.max_event_bytes)
        await self._state(run_id)  # NOT_FOUND before anything else
        return await _uncancellable(self._append_locked(run_id, events))

    async def _append_locked(
        self, run_id: str, events: Sequence[event_pb2.RunEvent]
    ) -> AppendResult:
        async with self._lock(run_id):
            state = self._states[run_id]
            known = await self._store.find_keys(run_id, [e.idempotency_key for e in events])
            draft = state.copy()
            now = to_timestamp(self._clock())
            acks: list[EventAck] = []
            fresh: list[EncodedEvent] = []
            for i, event in enumerate(events):
                key = event.idempotency_key
                if key and key in known:
                    acks.append(EventAck(known[key], key, duplicate=True))
                    continue
                seq = draft.last_seq + 1
                event.run_id = run_id
                event.seq = seq
                if not event.HasField("event_time"):
                    event.event_time.CopyFrom(now)
                draft.apply(event, f"events[{i}]")
                name = event.WhichOneof("payload")
                assert name is not None
                fresh.append(
                    EncodedEvent.of(seq, KIND_BY_FIELD[name], key, event.SerializeToString())
                )
                acks.append(EventAck(seq, key, duplicate=False))
                if key:
                    known[key] = seq
            if fresh:
                await self._store.append(run_id, fresh, draft.run)
                self._states[run_id] = draft
                self._hub.publish(run_id, fresh)
            return AppendResult(acks, draft.last_seq)

    async def cancel_run(self, run_id: str, *, reason: str, cancelled_by: str) -> run_pb2.Run:
        """Cancels a run, records it in the log and tells the run's producers."""
        self._check_open()
        state = await self._state(run_id)
        if state.is_terminal:
            raise FailedPrecondition(
                f"run {run_id!r} already ended ({status_name(state.run.status)})"
            )
        event = event_pb2.RunEvent(
            run_cancelled=event_pb2.RunCancelled(reason=reason, cancelled_by=cancelled_by)
        )
        result = await _uncancellable(self._append_locked(run_id, [event]))
        run = await self.get_run(run_id)
        signal = ControlSignal("cancel", reason, run.status, result.last_seq)
        for link in self._producers.get(run_id, ()):
            link.signals.put_nowait(signal)
        return run

    # --- producers ------------------------------------------------------------------------------

    async def attach_producer(self, run_id: str) -> ProducerLink:
        """Registers a producer stream for control signals; NOT_FOUND for unknown runs."""
        self._check_open()
        await self._state(run_id)
        link = ProducerLink(run_id)
        self._producers.setdefault(run_id, set()).add(link)
        return link

    def detach_producer(self, link: ProducerLink) -> None:
        links = self._producers.get(link.run_id)
        if links is not None:
            links.discard(link)
            if not links:
                del self._producers[link.run_id]

    # --- watching -------------------------------------------------------------------------------

    async def watch(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        include_snapshot: bool = False,
        kinds: Sequence[int] = (),
        heartbeat_interval: float = 15.0,
        keep_open: bool = False,
    ) -> AsyncIterator[WatchItem]:
        """Yields the run's events after `after_seq`, live, each exactly once and in order.

        Events come from the store until the watcher is level with the run's head, then from
        the hub; any gap (a full buffer, or events committed while reading) is filled from the
        store again. Ends after the terminal event unless `keep_open`.
        """
        self._check_open()
        for i, kind in enumerate(kinds):
            if kind not in VALID_KINDS:
                raise InvalidArgument(f"kinds[{i}]", f"unknown event kind {kind}")
        if after_seq < 0:
            raise InvalidArgument("after_seq", "must not be negative")
        if include_snapshot and after_seq:
            raise InvalidArgument("after_seq", "must be 0 when include_snapshot is set")
        if not 0.1 <= heartbeat_interval <= 300:
            raise InvalidArgument("heartbeat_interval", "must be between 100ms and 5m")
        state = await self._state(run_id)
        if after_seq > state.last_seq:
            raise OutOfRange(
                f"after_seq: {after_seq} is beyond the last seq {state.last_seq} of run {run_id!r}"
            )
        wanted = frozenset(kinds)
        page = self._limits.watch_page_events
        sub = self._hub.subscribe(run_id)
        try:
            cursor = after_seq
            if include_snapshot:
                snapshot = _copy(self._states[run_id].run)
                cursor = snapshot.last_seq
                yield Snapshot(snapshot)
            while True:
                while cursor < self._states[run_id].last_seq:  # catch up from the store
                    events = await self._store.read_events(run_id, cursor, page)
                    if not events:
                        break
                    cursor = events[-1].seq
                    matched = [e for e in events if not wanted or e.kind in wanted]
                    if matched:
                        yield matched
                head = self._states[run_id]
                if head.is_terminal and cursor >= head.last_seq and not keep_open:
                    return
                if not await sub.wait(heartbeat_interval):
                    yield Heartbeat(cursor, self._clock())
                    continue
                if sub.closed_reason is not None:
                    raise Unavailable(sub.closed_reason)
                live = [e for e in sub.take() if e.seq > cursor]
                if not live or live[0].seq != cursor + 1:
                    continue  # nothing new, or a gap the store fills on the next pass
                for start in range(0, len(live), page):
                    chunk = live[start : start + page]
                    cursor = chunk[-1].seq
                    matched = [e for e in chunk if not wanted or e.kind in wanted]
                    if matched:
                        yield matched
        finally:
            self._hub.unsubscribe(sub)

    def watcher_count(self, run_id: str) -> int:
        return self._hub.watcher_count(run_id)

    # --- shutdown -------------------------------------------------------------------------------

    def shutdown(self, reason: str = "server is shutting down; resume elsewhere") -> None:
        """Ends every watch and producer stream with UNAVAILABLE so clients resume elsewhere."""
        self._closed_reason = reason
        self._hub.close(reason)
        for links in self._producers.values():
            for link in links:
                link.signals.put_nowait(None)


_M = TypeVar("_M", run_pb2.Run, run_pb2.Step)
_T = TypeVar("_T")


async def _uncancellable(work: Coroutine[Any, Any, _T]) -> _T:
    """Runs `work` to completion even if the caller is cancelled meanwhile.

    An append that reached the store must also reach the in-memory state and the watchers;
    a caller's cancellation only stops it waiting. The outcome is always retrieved, so a
    failure nobody waits for any more is not reported as a lost task exception.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)


def _copy(message: _M) -> _M:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone
