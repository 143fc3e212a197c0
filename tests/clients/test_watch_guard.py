"""The watcher's guarantees against a server that does something the real one never should.

The real server cannot be made to skip a seq or send a kind this SDK does not know yet, so
these tests use a minimal grpc.aio RunService that does exactly that, and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
import runstream
from runstream.v1 import event_pb2, run_service_pb2, run_service_pb2_grpc

# Field 99 of RunEvent, length-delimited, empty: a payload kind added after this SDK.
NEWER_KIND = bytes([0x9A, 0x06, 0x00])


def custom(seq: int) -> event_pb2.RunEvent:
    return event_pb2.RunEvent(seq=seq, custom=event_pb2.Custom(type="tick"))


def newer_kind(seq: int) -> event_pb2.RunEvent:
    return event_pb2.RunEvent.FromString(
        event_pb2.RunEvent(seq=seq).SerializeToString() + NEWER_KIND
    )


def heartbeat(head_seq: int) -> run_service_pb2.WatchRunResponse:
    return run_service_pb2.WatchRunResponse(heartbeat=run_service_pb2.Heartbeat(head_seq=head_seq))


class ScriptedRunService(run_service_pb2_grpc.RunServiceServicer):
    """Answers WatchRun with fixed events (and heartbeats), then ends the stream normally."""

    def __init__(
        self, events: Sequence[event_pb2.RunEvent | run_service_pb2.WatchRunResponse]
    ) -> None:
        self.events = list(events)

    async def WatchRun(
        self, request: run_service_pb2.WatchRunRequest, context: Any
    ) -> AsyncIterator[run_service_pb2.WatchRunResponse]:
        for event in self.events:
            if isinstance(event, run_service_pb2.WatchRunResponse):
                yield event
            elif event.seq > request.after_seq:
                yield run_service_pb2.WatchRunResponse(events=[event])


async def serve(service: ScriptedRunService) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    run_service_pb2_grpc.add_RunServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_gap_in_the_log_raises_instead_of_being_skipped() -> None:
    server, target = await serve(ScriptedRunService([custom(1), custom(2), custom(4)]))
    try:
        seen: list[int] = []
        async with runstream.connect(target) as client:
            with pytest.raises(runstream.DataLossError, match="expected seq 3, got 4"):
                async for event in client.watch("r"):
                    seen.append(event.seq)
        assert seen == [1, 2]
    finally:
        await server.stop(None)


async def test_a_kind_added_later_is_yielded_as_unspecified_and_advances_the_cursor() -> None:
    server, target = await serve(ScriptedRunService([custom(1), newer_kind(2), custom(3)]))
    try:
        async with runstream.connect(target) as client:
            events = [event async for event in client.watch("r")]
        assert [e.seq for e in events] == [1, 2, 3]
        assert events[1].kind == runstream.EventKind.UNSPECIFIED
        assert events[1].payload is None
        assert events[1].raw.SerializeToString().endswith(NEWER_KIND)
        assert events[2].payload == runstream.Custom("tick", {})
    finally:
        await server.stop(None)


async def test_a_filtered_watch_raises_on_an_event_it_has_seen() -> None:
    """A filtered watch skips seqs, but never goes back: an event at or before its cursor is
    one it yielded already (or older), and is raised, not yielded twice."""
    server, target = await serve(ScriptedRunService([custom(2), custom(2)]))
    try:
        seen: list[int] = []
        async with runstream.connect(target) as client:
            with pytest.raises(runstream.DataLossError, match="seq 2 after 2"):
                async for event in client.watch("r", kinds=[runstream.EventKind.CUSTOM]):
                    seen.append(event.seq)
        assert seen == [2]
    finally:
        await server.stop(None)


async def test_a_heartbeat_ahead_of_the_events_does_not_move_an_unfiltered_watch() -> None:
    """An unfiltered watch resumes after the last event it yielded, whatever a heartbeat says
    of the run's head: taking the head from it would skip the events between."""
    server, target = await serve(ScriptedRunService([custom(1), heartbeat(3), custom(2)]))
    try:
        async with runstream.connect(target) as client:
            events = [event async for event in client.watch("r")]
        assert [e.seq for e in events] == [1, 2]
    finally:
        await server.stop(None)
