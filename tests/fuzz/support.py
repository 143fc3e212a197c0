"""What the fuzz tests share: a real server in a thread, every RPC, calls and the verdict.

The server is a real grpc.aio Runstream server over a real SQLite file, running on its own
event loop in a thread, so that hypothesis drives plain synchronous tests with the
synchronous gRPC client: each example is one call, as any client in any language sends it.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from runstream.v1 import (
    decision_service_pb2,
    event_pb2,
    report_service_pb2,
    run_pb2,
    run_service_pb2,
)
from runstream.v1 import decision_service_pb2_grpc as dg
from runstream.v1 import report_service_pb2_grpc as pg
from runstream.v1 import run_service_pb2_grpc as rg
from runstream_server.app import SERVICE_NAMES, RunstreamServer, ServerConfig

# Ids the seeded server knows, so generated requests reach past "not found".
RUN = "fz-run"
DONE_RUN = "fz-done"
STEP = "s1"
DECISION = "d1"
KNOWN_IDS = (RUN, DONE_RUN, STEP, DECISION)

# How long a stream that stays open (a live watch) is read before the call is judged fine.
STREAM_WINDOW = 0.5
# Past this a call counts as hung. Generous on purpose: CI shares two cores.
DEADLINE = 15.0

BAD_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.DATA_LOSS,
    }
)


def all_methods() -> list[MethodDescriptor]:
    """Every RPC of the contract, from the descriptors: a new RPC is fuzzed too."""
    pool = descriptor_pool.Default()
    return [m for name in SERVICE_NAMES for m in pool.FindServiceByName(name).methods]


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class Outcome:
    """How one call ended: its status (OK when it ended well or stayed open) and details."""

    code: grpc.StatusCode
    details: str


def call(channel: grpc.Channel, method: MethodDescriptor, data: bytes | list[bytes]) -> Outcome:
    """Sends `data` as the request (a list: the messages of a client stream); reads the
    first answer (for a client stream, the answer to the last message or the end)."""
    path = method_path(method)
    messages = data if isinstance(data, list) else [data]

    def raw(b: bytes) -> bytes:
        return b

    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(path, request_serializer=raw, response_deserializer=raw)(
                messages[0], timeout=DEADLINE
            )
            return Outcome(grpc.StatusCode.OK, "")
        if method.client_streaming:
            responses = channel.stream_stream(
                path, request_serializer=raw, response_deserializer=raw
            )(iter(messages), timeout=DEADLINE)
            return _last_answer(responses, len(messages))
        responses = channel.unary_stream(path, request_serializer=raw, response_deserializer=raw)(
            messages[0], timeout=DEADLINE
        )
        return _first_answer(responses)
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "")  # type: ignore[attr-defined]


def _first_answer(responses: grpc.Call) -> Outcome:
    """The stream's first message or its end, or OK once it stayed open for the window."""
    return _last_answer(responses, 1)


def _last_answer(responses: grpc.Call, count: int) -> Outcome:
    """The stream's `count`-th message or its end, or OK once it stayed open for the window
    (a live stream waiting for events, or a stream that answers fewer messages)."""
    done = threading.Event()
    result: list[Outcome] = []

    def read() -> None:
        try:
            stream = iter(responses)  # type: ignore[call-overload]
            for _ in range(count):
                if next(stream, None) is None:
                    break
            result.append(Outcome(grpc.StatusCode.OK, ""))
        except grpc.RpcError as exc:
            result.append(Outcome(exc.code(), exc.details() or ""))  # type: ignore[attr-defined]
        finally:
            done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not done.wait(STREAM_WINDOW):
        responses.cancel()
        done.wait(DEADLINE)
        return Outcome(grpc.StatusCode.OK, "")
    return result[0]


_FIELD = re.compile(r"^([a-z_][a-z0-9_]*)[\[.:]")


def verdict(method: MethodDescriptor, outcome: Outcome) -> str | None:
    """What is wrong with this outcome, or None: no UNKNOWN, INTERNAL or hang, and every
    INVALID_ARGUMENT names a field of the request (or the request itself, if undecodable)."""
    if outcome.code in BAD_CODES:
        return f"{method.name} answered {outcome.code.name}: {outcome.details!r}"
    if outcome.code == grpc.StatusCode.INVALID_ARGUMENT:
        match = _FIELD.match(outcome.details)
        fields = _field_names(method.input_type)
        if match is None or match[1] not in fields | {"request"}:
            return f"{method.name} INVALID_ARGUMENT names no request field: {outcome.details!r}"
    if "Traceback" in outcome.details or "<class" in outcome.details:
        return f"{method.name} leaks internals: {outcome.details!r}"
    return None


def _field_names(message: Descriptor) -> set[str]:
    return {f.name for f in message.fields}


class ThreadedServer:
    """A Runstream server on its own loop in a thread, seeded with runs the fuzzers aim at."""

    def __init__(self, store_path: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server = RunstreamServer(ServerConfig(address="127.0.0.1:0", store_path=store_path))

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(30)
        with grpc.insecure_channel(self.server.target) as channel:
            _seed(channel)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace=0.5), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def _seed(channel: grpc.Channel) -> None:
    runs, report = rg.RunServiceStub(channel), pg.ReportServiceStub(channel)
    for run_id in (RUN, DONE_RUN):
        runs.CreateRun(
            run_service_pb2.CreateRunRequest(
                run_id=run_id, workflow="fuzz", steps=[run_pb2.StepSpec(step_id=STEP)]
            )
        )
    ask = event_pb2.DecisionRequested(
        decision_id=DECISION, prompt="?", options=[event_pb2.DecisionOption(value="a")]
    )
    report.AppendEvents(
        report_service_pb2.AppendEventsRequest(
            run_id=RUN,
            events=[
                event_pb2.RunEvent(step_started=event_pb2.StepStarted(step_id=STEP)),
                event_pb2.RunEvent(decision_requested=ask),
            ],
        )
    )
    report.AppendEvents(
        report_service_pb2.AppendEventsRequest(
            run_id=DONE_RUN, events=[event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())]
        )
    )
    assert dg.DecisionServiceStub(channel).GetDecision(
        decision_service_pb2.GetDecisionRequest(run_id=RUN, decision_id=DECISION)
    )


def still_serving(target: str) -> Iterator[str]:
    """Problems with the server after fuzzing: it must answer a plain GetRun."""
    with grpc.insecure_channel(target) as channel:
        got = rg.RunServiceStub(channel).GetRun(
            run_service_pb2.GetRunRequest(run_id=RUN), timeout=DEADLINE
        )
        if got.run.run_id != RUN:
            yield f"GetRun after fuzzing answered {got.run.run_id!r}"
