"""Builders for requests and events, and callers with tokens, so tests read as the story
they check."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from prometheus_client.parser import text_string_to_metric_families
from runstream._auth import auth_interceptors
from runstream.v1 import (
    event_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream.v1 import report_service_pb2 as rp
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import serving_on
from tests.server.conftest import Stubs

ev = event_pb2


def specs(*step_ids: str) -> list[run_pb2.StepSpec]:
    return [run_pb2.StepSpec(step_id=s, name=s.title(), agent=f"{s}-agent") for s in step_ids]


async def create_run(stubs: Any, *step_ids: str, **fields: Any) -> run_pb2.Run:
    request = run_service_pb2.CreateRunRequest(
        workflow=fields.pop("workflow", "wf"), steps=specs(*step_ids), **fields
    )
    response = await stubs.runs.CreateRun(request)
    return response.run


async def get_run(stubs: Any, run_id: str) -> run_pb2.Run:
    """The run's snapshot, as GetRun answers it."""
    return (await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))).run


async def until_health(stubs: Any, run_id: str, health: int) -> run_pb2.Run:
    """The run once the background stall check gave it `health` (polled for up to 15 s)."""
    for _ in range(300):
        run = await get_run(stubs, run_id)
        if run.health == health:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {run_pb2.RunHealth.Name(health)}")


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a unary call (awaited here) ends with; the test fails if it succeeds."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def append(stubs: Any, run_id: str, *events: event_pb2.RunEvent) -> rp.AppendEventsResponse:
    return await stubs.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=events))


def custom(n: int, key: str | None = None) -> event_pb2.RunEvent:
    event = ev.RunEvent(custom=ev.Custom(type="tick"))
    event.custom.data.update({"n": n})
    event.idempotency_key = key if key is not None else f"k{n}"
    return event


def keyless(n: int) -> event_pb2.RunEvent:
    """A custom event without an idempotency key: the server cannot tell it from a new one."""
    event = custom(n)
    event.ClearField("idempotency_key")
    return event


async def watch_all(stubs: Any, run_id: str, **fields: Any) -> list[Any]:
    """Every response of a WatchRun stream that ends by itself."""
    request = run_service_pb2.WatchRunRequest(run_id=run_id, **fields)
    return [r async for r in stubs.runs.WatchRun(request)]


def seqs(responses: Sequence[Any]) -> list[int]:
    return [e.seq for r in responses for e in r.events]


class Caller:
    """One principal's stubs on one server (its token, if any, sent on every call)."""

    def __init__(self, target: str, token: str | None) -> None:
        self.channel = grpc.aio.insecure_channel(target, interceptors=auth_interceptors(token))
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.report = report_service_pb2_grpc.ReportServiceStub(self.channel)


M = TypeVar("M", bound=Message)


def status_detail(exc: grpc.aio.AioRpcError, kind: type[M]) -> M | None:
    """The detail of type `kind` (ErrorInfo, BadRequest, RetryInfo) in a refusal's
    ``grpc-status-details-bin`` trailer, whose status must be the refusal's own."""
    [raw] = [v for k, v in exc.trailing_metadata() or () if k == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert (status.code, status.message) == (exc.code().value[0], exc.details())
    for detail in status.details:
        found = kind()
        if detail.Unpack(found):
            return found
    return None


def assert_refused(
    exc: grpc.aio.AioRpcError,
    code: grpc.StatusCode,
    details: str,
    reason: str,
    metadata: dict[str, str],
) -> None:
    """`exc` is the refusal `code` saying `details`, with an ErrorInfo of `reason` and
    `metadata`."""
    assert exc.code() == code
    assert exc.details() == details
    info = status_detail(exc, error_details_pb2.ErrorInfo)
    assert info is not None and info.reason == reason
    assert dict(info.metadata) == metadata


def retry_info(exc: grpc.aio.AioRpcError) -> float:
    """The RetryInfo delay of a RESOURCE_EXHAUSTED answer, in seconds."""
    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
    info = status_detail(exc, error_details_pb2.RetryInfo)
    assert info is not None
    return info.retry_delay.ToNanoseconds() / 1e9


async def opened(stream: Any) -> Any:
    """Waits for the stream's first message (it is open on the server then)."""
    async for response in stream:
        return response
    raise AssertionError("the stream ended")


async def refused(stream: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await opened(stream)
    return info.value


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_blocking(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


async def scrape(server: RunstreamServer) -> Samples:
    """Every sample on /metrics, parsed with the Prometheus text-format parser."""
    content_type, text = await asyncio.to_thread(scrape_blocking, server.metrics_port)
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.asynccontextmanager
async def serving(config: ServerConfig) -> AsyncIterator[tuple[RunstreamServer, Stubs]]:
    """A server of its own (for a config the `stubs` fixture's does not have), and stubs."""
    server = RunstreamServer(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield server, Stubs.on(channel)
    finally:
        await server.stop(grace=0.1)


class Clock:
    """The servers' time, moved only by the test."""

    def __init__(self, now: datetime = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def wall_clock_off(server: RunstreamServer, seconds: float) -> None:
    """Sets the server's wall clock `seconds` off the real one, as on a machine whose time
    sync failed, and lets it read its store's clock again (as it does every 30 s)."""
    assert server.runs is not None
    clock = server.runs._store.clock
    clock.wall = lambda: time.time() + seconds
    await clock.sync()


def on_clock(server: RunstreamServer, clock: Callable[[], datetime]) -> None:
    assert server.runs is not None
    server.runs._clock = clock  # the stall check and every event time read it


@contextlib.asynccontextmanager
async def clocked_server(
    tmp_path: Path, server_config: Any, policy: InsightPolicy, clock: Clock | None = None
) -> AsyncIterator[tuple[Stubs, Clock]]:
    """A server judging runs by `policy` on the test's clock, a new one unless given
    (`server_config`: the store-parametrized factory of tests/conftest.py)."""
    clock = clock or Clock()
    server = RunstreamServer(server_config(tmp_path / "p.db", insight=policy))
    await server.start()
    on_clock(server, clock)
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield Stubs.on(channel), clock
    finally:
        await server.stop(grace=0.1)


@contextlib.asynccontextmanager
async def clocked_replicas(
    store_url: str, tmp_path: Path, policy: InsightPolicy, clock: Clock
) -> AsyncIterator[tuple[tuple[RunstreamServer, Stubs], tuple[RunstreamServer, Stubs]]]:
    """Two replicas on the shared store `store_url`, judging runs by `policy` on `clock`:
    each with stubs on a channel to it."""
    async with (
        serving_on(store_url, tmp_path / "a", insight=policy) as a,
        serving_on(store_url, tmp_path / "b", insight=policy) as b,
        grpc.aio.insecure_channel(a.target) as on_a,
        grpc.aio.insecure_channel(b.target) as on_b,
    ):
        on_clock(a, clock)
        on_clock(b, clock)
        yield (a, Stubs.on(on_a)), (b, Stubs.on(on_b))
