"""Runstream for agent frameworks: report a framework's run, or serve a run to AG-UI frontends.

Each integration is its own module and needs its own optional extra; importing this package
imports none of them, and none of the frameworks:

- ``runstream.integrations.langchain``: ``RunstreamCallbackHandler`` for LangChain and
  LangGraph (``pip install 'runstream[langchain]'``).
- ``runstream.integrations.openai_agents``: ``runstream_trace``, which reports the OpenAI
  Agents SDK's traces through its tracing processor ``RunstreamProcessor``
  (``pip install 'runstream[openai-agents]'``).
- ``runstream.integrations.agui``: the AG-UI bridge behind ``runstream agui``, which serves a
  run's events as AG-UI Server-Sent Events (``pip install 'runstream[agui]'``).
"""

from __future__ import annotations

__all__: list[str] = []
