"""Streamed text of the OpenAI Agents SDK, as it streams.

The SDK traces no text deltas: a tracing processor sees a model call's text when its span
ends, whole, so a ``Runner.run_streamed`` reported through ``runstream_trace`` alone shows each
answer at once, at its end. :class:`RunstreamModel` wraps a model and, for each text delta
its ``stream_response`` yields, tells the processor the model call's span went to, inside that
span and in the SDK's own task: the delta is the agent's streamed text, in its step, and the
call's end (its span's, or its stream's for a model that opens no span of its own) closes the
message rather than repeating it; each call is a message of its own.
:class:`RunstreamModelProvider` wraps every model a provider gives (the SDK's default,
``MultiProvider``, when none), for agents whose model is a name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from agents import Model, ModelProvider, MultiProvider

__all__ = ["RunstreamModel", "RunstreamModelProvider"]

_TEXT_DELTA = "response.output_text.delta"


class RunstreamModel(Model):
    """``model``, whose streamed text reaches watchers delta by delta (see the module)::

        agent = Agent(name="Writer", model=RunstreamModel(OpenAIResponsesModel(...)))
        async with runstream_trace(run):
            result = Runner.run_streamed(agent, "...")
            async for event in result.stream_events():
                ...

    Everything else is the model's own: ``get_response`` (``Runner.run``, which streams
    nothing), its retries' advice, its attributes.
    """

    def __init__(self, model: Model) -> None:
        self._model = model

    @property
    def wrapped(self) -> Model:
        """The model it wraps (``model`` is the wrapped model's own attribute, its name)."""
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name == "_model":  # not set yet (a copy being made): no endless lookup
            raise AttributeError(name)
        return getattr(self._model, name)

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        return await self._model.get_response(*args, **kwargs)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        return _told(self._model.stream_response(*args, **kwargs))

    def get_retry_advice(self, request: Any) -> Any:
        return self._model.get_retry_advice(request)

    async def close(self) -> None:
        await self._model.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self._model._cleanup_on_run_end(owner)


class RunstreamModelProvider(ModelProvider):
    """Gives ``provider``'s models (the SDK's ``MultiProvider`` when None) as
    :class:`RunstreamModel`: pass it as ``RunConfig(model_provider=...)``."""

    def __init__(self, provider: ModelProvider | None = None) -> None:
        self._provider = provider if provider is not None else MultiProvider()

    def get_model(self, model_name: str | None) -> Model:
        return RunstreamModel(self._provider.get_model(model_name))

    async def aclose(self) -> None:
        await self._provider.aclose()


async def _told(events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``events``, each text delta told first to the processor of the model call's span, and
    the stream's end after the last."""
    from runstream.integrations.openai_agents import StreamedText

    told = StreamedText()
    try:
        async with aclosing(events) as stream:  # type: ignore[type-var]
            async for event in stream:
                if getattr(event, "type", None) == _TEXT_DELTA:
                    delta = getattr(event, "delta", "")
                    if isinstance(delta, str) and delta:
                        told.delta(delta)
                yield event
    except BaseException as stop:  # GeneratorExit too: the SDK closed the stream early
        told.ended(stop)
        raise
    told.ended(None)
