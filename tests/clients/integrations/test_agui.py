"""The AG-UI bridge against a real server: every SSE message is an AG-UI event that the
``ag-ui-protocol`` package's models accept, the stream tells the run's story in AG-UI terms,
and a client that disconnects and reconnects with ``Last-Event-ID`` gets every event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tracemalloc
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import runstream
from ag_ui.core import Event as AguiEvent
from ag_ui.core import RunAgentInput
from pydantic import TypeAdapter
from runstream import ActivityType, StepSpec
from runstream._convert import event_from_pb, run_from_pb
from runstream.integrations.agui import AguiTranslator
from runstream.integrations.agui_bridge import AguiBridge
from runstream.v1 import event_pb2, run_pb2
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.domain.runs import Retention

from tests.clients.support import until

from .sse import Message, Response, SseClient, read_all

AGUI_EVENT: TypeAdapter[Any] = TypeAdapter(AguiEvent)
DRAFT = ["Launch ", "faster ", "with ", "Runstream"]


@pytest.fixture
async def bridge(client: runstream.Client) -> AsyncIterator[AguiBridge]:
    async with AguiBridge(client, port=0, origins=["http://app.example"], keepalive=0.5) as serving:
        yield serving


async def produce(
    client: runstream.Client,
    *,
    pause: float = 0.0,
    messages: int = 1,
    started: asyncio.Future[str] | None = None,
) -> str:
    """A small campaign run: a plan of two steps, progress, streamed text, a tool call,
    metrics, then completion. Returns the run id (and sets ``started`` to it at once)."""
    run = await client.start_run(
        "campaign", steps=[StepSpec("strategy", "Strategy"), StepSpec("copy", "Copy")]
    )
    if started is not None:
        started.set_result(run.run_id)
    async with run:
        async with run.step("strategy") as step:
            await step.progress(50, "drafting")
            await run.activity("planner", ActivityType.STARTED, "searching", step_id="strategy")
            await asyncio.sleep(pause)
        async with run.step("copy"):
            for m in range(messages):
                for i, piece in enumerate(DRAFT):
                    final = i == len(DRAFT) - 1
                    await run.text("writer", f"m{m}", piece, final=final, step_id="copy")
                    await asyncio.sleep(pause)
            await run.metrics({"headlines": 2})
        await run.complete(summary="campaign ready", result={"headlines": 2})
    return run.run_id


def apply_patch(state: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """JSON Patch (RFC 6902) add/replace/remove on objects, as an AG-UI client applies
    STATE_DELTA (removing a member that is not there is an error, as RFC 6902 says)."""
    for op in ops:
        assert op["op"] in ("add", "replace", "remove"), op
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target = state
        for part in parts[:-1]:
            target = target[part]
        if op["op"] == "remove":
            del target[parts[-1]]
        else:
            target[parts[-1]] = op["value"]


def states(messages: list[Message]) -> list[dict[str, Any]]:
    """The AG-UI state after the snapshot and after each STATE_DELTA of a stream."""
    events = [json.loads(m.data) for m in messages]
    state = next(e["snapshot"] for e in events if e["type"] == "STATE_SNAPSHOT")
    seen = [copy.deepcopy(state)]
    for event in events:
        if event["type"] == "STATE_DELTA":
            apply_patch(state, event["delta"])
            seen.append(copy.deepcopy(state))
    return seen


async def test_the_stream_is_valid_ag_ui_event_by_event(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    producer = asyncio.create_task(produce(client, pause=0.01, started=started))
    # Read while the run is live: follow it from its first event to its end.
    run_id = await started
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run_id}/events"), 60)
    assert await producer == run_id

    events = [AGUI_EVENT.validate_json(m.data) for m in messages]  # each one valid AG-UI
    types = [e.type.value for e in events]
    assert types[:2] == ["RUN_STARTED", "STATE_SNAPSHOT"]
    assert types[-1] == "RUN_FINISHED"
    assert events[0].thread_id == run_id and events[0].run_id == run_id
    assert events[-1].result == {"headlines": 2.0}

    # Steps open and close in order.
    steps = [(e.type.value, e.step_name) for e in events if e.type.value.startswith("STEP_")]
    assert steps == [
        ("STEP_STARTED", "strategy"),
        ("STEP_FINISHED", "strategy"),
        ("STEP_STARTED", "copy"),
        ("STEP_FINISHED", "copy"),
    ]

    # The streamed text is one message: start, the deltas, end.
    text = [e for e in events if e.type.value.startswith("TEXT_MESSAGE_")]
    assert [e.type.value for e in text] == (
        ["TEXT_MESSAGE_START"] + ["TEXT_MESSAGE_CONTENT"] * len(DRAFT) + ["TEXT_MESSAGE_END"]
    )
    assert text[0].name == "writer" and text[0].role == "assistant"
    assert "".join(e.delta for e in text[1:-1]) == "".join(DRAFT)

    # Kinds AG-UI lacks arrive as CUSTOM, with the Runstream payload.
    custom = [e for e in events if e.type.value == "CUSTOM"]
    activity = [e for e in custom if e.name == "runstream.agent_activity"]
    assert len(activity) == 1
    assert activity[0].value["agentId"] == "planner"
    assert activity[0].value["activity"] == "AGENT_ACTIVITY_TYPE_STARTED"

    # The snapshot plus the deltas give the run's final state.
    wire = [json.loads(m.data) for m in messages]
    state = wire[1]["snapshot"]
    assert state["steps"]["strategy"]["status"] == "PENDING"
    for event in wire[2:]:
        if event["type"] == "STATE_DELTA":
            apply_patch(state, event["delta"])
    assert state["status"] == "SUCCEEDED"
    assert state["percent"] == 100.0
    assert {k: v["status"] for k, v in state["steps"].items()} == {
        "strategy": "SUCCEEDED",
        "copy": "SUCCEEDED",
    }
    assert state["metrics"] == {"headlines": 2.0}
    run = await client.get_run(run_id)
    assert state["percent"] == run.progress.percent

    # The ids: each Runstream event's last AG-UI event carries its seq; earlier ones seq:i.
    ids = [m.id for m in messages]
    assert all(i is not None for i in ids)
    seqs = [int(i.split(":")[0]) for i in ids]  # type: ignore[union-attr]
    assert seqs == sorted(seqs) and seqs[-1] == run.last_seq
    assert ids[0] == "1:1" and ids[1] == "1"  # RunCreated: RUN_STARTED, STATE_SNAPSHOT
    for event, message in zip(custom, (m for m in messages if '"CUSTOM"' in m.data), strict=True):
        assert str(event.value["seq"]) == message.id


async def test_tool_calls_and_reasoning_are_ag_uis_own_events_before_their_custom_one(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """Tool calls and thinking arrived as CUSTOM only, which AG-UI frontends do not render
    as tool calls or reasoning (found in review). Two calls of one tool at once: each result
    goes to the call its data names, or without a name the oldest first; a call that waits
    for an answer (LangGraph's interrupt in a tool) gets no result, and its next call is a
    new one."""
    run = await client.start_run("agents", steps=[StepSpec("research", "Research")])
    async with run:
        await run.thinking("Two sources disagree; check both.", thinking_type="analysis")
        async with run.step("research"):

            async def tool(activity: ActivityType, data: dict[str, Any]) -> None:
                await run.activity("scout", activity, "tool", data=data, step_id="research")

            await tool(ActivityType.STARTED, {"tool": "search", "input": {"q": "runstream"}})
            await tool(ActivityType.STARTED, {"tool": "search", "input": "grpc streaming"})
            await tool(ActivityType.COMPLETED, {"tool": "search", "output": "3 results"})
            await tool(ActivityType.FAILED, {"tool": "search", "error": "TimeoutError: slow"})
            await tool(ActivityType.STARTED, {"tool": "ask_user", "input": "{}"})
            await tool(ActivityType.PROGRESS, {"tool": "ask_user"})  # waits for an answer
            await tool(ActivityType.STARTED, {"tool": "ask_user", "input": "{}"})
            await tool(ActivityType.COMPLETED, {"tool": "ask_user", "output": "yes"})
            # Calls that name themselves, ending out of order, as the integrations' do.
            await tool(ActivityType.STARTED, {"tool": "fetch", "tool_call_id": "a", "input": "1"})
            await tool(ActivityType.STARTED, {"tool": "fetch", "tool_call_id": "b", "input": "2"})
            await tool(
                ActivityType.COMPLETED, {"tool": "fetch", "tool_call_id": "b", "output": "B"}
            )
            await tool(
                ActivityType.COMPLETED, {"tool": "fetch", "tool_call_id": "a", "output": "A"}
            )
            # A start that names its call, an end that does not (an older producer's).
            await tool(ActivityType.STARTED, {"tool": "lookup", "tool_call_id": "x", "input": "3"})
            await tool(ActivityType.COMPLETED, {"tool": "lookup", "output": "L"})
            await run.activity("scout", ActivityType.STARTED, "reading")  # not a tool call
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 60)
    events = [AGUI_EVENT.validate_json(m.data) for m in messages]
    seqs = [int((m.id or "0").split(":")[0]) for m in messages]

    def of(seq: int) -> list[tuple[Any, ...]]:
        """Each AG-UI event that the Runstream event `seq` stands for, as a tuple."""
        said = []
        for event, at in zip(events, seqs, strict=True):
            if at == seq:
                fields = event.model_dump(exclude_none=True, exclude={"timestamp", "type"})
                said.append((event.type.value, *fields.values()))
        return said

    think, step = 3, 4  # after RunCreated and RunStarted (the thinking started the run)
    assert of(think)[:-1] == [
        ("REASONING_START", f"reasoning-{think}"),
        ("REASONING_MESSAGE_START", f"reasoning-{think}", "reasoning"),
        ("REASONING_MESSAGE_CONTENT", f"reasoning-{think}", "Two sources disagree; check both."),
        ("REASONING_MESSAGE_END", f"reasoning-{think}"),
        ("REASONING_END", f"reasoning-{think}"),
    ]
    first, second, ask, again, fetch_a, fetch_b, lookup = (
        step + n for n in (1, 2, 5, 7, 9, 10, 13)
    )
    assert of(first)[:-1] == [
        ("TOOL_CALL_START", f"tool-{first}", "search"),
        ("TOOL_CALL_ARGS", f"tool-{first}", '{"q": "runstream"}'),
        ("TOOL_CALL_END", f"tool-{first}"),
    ]
    assert of(second)[1] == ("TOOL_CALL_ARGS", f"tool-{second}", "grpc streaming")
    results = [
        (event.tool_call_id, event.content)
        for event in events
        if event.type.value == "TOOL_CALL_RESULT"
    ]
    assert results == [
        (f"tool-{first}", "3 results"),
        (f"tool-{second}", "TimeoutError: slow"),
        (f"tool-{again}", "yes"),
        (f"tool-{fetch_b}", "B"),
        (f"tool-{fetch_a}", "A"),
        (f"tool-{lookup}", "L"),
    ]
    assert of(ask)[0] == ("TOOL_CALL_START", f"tool-{ask}", "ask_user")
    assert len(of(step + 6)) == 1  # the wait: its CUSTOM event alone
    # Every one of those Runstream events still ends with its CUSTOM event, as before.
    for seq in range(think, step + 16):
        if seq != step:
            assert of(seq)[-1][0] == "CUSTOM", (seq, of(seq))


async def test_a_tool_call_given_its_input_at_its_end_is_ended_there_with_its_arguments(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """A start without an ``input`` (the OpenAI Agents SDK's own tools get theirs after their
    span starts) was ended at once, so frontends showed the call with no arguments (found in
    review). It stays open until its end, which gives its arguments; one never ended is
    ended before RUN_FINISHED, which AG-UI's client refuses while a call is open."""
    run = await client.start_run("agents")
    async with run:

        async def tool(activity: ActivityType, data: dict[str, Any]) -> None:
            await run.activity("writer", activity, "tool", data=data)

        await tool(ActivityType.STARTED, {"tool": "lookup", "tool_call_id": "c1"})
        await run.text("writer", "m1", "Looking it up.", final=True)
        done = {"tool": "lookup", "tool_call_id": "c1", "input": {"id": "A-17"}, "output": "ok"}
        await tool(ActivityType.COMPLETED, done)
        await tool(ActivityType.STARTED, {"tool": "lookup", "tool_call_id": "c2"})
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 60)
    said = []
    for m in messages:
        event = AGUI_EVENT.validate_json(m.data)
        if event.type.value.startswith(("TOOL_CALL", "TEXT_MESSAGE", "RUN_FINISHED")):
            fields = event.model_dump(exclude_none=True, exclude={"timestamp", "type"})
            said.append((event.type.value, *fields.values()))
    first, second = (f"tool-{seq}" for seq in (3, 6))  # after RunCreated and RunStarted
    assert said == [
        ("TOOL_CALL_START", first, "lookup"),
        ("TEXT_MESSAGE_START", "m1", "assistant", "writer"),
        ("TEXT_MESSAGE_CONTENT", "m1", "Looking it up."),
        ("TEXT_MESSAGE_END", "m1"),
        ("TOOL_CALL_ARGS", first, '{"id": "A-17"}'),
        ("TOOL_CALL_END", first),
        ("TOOL_CALL_RESULT", f"{first}-result", first, "ok", "tool"),
        ("TOOL_CALL_START", second, "lookup"),
        ("TOOL_CALL_END", second),
        ("RUN_FINISHED", run.run_id, run.run_id),
    ]


async def test_a_client_that_reconnects_with_last_event_id_gets_every_event_once(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    # A live run with several text messages, so that some Runstream events stand for
    # several AG-UI events and disconnects land inside them too.
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    producer = asyncio.create_task(produce(client, pause=0.005, messages=4, started=started))
    run_id = await started
    path = f"/runs/{run_id}/events"

    received: list[Message] = []
    reconnects = 0
    mid_group = 0
    last_event_id: str | None = None
    while True:
        sse = SseClient(bridge.port)
        response = await sse.open(path, last_event_id=last_event_id)
        if response.status == 204:  # Everything seen, and the run is over.
            break
        assert response.status == 200, response
        ended = False
        try:
            # Hang up after three messages, or right after the first id inside a group.
            for _ in range(3):
                message = await asyncio.wait_for(sse.next(), 30)
                if message is None:
                    ended = True
                    break
                received.append(message)
                if ":" in (message.id or ""):
                    mid_group += 1
                    break
        finally:
            last_event_id = sse.last_event_id or last_event_id
            await sse.close()
        if ended:
            break
        reconnects += 1
    await producer

    uninterrupted = await asyncio.wait_for(read_all(bridge.port, path), 60)
    assert [(m.id, m.data) for m in received] == [(m.id, m.data) for m in uninterrupted]
    assert reconnects > 10 and mid_group > 3
    for message in received:
        AGUI_EVENT.validate_json(message.data)


async def test_bad_requests_get_precise_http_statuses(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    run_id = await produce(client)
    last_seq = (await client.get_run(run_id)).last_seq

    async def status(path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
        response = await SseClient(bridge.port).open(path, **kwargs)
        if "text/event-stream" in response.headers.get("content-type", ""):
            raise AssertionError(f"{path} streamed")
        return response.status, response.headers, response.body

    assert (await status("/runs/no-such-run/events"))[0] == 404
    assert (await status("/nowhere"))[0] == 404
    assert (await status(f"/runs/{run_id}/events", method="PUT"))[0] == 405
    code, _, body = await status(f"/runs/{run_id}/events", last_event_id="banana")
    assert code == 400 and "Last-Event-ID" in body
    code, _, body = await status(f"/runs/{run_id}/events", last_event_id=str(last_seq + 5))
    assert code == 400 and "past the run's last event" in body
    # Everything seen of a finished run: 204 tells EventSource to stop reconnecting.
    assert (await status(f"/runs/{run_id}/events", last_event_id=str(last_seq)))[0] == 204
    assert (await status("/healthz"))[2] == "ok\n"

    # CORS: the configured origin may read the stream; others get no allow header.
    preflight = await status(
        f"/runs/{run_id}/events",
        method="OPTIONS",
        headers={"Origin": "http://app.example", "Access-Control-Request-Headers": "last-event-id"},
    )
    assert preflight[0] == 204
    assert preflight[1]["access-control-allow-origin"] == "http://app.example"
    assert "Last-Event-ID" in preflight[1]["access-control-allow-headers"]
    for origin, allowed in (("http://app.example", True), ("http://evil.example", False)):
        sse = SseClient(bridge.port)
        response = await sse.open(f"/runs/{run_id}/events", headers={"Origin": origin})
        await sse.close()
        assert response.status == 200
        assert ("access-control-allow-origin" in response.headers) is allowed


async def exchange(port: int, request: str) -> tuple[str, bytes]:
    """One raw HTTP/1.1 request: the answer's head and everything after it, until the bridge
    closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


async def test_head_405_and_204_answers_are_what_http_says(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """HEAD got error answers with their bodies, a 204 said Content-Length: 0 (a 204 has no
    content), and a 405's Allow left out HEAD, which the bridge serves."""
    run_id = await produce(client)
    for path, status in ((f"/runs/{run_id}/events", 200), ("/runs/nope/events", 404)):
        head, body = await exchange(bridge.port, f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} "), head
        assert body == b"", (path, body)
    last_seq = (await client.get_run(run_id)).last_seq
    head, body = await exchange(
        bridge.port, f"GET /runs/{run_id}/events HTTP/1.1\r\nLast-Event-ID: {last_seq}\r\n\r\n"
    )
    assert head.startswith("HTTP/1.1 204 ") and "content-length" not in head.lower(), head
    assert body == b""
    head, _ = await exchange(bridge.port, f"DELETE /runs/{run_id}/events HTTP/1.1\r\n\r\n")
    assert head.startswith("HTTP/1.1 405 ") and "Allow: GET, HEAD, POST, OPTIONS" in head, head


def run_agent_input(**fields: Any) -> bytes:
    """The body AG-UI's HttpAgent (``@ag-ui/client`` 1.0, CopilotKit's transport) POSTs: a
    RunAgentInput with the agent's own thread id and a new run id, random UUIDs both unless
    the app sets them, and the conversation so far."""
    body = {
        "threadId": str(uuid.uuid4()),
        "runId": str(uuid.uuid4()),
        "protocolVersion": "1.0",
        "tools": [],
        "context": [],
        "forwardedProps": {},
        "state": {},
        "messages": [{"id": "m1", "role": "user", "content": "How is the campaign going?"}],
        **fields,
    }
    RunAgentInput.model_validate(body)  # a valid one, as the protocol's models say
    return json.dumps(body).encode()


# HttpAgent's headers (with SseClient's Accept: text/event-stream), from an allowed origin.
HTTP_AGENT = {"Content-Type": "application/json", "Origin": "http://app.example"}


def sse_lines(body: bytes) -> list[bytes]:
    """The ``id:`` and ``data:`` lines of a raw SSE body (no comments, no ``retry:``)."""
    return [line for line in body.split(b"\n") if line.startswith((b"id: ", b"data: "))]


async def test_a_post_as_ag_uis_http_agent_sends_gets_the_stream_a_get_gets(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """AG-UI's own client, HttpAgent, POSTs a RunAgentInput to the run's URL and reads the
    SSE answer: the bridge answered 405, so an AG-UI frontend as written got nothing (found
    by an outside review)."""
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    producer = asyncio.create_task(produce(client, pause=0.01, started=started))
    run_id = await started
    path = f"/runs/{run_id}/events"
    sse = SseClient(bridge.port)
    response = await sse.open(path, method="POST", headers=HTTP_AGENT, body=run_agent_input())
    assert response.status == 200, response
    assert response.headers["access-control-allow-origin"] == "http://app.example"
    posted = []
    while (message := await asyncio.wait_for(sse.next(), 30)) is not None:  # live, to its end
        posted.append(message)
    await sse.close()
    assert await producer == run_id

    got = await asyncio.wait_for(read_all(bridge.port, path), 30)
    assert [(m.id, m.data) for m in posted] == [(m.id, m.data) for m in got]
    # The run is the URL's: the body's thread and run ids, made up by the client, name none.
    first, last = json.loads(posted[0].data), json.loads(posted[-1].data)
    assert (first["type"], first["threadId"], first["runId"]) == ("RUN_STARTED", run_id, run_id)
    assert (last["type"], last["result"]) == ("RUN_FINISHED", {"headlines": 2})

    async def post(body: bytes, last_event_id: str | None = None) -> list[Message]:
        return await asyncio.wait_for(
            read_all(
                bridge.port, path, last_event_id, method="POST", headers=HTTP_AGENT, body=body
            ),
            30,
        )

    # Last-Event-ID resumes a POST as it does a GET (HttpAgent sends none; others may).
    assert await post(run_agent_input(), got[4].id) == got[5:]
    response = await SseClient(bridge.port).open(
        path, method="POST", headers=HTTP_AGENT, body=b"{}", last_event_id=got[-1].id
    )
    assert response.status == 204
    # No input, an empty object, the run's own ids: the same stream.
    for body in (b"", b" {} ", run_agent_input(threadId=run_id, runId=run_id, messages=[])):
        assert await post(body) == got

    # A body sent chunked, by a client that waits for 100 Continue first (curl does).
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    body = run_agent_input()
    for piece in (body[:10], body[10:]):
        writer.write(b"%x;note=1\r\n%s\r\n" % (len(piece), piece))
    writer.write(b"0\r\nX-Trailer: dropped\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, raw = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    expected = [line.encode() for m in got for line in (f"id: {m.id}", f"data: {m.data}")]
    assert sse_lines(raw) == expected


async def test_a_post_body_that_is_not_a_run_agent_input_gets_a_precise_400_or_413(
    client: runstream.Client,
) -> None:
    run_id = await produce(client)
    path = f"/runs/{run_id}/events"
    async with AguiBridge(client, port=0, max_body=1024, head_timeout=0.5) as bridge:

        async def post(body: bytes, **headers: str) -> Response:
            return await SseClient(bridge.port).open(
                path, method="POST", headers={"Content-Type": "application/json", **headers},
                body=body,
            )  # fmt: skip

        not_input = "the body is not AG-UI's RunAgentInput: "
        for body, says in (
            (b"{threadId: 1}", "it is not JSON (Expecting property name enclosed in double "
             "quotes: line 1 column 2 (char 1))"),
            (b"[1, 2]", "it is a JSON array, not an object"),
            (b'"run-1"', "it is a JSON string, not an object"),
            (b"null", "it is a JSON null, not an object"),
            (json.dumps({"threadId": 7, "runId": "r", "messages": "hi"}).encode(),
             "threadId is a JSON number, not a string; messages is a JSON string, not an array"),
            (json.dumps({**json.loads(run_agent_input()), "tools": {"search": {}}}).encode(),
             "tools is a JSON object, not an array"),
        ):  # fmt: skip
            response = await post(body)
            assert (response.status, response.body) == (400, not_input + says + "\n"), body
            assert "text/event-stream" not in response.headers["content-type"]
        response = await post(b"\xff{}")
        assert response.status == 400
        assert response.body.startswith(not_input + "it is not JSON ('utf-8' codec can't decode")

        # Too large: refused by its Content-Length, unread, yet the client that is still
        # sending it gets the answer (the bridge reads and drops the rest before closing;
        # closing on unread bytes resets the connection, and the answer with it).
        response = await post(b" " * (4 << 20))
        assert (response.status, response.body) == (
            413,
            "the request body is 4194304 bytes; the bridge reads at most 1024 (runstream agui "
            "--max-body)\n",
        )
        chunked = f"POST {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        head, body = await exchange(
            bridge.port, chunked + "200\r\n" + "x" * 512 + "\r\n300\r\n" + "y" * 768
        )
        assert head.startswith("HTTP/1.1 413 "), head
        assert b"is at least 1280 bytes; the bridge reads at most 1024" in body

        # Framed two ways, or in a way it does not read, or malformed.
        for headers, status, says in (
            ("Content-Length: 2\r\nTransfer-Encoding: chunked", 400,
             "both Content-Length and Transfer-Encoding"),
            ("Transfer-Encoding: gzip, chunked", 501,
             "Transfer-Encoding 'gzip, chunked': only chunked"),
            ("Content-Length: -2", 400, "Content-Length '-2' is not a number"),
            ("Content-Length: " + "9" * 20, 413, "the request body is " + "9" * 20
             + " bytes; the bridge reads at most 1024 (runstream agui --max-body)"),
        ):  # fmt: skip
            head, body = await exchange(
                bridge.port, f"POST {path} HTTP/1.1\r\n{headers}\r\n\r\n{{}}"
            )
            assert head.startswith(f"HTTP/1.1 {status} "), head
            assert body == (says + "\n").encode()
        head, body = await exchange(bridge.port, chunked + "zz\r\n{}\r\n0\r\n\r\n")
        assert (head[:12], body) == ("HTTP/1.1 400", b"malformed chunk size b'zz'\n")

        # A body that never comes in full: 408 once head_timeout has passed.
        head, body = await exchange(
            bridge.port, f"POST {path} HTTP/1.1\r\nContent-Length: 10\r\n\r\n{{}}"
        )
        assert head.startswith("HTTP/1.1 408 "), head
        assert body == b"no complete request body within 0.5 s\n"


async def test_a_cors_preflight_for_a_post_allows_it_from_an_allowed_origin(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """A browser preflights HttpAgent's POST (its Content-Type, application/json, is not a
    simple one): the answer allowed GET alone, and not Content-Type."""
    run_id = await produce(client)
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,authorization"}  # fmt: skip

    def listed(value: str) -> set[str]:
        return {item.strip().lower() for item in value.split(",")}

    for origin, allowed in (("http://app.example", True), ("http://evil.example", False)):
        response = await SseClient(bridge.port).open(
            f"/runs/{run_id}/events", method="OPTIONS", headers={"Origin": origin, **preflight}
        )
        assert response.status == 204
        cors = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
        if not allowed:
            assert cors == {}
            continue
        assert cors["access-control-allow-origin"] == origin
        assert {"get", "post"} <= listed(cors["access-control-allow-methods"])
        assert {"content-type", "authorization", "last-event-id"} <= listed(
            cors["access-control-allow-headers"]
        )
        # The POST it allowed gets the stream, readable by that origin.
        messages = await read_all(
            bridge.port, f"/runs/{run_id}/events", method="POST",
            headers={"Content-Type": "application/json", "Origin": origin},
            body=run_agent_input(),
        )  # fmt: skip
        assert json.loads(messages[-1].data)["type"] == "RUN_FINISHED"


async def test_origins_given_as_users_copy_them_match_what_browsers_send(
    client: runstream.Client,
) -> None:
    """`--origin http://localhost:3000/`, copied from the address bar, was matched as given:
    the browser's `Origin: http://localhost:3000` never equalled it, and every response was
    blocked by CORS while the bridge said nothing (found in review). Origins are matched as
    browsers send them; what is no origin at all is refused at once."""
    given = ["http://localhost:3000/", "HTTPS://App.Example:443", "http://[::1]:8080/"]
    sent = ["http://localhost:3000", "https://app.example", "http://[::1]:8080"]
    async with AguiBridge(client, port=0, origins=given) as bridge:
        for origin, allowed in [*((origin, True) for origin in sent),
                                ("http://localhost:3001", False)]:  # fmt: skip
            response = await SseClient(bridge.port).open(
                "/runs/any/events", method="OPTIONS", headers={"Origin": origin}
            )
            assert response.status == 204
            assert response.headers.get("access-control-allow-origin") == (
                origin if allowed else None
            ), origin
    for not_an_origin in ("localhost:3000", "http://localhost:3000/app"):
        with pytest.raises(ValueError, match="scheme://host\\[:port\\] with no path"):
            AguiBridge(client, port=0, origins=[not_an_origin])


async def test_resuming_after_an_id_never_sent_is_a_400_not_an_empty_stream(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    # An id inside a group names how many of the group's AG-UI events were seen; one past
    # the group's end was never sent. Resumed after, a finished run's stream would end empty
    # with no id, and EventSource would reconnect with the same id forever.
    run_id = await produce(client)
    path = f"/runs/{run_id}/events"
    ids = [(m.id or "").partition(":") for m in await read_all(bridge.port, path)]
    groups = {int(seq): int(index) for seq, _, index in ids if index}  # seq: its last index
    seq = max(groups)
    index = groups[seq]
    alone = next(int(s) for s, _, _ in ids if int(s) not in groups)  # one AG-UI event only

    for never_sent in (f"{seq}:{index + 1}", f"{seq}:0", f"{alone}:1"):
        response = await SseClient(bridge.port).open(path, last_event_id=never_sent)
        assert response.status == 400, (never_sent, response)
        assert "Last-Event-ID" in response.body
    # The group's last id inside it resumes with the group's last event.
    resumed = await read_all(bridge.port, path, last_event_id=f"{seq}:{index}")
    assert resumed[0].id == str(seq)


async def test_a_run_whose_history_was_purged_is_gone(tmp_path: Path) -> None:
    retention = Retention(runs=1, interval=0.1)
    config = ServerConfig(address="127.0.0.1:0", store_path=tmp_path / "s.db", retention=retention)
    server = RunstreamServer(config)
    await server.start()
    try:
        async with (
            runstream.connect(server.target) as client,
            AguiBridge(client, port=0) as bridge,
        ):
            old = await produce(client)
            await produce(client)  # the newest run keeps its history; the older is purged
            await until(lambda: purged(client, old))
            response = await SseClient(bridge.port).open(f"/runs/{old}/events")
            # 410 ends EventSource's reconnects, where a 200 that breaks off at once would not.
            assert response.status == 410, response
            assert "retention" in response.body
            # A client that has the ended run's last event needs none of them: 204, not 410.
            last = str((await client.get_run(old)).last_seq)
            seen = await SseClient(bridge.port).open(f"/runs/{old}/events", last_event_id=last)
            assert seen.status == 204, seen
    finally:
        await server.stop(grace=0.5)


async def purged(client: runstream.Client, run_id: str) -> bool:
    return (await client.get_run(run_id)).purged_seq > 0


async def test_a_failed_run_closes_its_steps_and_says_failed_before_its_error(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    run = await client.start_run("campaign", steps=["strategy"])
    with contextlib.suppress(RuntimeError):
        async with run, run.step("strategy"):
            await run.text("writer", "m0", "Launch ", step_id="strategy")
            raise RuntimeError("model quota exhausted")
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    events = [json.loads(m.data) for m in messages]
    types = [e["type"] for e in events]
    assert types[-1] == "RUN_ERROR" and "model quota exhausted" in events[-1]["message"]
    ended = types.index("RUN_ERROR")
    assert types.count("STEP_STARTED") == types[:ended].count("STEP_FINISHED") == 1
    assert types.count("TEXT_MESSAGE_START") == types[:ended].count("TEXT_MESSAGE_END") == 1
    state = events[1]["snapshot"]
    for event in events[2:]:
        if event["type"] == "STATE_DELTA":
            apply_patch(state, event["delta"])
    assert (state["status"], state["steps"]["strategy"]["status"]) == ("FAILED", "FAILED")


async def test_a_run_waiting_on_a_decision_says_waiting_for_input(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The server emits no status event for a question; the state's status follows it as
    the server's does: WAITING_FOR_INPUT until the answer, then RUNNING."""
    run = await client.start_run("campaign", steps=["review"])

    async def waiting() -> bool:
        return (await client.get_run(run.run_id)).status.name == "WAITING_FOR_INPUT"

    async with run:
        async with run.step("review"):
            asking = asyncio.create_task(run.ask("Publish?", ["yes", "no"], decision_id="go"))
            await until(waiting)
            await client.submit_decision(run.run_id, "go", "yes")
            assert (await asking).choice == "yes"
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)

    statuses = [state["status"] for state in states(messages)]
    changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert changes == ["PENDING", "RUNNING", "WAITING_FOR_INPUT", "RUNNING", "SUCCEEDED"]


async def test_a_step_that_failed_then_succeeded_on_retry_has_no_error(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    run = await client.start_run("campaign", steps=["flaky"])
    async with run:
        await run.step("flaky").start()
        await run.step("flaky").fail("timeout talking to the model", code="timeout")
        await run.step("flaky").start()
        await run.step("flaky").complete()
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)

    flaky = [state["steps"]["flaky"] for state in states(messages)]
    failed = [step for step in flaky if step["status"] == "FAILED"]
    assert failed and failed[-1]["error"] == "timeout talking to the model"
    assert flaky[-1] == {"name": "flaky", "status": "SUCCEEDED", "percent": 100.0, "metrics": {}}


async def test_a_step_started_again_while_open_has_one_step_started(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """A step started twice (a producer restarted under it counts another attempt) gave two
    STEP_STARTED for one open step, which AG-UI's client checker refuses ("Step is already
    active"; found in review)."""
    run = await client.start_run("campaign", steps=["a"])
    async with run:
        await run.start_step("a")
        await run.start_step("a")
        await run.step("a").complete()
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    steps = [
        (e["type"], e["stepName"])
        for e in (json.loads(m.data) for m in messages)
        if e["type"] in ("STEP_STARTED", "STEP_FINISHED")
    ]
    assert steps == [("STEP_STARTED", "a"), ("STEP_FINISHED", "a")]


async def test_the_percent_of_a_run_without_steps_follows_its_items(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The server's percent of a run with no planned steps comes from run.items(); the
    state's stayed 0 until the run ended (found in review)."""
    run = await client.start_run("discovery")
    async with run:
        await run.items(5, 10, unit="companies")
        await run.flush()
        snapshot = await client.get_run(run.run_id)
        await run.items(8, 10, unit="companies")
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    percents = [state["percent"] for state in states(messages)]
    changes = [p for i, p in enumerate(percents) if i == 0 or p != percents[i - 1]]
    assert snapshot.progress.percent == 50.0
    assert changes == [0.0, 50.0, 80.0, 100.0]


async def test_the_current_step_is_the_servers_as_steps_end(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The state kept its last started step as current after every step had ended; the
    server's moves to the latest-started step still running, else none (found in review)."""
    run = await client.start_run("campaign", steps=["a", "b"])
    async with run:
        await run.start_step("a")
        await run.start_step("b")
        await run.step("b").complete()
        await run.flush()
        middle = (await client.get_run(run.run_id)).current_step_id
        await run.step("a").complete()
        await run.flush()
        last = (await client.get_run(run.run_id)).current_step_id
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)
    current = [state["currentStep"] for state in states(messages)]
    changes = [c for i, c in enumerate(current) if i == 0 or c != current[i - 1]]
    assert (middle, last) == ("a", "")
    assert changes == ["", "a", "b", "a", ""]


async def test_the_state_says_why_the_run_is_not_healthy(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """The state had ``health`` alone: a frontend showing FAILING could not say why without
    reading the events itself. ``healthReason`` follows the run's ``health_reason``: the
    server's reason while not HEALTHY, empty once healthy again."""
    run = await client.start_run("campaign", steps=["flaky"])
    async with run:
        await run.step("flaky").start()
        await run.step("flaky").fail("timeout talking to the model", code="timeout")
        await run.step("flaky").start()
        await run.step("flaky").complete()
        await run.complete()
    messages = await asyncio.wait_for(read_all(bridge.port, f"/runs/{run.run_id}/events"), 30)

    seen = [(state["health"], state["healthReason"]) for state in states(messages)]
    troubled = list(dict.fromkeys(reason for health, reason in seen if health != "HEALTHY"))
    assert troubled == [
        "step flaky failed: timeout talking to the model",
        "step flaky retried (attempt 2)",
    ], seen
    assert seen[-1] == ("HEALTHY", "")
    stored = await client.get_run(run.run_id)
    assert (stored.health.name, stored.health_reason) == seen[-1]


async def test_a_runstream_server_out_of_reach_is_a_503_not_a_dropped_connection(
    server: RunstreamServer,
) -> None:
    async with (
        runstream.connect(server.target, reconnect_timeout=0.5) as client,
        AguiBridge(client, port=0) as bridge,
    ):
        await server.stop(grace=0)
        response = await SseClient(bridge.port).open("/runs/any-run/events")
    assert response.status == 503
    assert "Runstream server" in response.body and response.headers["retry-after"] == "1"


async def test_a_client_that_never_finishes_its_request_gets_a_408(
    client: runstream.Client,
) -> None:
    async with AguiBridge(client, port=0, head_timeout=0.3) as bridge:
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(b"GET /runs/any/events HTTP/1.1\r\nHost: x\r\n")  # no blank line
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_an_idle_stream_gets_keepalive_comments(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    run = await client.start_run("quiet")
    async with run:
        sse = SseClient(bridge.port)
        assert (await sse.open(f"/runs/{run.run_id}/events")).status == 200
        seen = [await sse.next(), await sse.next()]  # RUN_STARTED, STATE_SNAPSHOT
        assert [json.loads(m.data)["type"] for m in seen if m] == ["RUN_STARTED", "STATE_SNAPSHOT"]
        # Then silence (after the RUN_STARTED delta): the stream carries keepalive comments.
        assert sse.reader is not None
        lines = []
        while not lines or not lines[-1].startswith(b":"):
            lines.append(await asyncio.wait_for(sse.reader.readline(), 30))
        assert lines[-1] == b": keepalive\n"
        await sse.close()
        await run.complete()


async def test_bytes_a_client_sends_after_its_request_are_dropped_not_kept(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    # A client has nothing to send after its request; one that sends anyway (64 MiB here,
    # without end for an attacker) must not make the bridge hold it all until it hangs up.
    run = await client.start_run("campaign")
    sse = SseClient(bridge.port)
    assert (await sse.open(f"/runs/{run.run_id}/events")).status == 200
    assert sse.writer is not None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(64):
            sse.writer.write(b"x" * (1 << 20))
            await sse.writer.drain()
        await asyncio.sleep(0.5)  # the bridge reads what the sockets still hold
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 16 << 20, f"the bridge holds {held >> 20} MiB of what the client sent"
    # The stream goes on, and ends with the run.
    await run.complete()
    types = []
    while (message := await asyncio.wait_for(sse.next(), 30)) is not None:
        types.append(json.loads(message.data)["type"])
    assert types[-1] == "RUN_FINISHED"
    await sse.close()


async def test_a_host_that_is_not_this_machine_or_allowed_gets_403_against_dns_rebinding(
    client: runstream.Client, bridge: AguiBridge
) -> None:
    """A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding) is
    same-origin to the bridge in a visitor's browser: it read every run the bridge's token
    may read, its requests saying only `Host: evil.example` (found in review)."""
    run_id = await produce(client)

    async def head_for(port: int, host: str) -> str:
        request = f"GET /runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n"
        head, body = await exchange(port, request)
        return head if head.startswith("HTTP/1.1 200 ") else f"{head} {body.decode()}"

    port = bridge.port
    # A port that is no port is no Host of this machine either (not "localhost", "::1").
    for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example", "[::1",
                 "localhost:evil", "[::1]evil"):  # fmt: skip
        answer = await head_for(port, host)
        assert answer.startswith("HTTP/1.1 403 "), (host, answer)
        assert "--allowed-host" in answer and "RUN_STARTED" not in answer, answer
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
                 "app.localhost", "10.1.2.3"):  # fmt: skip
        assert (await head_for(port, host)).startswith("HTTP/1.1 200 "), host

    # As proxies and certificates spell them too: with a port, *. for a wildcard.
    names = ["agui.example.com:443", "*.corp.example"]
    proxied = AguiBridge(client, port=0, allowed_hosts=names)
    async with proxied:
        for host, allowed in (
            ("agui.example.com:443", True),
            ("AGUI.example.com", True),
            ("corp.example", True),
            ("runs.corp.example", True),
            ("example.com", False),
            ("badcorp.example", False),
        ):
            answer = await head_for(proxied.port, host)
            assert answer.startswith("HTTP/1.1 200 " if allowed else "HTTP/1.1 403 "), host
    async with AguiBridge(client, port=0, allowed_hosts=["*"]) as anyone:
        assert (await head_for(anyone.port, "evil.example")).startswith("HTTP/1.1 200 ")
    # A URL is no Host: taken as given it matched nothing, and every request got 403.
    with pytest.raises(ValueError, match="an allowed host is a name or an IP address"):
        AguiBridge(client, port=0, allowed_hosts=["https://agui.example.com"])


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no dual-stack IPv6 here")
async def test_a_bridge_on_every_ipv6_address_serves_ipv4_clients_too(
    client: runstream.Client,
) -> None:
    """`runstream agui --address [::]:8090` listened for IPv6 alone (asyncio's binding of
    ::): every IPv4 client, 127.0.0.1 included, was refused, where `runstream serve` on
    [::] takes both (found in review)."""
    async with AguiBridge(client, host="::", port=0) as bridge:
        for address in ("127.0.0.1", "::1"):
            reader, writer = await asyncio.open_connection(address, bridge.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 "), (address, answer)


async def test_one_client_address_cannot_take_every_stream_the_bridges_token_may_watch(
    client: runstream.Client,
) -> None:
    """Each stream holds one of the server's watch streams for the bridge's one token, which
    allows 200: 200 idle connections of one client took them all, and every other frontend
    got 200 OK and nothing (found in review). The bridge serves 20 streams to one address by
    default, far fewer in all than the server allows it; beyond that, 503 with Retry-After."""
    run = await client.start_run("campaign")
    await run.flush()
    path = f"/runs/{run.run_id}/events"
    held: list[SseClient] = []

    async def stream(port: int, source: str) -> Response:
        sse = SseClient(port, source=source)
        response = await sse.open(path)
        if response.status == 200:
            held.append(sse)
            message = await asyncio.wait_for(sse.next(), 30)
            assert message is not None and json.loads(message.data)["type"] == "RUN_STARTED"
        return response

    try:
        async with AguiBridge(client, port=0) as bridge:
            for _ in range(20):
                assert (await stream(bridge.port, "127.0.0.1")).status == 200
            refused = await stream(bridge.port, "127.0.0.1")
            assert refused.status == 503, refused
            assert refused.headers["retry-after"] == "5"
            assert "20 streams are open from 127.0.0.1" in refused.body
            assert "--max-streams-per-address" in refused.body
            assert (await stream(bridge.port, "127.0.0.2")).status == 200  # another client
        for sse in held:
            await sse.close()
        held.clear()

        async with AguiBridge(client, port=0, max_streams=2, max_streams_per_address=1) as small:
            assert (await stream(small.port, "127.0.0.1")).status == 200
            assert (await stream(small.port, "127.0.0.2")).status == 200
            full = await stream(small.port, "127.0.0.3")
            assert full.status == 503 and "(runstream agui --max-streams)" in full.body, full
            await held.pop(0).close()  # a stream that ends gives its place back

            async def served() -> bool:
                response = await stream(small.port, "127.0.0.3")
                return response.status == 200

            await until(served, within=10)
            # A POST holds a place while its body comes: bodies in flight are bounded too.
            await held.pop(0).close()  # 127.0.0.2 leaves

            async def place_free() -> bool:
                head, _ = await exchange(
                    small.port, f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                )
                return head.startswith("HTTP/1.1 200 ")

            await until(place_free, within=10)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", small.port, local_addr=("127.0.0.4", 0)
            )
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{{".encode()
            )  # one byte of its body of two
            await writer.drain()
            waiting = await stream(small.port, "127.0.0.5")
            assert waiting.status == 503 and "--max-streams)" in waiting.body, waiting
            writer.write(b"}")
            answer = b""
            while b"RUN_STARTED" not in answer:
                chunk = await asyncio.wait_for(reader.read(4096), 30)
                assert chunk, f"the POST's stream ended: {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            writer.close()
    finally:
        for sse in held:
            await sse.close()
        await run.close()


def viewers(client: runstream.Client, run_id: str, expected: int) -> Callable[[], Awaitable[bool]]:
    """Whether the run has ``expected`` watchers (each bridge stream holds one), for until()."""

    async def check() -> bool:
        return (await client.get_run(run_id)).viewer_count == expected

    return check


async def stalled_client(port: int, path: str) -> socket.socket:
    """A client that asks for ``path``'s stream and then reads none of it, offering a small
    window (a laptop closed without a FIN, a stuck proxy). The caller closes it."""
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: its window
    stuck.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(stuck, ("127.0.0.1", port))
        await loop.sock_sendall(stuck, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    except BaseException:
        stuck.close()
        raise
    return stuck


STALLING_TEXTS = 100
"""Texts of 60,000 characters, 6 MB: more than the sockets' buffers and the bridge's hold."""


async def report_stalling_texts(run: runstream.Run) -> None:
    for _ in range(STALLING_TEXTS):
        await run.text("writer", "m", "x" * 60_000)
    await run.flush()


async def test_a_client_that_stops_reading_loses_its_stream_not_the_other_clients_theirs(
    client: runstream.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stopped reading its stream (a laptop closed without a FIN, a stuck
    proxy) kept its place, and the server's watch behind it, until the kernel gave up on the
    connection, about 15 minutes: a few of them shut every other browser out (found in
    review). A write it has not taken within the send timeout resets its connection."""
    run = await client.start_run("campaign")
    await run.flush()
    path = f"/runs/{run.run_id}/events"
    caplog.set_level(logging.WARNING, logger="runstream.agui")
    async with AguiBridge(client, port=0, max_streams=1, send_timeout=0.5) as bridge:
        stuck = await stalled_client(bridge.port, path)
        try:
            await until(viewers(client, run.run_id, 1), within=10)
            await report_stalling_texts(run)
            await until(viewers(client, run.run_id, 0), within=10)  # its watch has ended

            # Its place is free: another client gets the stream, every event of it.
            await run.complete()
            messages = await asyncio.wait_for(read_all(bridge.port, path), 30)
            types = [json.loads(m.data)["type"] for m in messages]
            assert types.count("TEXT_MESSAGE_CONTENT") == STALLING_TEXTS
            assert types[-1] == "RUN_FINISHED"

            # The stuck client's connection was reset, not left to end with the run.
            loop = asyncio.get_running_loop()
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                async with asyncio.timeout(10):
                    while chunk := await loop.sock_recv(stuck, 1 << 16):
                        answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"RUN_FINISHED" not in answer
        finally:
            stuck.close()
            await run.close()
    said = [r.getMessage() for r in caplog.records if r.name == "runstream.agui"]
    assert len(said) == 1, said
    assert run.run_id in said[0] and "127.0.0.1" in said[0] and "--send-timeout" in said[0]


def test_a_client_whose_network_went_away_gives_back_its_stream_on_a_quiet_run(
    tmp_path: Path,
) -> None:
    """A client gone without a word (a laptop closed, its Wi-Fi lost) acknowledges nothing;
    on a quiet run the bridge sends it keepalives only, which never fill a buffer, so no send
    stalled and the kernel kept the connection, and the stream's place and watch, for some
    15 minutes of retries. Once what the bridge sent waited the send timeout unacknowledged,
    the connection ends. Run in a network namespace of its own, whose loopback is taken down
    under the connection (root only)."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare -n (root) to take a network away from a connection")
    script = "tests.clients.integrations.dead_peer"
    result = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", script, str(tmp_path), "1"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=Path(__file__).parents[3],
    )
    assert result.returncode == 0, result.stderr
    said, seconds = result.stdout.rsplit(" after ", 1)
    assert said == "ended", result.stdout
    assert float(seconds.split()[0]) < 5, result.stdout  # keepalive 0.2 s + send timeout 1 s


async def test_a_stop_does_not_wait_for_ever_on_a_client_that_stopped_reading(
    client: runstream.Client,
) -> None:
    """A stop closed each connection and waited for its client to take what it still held:
    one that had stopped reading, caught before its send timeout, made ``runstream agui``
    hang on SIGTERM for good. That wait is bounded by the send timeout too, then the
    connection is reset."""
    run = await client.start_run("campaign")
    await run.flush()
    bridge = AguiBridge(client, port=0, send_timeout=2)
    await bridge.start()
    stuck = await stalled_client(bridge.port, f"/runs/{run.run_id}/events")
    try:
        await until(viewers(client, run.run_id, 1), within=10)
        await report_stalling_texts(run)
        await asyncio.sleep(0.5)  # the bridge has filled the buffers, and waits to send more
        async with asyncio.timeout(10):
            await bridge.stop()
    finally:
        stuck.close()
        await bridge.stop()
        await run.close()


@contextlib.asynccontextmanager
async def agui_command(
    target: str, *options: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`runstream agui --target TARGET OPTIONS` in a subprocess, and the line it prints once
    it serves; killed on the way out unless it has ended."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runstream.cli.main", "agui", "--target", target, *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc, (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def served_port(line: str) -> int:
    """The port in the command's ``AG-UI bridge for TARGET: URL`` line."""
    return int(line.rsplit(":", 1)[1].split("/")[0])


async def stderr_after_sigterm(proc: asyncio.subprocess.Process) -> str:
    """What the command said on stderr, its whitespace folded, once SIGTERM stopped it."""
    proc.send_signal(signal.SIGTERM)
    _, errors = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, errors
    return " ".join(errors.decode().split())


async def test_runstream_agui_command_serves_until_sigterm(
    client: runstream.Client, server: RunstreamServer
) -> None:
    run_id = await produce(client)
    # A send timeout past 24.8 days overflowed TCP_USER_TIMEOUT's milliseconds: every
    # connection ended unanswered, with a traceback (found in review).
    options = ["--address", "127.0.0.1:0", "--max-body", "4096", "--send-timeout", "30d",
               "--allowed-host", "agui.example.com", "--max-streams-per-address", "1"]  # fmt: skip
    async with agui_command(server.target, *options) as (proc, line):
        assert line.startswith(f"AG-UI bridge for {server.target}: http://127.0.0.1:"), line
        port = served_port(line)
        messages = await asyncio.wait_for(read_all(port, f"/runs/{run_id}/events"), 30)
        assert json.loads(messages[-1].data)["type"] == "RUN_FINISHED"
        posted = await asyncio.wait_for(
            read_all(port, f"/runs/{run_id}/events", method="POST", body=run_agent_input()), 30
        )
        assert posted == messages
        response = await SseClient(port).open(
            f"/runs/{run_id}/events", method="POST", body=b" " * 5000
        )
        assert response.status == 413 and "the bridge reads at most 4096" in response.body
        for host, status in (("agui.example.com", "200"), ("evil.example", "403")):
            request = f"HEAD /runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\n\r\n"
            head, _ = await exchange(port, request)
            assert head.startswith(f"HTTP/1.1 {status} "), (host, head)
        # A POST whose body is on its way holds this address's one place.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /runs/{run_id}/events HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Length: 2\r\n\r\n{".encode()
        )

        async def refused() -> bool:
            request = f"HEAD /runs/{run_id}/events HTTP/1.1\r\nHost: localhost\r\n\r\n"
            head, _ = await exchange(port, request)
            return head.startswith("HTTP/1.1 503 ") and "Retry-After: 5" in head

        await until(refused, within=10)
        writer.close()
        await stderr_after_sigterm(proc)


async def test_the_agui_commands_send_timeout_frees_the_place_of_a_client_that_stops_reading(
    client: runstream.Client, server: RunstreamServer
) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    options = ["--address", "127.0.0.1:0", "--send-timeout", "0.5"]
    try:
        async with agui_command(server.target, *options) as (proc, line):
            stuck = await stalled_client(served_port(line), f"/runs/{run.run_id}/events")
            try:
                await until(viewers(client, run.run_id, 1), within=10)
                await report_stalling_texts(run)
                await until(viewers(client, run.run_id, 0), within=10)
            finally:
                stuck.close()
            said = await stderr_after_sigterm(proc)
    finally:
        await run.close()
    assert f"AG-UI stream of run {run.run_id!r} to 127.0.0.1 reset" in said, said


@pytest.mark.parametrize(("address", "warned"), [("127.0.0.1:0", False), ("0.0.0.0:0", True)])
async def test_the_agui_command_warns_when_it_listens_beyond_this_machine(
    server: RunstreamServer, address: str, warned: bool
) -> None:
    """The bridge authenticates nobody: on any interface it served the runs its token may
    read to whoever reached it without a word, where `serve` refuses the same exposure
    without --insecure-no-auth (found in review)."""
    async with agui_command(server.target, "--address", address) as (proc, _):
        said = await stderr_after_sigterm(proc)
    assert ("authenticates nobody" in said) is warned, said


@pytest.mark.parametrize(
    ("host", "called_on"),
    [("::1", "::1"), ("::", "::1"), ("0::0", "::1"), ("0", "127.0.0.1"), ("", "127.0.0.1")],
)
async def test_a_bridge_on_ipv6_or_every_address_gives_a_url_that_parses_and_opens(
    client: runstream.Client, host: str, called_on: str
) -> None:
    """``runstream agui --address [::1]:8090`` prints ``bridge.url()``: an IPv6 host must be
    in brackets (RFC 3986; curl and browsers refuse it bare) and the wildcard on loopback;
    ``--address 0:8090`` (0 is 0.0.0.0 to the resolver) printed http://0:8090/..., which
    browsers do not open (found in review)."""
    run_id = await produce(client)
    async with AguiBridge(client, host=host, port=0) as bridge:
        url = bridge.url(run_id)
        parsed = urllib.parse.urlsplit(url)
        assert (parsed.hostname, parsed.port) == (called_on, bridge.port)

        def read() -> list[str]:
            with urllib.request.urlopen(url, timeout=10) as stream:
                return [line.decode() for line in stream if line.startswith(b"data: ")]

        lines = await asyncio.to_thread(read)
        if host in ("", "::") and socket.has_dualstack_ipv6():
            # Every interface is one port for both families: on "" asyncio bound a socket per
            # family, each on a port of its own, and the URL's one reached no bridge at random.
            for loopback in ("127.0.0.1", "::1"):
                socket.create_connection((loopback, bridge.port), timeout=10).close()

    types = [AGUI_EVENT.validate_json(line.removeprefix("data: ")).type.value for line in lines]
    assert types[0] == "RUN_STARTED"
    assert types[-1] == "RUN_FINISHED"


def _newer_kind_event(seq: int) -> runstream.Event:
    """An event of a kind this SDK does not know, as it reaches a client of a newer server:
    a RunEvent whose payload is field 48 (in the payload range, unknown to these protos),
    parsed and converted as the SDK does: EventKind.UNSPECIFIED, payload None."""
    known = event_pb2.RunEvent(run_id="r", seq=seq)
    known.event_time.GetCurrentTime()
    # Field 48, length-delimited (tag 48 << 3 | 2 = 0x182): a message {1: "usd"}.
    wire = known.SerializeToString() + b"\x82\x03\x05\x0a\x03usd"
    message = event_pb2.RunEvent.FromString(wire)
    assert message.WhichOneof("payload") is None
    assert message.SerializeToString() == wire  # the unknown field is kept, not dropped
    event = event_from_pb(message)
    assert (event.kind, event.payload, event.seq) == (runstream.EventKind.UNSPECIFIED, None, seq)
    return event


def _known_events() -> list[runstream.Event]:
    """Seq 1 RunCreated, 3 Alert, 4 RunCompleted (seq 2 is left for a newer kind)."""
    created = event_pb2.RunEvent(run_id="r", seq=1)
    created.run_created.workflow = "w"
    alert = event_pb2.RunEvent(run_id="r", seq=3)
    alert.alert.message = "slow"
    completed = event_pb2.RunEvent(run_id="r", seq=4)
    completed.run_completed.summary = "done"
    for message in (created, alert, completed):
        message.event_time.GetCurrentTime()
    return [event_from_pb(message) for message in (created, alert, completed)]


def test_an_event_of_a_kind_the_sdk_does_not_know_is_skipped() -> None:
    """The proto asks a client that meets an unknown payload to skip the event; the bridge
    sent a contentless CUSTOM "runstream.unspecified" for each (review-newkind #4)."""
    created, alert, completed = _known_events()
    translator = AguiTranslator("r")
    assert [e.type.value for e in translator.translate(created)] == [
        "RUN_STARTED",
        "STATE_SNAPSHOT",
    ]
    state = copy.deepcopy(translator.state)
    assert translator.translate(_newer_kind_event(2)) == []
    assert translator.state == state
    assert [(e.type.value, e.name) for e in translator.translate(alert)] == [
        ("CUSTOM", "runstream.alert")
    ]
    assert translator.translate(completed)[-1].type.value == "RUN_FINISHED"


class _Events:
    """What the bridge asks of a Client, for a finished run's fixed events."""

    def __init__(self, events: list[runstream.Event]) -> None:
        self._events = events

    async def get_run(self, run_id: str) -> runstream.Run:
        return run_from_pb(
            run_pb2.Run(
                run_id=run_id,
                last_seq=self._events[-1].seq,
                status=run_pb2.RUN_STATUS_SUCCEEDED,
            )
        )

    async def _all(self) -> AsyncIterator[runstream.Event]:
        for event in self._events:
            yield event

    def list_events(self, run_id: str) -> AsyncIterator[runstream.Event]:
        return self._all()

    async def list_events_page(
        self, run_id: str, *, page_size: int, after_seq: int
    ) -> tuple[list[runstream.Event], str]:
        """The bridge's check that its token may read the events (WatchRun's role)."""
        return [e for e in self._events if e.seq > after_seq][:page_size], ""

    def watch(self, run_id: str, *, on_link: object = None) -> AsyncIterator[runstream.Event]:
        return self._all()  # never tells on_link: the bridge's stream begins at its first event


async def test_a_newer_kind_sends_no_message_and_resuming_around_it_works() -> None:
    """The stream of a run with a newer kind at seq 2: no message with id 2, and a client
    that resumes after 1, or after 2 (an id an older bridge sent for it), gets seq 3 on."""
    created, alert, completed = _known_events()
    fake = cast(runstream.Client, _Events([created, _newer_kind_event(2), alert, completed]))
    async with AguiBridge(fake, port=0) as serving:
        messages = await asyncio.wait_for(read_all(serving.port, "/runs/r/events"), 30)
        ids = [m.id for m in messages]
        assert ids[:3] == ["1:1", "1", "3"]
        assert not any("unspecified" in m.data or (m.id or "").startswith("2") for m in messages)
        for after in ("1", "2"):
            resumed = await asyncio.wait_for(read_all(serving.port, "/runs/r/events", after), 30)
            assert [(m.id, m.data) for m in resumed] == [(m.id, m.data) for m in messages[2:]]
