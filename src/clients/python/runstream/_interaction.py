"""Interactions: a viewer's DecisionService.Interact stream, typed and resilient.

One background task owns the bidirectional stream. It subscribes to the runs, reads prompts,
closures and answer results into a queue that the caller iterates, and settles the future of
each answer when its result arrives. When the connection breaks it reconnects with
exponential backoff, subscribes again (the server then sends every open prompt again) and
resends the answers that got no result yet: answering is idempotent on the server, so an
answer that did arrive before the break is not applied twice. The server does not send the
closures a new subscription missed, so after a reconnect the task asks GetDecision about
each decision it knew open until the new stream sends it again: one that closed meanwhile
gets its DecisionClosed, with the decision's final state, once.

The updates queue is bounded (``max_updates``), so a caller that only answers and never
iterates does not make it grow without end. Past the bound, the queued updates are dropped
and the iteration resyncs: it yields a DecisionClosed for every prompt it yielded whose
decision has closed since, then a DecisionPrompt for every open decision it has not yielded.
The AnswerResults dropped that way were delivered to their ``answer()`` calls all the same.
Whether or not it resynced, the iteration yields each decision's prompt once (a reconnect's
repeated prompts are not yielded again) and a closure only for a prompt it yielded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from runstream import _requests as rpc
from runstream._auth import is_stream_cut_at_its_expiry
from runstream._connection import raise_if_closed_under
from runstream._decision_updates import DecisionUpdates, Key, key_of
from runstream._errors import (
    FailedPreconditionError,
    RunstreamError,
    StatusCode,
    error_from_rpc,
    error_from_status,
    raised_again,
)
from runstream._retry import (
    Backoff,
    ConnectionLost,
    Outage,
    OutageLog,
    end_requests,
    is_retryable,
    send,
)
from runstream._types import (
    AnswerResult,
    Decision,
    DecisionClosed,
    DecisionPrompt,
    DecisionState,
    InteractionUpdate,
    LinkState,
    WatchLink,
)
from runstream._watch import OnLink, checked_on_link, lost_link, opened

if TYPE_CHECKING:
    from runstream._unreachable import Diagnosis
    from runstream.v1 import decision_service_pb2

    InteractCall = grpc.aio.StreamStreamCall[
        decision_service_pb2.InteractRequest, decision_service_pb2.InteractResponse
    ]
    InteractMethod = grpc.aio.StreamStreamMultiCallable[
        decision_service_pb2.InteractRequest, decision_service_pb2.InteractResponse
    ]

__all__ = ["Interaction"]

_log = logging.getLogger("runstream.interaction")


class Interaction:
    """A viewer's live connection to the decisions of one or more runs.

    Create it with ``Client.interact()``. Iterate it for updates: a DecisionPrompt for every
    open decision of the subscribed runs (those open when subscribing, then each new one), a
    DecisionClosed for every closure, by anyone or by a deadline, and an AnswerResult for each
    of this interaction's answers. Answer with ``answer()``, on the same stream.

    Each prompt is yielded once, also when a reconnect brings it again. Updates wait in a
    queue of ``max_updates``; a caller that falls further behind gets a resync instead (see
    the module docstring). The iteration ends with the error that ended the stream
    (NotFoundError for a run that does not exist, UnavailableError when the server stays
    unreachable longer than the client's reconnect timeout), or when ``aclose()`` is called.

    Use ``async with client.interact([run_id]) as interaction:`` or call ``aclose()``.
    """

    def __init__(
        self,
        interact_rpc: InteractMethod,
        get_decision: Callable[[str, str], Awaitable[Decision]],
        check_run: Callable[[str], Awaitable[None]],
        run_ids: Iterable[str],
        *,
        viewer: str,
        metadata: Sequence[tuple[str, str]],
        reconnect_timeout: float | None,
        check_open: Callable[[str], None],
        max_updates: int = 1000,
        on_link: OnLink | None = None,
        diagnosis: Diagnosis | None = None,
    ) -> None:
        """``check_open`` raises once the client is closed: each attempt calls it first;
        ``on_link`` hears where the stream stands (see ``Client.interact``); ``diagnosis``,
        the client's, says a TLS mismatch at once and the likely cause when the stream gives
        up (see runstream._unreachable.Diagnosis)."""
        self._rpc = interact_rpc
        self._check_open = check_open
        self._get_decision = get_decision
        self._check_run = check_run
        self._run_ids: list[str] = list(dict.fromkeys(run_ids))
        self._viewer = viewer
        self._metadata = tuple(metadata)
        self._reconnect_timeout = reconnect_timeout
        self._on_link = checked_on_link(on_link)
        self._diagnosis = diagnosis
        self._updates = DecisionUpdates(max_updates)
        self._pending: dict[
            int, tuple[decision_service_pb2.SubmitDecisionRequest, asyncio.Future[AnswerResult]]
        ] = {}
        self._sent: set[int] = set()
        self._next_answer_id = 1
        self._write_lock = asyncio.Lock()
        self._call: InteractCall | None = None
        self._send_failed: InteractCall | None = None  # the call whose transport broke
        self._task: asyncio.Task[None] | None = None
        self._error: RunstreamError | None = None
        self._closed = False
        self._ended = False

    @property
    def run_ids(self) -> tuple[str, ...]:
        """The runs this interaction follows."""
        return tuple(self._run_ids)

    @property
    def viewer(self) -> str:
        """Who is viewing; the server records it as answered_by when an answer gives none."""
        return self._viewer

    def _start(self) -> None:
        if self._closed:
            raise FailedPreconditionError("the interaction is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="runstream-interact")

    async def __aenter__(self) -> Interaction:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Interaction:
        return self

    async def __anext__(self) -> InteractionUpdate:
        if self._task is None and not self._closed:
            self._start()
        update = await self._updates.next()
        if update is None:
            if self._error is not None:
                raise raised_again(self._error)
            raise StopAsyncIteration
        return update

    async def subscribe(self, run_ids: Iterable[str]) -> None:
        """Follows more runs on the same stream. Raises NotFoundError for a run that does not
        exist (the server would end the whole stream, and every run it follows with it),
        and follows none of them then."""
        added = [run_id for run_id in dict.fromkeys(run_ids) if run_id not in self._run_ids]
        if not added:
            return
        await asyncio.gather(*(self._check_run(run_id) for run_id in added))
        self._start()
        self._run_ids.extend(added)
        async with self._write_lock:
            if self._call is not None:
                await self._write(self._call, rpc.interact_subscribe(added, self._viewer))

    async def answer(
        self,
        run_id: str,
        decision_id: str,
        choice: str | None = None,
        *,
        skip: bool = False,
        answered_by: str = "",
    ) -> Decision:
        """Answers (or skips) a decision on this stream; returns the closed decision.

        The rules are SubmitDecision's: raises InvalidArgumentError for a choice that is not
        an option or a skip that is not allowed, NotFoundError for an unknown decision,
        FailedPreconditionError when the run already ended, and AbortedError when the
        decision was already closed otherwise (the message names the winning answer). The
        same answer again returns the same decision. A rejected answer does not end the
        interaction.
        """
        self._start()
        if self._error is not None:
            raise raised_again(self._error)
        if self._ended:  # nothing would ever settle the answer
            raise FailedPreconditionError("the interaction is closed")
        answer_id = self._next_answer_id
        self._next_answer_id += 1
        request = rpc.submit_decision_request(run_id, decision_id, choice, skip, answered_by)
        future: asyncio.Future[AnswerResult] = asyncio.get_running_loop().create_future()
        self._pending[answer_id] = (request, future)
        try:
            async with self._write_lock:
                if self._call is not None and answer_id not in self._sent:
                    await self._write(self._call, rpc.interact_answer(answer_id, request))
                    self._sent.add(answer_id)
            result = await future
        finally:
            self._pending.pop(answer_id, None)
        if result.code != StatusCode.OK:
            raise error_from_status(result.code, result.message)
        if result.decision is None:
            raise RunstreamError(
                f"answer {answer_id} was accepted without a decision", code=StatusCode.INTERNAL
            )
        return result.decision

    async def aclose(self) -> None:
        """Ends the stream; pending answers fail with FailedPreconditionError. Idempotent."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        self._finish()

    # --- the stream task -------------------------------------------------------------------

    async def _write(self, call: InteractCall, request: Any) -> None:
        try:
            await send(call, request)
        except ConnectionLost as exc:
            # The transport broke: the stream task sees the call fail, and retries.
            self._send_failed = call
            _log.debug("interact write failed: %r", exc)
        except (asyncio.InvalidStateError, grpc.aio.AioRpcError) as exc:
            # The call is finishing; the stream task sees why and resends after reconnecting.
            _log.debug("interact write failed: %r", exc)

    async def _run(self) -> None:
        backoff = Backoff()
        outage = Outage(self._reconnect_timeout)
        said = OutageLog(_log, "interact stream")
        reconnecting = False
        if self._on_link is not None:
            self._on_link(WatchLink(LinkState.CONNECTING, 0))
        try:
            while True:
                self._check_open("interact")
                lost = await self._one_call(backoff, outage, said, reconnecting=reconnecting)
                if self._error is not None:  # the call failed for good
                    return
                reconnecting = True
                delay = backoff.next_delay()
                lost_link(self._on_link, 0, lost, delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            try:  # nobody cancelled this task: closing the client cancelled the call under it
                raise_if_closed_under("interact")
            except FailedPreconditionError as closed:
                self._error = closed
                return
            raise  # aclose(), or the caller's task
        except RunstreamError as exc:  # check_open: the client is closed
            self._error = exc
        except Exception as exc:  # A bug must surface to the caller, not hang answer().
            self._error = RunstreamError(f"interaction crashed: {exc!r}", code=StatusCode.INTERNAL)
            self._error.__cause__ = exc
        finally:
            self._finish()

    async def _one_call(
        self, backoff: Backoff, outage: Outage, said: OutageLog, *, reconnecting: bool
    ) -> grpc.aio.AioRpcError | None:
        """One Interact call, from subscribing until it ends. Returns what ended it when the
        stream is to reconnect: the error, or None when the server ended it. When it failed
        for good (refused, or the outage outlasted the reconnect timeout), sets ``_error``.
        After a reconnect, it reconciles the decisions known open beside the new stream."""
        call: InteractCall = self._rpc(None, metadata=self._metadata)
        reconcile: asyncio.Task[None] | None = None
        sent_again: set[Key] = set()  # decisions this call's stream has sent
        try:
            await self._take_over(call)
            if reconnecting and self._updates.open:
                reconcile = asyncio.create_task(
                    self._reconcile(set(self._updates.open), sent_again),
                    name="runstream-interact-reconcile",
                )
            await opened(call, outage, self._on_link, 0, self._diagnosis)
            # Back once the server subscribed it: this stream has no heartbeats, so a message
            # to say so may never come.
            if not call.done():
                said.back()
            async for response in call:
                outage.recovered()
                backoff.reset()
                self._receive(rpc.parse_interact_response(response), sent_again)
            said.lost("the server ended it", "reconnecting")
            return None
        except grpc.aio.AioRpcError as exc:
            # A send that failed locally marks the call's status INTERNAL: no server judged
            # anything, the connection broke.
            if not is_retryable(exc) and self._send_failed is not call:
                self._error = error_from_rpc(exc)
                self._error.__cause__ = exc
                return None
            if self._diagnosis is not None and (error := await self._diagnosis.at_once(exc)):
                self._error = error
                return None
            backoff.hold(exc)
            detail = f"{exc.code().name}: {exc.details()}"
            if given_up := outage.exceeded("interact", detail, exc):
                if self._diagnosis is not None:
                    given_up = await self._diagnosis.given_up(given_up, exc)
                self._error = given_up
                return None
            said.lost(exc.code().name, "reconnecting", renewing=is_stream_cut_at_its_expiry(exc))
            return exc
        finally:
            self._call = None
            call.cancel()
            await end_requests(call)
            if reconcile is not None:
                reconcile.cancel()
                await asyncio.wait({reconcile})
                if not reconcile.cancelled() and reconcile.exception() is not None:
                    _log.error("interact reconcile failed", exc_info=reconcile.exception())

    async def _take_over(self, call: InteractCall) -> None:
        """Makes ``call`` the stream that answers go out on: subscribes it to the runs and
        sends again the answers that got no result yet."""
        async with self._write_lock:
            self._call = call
            self._sent.clear()
            await self._write(call, rpc.interact_subscribe(self._run_ids, self._viewer))
            for answer_id, (request, future) in sorted(self._pending.items()):
                if not future.done():
                    await self._write(call, rpc.interact_answer(answer_id, request))
                    self._sent.add(answer_id)

    def _receive(
        self, update: DecisionPrompt | DecisionClosed | AnswerResult | None, sent_again: set[Key]
    ) -> None:
        """Takes one update off the stream: notes the decisions it sent again, settles the
        answer an AnswerResult is for, and queues the update for the iteration. None (a
        message this SDK does not know) is passed over."""
        if update is None:
            return
        if isinstance(update, DecisionPrompt | DecisionClosed):
            sent_again.add(key_of(update.decision))
        elif isinstance(update, AnswerResult):
            entry = self._pending.get(update.answer_id)
            if entry is not None and not entry[1].done():
                entry[1].set_result(update)
        self._updates.deliver(update)

    async def _reconcile(self, known_open: set[Key], sent_again: set[Key]) -> None:
        """After a reconnect: a DecisionClosed for each decision known open that closed.

        Runs beside the new stream until the stream has sent every one of ``known_open``
        again, or GetDecision said it closed. A decision still open may close before the
        server has the new subscription (then neither its prompt nor its closure comes), so
        each is asked about again, backing off, until its prompt arrives.
        """
        backoff = Backoff(maximum=1.0)
        waiting = known_open
        while True:
            waiting = {k for k in waiting if k in self._updates.open and k not in sent_again}
            if not waiting:
                return
            keys = sorted(waiting)
            answers = await asyncio.gather(
                *(self._get_decision(*key) for key in keys), return_exceptions=True
            )
            for key, answer in zip(keys, answers, strict=True):
                if isinstance(answer, Decision):
                    if answer.state != DecisionState.OPEN:
                        self._updates.deliver(DecisionClosed(answer))
                elif isinstance(answer, RunstreamError) and not _retryable(answer):
                    _log.warning("could not tell whether decision %s/%s closed: %s", *key, answer)
                    waiting.discard(key)
                elif isinstance(answer, Exception):
                    _log.debug("GetDecision %s/%s failed, asking again: %r", *key, answer)
                else:
                    raise answer
            await asyncio.sleep(backoff.next_delay())

    def _finish(self) -> None:
        error = self._error or FailedPreconditionError("the interaction is closed")
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        if not self._ended:
            self._ended = True
            self._updates.end()


def _retryable(error: RunstreamError) -> bool:
    """Whether the call that failed with ``error`` may work when asked again."""
    return isinstance(error.__cause__, grpc.aio.AioRpcError) and is_retryable(error.__cause__)
