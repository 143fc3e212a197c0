"""DecisionService: humans answer the questions runs ask, over bidi Interact or unary calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio
from runstream.v1 import decision_service_pb2 as pb
from runstream.v1 import decision_service_pb2_grpc

from runstream_server.domain.runs import DecisionFeed, RunManager
from runstream_server.errors import InvalidArgument, RunstreamError, Unavailable

Context = aio.ServicerContext[Any, Any]


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
        outbox: asyncio.Queue[pb.InteractResponse | BaseException] = asyncio.Queue()
        viewer = ""

        async def read_requests() -> None:
            nonlocal viewer
            try:
                async for request in request_iterator:
                    if request.HasField("subscribe"):
                        viewer = request.subscribe.viewer or viewer
                        await self._runs.follow_decisions(feed, list(request.subscribe.run_ids))
                    elif request.HasField("answer"):
                        outbox.put_nowait(await self._answer(request.answer, viewer))
                    else:
                        raise InvalidArgument("subscribe", "set subscribe or answer")
                # The viewer closed its side: keep sending prompts until it cancels.
            except Exception as exc:
                outbox.put_nowait(exc)

        async def forward_updates() -> None:
            while (update := await feed.updates.get()) is not None:
                what, decision = update
                if what == "prompt":
                    outbox.put_nowait(pb.InteractResponse(prompt=decision))
                else:
                    outbox.put_nowait(pb.InteractResponse(closed=decision))
            outbox.put_nowait(Unavailable("server is shutting down; reconnect to resume"))

        tasks = [asyncio.create_task(read_requests()), asyncio.create_task(forward_updates())]
        try:
            while True:
                item = await outbox.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._runs.unfollow_decisions(feed)

    async def _answer(self, answer: pb.InteractAnswer, viewer: str) -> pb.InteractResponse:
        result = pb.InteractAnswerResult(answer_id=answer.answer_id)
        try:
            result.decision.CopyFrom(await self._submit(answer.decision, viewer))
        except RunstreamError as exc:
            result.code = grpc.StatusCode[exc.kind.value].value[0]
            result.message = exc.message
            with contextlib.suppress(RunstreamError):
                current = await self._runs.get_decision(
                    answer.decision.run_id, answer.decision.decision_id
                )
                result.decision.CopyFrom(current)
        return pb.InteractResponse(answer_result=result)
