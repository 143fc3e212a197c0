"""DecisionService: humans answer the questions runs ask, over bidi Interact or unary calls.

Every queue of an Interact stream is bounded, so a viewer that does not read cannot make the
server hold an unbounded backlog for it:

- the outbox (prompts, closures and answer results waiting to be sent) holds
  ``OUTBOX_SIZE`` messages. When it is full, the task reading the viewer's answers waits,
  so HTTP/2 flow control slows a viewer that sends answers without reading results;
- the viewer's DecisionFeed holds ``DecisionFeed.limit`` updates. When it overflows, the
  queued updates are dropped for one resync: the stream then sends a closure for every prompt
  the viewer was shown whose decision has closed since, and a prompt for every open decision
  it was not shown. The viewer ends up with exactly the open decisions of its runs and sees
  the closure of every prompt it saw; what it misses is a decision that opened and closed
  entirely while it was not reading (it is in the run's log).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio
from runstream.v1 import decision_pb2, decision_service_pb2_grpc
from runstream.v1 import decision_service_pb2 as pb

from runstream_server.domain.fields import check_message
from runstream_server.domain.runs import RESYNC, DecisionFeed, RunManager, forwarded_first
from runstream_server.errors import InvalidArgument, RunstreamError, Unavailable
from runstream_server.rpc.errors import grpc_code

Context = aio.ServicerContext[Any, Any]

OUTBOX_SIZE = 64
"""Messages an Interact stream holds for a viewer that is not reading."""

_Key = tuple[str, str]


class _Accepted:
    """Put in an Interact stream's outbox once a subscription is accepted: the headers go
    out."""


_ACCEPTED = _Accepted()
_Outgoing = pb.InteractResponse | BaseException | _Accepted | None
"""What an Interact stream's outbox holds: a response, the error that ends the stream, its
end (None), or :data:`_ACCEPTED`."""


def _key(decision: decision_pb2.Decision) -> _Key:
    return decision.run_id, decision.decision_id


class DecisionServicer(decision_service_pb2_grpc.DecisionServiceServicer):
    """Translates DecisionService calls to :class:`RunManager` calls."""

    def __init__(self, runs: RunManager) -> None:
        self._runs = runs

    async def SubmitDecision(
        self, request: pb.SubmitDecisionRequest, context: Context
    ) -> pb.SubmitDecisionResponse:
        return pb.SubmitDecisionResponse(decision=await self._submit(request, ""))

    async def _submit(self, request: pb.SubmitDecisionRequest, viewer: str) -> Any:
        return await self._runs.submit_decision(
            request.run_id,
            request.decision_id,
            choice=request.choice,
            skip=request.skip,
            answered_by=request.answered_by or viewer,
        )

    async def GetDecision(
        self, request: pb.GetDecisionRequest, context: Context
    ) -> pb.GetDecisionResponse:
        decision = await self._runs.get_decision(request.run_id, request.decision_id)
        return pb.GetDecisionResponse(decision=decision)

    async def ListDecisions(
        self, request: pb.ListDecisionsRequest, context: Context
    ) -> pb.ListDecisionsResponse:
        decisions, token = await self._runs.list_decisions(
            request.run_id,
            filter_text=request.filter,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListDecisionsResponse(decisions=decisions, next_page_token=token)

    async def Interact(
        self, request_iterator: AsyncIterator[pb.InteractRequest], context: Context
    ) -> AsyncIterator[pb.InteractResponse]:
        """Prompts and closures of the subscribed runs, interleaved with answer results.

        A rejected answer is reported in its InteractAnswerResult and the stream goes on; a
        bad subscription (unknown run) ends the stream with its status.
        """
        feed = DecisionFeed()
        outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(OUTBOX_SIZE)
        viewer = ""

        async def read_requests() -> None:
            nonlocal viewer
            try:
                async for request in request_iterator:
                    if not (request.HasField("subscribe") or request.HasField("answer")):
                        raise InvalidArgument("subscribe", "set subscribe or answer")
                    if request.HasField("subscribe"):  # first, when both are set
                        viewer = request.subscribe.viewer or viewer
                        await self._runs.follow_decisions(feed, list(request.subscribe.run_ids))
                        await outbox.put(_ACCEPTED)
                    if request.HasField("answer"):
                        result = await self._answer(request.answer, viewer)
                        await forwarded_first(feed.updates)  # the closure before the result
                        await outbox.put(result)
                # The viewer closed its side: keep sending its runs' prompts until it cancels;
                # with no run followed, nothing will come, so the stream ends.
                if not feed.run_ids:
                    await outbox.put(None)
            except Exception as exc:
                await outbox.put(exc)

        async def forward_updates() -> None:
            shown: dict[_Key, None] = {}  # prompts the viewer was sent and not closed since
            try:
                while (update := await feed.updates.get()) is not None:
                    what, decision = update
                    if update is RESYNC:
                        feed.resynced()
                        for message in await self._resync(feed, shown):
                            await outbox.put(message)
                    elif what == "prompt" and _key(decision) not in shown:
                        shown[_key(decision)] = None
                        await outbox.put(pb.InteractResponse(prompt=decision))
                    elif what == "closed" and _key(decision) in shown:
                        del shown[_key(decision)]
                        await outbox.put(pb.InteractResponse(closed=decision))
                shutdown = "server is shutting down; reconnect to resume"
                await outbox.put(Unavailable(shutdown, reason="SHUTTING_DOWN"))
            except Exception as exc:
                # A resync that cannot read a followed run (NOT_FOUND once the store lost it)
                # ends the stream with its status: left silent, the viewer would wait for
                # prompts that never come, where a client that sees the call end subscribes
                # again and learns which run is gone.
                await outbox.put(exc)

        tasks = [asyncio.create_task(read_requests()), asyncio.create_task(forward_updates())]
        headers_sent = False  # by this loop alone: gRPC refuses them twice
        try:
            while True:
                item = await outbox.get()
                if item is None:  # the viewer left with no run followed
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, _Accepted):
                    # The headers once a subscription is accepted, not with the first prompt
                    # (runs without open decisions send none): the viewer learns at once
                    # that its stream stands, as a watcher does.
                    if not headers_sent:
                        headers_sent = True
                        await context.send_initial_metadata(())
                    continue
                headers_sent = True  # with the message, if not before
                yield item
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._runs.unfollow_decisions(feed)

    async def _resync(
        self, feed: DecisionFeed, shown: dict[_Key, None]
    ) -> list[pb.InteractResponse]:
        """After an overflow: closures of shown prompts that closed, prompts of open decisions
        not shown; updates `shown` to match."""
        open_now: dict[_Key, decision_pb2.Decision] = {}
        for run_id in sorted(feed.run_ids):
            open_now.update((_key(d), d) for d in await self._runs.open_decisions(run_id))
        messages = []
        for key in [k for k in shown if k not in open_now]:
            del shown[key]
            with contextlib.suppress(RunstreamError):
                closed = await self._runs.get_decision(*key)
                messages.append(pb.InteractResponse(closed=closed))
        for key, decision in open_now.items():
            if key not in shown:
                shown[key] = None
                messages.append(pb.InteractResponse(prompt=decision))
        return messages

    async def _answer(self, answer: pb.InteractAnswer, viewer: str) -> pb.InteractResponse:
        result = pb.InteractAnswerResult(answer_id=answer.answer_id)
        try:
            check_message("answer", answer)  # left to this answer's result by the decoding
            result.decision.CopyFrom(await self._submit(answer.decision, viewer))
        except RunstreamError as exc:
            result.code = grpc_code(exc.kind).value[0]
            result.message = _in_answer(exc)
            with contextlib.suppress(RunstreamError):
                current = await self._runs.get_decision(
                    answer.decision.run_id, answer.decision.decision_id
                )
                result.decision.CopyFrom(current)
        return pb.InteractResponse(answer_result=result)


def _in_answer(exc: RunstreamError) -> str:
    """The refusal's message, with the field it names given its path in the Interact request:
    the domain names SubmitDecisionRequest's fields, which an answer holds as `decision`."""
    if isinstance(exc, InvalidArgument) and not exc.field.startswith("answer."):
        return f"answer.decision.{exc.message}"
    return exc.message
