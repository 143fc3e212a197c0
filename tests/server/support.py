"""Builders for requests and events, so tests read as the story they check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runstream.v1 import event_pb2, run_pb2, run_service_pb2
from runstream.v1 import report_service_pb2 as rp

ev = event_pb2


def specs(*step_ids: str) -> list[run_pb2.StepSpec]:
    return [run_pb2.StepSpec(step_id=s, name=s.title(), agent=f"{s}-agent") for s in step_ids]


async def create_run(stubs: Any, *step_ids: str, **fields: Any) -> run_pb2.Run:
    request = run_service_pb2.CreateRunRequest(
        workflow=fields.pop("workflow", "wf"), steps=specs(*step_ids), **fields
    )
    response = await stubs.runs.CreateRun(request)
    return response.run


async def append(stubs: Any, run_id: str, *events: event_pb2.RunEvent) -> rp.AppendEventsResponse:
    return await stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=events))


def custom(n: int, key: str | None = None) -> event_pb2.RunEvent:
    event = ev.RunEvent(custom=ev.Custom(type="tick"))
    event.custom.data.update({"n": n})
    event.idempotency_key = key if key is not None else f"k{n}"
    return event


async def watch_all(stubs: Any, run_id: str, **fields: Any) -> list[Any]:
    """Every response of a WatchRun stream that ends by itself."""
    request = run_service_pb2.WatchRunRequest(run_id=run_id, **fields)
    return [r async for r in stubs.runs.WatchRun(request)]


def seqs(responses: Sequence[Any]) -> list[int]:
    return [e.seq for r in responses for e in r.events]
