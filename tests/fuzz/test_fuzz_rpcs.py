"""Fuzzing every RPC, streaming ones included, against a real server (issue 8).

Two fuzzers, each with a fixed, seeded budget (``derandomize``: the same examples on every
run, so a failure reproduces):

- structure-aware: messages generated from the request descriptors, valid and invalid;
- byte-level: valid encodings mutated (cut, flipped, inserted, dropped bytes) and noise;
- and, for the client streams (Report, Interact), several generated messages after a good
  opening, so the fuzz reaches past the first message.

Every call must end with a status that is neither UNKNOWN nor INTERNAL (nor a hang, nor the
server gone), every INVALID_ARGUMENT must name a field of the request, and the server must
serve normally afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runstream.v1 import decision_service_pb2, report_service_pb2

from tests.fuzz.strategies import messages, mutated
from tests.fuzz.support import RUN, ThreadedServer, all_methods, call, still_serving, verdict

METHODS = all_methods()
BUDGET = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    server = ThreadedServer(Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db")
    server.start()
    try:
        with grpc.insecure_channel(server.server.target) as channel:
            yield channel
        assert list(still_serving(server.server.target)) == []
    finally:
        server.stop()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_generated_messages_get_precise_answers(
    fuzzed: grpc.Channel, method: MethodDescriptor
) -> None:
    @BUDGET
    @given(request=messages(method.input_type))
    def check(request: object) -> None:
        data = request.SerializeToString()  # type: ignore[attr-defined]
        problem = verdict(method, call(fuzzed, method, data))
        assert problem is None, problem

    check()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_mutated_bytes_get_precise_answers(fuzzed: grpc.Channel, method: MethodDescriptor) -> None:
    valid = messages(method.input_type).map(lambda m: m.SerializeToString())

    @BUDGET
    @given(data=mutated(valid))
    def check(data: bytes) -> None:
        problem = verdict(method, call(fuzzed, method, data))
        assert problem is None, problem

    check()


def test_every_rpc_is_fuzzed() -> None:
    """The fuzzers take the RPCs from the services the server registers, streams included."""
    names = {m.name for m in METHODS}
    assert {"WatchRun", "WatchRuns", "Report", "Interact", "CreateRun", "GetStats"} <= names
    assert len(names) >= 17


STREAMS = [m for m in METHODS if m.client_streaming]


@pytest.mark.parametrize("method", STREAMS, ids=lambda m: m.name)
def test_client_streams_of_several_messages_get_precise_answers(
    fuzzed: grpc.Channel, method: MethodDescriptor
) -> None:
    """Report and Interact past their first message: a good opening (attach to the seeded
    run; subscribe to it), then generated messages on the same stream."""
    opening = {
        "Report": report_service_pb2.ReportRequest(run_id=RUN),
        "Interact": decision_service_pb2.InteractRequest(
            subscribe=decision_service_pb2.InteractSubscribe(run_ids=[RUN])
        ),
    }[method.name].SerializeToString()

    @settings(BUDGET, max_examples=20)
    @given(rest=st.lists(messages(method.input_type), min_size=1, max_size=3))
    def check(rest: list[Any]) -> None:
        data = [opening, *(m.SerializeToString() for m in rest)]
        problem = verdict(method, call(fuzzed, method, data))
        assert problem is None, problem

    check()
