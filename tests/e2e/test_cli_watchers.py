"""The terminal for the people who watch: JSON for scripts, help when bare, `localhost` as a
target, every agent's text at once, a decision's context, a lost connection said within 2.5
heartbeats with the ETA standing still, a compact layout at 80x24, and the demo's first
minutes (a busy port, commands that work)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import runstream
from rich.console import Console
from runstream.cli.args import target_address
from runstream.cli.main import build_parser, main
from runstream.cli.render import LOST_AFTER, Dashboard, SnapshotRefresher
from runstream.cli.tables import run_details, runs_table, show_events, watch_runs
from runstream.cli.view import RunView
from runstream.cli.view_items import OpenPrompt
from runstream.v1 import event_pb2, run_pb2
from runstream_server.app import RunstreamServer

from tests.clients.support import question
from tests.conftest import ServerProcess, free_port
from tests.e2e.test_cli import demo_on, runstream_cli


def test_bare_runstream_prints_help() -> None:
    result = runstream_cli()
    assert result.returncode == 0, result.stderr
    assert "usage: runstream" in result.stdout
    for command in ("demo", "watch", "runs", "get", "dashboard"):
        assert command in result.stdout


def test_each_option_says_its_default_once_in_help() -> None:
    """`--reconnect-timeout` read "(default: 60; 0: for ever) (default: 60.0)", and `--by`
    "(default: $RUNSTREAM_USER or your login) (default: root)"."""
    commands = next(
        action.choices
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    for name, command in commands.items():
        text = " ".join(command.format_help().split())
        assert not re.search(r"\(default:[^)]*\) \(default:", text), (name, text)


async def test_the_live_runs_table_says_it_is_connecting_until_the_server_answers() -> None:
    """It read "Runs all · 0 · live" over "No runs yet" while no server was reachable."""

    class Unreachable:
        async def watch_runs(
            self, filter: str, *, initial_ended_limit: int | None = None
        ) -> AsyncIterator[runstream.RunsUpdate]:
            await asyncio.Event().wait()  # the SDK keeps reconnecting, and yields nothing
            yield runstream.RunsUpdate(runs=(), initial=True)

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    watching = asyncio.create_task(
        watch_runs(Unreachable(), console, filter="", ended_limit=20, live=True)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.2)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    shown = screen.getvalue()
    assert "connecting…" in shown and "Waiting for the server" in shown, shown
    assert "live" not in shown and "No runs yet" not in shown, shown


def test_a_target_without_a_port_means_runstreams_port() -> None:
    assert target_address("localhost") == "localhost:50051"
    assert target_address("localhost:9000") == "localhost:9000"
    assert target_address("10.0.0.5") == "10.0.0.5:50051"
    assert target_address("[::1]") == "[::1]:50051"
    assert target_address("::1") == "[::1]:50051"
    assert target_address("unix:/tmp/rs.sock") == "unix:/tmp/rs.sock"
    args = build_parser().parse_args(["runs", "--target", "localhost"])
    assert args.target == "localhost:50051"
    bad = runstream_cli("runs", "--target", "localhost:http")
    assert bad.returncode == 2 and "not a port" in bad.stderr
    for wrong, says in (
        ("a:b:c", "neither HOST:PORT nor an IPv6 address"),
        ("http://127.0.0.1:50051", "http:// is not a gRPC address"),
        ("bad target", "has a space"),
        (":52200", "has no host"),  # was tried for 5 s, then "host must not be empty"
        (":", "has no host"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            target_address(wrong)
    assert target_address("dns:///localhost:9000") == "dns:///localhost:9000"


def test_json_for_scripts_on_runs_get_steps_events_and_decisions(
    server_process: ServerProcess,
) -> None:
    run_id = demo_on(server_process)
    target = ("--target", server_process.target, "--json")

    def parsed(*args: str) -> object:
        result = runstream_cli(*args, *target)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    runs = parsed("runs")
    assert isinstance(runs, list)
    [ours] = [run for run in runs if run["run_id"] == run_id]
    assert ours["status"] == "RUN_STATUS_SUCCEEDED" and "steps" not in ours
    got = parsed("get", run_id)
    assert isinstance(got, dict)
    assert got["run"]["run_id"] == run_id and got["run"]["progress"]["percent"] == 100
    assert len(got["run"]["steps"]) == 17
    assert got["recent_activity"] and got["open_decisions"] == []
    steps = parsed("steps", run_id)
    assert isinstance(steps, list) and len(steps) == 17
    assert steps[0]["description"] and steps[0]["status"] == "STEP_STATUS_SUCCEEDED"
    events = parsed("events", run_id, "--kinds", "milestone", "--limit", "3")
    assert isinstance(events, list) and len(events) == 3
    assert all("milestone" in event and event["seq"] for event in events)
    decisions = parsed("decisions", run_id)
    assert isinstance(decisions, list)
    assert decisions[0]["decision_id"] == "persona-priority"
    assert decisions[0]["outcome"] == "DECISION_OUTCOME_DEFAULTED"


def test_get_and_steps_show_what_each_step_does(server_process: ServerProcess) -> None:
    run_id = demo_on(server_process)
    steps = runstream_cli("steps", run_id, "--target", server_process.target)
    assert steps.returncode == 0, steps.stderr
    assert "Developing campaign strategy" in steps.stdout or "strategy" in steps.stdout.lower()
    # Every step's description from the plan is in the table.
    described = runstream_cli("steps", run_id, "--target", server_process.target, "--json")
    descriptions = [s["description"] for s in json.loads(described.stdout)]
    shown = " ".join(steps.stdout.split())
    assert all(" ".join(d.split())[:20] in shown for d in descriptions)


# --- the live view, drawn as a terminal of a given size shows it ----------------------------


def snapshot(**fields: object) -> runstream.Run:
    fields.setdefault("status", run_pb2.RUN_STATUS_RUNNING)
    fields.setdefault("health", run_pb2.RUN_HEALTH_HEALTHY)
    run = run_pb2.Run(
        run_id="r1",
        workflow="campaign-generator",
        display_name="Spring launch",
        **fields,  # type: ignore[arg-type]
    )
    run.start_time.FromDatetime(datetime.now(UTC) - timedelta(minutes=2))
    for i in range(17):
        status = run_pb2.STEP_STATUS_SUCCEEDED if i < 8 else run_pb2.STEP_STATUS_PENDING
        if i == 8:
            status = run_pb2.STEP_STATUS_RUNNING
        run.steps.add(step_id=f"s{i}", name=f"Step {i}", status=status, percent=40 if i == 8 else 0)
    run.progress.percent = 49
    run.progress.completed_steps = 8
    run.progress.total_steps = 17
    run.metrics.update({"impressions": 10500, "clicks": 525})
    run.metric_changes["impressions"] = 500
    run.metric_units["ctr_pct"] = "%"
    run.metrics["ctr_pct"] = 5.0
    return runstream._convert.run_from_pb(run)


def event(seq: int, **payload: object) -> runstream.Event:
    message = event_pb2.RunEvent(run_id="r1", seq=seq, **payload)  # type: ignore[arg-type]
    message.event_time.GetCurrentTime()
    return runstream._convert.event_from_pb(message)


def open_prompt(**fields: Any) -> OpenPrompt:
    """An open question as the terminal holds it: "Which persona first?", options a and b
    (a the default), no deadline, unless ``fields`` say otherwise."""
    defaults: dict[str, Any] = {
        "decision_id": "persona",
        "prompt": "Which persona first?",
        "options": (runstream.DecisionOption("a"), runstream.DecisionOption("b")),
        "default_option": "a",
        "can_skip": False,
        "deadline": None,
        "context": {},
    }
    return OpenPrompt(**{**defaults, **fields})


def draw(view: RunView, width: int, height: int) -> str:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(Dashboard(view))
    return console.export_text()


def test_every_agent_writing_at_once_is_visible() -> None:
    view = RunView.from_snapshot(snapshot())
    for seq, (agent, text) in enumerate(
        [("copywriter", "Launch faster with Runstream"), ("designer", "Hero banner: a trail")],
        start=100,
    ):
        view.apply(
            event(seq, text_delta=event_pb2.TextDelta(agent_id=agent, message_id=agent, delta=text))
        )
    for width, height in ((160, 50), (80, 24)):
        screen = draw(view, width, height)
        assert "copywriter" in screen and "designer" in screen, screen
        assert "Launch faster" in screen and "Hero banner" in screen, screen


def test_what_agents_left_unfinished_when_the_run_ended_is_not_still_being_written() -> None:
    """The last frame of a run cancelled while two agents wrote said "2 writing", each with a
    blinking cursor, and stayed on screen after the command exited (found in review)."""
    view = RunView.from_snapshot(snapshot())
    for seq, agent in enumerate(("writer-0", "writer-1"), start=100):
        delta = event_pb2.TextDelta(agent_id=agent, message_id=agent, delta="Once upon")
        view.apply(event(seq, text_delta=delta))
    assert "2 writing" in draw(view, 160, 50)
    view.run = dataclasses.replace(view.run, status=runstream.RunStatus.CANCELLED)  # its end
    for width, height in ((160, 50), (80, 24)):
        screen = draw(view, width, height)
        assert "writing" not in screen and "▌" not in screen, screen
    assert "writer-1 · cut off" in draw(view, 160, 50)


def test_six_agents_writing_are_counted_also_when_four_are_shown() -> None:
    view = RunView.from_snapshot(snapshot())
    for seq, n in enumerate(range(6), start=100):
        delta = event_pb2.TextDelta(agent_id=f"judge-{n}", message_id=f"m{n}", delta="scoring")
        view.apply(event(seq, text_delta=delta))
    screen = draw(view, 160, 50)
    assert "Agent output · 6 writing, 4 shown" in screen, screen
    assert sum(f"judge-{n} · writing" in screen for n in range(6)) == 4


def test_long_step_names_leave_each_steps_icon_percent_and_time_on_screen() -> None:
    """Step names as an LLM plans them (about 75 characters) pushed the status icon, the
    percent and the time out of the live view's step rows at 160 columns and more."""
    run = snapshot()
    steps = []
    for index, step in enumerate(run.steps[:4]):
        name = f"Step {index}: collect competitor pricing pages and extract their plan tiers"
        steps.append(dataclasses.replace(step, name=name))
    view = RunView.from_snapshot(dataclasses.replace(run, steps=steps))
    view.steps["s3"].status, view.steps["s3"].percent = "RUNNING", 40.0
    view.steps["s2"].status = "FAILED"
    for width in (160, 200):
        rows = [line for line in draw(view, width, 50).splitlines() if "Step " in line]
        assert len(rows) == 4, rows
        assert "✔" in rows[0] and "✖" in rows[2], rows
        assert "40%" in rows[3], rows
        assert "…" in rows[0], rows  # the name gives way, not the columns after it


def test_step_completions_replayed_from_before_the_snapshot_carry_no_count() -> None:
    """`watch --kinds step_completed` and `--from-seq N` replay completions older than the
    snapshot the view starts from: each said the snapshot's count, "(8/17)", for every one."""
    view = RunView.from_snapshot(dataclasses.replace(snapshot(), last_seq=50))
    older = view.apply(event(10, step_completed=event_pb2.StepCompleted(step_id="s0")))
    assert older is not None and older.text.startswith("Step 0 done"), older
    assert "/17)" not in older.text, older.text
    newer = view.apply(event(60, step_completed=event_pb2.StepCompleted(step_id="s8")))
    assert newer is not None and "(9/17)" in newer.text, newer


def test_a_narrow_runs_table_says_a_stalled_run_is_stalled_and_keeps_its_workflow() -> None:
    """Below 130 columns `runs` had no HEALTH column, so a stalled run read "● RUNNING";
    at 80 the workflow was gone and the create time cut mid-time."""
    stalled = snapshot(health=run_pb2.RUN_HEALTH_STALLED)
    done = snapshot(status=run_pb2.RUN_STATUS_SUCCEEDED, health=run_pb2.RUN_HEALTH_FAILING)
    for width in (80, 110, 129):
        console = Console(width=width, record=True, color_system=None)
        console.print(runs_table([stalled, done], width))
        lines = console.export_text().splitlines()
        assert "WORKFLOW" in lines[1], (width, lines)
        rows = [line for line in lines if " r1 " in f" {line} "]
        assert "● RUNNING · STALLED" in rows[0], (width, rows)
        assert "FAILING" not in rows[1], (width, rows)  # an ended run's health says nothing
        assert all(len(line.rstrip()) <= width for line in lines), (width, lines)
    console = Console(width=140, record=True, color_system=None)
    console.print(runs_table([stalled], 140))
    shown = console.export_text()
    assert "HEALTH" in shown and "STALLED" in shown and "· STALLED" not in shown, shown


def test_brackets_in_names_and_agents_are_shown_as_given_not_read_as_markup() -> None:
    """A run, workflow or agent named with ``[...]`` is the producer's text: rich read it as
    markup, so ``ab[bold]cd`` lost a piece and ``[/x]`` crashed the view."""
    run = dataclasses.replace(snapshot(), workflow="wf[/x]", display_name="ab[bold]cd")
    view = RunView.from_snapshot(run)
    view.apply(event(100, text_delta=event_pb2.TextDelta(agent_id="[/x]", delta="hi")))
    screen = " ".join(draw(view, 160, 50).split())
    assert "✍ [/x] · writing…" in screen, screen
    for table in (runs_table([run]), run_details(run)):
        console = Console(width=200, record=True, color_system=None)
        console.print(table)
        shown = console.export_text()
        assert "wf[/x]" in shown and "ab[bold]cd" in shown, shown


def test_a_decisions_context_shows_under_its_prompt() -> None:
    view = RunView.from_snapshot(snapshot())
    view.prompts["persona"] = open_prompt(
        options=(runstream.DecisionOption("a", "Wanderer"), runstream.DecisionOption("b")),
        context={"personas": 3, "forecast": "48% wanderers"},
    )
    screen = draw(view, 160, 50)
    prompt_at = screen.index("Which persona first?")
    context_at = screen.index("personas 3")
    assert prompt_at < context_at < screen.index("Wanderer"), screen
    assert "48% wanderers" in screen


def test_a_prompt_names_its_default_when_it_is_none_of_the_options() -> None:
    """An option that is the default says "(default)"; a fallback none of them has was shown
    only as "default in 4m", so the person could not tell what the deadline would take."""
    view = RunView.from_snapshot(snapshot())
    deadline = datetime.now(UTC) + timedelta(minutes=4, seconds=30)
    view.prompts["files"] = open_prompt(
        prompt="Multiple files found. Which should I analyze?",
        options=(runstream.DecisionOption("file1.pdf"), runstream.DecisionOption("file2.xlsx")),
        default_option="analyze_all",
        deadline=deadline,
    )
    screen = draw(view, 160, 50)
    assert "default analyze_all in 4m" in screen, screen
    assert "(default)" not in screen, screen


def test_a_long_run_name_gives_way_to_the_status_and_the_lost_connection_at_80x24() -> None:
    """The compact layout's first line began with the run's name and was cut to the width:
    a long name hid the status, the health, the ETA and "connection lost" (found in review)."""
    long_name = "Ünïcødé campaign for the spring launch with a rather long display name " * 2
    view = RunView.from_snapshot(dataclasses.replace(snapshot(), display_name=long_name))
    view.heard()
    view.last_heard -= LOST_AFTER + 1
    view.last_heard_at -= timedelta(seconds=LOST_AFTER + 1)
    first = draw(view, 80, 24).split("\n")[0]
    assert len(first) <= 80, first
    assert first.startswith("Ünïcødé"), first
    for fact in ("RUNNING", "HEALTHY", "connection lost"):
        assert fact in first, (fact, first)


def test_a_prompt_shows_six_keys_of_its_context_and_says_how_many_more() -> None:
    view = RunView.from_snapshot(snapshot())
    view.prompts["persona"] = open_prompt(context={f"k{n}": f"v{n}" for n in range(8)})
    screen = draw(view, 160, 50)
    assert "k0 v0 · k1 v1 · k2 v2 · k3 v3 · k4 v4 · k5 v5 · +2 more" in screen, screen


def test_the_compact_layout_fits_80x24_with_icons_and_metrics() -> None:
    view = RunView.from_snapshot(snapshot())
    screen = draw(view, 80, 24)
    lines = screen.rstrip("\n").split("\n")
    assert len(lines) <= 24, screen
    assert all(len(line) <= 80 for line in lines)
    assert "✔" in screen and "○" in screen  # status icons of done and pending steps
    assert "Step 8" in screen  # the running step is in view
    assert "Impressions 10,500 +500" in screen and "5.0 %" in screen, screen


def test_a_lost_connection_shows_within_two_and_a_half_heartbeats_and_the_eta_stands_still() -> (
    None
):
    estimate = run_pb2.Estimate(history_runs=3)
    estimate.remaining.FromSeconds(120)
    estimate.remaining_low.FromSeconds(100)
    estimate.remaining_high.FromSeconds(140)
    estimate.end_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=120))
    view = RunView.from_snapshot(snapshot(estimate=estimate))
    view.heard()
    assert "connection lost" not in draw(view, 160, 50)

    def silent(seconds: float) -> str:
        view.heard()
        view.last_heard -= seconds
        view.last_heard_at -= timedelta(seconds=seconds)
        return draw(view, 160, 50)

    # Just before 2.5 heartbeats of silence the ETA still counts down; past them the loss
    # is said, and the ETA stands where it was then: it used to jump back up to its value
    # at the last word heard, 2.5 heartbeats higher (found in review).
    before = silent(LOST_AFTER - 0.5)
    assert "connection lost" not in before
    after = silent(LOST_AFTER + 0.5)
    assert "connection lost" in after
    counted = re.search(r"ETA (\d\d):(\d\d)", before)
    frozen = re.search(r"ETA (\d\d):(\d\d)", after)
    assert counted is not None and frozen is not None, after
    seconds = [int(m[1]) * 60 + int(m[2]) for m in (counted, frozen)]
    assert abs(seconds[1] - seconds[0]) <= 1, (before, after)  # a second apart at most
    time.sleep(1.1)
    assert re.search(r"ETA (\d\d:\d\d)", draw(view, 160, 50))[1] == frozen[0][4:]  # type: ignore[index]


def test_a_held_estimate_says_so_and_does_not_count_down() -> None:
    estimate = run_pb2.Estimate(held=True, history_runs=3)
    estimate.remaining.FromSeconds(90)
    estimate.end_time.FromDatetime(datetime.now(UTC) + timedelta(seconds=90))
    view = RunView.from_snapshot(
        snapshot(estimate=estimate, status=run_pb2.RUN_STATUS_WAITING_FOR_INPUT)
    )
    assert "hold 01:30" in draw(view, 160, 50)
    time.sleep(1.1)
    assert "hold 01:30" in draw(view, 160, 50)


# --- the first hour ------------------------------------------------------------------------


def test_demo_on_a_busy_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runstream_cli("demo", "--plain", "--address", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line, no gRPC log
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in result.stderr


def test_demo_on_an_address_it_cannot_use_says_why_in_one_line() -> None:
    result = runstream_cli("demo", "--plain", "--address", "127.0.0.1:99999", timeout=60)
    assert result.returncode == 2
    assert "--address" in result.stderr and "65535" in result.stderr
    # Beyond loopback: its server checks no identity, so it refuses, in one line.
    result = runstream_cli("demo", "--plain", "--address", "192.0.2.1:50099", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "loopback only, not 192.0.2.1:50099" in result.stderr


def test_demo_with_no_server_at_its_target_says_so_in_seconds() -> None:
    """`demo --target` at an address where nothing listens sat silent for the client's whole
    minute of reconnecting; it waits as `get` does, then names the address."""
    target = f"127.0.0.1:{free_port()}"
    result = runstream_cli("demo", "--plain", "--target", target, timeout=40)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"no server answered for 5s: is a Runstream server running at {target}?" in (
        result.stderr
    )
    assert "--reconnect-timeout" not in result.stderr  # the demo has no such option


def test_demo_on_the_default_busy_port_takes_a_free_one() -> None:
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 50051))
            taken.listen()
        except OSError:
            pass  # already busy: `make serve` or another demo holds it, which is the case
        result = runstream_cli("demo", "--plain", "--speed", "20", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Port 127.0.0.1:50051 is in use" in result.stdout
    assert re.search(r"listening on 127\.0\.0\.1:(\d+)", result.stdout)
    assert "E1" not in result.stderr and "chttp2" not in result.stderr
    # `demo --serve` takes a free port too: the closing commands do not send the user to
    # the other server on 50051 (found in review), but to the address it prints.
    advice = result.stdout.split("The demo's server stopped with it")[1]
    assert "127.0.0.1:50051" not in advice
    assert "runs --target ADDRESS     # in another terminal, at the address it prints" in advice


def test_the_demo_shows_an_eta_from_recorded_runs_and_closes_with_commands_that_work(
    tmp_path: Path,
) -> None:
    # On IPv6 loopback: the address in the closing lines is quoted for the shell, where
    # zsh read an unquoted [::1]:0 as a glob ("no matches found").
    result = runstream_cli("demo", "--plain", "--speed", "20", "--address", "[::1]:0")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "ETA history: 3 recorded runs of campaign-generator" in out
    assert re.search(r"#\d+\s+estimate\s+ETA ~", out), out  # the server estimated from them
    # The server is gone when the demo ends: the closing lines say how to keep one up, on
    # the --address given (they dropped it, found in review), which picks a port again.
    advice = out.split("The demo's server stopped with it")[1]
    assert "demo --serve --address '[::1]:0'\n" in advice
    assert "runs --target ADDRESS     # in another terminal, at the address it prints" in advice


def test_a_running_steps_sub_step_details_show_in_the_steps_table() -> None:
    from runstream.cli.tables import steps_table

    run = run_pb2.Run(run_id="r1")
    step = run.steps.add(
        step_id="copy", name="Copy Team", status=run_pb2.STEP_STATUS_RUNNING, sub_step="drafting"
    )
    step.sub_step_details.operation = "executing_agent_logic"
    step.sub_step_details.model = "o3"
    console = Console(width=200, record=True, color_system=None)
    console.print(steps_table(runstream._convert.run_from_pb(run).steps, 200))
    assert "drafting — executing agent logic — o3" in console.export_text()


async def test_the_live_view_closes_when_the_runs_last_event_pokes_its_refresher() -> None:
    """`runstream watch` ends when the run does. The run's last event pokes the snapshot
    refresher and the view closes in the same turn of the loop; the refresher must end then.
    (On Python 3.11, `asyncio.wait_for` swallowed that cancellation and the view never
    closed: a terminal watcher hung after its run ended, seen in the test suite.)"""

    class Unreachable:
        async def get_run_details(self, run_id: str) -> runstream.RunDetails:
            raise runstream.UnavailableError("no server in this test")

    refresher = SnapshotRefresher(Unreachable(), RunView.from_snapshot(snapshot()))  # type: ignore[arg-type]
    for turns in (1, 2, 3):  # the refresher started, or already waiting for a poke
        async with asyncio.timeout(5) as closing:
            async with refresher:
                for _ in range(turns):
                    await asyncio.sleep(0)
                refresher.poke()  # the last event; then the block ends and closes the view
        # Closed at once, not cut short by the 5 s bound (which ends a hung refresher too).
        assert not closing.expired()


async def test_events_in_a_window_or_of_some_kinds_name_and_count_steps_as_the_whole_log(
    server: RunstreamServer,
) -> None:
    """With --after/--before, --kinds or --newest the step lines named steps by their ids,
    lost their durations, and counted only the steps done inside the window: the second of
    two steps read "copy done (1/2)" instead of "Copy Team done in 0ms (2/2)"."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run(
            "window",
            steps=[
                runstream.StepSpec("strategy", "Strategy Team"),
                runstream.StepSpec("copy", "Copy Team"),
            ],
        )
        async with run:
            for step_id in ("strategy", "copy"):
                async with run.step(step_id) as step:
                    await step.progress(50, "half")
                    await run.metrics({"n": 1})
            await run.complete()
        events = [event async for event in client.list_events(run.run_id)]
        second_done = next(
            e.seq for e in events if isinstance(e.payload, runstream.StepCompleted)
            and e.payload.step_id == "copy"
        )  # fmt: skip

        async def lines(**options: Any) -> list[str]:
            screen = io.StringIO()
            console = Console(file=screen, width=200)
            settings: dict[str, Any] = {"kinds": None, "limit": None, **options}
            await show_events(client, console, run.run_id, **settings)
            return [line for line in screen.getvalue().splitlines() if " step " in line]

        whole = await lines()
        done = [line for line in whole if " done " in line]
        assert len(done) == 2 and "Strategy Team done" in done[0] and "(1/2)" in done[0], whole
        assert "Copy Team done" in done[1] and "(2/2)" in done[1], whole
        completed = [runstream.EventKind.STEP_COMPLETED]
        assert await lines(kinds=completed) == done
        assert await lines(after=second_done - 1) == [done[1]]
        assert await lines(after=second_done - 2, before=second_done + 1) == [done[1]]
        assert await lines(kinds=completed, newest=True, limit=1) == [done[1]]


def test_a_watcher_keeps_reconnecting_for_as_long_as_asked(server_process: ServerProcess) -> None:
    """`--reconnect-timeout`: the server dies mid-watch and stays away; the watcher gives up
    after the time it was given (60 s by default), with one line saying so."""
    server = server_process
    server.start()
    run_id = asyncio.run(_a_running_run(server.target))
    with _plain_watcher(server.target, run_id, reconnect_timeout="2") as watcher:
        assert watcher.stdout is not None and watcher.stderr is not None
        out = watcher.stdout
        shown: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [shown.put(line) for line in out])
        reader.start()
        for _ in range(2):  # the run's header, then its first event: the watch is on
            shown.get(timeout=60)
        server.kill()
        gone = time.monotonic()
        watcher.wait(timeout=60)
        waited = time.monotonic() - gone
        stderr = watcher.stderr.read()
        reader.join(10)
    assert watcher.returncode == 1
    assert "no server could serve it for 2s" in stderr
    assert 2 <= waited < 30, waited


def test_a_watch_started_while_the_server_is_down_waits_for_it(
    server_process: ServerProcess,
) -> None:
    """A watch started during a restart waits for the server as one cut off mid-watch does,
    for `--reconnect-timeout`: it used to give up after the 5 s of one read."""
    server = server_process
    server.start()
    run_id = asyncio.run(_a_running_run(server.target, finished=True))
    server.kill()
    with _plain_watcher(server.target, run_id, reconnect_timeout="60") as watcher:
        time.sleep(7)
        still_waiting = watcher.poll() is None
        server.start()
        out, err = watcher.communicate(timeout=60)
    assert still_waiting, err
    assert watcher.returncode == 0, err
    assert f"Run {run_id} ended: ✔ SUCCEEDED" in out


def test_one_request_commands_started_while_the_server_is_down_wait_for_it(
    server_process: ServerProcess,
) -> None:
    """`get`, `answer`, `cancel` and the others took `--reconnect-timeout` and ignored it: a
    read gave up after 5 s whatever was asked, a control at once. Now they wait for the server
    as `watch` does, and a control is sent once it answers."""
    server = server_process
    server.start()
    run_id = asyncio.run(_a_running_run(server.target))
    server.kill()

    def command(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runstream.cli.main", *args, "--target", server.target,
             "--reconnect-timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )  # fmt: skip

    get = command("get", run_id)
    cancel = command("cancel", run_id, "--reason", "deploy")
    time.sleep(7)  # past the 5 s a read used to be retried
    waiting = [get.poll(), cancel.poll()]
    server.start()
    get_out, get_err = get.communicate(timeout=60)
    cancel_out, cancel_err = cancel.communicate(timeout=60)
    assert waiting == [None, None], (get_err, cancel_err)
    assert get.returncode == 0, get_err
    assert run_id in get_out
    assert cancel.returncode == 0, cancel_err
    assert f"Run {run_id} cancelled" in cancel_out


def test_a_one_request_command_gives_up_after_its_reconnect_timeout() -> None:
    """Nothing listens: `stats --reconnect-timeout 2` says so in one line after 2 s."""
    result = runstream_cli(
        "stats", "--target", f"127.0.0.1:{free_port()}", "--reconnect-timeout", "2"
    )
    assert result.returncode == 1
    assert "no server answered for 2s" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def _plain_watcher(target: str, run_id: str, *, reconnect_timeout: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli.main", "watch", run_id, "--plain",
         "--target", target, "--reconnect-timeout", reconnect_timeout],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def _a_running_run(target: str, *, finished: bool = False) -> str:
    async with runstream.connect(target) as client:
        run = await client.start_run("outage", steps=["a"])
        await (run.complete() if finished else run.flush())
        await run.close()
        return run.run_id


def test_a_run_that_still_runs_never_reads_100_percent() -> None:
    from runstream.cli.fmt import percent_text

    assert [percent_text(p) for p in (0, 47.6, 99.98, 100, 100.4)] == [
        "0%",
        "47%",
        "99%",  # it read "100%" with a step still running
        "100%",
        "100%",
    ]


def test_error_lines_show_what_the_server_said_as_given(
    server_process: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server echoes the id it refused; rich read it as markup: ``[/x]`` crashed the CLI
    with a MarkupError and ``ab[bold]cd`` was said to be ``'abcd'``."""
    server_process.start()
    for run_id in ("[/x]", "ab[bold]cd"):
        assert main(["get", run_id, "--target", server_process.target]) == 1
        said = capsys.readouterr().err
        assert f"run_id: {run_id!r} is not a valid id" in said, said


def test_the_live_view_says_why_a_run_is_not_healthy() -> None:
    """The header showed "health STALLED" and nothing of why; the reason came only as a feed
    line, gone once newer events pushed it out. It now stands under the header's facts, as
    the server gives it (control characters escaped), and no such line shows while healthy."""
    reason = "s8: no report for 312s (expected within 240s)\x1b[2J"
    stalled = RunView.from_snapshot(
        snapshot(health=run_pb2.RUN_HEALTH_STALLED, health_reason=reason)
    )
    screen = draw(stalled, 160, 50)
    assert "why s8: no report for 312s (expected within 240s)\\x1b[2J" in screen
    assert "\x1b" not in screen
    healthy = draw(RunView.from_snapshot(snapshot()), 160, 50)
    assert "why " not in healthy


def test_the_runs_table_counts_etas_down_to_the_time_it_is_given() -> None:
    """`runs --watch` kept counting ETAs down while it said "connection lost" (00:06 to
    00:01 in an 8 s outage, found in review); the live table now gives the time the server
    was last heard, and they stand still."""
    heard = datetime.now(UTC) - timedelta(seconds=30)
    estimate = run_pb2.Estimate()
    estimate.remaining.FromSeconds(60)
    estimate.end_time.FromDatetime(heard + timedelta(seconds=60))
    run = snapshot(estimate=estimate)

    def eta(**now: datetime) -> str:
        console = Console(width=200, record=True, color_system=None)
        console.print(runs_table([run], 200, **now))
        return console.export_text()

    assert "01:00" in eta(now=heard)  # as the server was last heard
    assert "00:30" in eta() or "00:29" in eta()  # live: counted down to now


def test_a_run_that_failed_as_it_started_shows_how_long_it_took_not_0ms() -> None:
    """A producer that raised before its first step started and failed its run 0.27 ms
    apart; `runs` and `get` said DURATION "0ms", which reads as no duration at all (found in
    review, port60 item 14)."""
    started = datetime.now(UTC) - timedelta(minutes=1)
    run = run_pb2.Run(
        run_id="r1", workflow="campaign", status=run_pb2.RUN_STATUS_FAILED, last_seq=4
    )
    run.start_time.FromDatetime(started)
    run.end_time.FromDatetime(started + timedelta(microseconds=270))
    failed = runstream._convert.run_from_pb(run)
    console = Console(width=200, record=True, color_system=None)
    console.print(runs_table([failed], 200))
    console.print(run_details(failed, 200))
    shown = console.export_text()
    row = next(line for line in shown.splitlines() if " r1 " in f" {line} ")
    assert row.rstrip().endswith("<1ms"), shown
    assert re.search(r"Duration\s+<1ms", shown), shown
    assert "0ms" not in shown, shown


def test_a_health_event_of_the_same_level_says_what_is_wrong_now() -> None:
    """A run FAILING for one reason and then another (an unrecoverable error, then its step
    failing) read "Health FAILING → FAILING — step html_validation failed" (found in review,
    port60); the level moved only when the line says so."""
    view = RunView.from_snapshot(snapshot())

    def health(seq: int, previous: int, now: int, reason: str) -> runstream.Event:
        changed = event_pb2.HealthChanged(reason=reason)
        changed.previous_health, changed.health = previous, now  # type: ignore[assignment]
        return event(seq, health_changed=changed)

    failing = run_pb2.RUN_HEALTH_FAILING
    reason = "unrecoverable: API key revoked"
    worse = view.apply(health(100, run_pb2.RUN_HEALTH_DEGRADED, failing, reason))
    again = view.apply(health(101, failing, failing, "step html_validation failed"))
    assert worse is not None and again is not None
    assert worse.text == "Health DEGRADED → FAILING — unrecoverable: API key revoked"
    assert again.text == "Health still FAILING — step html_validation failed"


async def test_get_and_the_live_view_show_every_open_question_past_get_runs_budget(
    server: RunstreamServer,
) -> None:
    """Found in review: GetRun holds the open decisions its 512 KiB budget has room for, and
    `runstream get --json` listed 2 of a run's 3 questions; the live view offered 2 too."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("wf")
        await run.flush()
        for decision_id in ("q0", "q1", "q2"):
            request = question(run.run_id, decision_id, large=True)
            await client.raw_report_service.AppendEvents(request)

        got = await asyncio.to_thread(
            runstream_cli, "get", run.run_id, "--target", server.target, "--json"
        )
        assert got.returncode == 0, got.stderr
        listed = json.loads(got.stdout)["open_decisions"]
        assert [d["decision_id"] for d in listed] == ["q0", "q1", "q2"]

        view = RunView.from_snapshot(await client.get_run(run.run_id))
        async with SnapshotRefresher(client, view, min_interval=0.01) as refresher:
            refresher.poke()
            for _ in range(500):
                if view.prompts:
                    break
                await asyncio.sleep(0.01)
        assert list(view.prompts) == ["q0", "q1", "q2"]
        await run.close()
