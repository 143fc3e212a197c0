"""The `runstream` CLI as a user runs it: real subprocesses against real servers.

Every command runs as `python -m runstream.cli.main ...`. Piped, the CLI prints plain lines and
tables, and the tests read them the way a person or a CI log would; one test gives the demo a
pseudo-terminal to check that the live dashboard draws.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ServerProcess, free_port

STEP_NAMES = (
    "Project Manager",
    "Strategy Team",
    "Audience Persona",
    "Creative Team",
    "Copy Team",
    "CTA Optimizer",
    "Visual Team",
    "Designer Team",
    "Social Media Campaign",
    "Emotion Personalization",
    "Media Planner",
    "Review Team",
    "Campaign Summary",
    "Client Summary",
    "Web Developer",
    "HTML Validation",
    "Delivery",
)

CLI = [sys.executable, "-m", "runstream.cli.main"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "RUNSTREAM_TARGET": ""}


def runstream_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=ENV, timeout=timeout, check=False
    )


def started_run_id(output: str) -> str:
    match = re.search(r"Started run (\S+)", output)
    assert match, f"no run id in demo output:\n{output}"
    return match.group(1)


def demo_on(server: ServerProcess) -> str:
    """Runs the demo against a separately started server; returns the run id."""
    server.start()
    result = runstream_cli("demo", "--target", server.target, "--speed", "20", "--plain")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Using Runstream server at {server.target}" in result.stdout
    assert "SUCCEEDED" in result.stdout
    return started_run_id(result.stdout)


def test_demo_runs_the_campaign_on_an_embedded_server() -> None:
    port = free_port()
    result = runstream_cli("demo", "--speed", "20", "--plain", "--address", f"127.0.0.1:{port}")

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"listening on 127.0.0.1:{port}" in out
    assert "SUCCEEDED" in out
    assert "17/17 steps" in out
    for name in STEP_NAMES:
        assert f"{name} started" in out, name
        assert f"{name} done" in out, name
    # The simulated run reports every kind the reference systems stream.
    for label in (
        "thinking",
        "model",
        "agent",
        "progress",
        "text",
        "milestone",
        "alert",
        "recovery",
        "artifact",
        "workflow",
    ):
        assert re.search(rf"#\d+\s+{label}\s", out), label
    assert "Halfway there" in out
    assert "rate limit" in out
    assert "Run further. Feel lighter." in out  # the copy the Copy Team streamed
    run_id = started_run_id(out)
    assert (
        f'grpcurl -plaintext -d \'{{"run_id":"{run_id}"}}\' 127.0.0.1:{port} '
        "runstream.v1.RunService/WatchRun" in out
    )
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
def test_demo_draws_the_live_dashboard_on_a_terminal() -> None:
    command = shlex.join([*CLI, "demo", "--speed", "20", "--address", f"127.0.0.1:{free_port()}"])
    # script(1) gives the demo a pseudo-terminal, so it draws with rich.live as a person
    # at a terminal sees it, rather than printing plain lines.
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env={**ENV, "COLUMNS": "150", "LINES": "50", "TERM": "xterm-256color"},
        timeout=120,
        check=False,
    )

    out = result.stdout
    assert result.returncode == 0, out
    for panel in ("Runstream demo", "Steps", "Activity", "Active agents", "Run summary"):
        assert panel in out, panel
    assert "17/17 steps" in out
    assert "SUCCEEDED" in out
    assert "\x1b[" in out  # drawn with terminal control sequences, not plain lines
    assert not re.search(r"#\d+\s+progress", out)
    assert "Traceback" not in out


def test_demo_reports_to_a_separate_server_and_the_tables_show_it(
    server_process: ServerProcess,
) -> None:
    run_id = demo_on(server_process)
    target = server_process.target

    runs = runstream_cli("runs", "--target", target)
    assert runs.returncode == 0, runs.stderr
    row = next(line for line in runs.stdout.splitlines() if run_id in line)
    assert "campaign-generator" in row
    assert "SUCCEEDED" in row
    assert "100%" in row and "17/17" in row

    filtered = runstream_cli("runs", "--target", target, "--filter", "status = RUNNING")
    assert filtered.returncode == 0, filtered.stderr
    assert run_id not in filtered.stdout
    assert "No runs match" in filtered.stdout

    get = runstream_cli("get", run_id, "--target", target)
    assert get.returncode == 0, get.stderr
    assert run_id in get.stdout
    assert "SUCCEEDED" in get.stdout
    assert "17/17 steps" in get.stdout
    assert "Campaign delivered" in get.stdout  # the result summary

    steps = runstream_cli("steps", run_id, "--target", target)
    assert steps.returncode == 0, steps.stderr
    lines = steps.stdout.splitlines()
    for name in STEP_NAMES:
        line = next(line for line in lines if f" {name} " in line)
        assert "SUCCEEDED" in line and "100%" in line, line

    for command in ("get", "steps", "watch"):
        unknown = runstream_cli(command, "no-such-run", "--target", target)
        assert unknown.returncode == 1, command
        assert "not found" in unknown.stderr, unknown.stderr
        assert "no-such-run" in unknown.stderr
        assert "Traceback" not in unknown.stderr


def test_watch_replays_filters_and_resumes_a_finished_run(server_process: ServerProcess) -> None:
    run_id = demo_on(server_process)
    target = server_process.target

    replay = runstream_cli("watch", run_id, "--target", target, "--plain")
    assert replay.returncode == 0, replay.stderr
    out = replay.stdout
    assert re.search(r"#1\s+run\s+Run created", out)
    assert "Strategy Team done" in out
    assert "Run succeeded" in out
    assert f"Run {run_id} ended: ✔ SUCCEEDED" in out
    seqs = [int(seq) for seq in re.findall(r"#(\d+)\s", out)]
    assert seqs == sorted(seqs) and seqs[0] == 1

    milestones = runstream_cli("watch", run_id, "--target", target, "--kinds", "milestone")
    assert milestones.returncode == 0, milestones.stderr
    event_lines = [line for line in milestones.stdout.splitlines() if re.search(r"#\d+", line)]
    assert event_lines and all(" milestone " in line for line in event_lines)
    assert any("Strategy approved" in line for line in event_lines)
    assert any("Halfway there" in line for line in event_lines)

    last = seqs[-1]
    tail = runstream_cli("watch", run_id, "--target", target, "--from-seq", str(last - 1))
    assert tail.returncode == 0, tail.stderr
    assert [int(seq) for seq in re.findall(r"#(\d+)\s", tail.stdout)] == [last]

    beyond = runstream_cli("watch", run_id, "--target", target, "--from-seq", str(last + 10))
    assert beyond.returncode == 1
    assert "out of range" in beyond.stderr
    assert "Traceback" not in beyond.stderr


def test_unreachable_server_is_a_clear_error() -> None:
    target = f"127.0.0.1:{free_port()}"  # nothing listens there

    result = runstream_cli("runs", "--target", target)

    assert result.returncode == 1
    assert target in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_serve_keeps_the_server_up_until_sigterm() -> None:
    port = free_port()
    with subprocess.Popen(
        [*CLI, "demo", "--speed", "20", "--plain", "--serve", "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    ) as demo:
        stdout = demo.stdout
        assert stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [*map(lines.put, stdout)], daemon=True)
        reader.start()
        try:
            seen: list[str] = []
            deadline = time.monotonic() + 90
            while not any("until Ctrl-C or SIGTERM" in line for line in seen):
                assert time.monotonic() < deadline, "".join(seen)
                assert demo.poll() is None, "".join(seen)
                try:
                    seen.append(lines.get(timeout=1))
                except queue.Empty:
                    continue
            run_id = started_run_id("".join(seen))

            # The run is over, yet the server still answers.
            get = runstream_cli("get", run_id, "--target", f"127.0.0.1:{port}")
            assert get.returncode == 0, get.stderr
            assert "SUCCEEDED" in get.stdout

            demo.send_signal(signal.SIGTERM)
            assert demo.wait(30) == 0
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(10)
            reader.join(10)
