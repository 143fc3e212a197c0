"""The `runstream` CLI as a user runs it: real subprocesses against real servers.

Every command runs as `python -m runstream.cli.main ...`. Piped, the CLI prints plain lines and
tables, and the tests read them the way a person or a CI log would; one test gives the demo a
pseudo-terminal to check that the live dashboard draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import runstream
from runstream.v1 import event_pb2, report_service_pb2, report_service_pb2_grpc
from runstream.v1.run_pb2 import ErrorInfo, StepSpec
from runstream_server.app import RunstreamServer

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
        "decision",
        "health",
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
    # The server's own milestones: progress and the declared target.
    assert "50% complete" in out
    assert "Target reached!" in out and "Create 12 campaign assets" in out
    # The demo asks its question; nobody answers a piped demo, so the default is taken.
    assert "Decision needed [persona-priority]: Which audience persona should we prioritise?" in out
    assert "answer: runstream answer" in out
    assert "Decision persona-priority defaulted: Weekend Wanderer" in out
    assert re.search(r"Persona\s+Weekend Wanderer", out)
    assert "rate limit" in out
    assert "Run further. Feel lighter." in out  # the copy the Copy Team streamed
    # The embedded server stops with the demo: the closing lines say how to keep one up
    # instead of pointing at a server that is gone; on the address the user gave (they
    # dropped it, found in review), and the commands after it go there meanwhile.
    assert "The demo's server stopped with it" in out
    advice = out.split("The demo's server stopped")[1]
    assert f"demo --serve --address 127.0.0.1:{port}\n" in advice
    assert f"runs --target 127.0.0.1:{port}     # in another terminal, meanwhile" in advice
    assert f"get RUN_ID --target 127.0.0.1:{port}\n" in advice
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

    # The filter is shown as typed: repr doubled the backslash (found in review).
    matching = r'status = RUNNING AND workflow = "x\"y"'
    filtered = runstream_cli("runs", "--target", target, "--filter", matching)
    assert filtered.returncode == 0, filtered.stderr
    assert run_id not in filtered.stdout
    assert f"No runs match '{matching}'" in filtered.stdout, filtered.stdout

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
    assert any("50% complete" in line for line in event_lines)

    last = seqs[-1]
    tail = runstream_cli("watch", run_id, "--target", target, "--from-seq", str(last - 1))
    assert tail.returncode == 0, tail.stderr
    assert [int(seq) for seq in re.findall(r"#(\d+)\s", tail.stdout)] == [last]

    # The largest the SDK's watch() takes is the server's to judge, as any seq past the end.
    for beyond_seq in (last + 10, 2**63 - 1):
        beyond = runstream_cli("watch", run_id, "--target", target, "--from-seq", str(beyond_seq))
        assert beyond.returncode == 1, beyond.stderr
        assert "out of range" in beyond.stderr
        assert "Traceback" not in beyond.stderr


async def test_a_plain_watch_says_when_its_connection_was_lost_and_where_it_resumed(
    server_process: ServerProcess,
) -> None:
    """A plain watch (a pipe, a CI log) said nothing of an outage: its log was exact, but
    nothing told a reader that the events after it came from a resumed stream (found in
    review). Such notes go to stderr; stdout stays the run's events. The loss is said once and
    the return once, not each attempt between (found in review: ~45 lines a minute)."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign")
        await run.flush()
        watch = await asyncio.create_subprocess_exec(
            *CLI, "watch", run.run_id, "--target", server_process.target, "--plain",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )  # fmt: skip
        assert watch.stdout is not None
        try:
            said = b""
            while b"Run started" not in said:
                said += await asyncio.wait_for(watch.stdout.readline(), 30)
            server_process.kill()
            await asyncio.sleep(1.5)
            server_process.start()
            async with (
                runstream.connect(server_process.target) as again,
                await again.attach_run(run.run_id) as attached,
            ):
                await attached.complete()
            output, errors = await asyncio.wait_for(watch.communicate(), 60)
        finally:
            if watch.returncode is None:
                watch.kill()
                await watch.wait()
    assert watch.returncode == 0, errors.decode()
    # Each note a plain line, as the events around it read: rich's log lines put an en-US
    # date, a level column and padding to the width among them (found in review, port60).
    said_lines = [line for line in errors.decode().splitlines() if line.strip()]
    for line in said_lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d runstream\.watch: watch of run \S+ .*\S", line), line
    notes = " ".join(errors.decode().split())
    assert f"watch of run {run.run_id} lost (UNAVAILABLE); resuming after seq" in notes, notes
    assert f"watch of run {run.run_id} is back after" in notes, notes  # once, not per attempt
    assert notes.count(f"watch of run {run.run_id}") == 2, notes
    assert b"lost" not in said + output  # the events' log itself is as before


@pytest.mark.parametrize(
    ("command", "flag", "most"),
    [
        # Any int64, as the SDK's watch(after_seq=) takes (it took 2**62 - 1 at most).
        ("watch", "--from-seq", 2**63 - 1),
        # The seqs a ListEvents filter compares, the server's bound and the SDK's.
        ("events", "--after", 2**62 - 1),
        ("events", "--before", 2**62 - 1),
    ],
)
def test_a_seq_no_log_reaches_is_a_usage_error(command: str, flag: str, most: int) -> None:
    """watch --from-seq 2**63 ended in a Python traceback (found in review)."""
    target = f"127.0.0.1:{free_port()}"  # refused before anything connects
    result = runstream_cli(command, "some-run", "--target", target, flag, str(most + 1))
    assert (result.returncode, result.stdout) == (2, "")
    assert f"argument {flag}: must be at most {most}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_is_a_clear_error() -> None:
    """Said in seconds: a command that makes one request waits 5 s for a server unless
    --reconnect-timeout says otherwise (it waited the watch's minute for a mistyped port)."""
    target = f"127.0.0.1:{free_port()}"  # nothing listens there

    started = time.monotonic()
    result = runstream_cli("runs", "--target", target)

    assert result.returncode == 1
    assert target in result.stderr
    assert "no server answered for 5s" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_a_bad_target_is_named_where_the_user_gave_it() -> None:
    """A bad $RUNSTREAM_TARGET was refused as "argument --target", a flag the user never
    typed; the variable is named now, and a bad --target still names the flag."""
    said = "http:// is not a gRPC address; give HOST:PORT (or dns:///HOST:PORT)"
    for env_target, args, where in [
        ("http://x", [], "environment variable RUNSTREAM_TARGET"),
        ("127.0.0.1:1", ["--target", "http://x"], "argument --target"),
    ]:
        result = subprocess.run(
            [*CLI, "runs", *args],
            capture_output=True,
            text=True,
            env={**ENV, "RUNSTREAM_TARGET": env_target},
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [f"runstream runs: error: {where}: {said}"]


@pytest.mark.parametrize("command", ["dashboard", "agui"])
def test_the_web_commands_refuse_a_bad_target_variable_in_one_line(command: str) -> None:
    """`runstream dashboard` and `runstream agui` read $RUNSTREAM_TARGET themselves: the
    dashboard ended a bad one in a traceback, the bridge took it unchecked."""
    result = subprocess.run(
        [*CLI, command],
        capture_output=True,
        text=True,
        env={**ENV, "RUNSTREAM_TARGET": "http://x"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "runstream: environment variable RUNSTREAM_TARGET: http:// is not a gRPC address;"
        " give HOST:PORT (or dns:///HOST:PORT)"
    ]


def test_commands_with_closed_standard_streams_do_their_work(
    server_process: ServerProcess,
) -> None:
    """`runstream runs >&-` (a cron line, a supervisor that closes stdout) was killed by
    libuv's assertion, exit 134 and a core dump, and `health` raised a traceback: the
    command's own exit status is what a script sees now."""
    server_process.start()
    target = server_process.target

    def closed(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", f'exec "$@" {redirect}', "sh", *CLI, *args, "--target", target],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )

    listed = closed(">&- <&-", "runs")
    assert listed.returncode == 0, listed.stderr
    health = closed(">&-", "health")
    assert (health.returncode, health.stderr) == (0, "")
    missing = closed(">&-", "get", "no-such-run")
    assert missing.returncode == 1
    assert missing.stderr == "runstream: not found: run 'no-such-run' not found\n"
    unseen = closed(">/dev/null 2>&-", "get", "no-such-run")
    assert unseen.returncode == 1


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["answer", "r", "d"], "give either CHOICE or --skip"),
        (["answer", "r", "d", "x", "--skip"], "give either CHOICE or --skip"),
        (["demo", "--serve", "--target", "127.0.0.1:1"], "no meaning with --target"),
        (["serve", "--jwt-issuer", "iss"], "need --jwt-secret-file or --jwt-public-key"),
        (["serve", "--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["serve", "--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert"),
        (["health", "--client-cert", "c.pem"], "--client-cert and --client-key go together"),
        (["agui", "--address", "nowhere"], "expected HOST:PORT"),
        (["agui", "--address", "http://127.0.0.1:8090"], "expected HOST:PORT, not a URL"),
        (["agui", "--origin", "localhost:3000"], "an origin is scheme://host[:port]"),
        (["agui", "--allowed-host", "https://agui.example.com"], "an allowed host is a name"),
        (["dashboard", "--api-url", "http://127.0.0.1:1", "--demo"], "drop --demo"),
        (
            ["events", "r", "--after", "300", "--before", "100", "--target", "127.0.0.1:1"],
            "--before 100 must be past --after 300",
        ),
    ],
)
def test_options_that_do_not_go_together_are_a_usage_error(
    tmp_path: Path, args: list[str], said: str
) -> None:
    """Exit status 2 and one line, as argparse's own refusals: these exited 1, the status of
    a request that failed."""
    if args[0] == "serve":
        args = [*args, "--address", "127.0.0.1:0", "--store", str(tmp_path / "r.db")]
    result = runstream_cli(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and said in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


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
            # With the server kept up, the closing lines point at it with this run's id.
            assert f"get {run_id} --target 127.0.0.1:{port}" in "".join(seen)

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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_a_demo_stopped_by_a_signal_cancels_its_run(
    server_process: ServerProcess, signum: signal.Signals
) -> None:
    """Closing the terminal of `runstream demo --target` (SIGHUP) left its run RUNNING on the
    server, counting down an ETA until it turned STALLED (found in review); SIGTERM
    cancelled it. Both do now."""
    server_process.start()
    demo = await asyncio.create_subprocess_exec(
        *CLI, "demo", "--target", server_process.target, "--speed", "0.2", "--plain",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=ENV,
    )  # fmt: skip
    assert demo.stdout is not None
    said = ""
    try:
        while "Started run " not in said:
            line = await asyncio.wait_for(demo.stdout.readline(), 60)
            assert line, said
            said += line.decode()
        demo.send_signal(signum)
        await asyncio.wait_for(demo.wait(), 30)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert demo.returncode == 128 + signum
    async with runstream.connect(server_process.target) as client:
        run = await client.get_run(started_run_id(said))
    assert run.status is runstream.RunStatus.CANCELLED


# --- humans in the loop, run control and insight from the command line -------------------


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, without blocking the test's event loop (its producer runs
    on it)."""
    return await asyncio.to_thread(runstream_cli, *args)


async def test_a_question_is_listed_answered_and_refused_from_the_cli(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("campaign", steps=["persona", "copy"])
        async with run.step("persona"):
            asking = asyncio.create_task(
                run.ask(
                    "Which audience persona should we prioritise?",
                    [("wanderer", "Weekend Wanderer"), ("summiteer", "City Summiteer")],
                    default="wanderer",
                    timeout=600,
                    decision_id="persona",
                )
            )
            await run.flush()
            await _wait_open(client, run.run_id)

            listed = await cli("decisions", run.run_id, "--target", target)
            assert listed.returncode == 0, listed.stderr
            row = next(line for line in listed.stdout.splitlines() if "persona" in line)
            assert "OPEN" in row and "Which audience persona" in row

            get = await cli("get", run.run_id, "--target", target)
            assert get.returncode == 0, get.stderr
            assert "WAITING_FOR_INPUT" in get.stdout
            assert "Decision needed · persona" in get.stdout
            assert f"runstream answer {run.run_id} persona CHOICE" in get.stdout
            assert "Viewers" in get.stdout and "Estimate" in get.stdout

            wrong = await cli("answer", run.run_id, "persona", "nobody", "--target", target)
            assert wrong.returncode == 1
            assert "invalid argument" in wrong.stderr and "'nobody'" in wrong.stderr
            unknown = await cli("answer", run.run_id, "nope", "wanderer", "--target", target)
            assert unknown.returncode == 1 and "not found" in unknown.stderr
            bare = await cli("answer", run.run_id, "persona", "--target", target)
            assert bare.returncode == 2 and "CHOICE or --skip" in bare.stderr

            answered = await cli(
                "answer", run.run_id, "persona", "summiteer", "--by", "ana", "--target", target
            )
            assert answered.returncode == 0, answered.stderr
            assert "ANSWERED summiteer by ana" in answered.stdout
            result = await asyncio.wait_for(asking, 20)
            assert (result.choice, result.answered_by) == ("summiteer", "ana")

            late = await cli(
                "answer", run.run_id, "persona", "wanderer", "--by", "bo", "--target", target
            )
            assert late.returncode == 1
            assert (
                "aborted" in late.stderr and "'summiteer'" in late.stderr and "ana" in late.stderr
            )
            assert "Traceback" not in late.stderr
        await run.complete()
        await run.close()

    history = await cli(
        "events", run.run_id, "--target", target, "--kinds", "decision_requested,decision_resolved"
    )
    assert history.returncode == 0, history.stderr
    lines = [line for line in history.stdout.splitlines() if re.search(r"#\d+", line)]
    assert len(lines) == 2
    assert "Decision needed [persona]" in lines[0]
    assert "Decision persona answered by ana: City Summiteer (summiteer)" in lines[1]
    closed = await cli("decisions", run.run_id, "--target", target)
    assert "ANSWERED: summiteer" in closed.stdout and "ana" in closed.stdout


async def test_answer_takes_an_options_label_or_number_as_the_panels_show_them(
    server_process: ServerProcess,
) -> None:
    """The dashboard and the panels show "Deep" and "2) deep"; `runstream answer RID depth
    Deep` was refused ("not one of the options 'quick', 'deep'"), and so was "2" (found in
    review, port60 item 10). The value is what is sent, so the run gets "deep"."""
    server_process.start()
    target = server_process.target
    options = [("quick", "Quick"), ("deep", "Deep"), ("deeper", "Deep dive")]
    async with runstream.connect(target) as client:
        run = await client.start_run("manager")
        by_label, by_number = (
            asyncio.create_task(run.ask("How deep?", options, timeout=600, decision_id=name))
            for name in ("depth", "again")
        )
        await run.flush()
        for _ in range(2000):
            if len(await client.list_decisions(run.run_id)) == 2:
                break
            await asyncio.sleep(0.01)
        try:
            unknown = await cli("answer", run.run_id, "depth", "Deepest", "--target", target)
            label = await cli(
                "answer", run.run_id, "depth", "DEEP", "--by", "ana", "--target", target
            )
            number = await cli("answer", run.run_id, "again", "3", "--target", target)
            assert unknown.returncode == 1
            assert (
                "invalid argument: choice 'Deepest' is none of the options of decision depth "
                "(give a value, a label or a number): 1) quick (Quick), 2) deep (Deep), "
                "3) deeper (Deep dive)"
            ) in " ".join(unknown.stderr.split()), unknown.stderr
            assert label.returncode == 0, label.stderr
            assert "ANSWERED deep by ana" in label.stdout
            assert number.returncode == 0, number.stderr
            assert "ANSWERED deeper" in number.stdout
            answers = await asyncio.wait_for(asyncio.gather(by_label, by_number), 20)
            assert [answer.choice for answer in answers] == ["deep", "deeper"]
        finally:
            by_label.cancel()
            by_number.cancel()
        await run.complete()
        await run.close()


async def test_decisions_and_get_say_what_a_question_takes_at_its_deadline(
    server_process: ServerProcess,
) -> None:
    """A default that is none of the options (the manager reference's `analyze_all`) showed
    in neither `decisions` nor the `get` panel, which said only "closes in 4m 50s", so an
    operator could not tell what the deadline would do (found in review, port60 item 6).
    `decisions --json` printed the context's 2 as 2.0 (a Struct's numbers are doubles; found
    in review, port60 item 14)."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("manager")
        asking = asyncio.create_task(
            run.ask(
                "Multiple files found. Which should I analyze?",
                ["file1.pdf", "file2.xlsx"],
                default="analyze_all",
                timeout=600,
                decision_id="files",
                context={"file_count": 2, "sheet_id": "abc123", "share": 0.5},
            )
        )
        await run.flush()
        await _wait_open(client, run.run_id)
        listed, got, as_json = await asyncio.gather(
            cli("decisions", run.run_id, "--target", target),
            cli("get", run.run_id, "--target", target),
            cli("decisions", run.run_id, "--target", target, "--json"),
        )
        asking.cancel()
        await run.complete()
        await run.close()

    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "files" in line)
    assert "file1.pdf | file2.xlsx · default analyze_all" in row, listed.stdout
    assert got.returncode == 0, got.stderr
    assert re.search(r"closes in (9m 5\ds|10m 00s), then takes analyze_all", got.stdout), got.stdout
    assert "context: file_count 2 · share 0.5 · sheet_id abc123" in got.stdout, got.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert re.search(r'"file_count": 2\b(?!\.)', as_json.stdout), as_json.stdout
    assert '"share": 0.5' in as_json.stdout, as_json.stdout
    assert json.loads(as_json.stdout)[0]["context"] == {
        "file_count": 2,
        "sheet_id": "abc123",
        "share": 0.5,
    }


async def _wait_open(client: runstream.Client, run_id: str) -> None:
    for _ in range(2000):
        if await client.list_decisions(run_id, state=runstream.DecisionState.OPEN):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the question never opened")


async def test_pause_resume_and_cancel_from_the_cli_reach_the_producer(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("campaign", steps=["research", "write"])
        go_on = asyncio.Event()

        async def workflow() -> None:
            async with run:
                async with run.step("research"):
                    await go_on.wait()
                async with run.step("write"):
                    pass
                await run.complete()

        task = asyncio.create_task(workflow())
        await run.flush()
        paused = await cli(
            "pause", run.run_id, "--reason", "checking", "--by", "ana", "--target", target
        )
        assert paused.returncode == 0, paused.stderr
        assert f"Run {run.run_id} paused" in paused.stdout and "PAUSED" in paused.stdout
        for _ in range(2000):
            if run.paused:
                break
            await asyncio.sleep(0.01)
        assert run.paused
        go_on.set()
        await asyncio.sleep(0.3)
        assert not task.done()  # held before "write"
        again = await cli("pause", run.run_id, "--target", target)
        assert again.returncode == 1 and "failed precondition" in again.stderr

        resumed = await cli("resume", run.run_id, "--target", target)
        assert resumed.returncode == 0, resumed.stderr
        assert "RUNNING" in resumed.stdout
        await asyncio.wait_for(task, 20)

        other = await client.start_run("campaign")
        blocked = asyncio.create_task(_sleep_in(other))
        await other.flush()
        cancelled = await cli("cancel", other.run_id, "--reason", "wrong brief", "--target", target)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "CANCELLED" in cancelled.stdout
        with pytest.raises(runstream.RunCancelledError, match="wrong brief"):
            await asyncio.wait_for(blocked, 20)

    events = await cli("events", run.run_id, "--target", target, "--kinds", "run_status_changed")
    paused_line, resumed_line = events.stdout.splitlines()
    assert "Status RUNNING → PAUSED" in paused_line
    assert "checking" in paused_line and "ana" in paused_line
    assert "Status PAUSED → RUNNING" in resumed_line


async def _sleep_in(run: runstream.RunReporter) -> None:
    async with run:
        await asyncio.sleep(3600)


async def test_events_newest_prints_the_newest_events_first(server_process: ServerProcess) -> None:
    """`events --newest --limit 3`: the run's last three events, newest on top, read from
    the end of its log; with --kinds and --json, the last alerts as JSON."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("alerts")
        for n in range(6):
            await run.metrics({"n": n})
            await run.alert(f"budget at {n}0%", code=f"B{n}")
        await run.flush()
        stored = [event.seq async for event in client.list_events(run.run_id)]
        await run.close()

    newest = await cli("events", run.run_id, "--target", target, "--newest", "--limit", "3")
    assert newest.returncode == 0, newest.stderr
    lines = newest.stdout.splitlines()
    assert [int(re.findall(r"#(\d+)", line)[0]) for line in lines] == stored[:-4:-1]
    assert "budget at 50%" in lines[0] and "budget at 40%" in lines[2]

    alerts = await cli(
        "events", run.run_id, "--target", target, "--newest", "--limit", "2",
        "--kinds", "alert", "--json",
    )  # fmt: skip
    assert alerts.returncode == 0, alerts.stderr
    assert [event["alert"]["message"] for event in json.loads(alerts.stdout)] == [
        "budget at 50%",
        "budget at 40%",
    ]


async def test_events_of_another_day_are_printed_with_their_date(
    server_process: ServerProcess,
) -> None:
    """`events` printed each event's time of day alone: one its producer dated two days back
    sat among today's as if it were today's. Another day's event now shows its date."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("dated")
        await run.flush()
        old = event_pb2.RunEvent(custom=event_pb2.Custom(type="from-the-past"))
        old.event_time.FromSeconds(int(time.time()) - 2 * 86400)
        async with grpc.aio.insecure_channel(target) as channel:
            report = report_service_pb2_grpc.ReportServiceStub(channel)
            await report.AppendEvents(
                report_service_pb2.AppendEventsRequest(run_id=run.run_id, events=[old])
            )
        await run.close()
    printed = await cli("events", run.run_id, "--target", target)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    then = datetime.fromtimestamp(old.event_time.seconds).strftime("%Y-%m-%d %H:%M:%S")
    assert re.match(r"\d\d:\d\d:\d\d #1 ", lines[0]), lines  # today's: the time of day
    assert [line for line in lines if line.startswith(f"{then} #")], lines


async def test_events_after_and_before_print_a_window_of_the_log(
    server_process: ServerProcess,
) -> None:
    """`events --after 3 --before 8`: events 4 to 7 in seq order; with --newest, the last
    two before seq 8 newest on top; a negative seq is a usage error."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("window")
        for n in range(12):
            await run.metrics({"n": n})
        await run.flush()
        await run.close()

    def seqs(output: str) -> list[int]:
        return [int(re.findall(r"#(\d+)", line)[0]) for line in output.splitlines()]

    window = await cli("events", run.run_id, "--target", target, "--after", "3", "--before", "8")
    assert window.returncode == 0, window.stderr
    assert seqs(window.stdout) == [4, 5, 6, 7]
    newest = await cli(
        "events", run.run_id, "--target", target, "--before", "8", "--newest", "--limit", "2"
    )
    assert newest.returncode == 0, newest.stderr
    assert seqs(newest.stdout) == [7, 6]
    bad = await cli("events", run.run_id, "--target", target, "--after", "-1")
    assert bad.returncode == 2 and "--after" in bad.stderr


async def test_events_that_cut_a_streamed_message_print_what_they_hold_of_it(
    server_process: ServerProcess,
) -> None:
    """A message streamed in deltas was printed only at its final delta, counting the
    deltas listed: a window of deltas printed nothing at all (exit 0), and one starting
    inside a message counted its tail as the whole (found in review)."""
    server_process.start()
    target = server_process.target
    words = [f"w{n}" for n in range(10)]
    async with runstream.connect(target) as client:
        run = await client.start_run("text")
        for n, word in enumerate(words):
            await run.text("copywriter", "m1", f"{word} ", final=n == len(words) - 1)
        await run.flush()
        deltas = [
            event.seq
            async for event in client.list_events(
                run.run_id, kinds=[runstream.EventKind.TEXT_DELTA]
            )
        ]
        await run.close()
    assert len(deltas) == 10

    middle = await cli("events", run.run_id, "--target", target,
                       "--after", str(deltas[2]), "--before", str(deltas[5]))  # fmt: skip
    assert middle.returncode == 0, middle.stderr
    assert re.search(
        rf"#{deltas[4]}\s+text\s+copywriter was writing: 2 words in #{deltas[3]}-#{deltas[4]}, "
        "and the message goes on",
        middle.stdout,
    ), middle.stdout
    assert "│ w3 w4" in middle.stdout

    tail = await cli("events", run.run_id, "--target", target, "--after", str(deltas[6]))
    assert tail.returncode == 0, tail.stderr
    assert f"copywriter wrote 3 words from #{deltas[7]} on" in tail.stdout, tail.stdout

    whole = await cli("events", run.run_id, "--target", target)
    assert "copywriter wrote 10 words\n" in whole.stdout, whole.stdout


async def test_runs_since_lists_the_runs_created_since_then(
    server_process: ServerProcess,
) -> None:
    """`runs --since TIME` (or a duration back from now, `--since 2h`) lists the runs
    created after it, with --filter as well; a WHEN it cannot read is a usage error."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        older = await client.start_run("older")
        await older.close()
        await asyncio.sleep(0.02)
        cut = datetime.now(UTC).isoformat()
        await asyncio.sleep(0.02)
        newer = await client.start_run("newer")
        await newer.close()

    since = await cli("runs", "--target", target, "--since", cut)
    assert since.returncode == 0, since.stderr
    assert newer.run_id in since.stdout and older.run_id not in since.stdout
    recent = await cli("runs", "--target", target, "--since", "1h", "--filter", "workflow = older")
    assert recent.returncode == 0, recent.stderr
    assert older.run_id in recent.stdout and newer.run_id not in recent.stdout
    for when in ("yesterday", "0001-01-01T00:00:00+01:00", "2026-12-01 09:00:00"):
        bad = await cli("runs", "--target", target, "--since", when)
        assert bad.returncode == 2 and "--since" in bad.stderr, when
        assert "Traceback" not in bad.stderr


async def test_get_and_runs_say_why_a_run_never_started_is_stalled(
    server_process: ServerProcess,
) -> None:
    """A run created by a producer that died before its first event: `serve --start-within`
    makes it STALLED, and `get` says why (`get --json` too, in `health_reason`); it is still
    PENDING, with no ETA to speak of."""
    from runstream.v1 import run_pb2, run_service_pb2, run_service_pb2_grpc

    server_process.extra = ("--start-within", "0.5")
    server_process.start()
    target = server_process.target
    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="nightly"))
        run_id = created.run.run_id
        for _ in range(200):  # a check every 0.125 s: the run is late within a second
            got = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
            if got.run.health == run_pb2.RUN_HEALTH_STALLED:
                break
            await asyncio.sleep(0.05)

    details = await cli("get", run_id, "--target", target)
    assert details.returncode == 0, details.stderr
    lines = details.stdout.splitlines()
    assert "PENDING" in next(line for line in lines if "Status" in line)
    health = next(line for line in lines if "Health" in line)
    assert re.search(
        r"STALLED\s+created \d+s ago and never started: its producer may have stopped before "
        r"its first event",
        health,
    ), health
    assert "none until the run starts" in next(line for line in lines if "Estimate" in line)

    as_json = await cli("get", run_id, "--target", target, "--json")
    assert as_json.returncode == 0, as_json.stderr
    run = json.loads(as_json.stdout)["run"]
    assert run["health"] == "RUN_HEALTH_STALLED"
    assert re.fullmatch(
        r"created \d+s ago and never started: its producer may have stopped before its first "
        r"event",
        run["health_reason"],
    ), run

    listed = await cli("runs", "--target", target)
    row = next(line for line in listed.stdout.splitlines() if run_id in line)
    assert "PENDING" in row and "STALLED" in row


async def test_runs_watch_follows_runs_as_they_start_and_finish(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    target = server_process.target
    watcher = await asyncio.create_subprocess_exec(
        *CLI,
        "runs",
        "--watch",
        "--plain",
        "--target",
        target,
        "--filter",
        'workflow = "board"',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=ENV,
    )
    assert watcher.stdout is not None
    seen: list[str] = []

    async def wait_for_line(predicate: Callable[[str], bool]) -> str:
        assert watcher.stdout is not None
        while line := (await asyncio.wait_for(watcher.stdout.readline(), 60)).decode():
            seen.append(line)
            if predicate(line):
                return line
        raise AssertionError("".join(seen))

    try:
        await wait_for_line(lambda line: "following changes" in line)
        async with runstream.connect(target) as client:
            run = await client.start_run("board", steps=["a"])
            await client.start_run("elsewhere")
            await wait_for_line(lambda line: run.run_id in line)
            async with run:
                async with run.step("a"):
                    pass
                await run.complete()
        done = await wait_for_line(lambda line: run.run_id in line and "SUCCEEDED" in line)
        assert "100%" in done and "board" in done
        assert not any("elsewhere" in line for line in seen)
    finally:
        if watcher.returncode is None:
            watcher.terminate()
        await watcher.wait()


async def test_runs_watch_lists_the_live_runs_and_the_newest_ended_as_limit_says(
    server_process: ServerProcess,
) -> None:
    """`runs --watch` starts from every run not ended and the newest --limit that ended (not
    the store's whole history), and says when it left older ones out."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        live = await client.start_run("board")
        await live.flush()
        for _ in range(3):
            async with await client.start_run("board") as run:
                await run.complete()
    first = await _first_lines_of("runs", "--watch", "--limit", "2", "--target", target)
    assert first.startswith(
        "3 runs (of those ended, the newest 2: --limit shows more); following changes\n"
    ), first
    everything = await _first_lines_of("runs", "--watch", "--limit", "3", "--target", target)
    assert everything.startswith("4 runs; following changes\n"), everything
    # Past what the server takes: named as the option the user gave.
    refused = await cli("runs", "--watch", "--limit", "100001", "--target", target)
    assert refused.returncode == 2
    assert "--limit: at most 100,000 with --watch" in refused.stderr
    if shutil.which("script") is not None:  # the live table says so too
        table = await on_a_terminal("runs", "--watch", "--limit", "2", "--target", target)
        assert table.stdout is not None
        output = b""
        try:
            while b"(the newest 2 ended; --limit shows more)" not in output:
                chunk = await asyncio.wait_for(table.stdout.read(4096), 30)
                assert chunk, output.decode(errors="replace")
                output += chunk
        finally:
            table.kill()
            await table.wait()


async def test_runs_watch_json_ends_quietly_when_its_reader_goes_away(
    server_process: ServerProcess,
) -> None:
    """`runs --watch --json | head -1` printed "runstream: [Errno 32] Broken pipe" once head
    had its line; now it ends without a word, as the tables do."""
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        await client.start_run("board")
        read_end, write_end = os.pipe()
        watcher = await asyncio.create_subprocess_exec(
            *CLI,
            "runs",
            "--watch",
            "--json",
            "--target",
            target,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        os.close(write_end)
        assert watcher.stderr is not None
        try:
            with os.fdopen(read_end, "rb") as reader:  # head: one line, then gone
                first = await asyncio.wait_for(asyncio.to_thread(reader.readline), 60)
            assert json.loads(first)["workflow"] == "board"
            await client.start_run("board")  # a change to print, to no one
            errors = await asyncio.wait_for(watcher.stderr.read(), 60)
            assert await watcher.wait() == 1
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
    assert errors == b""


def test_a_demo_whose_reader_goes_away_ends_quietly_rather_than_crashing() -> None:
    """`runstream demo --plain | head -20` died of SIGSEGV (exit 139): rich's SystemExit,
    raised in the demo's watcher task, threw the event loop over with its gRPC channels open;
    with --replicas its redis-server was left running (found in review)."""
    read_end, write_end = os.pipe()
    demo = subprocess.Popen(
        [*CLI, "demo", "--speed", "20", "--plain", "--address", f"127.0.0.1:{free_port()}"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:  # head: a few lines, then gone
            for _ in range(5):
                assert reader.readline()
        _, errors = demo.communicate(timeout=60)
    finally:
        if demo.returncode is None:
            demo.kill()
            demo.wait()
    assert (demo.returncode, errors) == (1, b"")


async def on_a_terminal(
    *args: str, lines: int = 50, under: tuple[str, ...] = ()
) -> asyncio.subprocess.Process:
    """The CLI under script(1), which gives it a pseudo-terminal, so it draws live and reads
    keys: what the test writes to script's stdin arrives as key presses. `under` is a command
    that runs the CLI (script's exit status is that command's)."""
    return await asyncio.create_subprocess_exec(
        "script",
        "-qec",
        shlex.join([*under, *CLI, *args]),
        "/dev/null",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**ENV, "COLUMNS": "150", "LINES": str(lines), "TERM": "xterm-256color"},
    )


def the_cli_under(script: asyncio.subprocess.Process) -> int:
    """The pid of the CLI that script(1) runs (through a shell that may exec it)."""
    pending = [script.pid]
    while pending:
        pid = pending.pop()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[1:3] == [b"-m", b"runstream.cli.main"]:
            return pid
        for task in Path(f"/proc/{pid}/task").iterdir():
            pending += [int(child) for child in (task / "children").read_text().split()]
    raise AssertionError("no CLI process under script(1)")


async def shown_until(
    process: asyncio.subprocess.Process, output: bytearray, text: bytes, after: int = 0
) -> int:
    """Reads `process`'s terminal into `output` until `text` shows (past `after`); where."""
    assert process.stdout is not None
    while (found := output.find(text, after)) < 0:
        chunk = await asyncio.wait_for(process.stdout.read(4096), 60)
        assert chunk, output.decode(errors="replace")
        output.extend(chunk)
    return found


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
@pytest.mark.parametrize("command", ["watch", "runs"])
async def test_sigterm_stops_a_live_view_as_ctrl_c_does_and_gives_the_cursor_back(
    server_process: ServerProcess, command: str
) -> None:
    """`kill`, `timeout` or a supervisor end a live view with SIGTERM: it died on the spot,
    leaving the terminal's cursor hidden (and, under a prompt, its keys unechoed); found in
    review. It now unwinds as on Ctrl-C, says "terminated" and exits 143."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign", steps=["persona"])
        await run.flush()
        args = ("watch", run.run_id) if command == "watch" else ("runs", "--watch")
        view = await on_a_terminal(*args, "--target", server_process.target)
        output = await shown_then_sent_sigterm(view)
        await run.complete()
    assert view.returncode == 143, output.decode(errors="replace")
    hidden = output.rfind(b"\x1b[?25l")
    assert hidden >= 0 and output.find(b"\x1b[?25h", hidden) > hidden  # shown again
    assert b"terminated" in output and b"Traceback" not in output


async def shown_then_sent_sigterm(
    view: asyncio.subprocess.Process, whom: Callable[[int], int] = lambda cli: cli
) -> bytes:
    """Once `view` shows a running run, sends SIGTERM to the CLI under it (or to the process
    `whom` picks given the CLI's pid); all `view` showed."""
    output = bytearray()
    try:
        await shown_until(view, output, b"RUNNING")
        os.kill(whom(the_cli_under(view)), signal.SIGTERM)
        rest, _ = await asyncio.wait_for(view.communicate(), 30)
    except TimeoutError:
        raise AssertionError(output.decode(errors="replace")[-3000:]) from None
    finally:
        if view.returncode is None:
            view.kill()
            await view.wait()
    return bytes(output + rest)


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs timeout(1)")
@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
async def test_a_live_view_in_the_terminals_background_draws_and_stops_on_sigterm(
    server_process: ServerProcess,
) -> None:
    """`timeout N runstream watch RUN` runs the watch in a process group of its own, in the
    terminal's background (as `&` does): switching the terminal to read keys stopped it with
    SIGTTOU at once, and it stayed stopped through timeout's SIGTERM, never exiting (found in
    review). It now reads no keys there, draws, and exits 143 on SIGTERM."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign", steps=["persona"])
        await run.flush()
        view = await on_a_terminal(
            "watch",
            run.run_id,
            "--target",
            server_process.target,
            # From a shell that stays (as a terminal's does): timeout, not the session's
            # leader then, moves itself and the watch to a process group of their own.
            under=("sh", "-c", 'timeout --preserve-status 300 "$@"; exit $?', "sh"),
        )
        output = await shown_then_sent_sigterm(view, the_parent_of)  # timeout's time is up
        await run.complete()
    assert view.returncode == 143, output.decode(errors="replace")[-3000:]
    assert b"Traceback" not in output


def the_parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
async def test_the_live_run_table_puts_runs_still_going_above_those_that_ended(
    server_process: ServerProcess,
) -> None:
    """On 24 rows, twenty ended runs newer than the one still running filled the table and
    pushed it below the fold; runs that ended while it was up piled up past --limit."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        going = await client.start_run("long-haul")
        await going.flush()
        for n in range(22):
            done = await client.start_run("short-batch")
            await done.complete(summary=f"done {n}")
        table = await on_a_terminal("runs", "--watch", "--target", server_process.target, lines=24)
        output = bytearray()
        try:
            async with asyncio.timeout(20):  # the frames come on: below the fold, for ever
                await shown_until(table, output, going.run_id.encode())
                await shown_until(table, output, b"21 (the newest 20 ended; --limit shows more)")
        except TimeoutError:
            raise AssertionError(output.decode(errors="replace")[-3000:]) from None
        finally:
            table.kill()
            await table.wait()
        await going.complete()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
async def test_runs_watch_on_a_terminal_says_when_the_server_stops_answering(
    server_process: ServerProcess,
) -> None:
    """The live table said "live" all the while its server was frozen (its stream reconnects
    without a word); now it says the connection is lost, and "live" again once it answers."""
    server_process.start()
    assert server_process.process is not None
    table = await on_a_terminal("runs", "--watch", "--target", server_process.target)
    assert table.stdout is not None
    output = bytearray()
    try:
        await shown_until(table, output, b"\xc2\xb7 live")
        server_process.process.send_signal(signal.SIGSTOP)
        lost = await shown_until(table, output, b"connection lost")
        server_process.process.send_signal(signal.SIGCONT)
        await shown_until(table, output, b"\xc2\xb7 live", after=lost)
    finally:
        server_process.process.send_signal(signal.SIGCONT)
        if table.returncode is None:
            table.kill()
        await table.wait()
    assert b"Traceback" not in output


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
async def test_watch_on_a_terminal_answers_the_open_prompt_with_a_key(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    target = server_process.target
    async with runstream.connect(target) as client:
        run = await client.start_run("campaign", steps=["persona"])
        asking = asyncio.create_task(
            run.ask(
                "Which audience persona should we prioritise?",
                [("wanderer", "Weekend Wanderer"), ("summiteer", "City Summiteer")],
                decision_id="persona",
            )
        )
        await run.flush()
        viewer = await on_a_terminal("watch", run.run_id, "--target", target, "--by", "ana")
        assert viewer.stdin is not None and viewer.stdout is not None
        output = bytearray()

        async def read_all() -> None:
            assert viewer.stdout is not None
            while chunk := await viewer.stdout.read(4096):
                output.extend(chunk)

        reader = asyncio.create_task(read_all())
        try:
            for _ in range(600):
                if b"press 1-2 to answer" in output:
                    break
                assert viewer.returncode is None, output.decode(errors="replace")
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(output.decode(errors="replace"))
            viewer.stdin.write(b"2")  # the second option, by key press
            await viewer.stdin.drain()
            result = await asyncio.wait_for(asking, 30)
            assert (result.choice, result.answered_by) == ("summiteer", "ana")
            await run.complete()
            await run.close()
            try:  # the run ended: so does the watcher
                assert await asyncio.wait_for(viewer.wait(), 30) == 0
            except TimeoutError:
                # Seen once in many runs: say which process did not end, and where it waits.
                report = _where_processes_wait(viewer.pid)
                raise AssertionError(
                    f"{report}\n{output.decode(errors='replace')[-3000:]}"
                ) from None
        finally:
            if viewer.returncode is None:
                viewer.kill()
                await viewer.wait()
            await asyncio.wait_for(reader, 10)
    text = output.decode(errors="replace")
    assert "Decision needed · persona" in text
    assert "City Summiteer" in text
    assert "Traceback" not in text


def _where_processes_wait(root: int) -> str:
    """The processes under `root` that are still alive, with their Python stacks (py-spy)."""
    from pathlib import Path

    def descendants(pid: int) -> list[int]:
        found = []
        with contextlib.suppress(OSError):  # it ended meanwhile
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    found += [int(child), *descendants(int(child))]
        return found

    lines = []
    pyspy = Path(sys.executable).parent / "py-spy"
    for pid in [root, *descendants(root)]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        lines.append(f"alive: {pid} {command[:200]}")
        if "python" in command and pyspy.exists():
            dump = subprocess.run([str(pyspy), "dump", "--pid", str(pid)], capture_output=True)
            lines.append(dump.stdout.decode(errors="replace")[-4000:])
    return "\n".join(lines)


async def test_plain_output_says_a_question_can_be_skipped_and_when_it_closes(
    server_process: ServerProcess,
) -> None:
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("manager")
        asking = asyncio.create_task(
            run.ask("Which file?", ["a.pdf", "b.pdf"], default="b.pdf", timeout=600, can_skip=True)
        )
        await run.flush()
        await _wait_open(client, run.run_id)
        skippable = await _open_id(client, run)
        await client.submit_decision(run.run_id, skippable, skip=True)
        await asyncio.wait_for(asking, 20)
        strict = asyncio.create_task(run.ask("Go on?", ["yes", "no"], timeout=90))
        await run.flush()
        await _wait_open(client, run.run_id)
        await client.submit_decision(run.run_id, await _open_id(client, run), "yes")
        await asyncio.wait_for(strict, 20)
        await run.complete()
        await run.close()

    history = await cli(
        "events", run.run_id, "--target", server_process.target, "--kinds", "decision_requested"
    )
    assert history.returncode == 0, history.stderr
    text = history.stdout
    assert "unanswered after 10m 00s it takes b.pdf" in text
    assert f"runstream answer {run.run_id} {skippable} CHOICE (or --skip)" in text
    assert "unanswered after 1m 30s it closes" in text
    assert text.count("(or --skip)") == 1


async def _open_id(client: runstream.Client, run: runstream.RunReporter) -> str:
    (decision,) = await client.list_decisions(run.run_id, state=runstream.DecisionState.OPEN)
    return decision.decision_id


# --- what producers wrote, printed safely ---------------------------------------------------

CLEAR = "\x1b[2J"  # clears the screen
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title (rich itself never writes one)


async def _run_named_with_escapes(server: RunstreamServer) -> str:
    """A finished run whose names hold escape sequences, as a store that took them before the
    server refused them holds it: written through the run manager, which no request check
    stands in front of."""
    runs = server.runs
    assert runs is not None
    step = StepSpec(step_id="research", name=f"Research{CLEAR}", agent=f"writer{TITLE}")
    await runs.create_run(
        run_id="escapes",
        workflow=f"campaign{CLEAR}",
        display_name=f"Q3{TITLE}\nRUN SUCCEEDED",
        labels={"team": f"growth{CLEAR}"},
        steps=[step],
    )
    option = event_pb2.DecisionOption(value="yes", label=f"Yes{CLEAR}", description="go\non")
    events = [
        event_pb2.RunEvent(step_started=event_pb2.StepStarted(step_id="research")),
        event_pb2.RunEvent(
            agent_activity=event_pb2.AgentActivity(
                agent_id="w", agent_name=f"Writer{CLEAR}", activity=1, message=f"red{CLEAR}"
            )
        ),
        event_pb2.RunEvent(metrics_update=event_pb2.MetricsUpdate(values={f"leads{CLEAR}": 3.0})),
        event_pb2.RunEvent(
            decision_requested=event_pb2.DecisionRequested(
                decision_id="go", prompt=f"Go on?{CLEAR}\nSecond line", options=[option]
            )
        ),
        event_pb2.RunEvent(
            text_delta=event_pb2.TextDelta(
                message_id="m", agent_id="w", delta=f"Copy{CLEAR}\nline two", final=True
            )
        ),
        event_pb2.RunEvent(
            step_failed=event_pb2.StepFailed(
                step_id="research", error=ErrorInfo(message=f"boom{CLEAR}\r\nTraceback")
            )
        ),
        event_pb2.RunEvent(run_failed=event_pb2.RunFailed(error=ErrorInfo(message=TITLE))),
    ]
    await runs.append("escapes", events)
    return "escapes"


async def test_names_and_texts_holding_escape_sequences_print_escaped(
    server: RunstreamServer,
) -> None:
    """A producer's `\\x1b[2J` in a run's name cleared the screen of whoever listed the runs,
    and a newline in it printed a made-up line; every command now shows them as escapes."""
    run_id = await _run_named_with_escapes(server)
    target = ("--target", server.target)
    commands = {  # each command, and a name it shows escaped
        ("runs",): "campaign\\x1b[2J",
        ("runs", "--watch"): "campaign\\x1b[2J",
        ("get", run_id): "Research\\x1b[2J",
        ("steps", run_id): "Research\\x1b[2J",
        ("events", run_id): "Writer\\x1b[2J",
        ("events", run_id, "--newest"): "Writer\\x1b[2J",
        ("decisions", run_id): "Go on?\\x1b[2J",
        ("watch", run_id, "--plain"): "Research\\x1b[2J",
    }
    for command, shown in commands.items():
        if command == ("runs", "--watch"):
            out = await _first_lines_of(*command, *target)
        else:
            done = await cli(*command, *target)
            assert "Traceback" not in done.stderr, (command, done.stderr)
            out = done.stdout
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out, (command, out)
        assert shown in out, (command, out)
    watched = (await cli("watch", run_id, "--plain", *target)).stdout
    assert "Q3\\x1b]0;pwned\\x07\\nRUN SUCCEEDED" in watched
    assert not [line for line in watched.splitlines() if line.startswith("RUN SUCCEEDED")]
    assert "Writer\\x1b[2J: red\\x1b[2J" in watched
    assert "    │ Copy\\x1b[2J" in watched and "    │ line two" in watched  # its own lines
    details = (await cli("get", run_id, *target)).stdout
    assert "team=growth\\x1b[2J" in details
    assert "boom\\x1b[2J\\r\\nTraceback" in details  # a step's error, on the step's line


async def _first_lines_of(*args: str) -> str:
    """What `runstream runs --watch` prints (piped) until it has listed the runs."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV
    )
    assert process.stdout is not None
    try:
        lines = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(2)]
    finally:
        process.kill()
        await process.wait()
    return b"".join(lines).decode()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
async def test_the_live_view_shows_escape_sequences_of_a_producer_escaped(
    server: RunstreamServer,
) -> None:
    run_id = await _run_named_with_escapes(server)
    viewer = await on_a_terminal("watch", run_id, "--target", server.target, "--no-input")
    assert viewer.stdout is not None
    output = await asyncio.wait_for(viewer.stdout.read(), 60)
    assert await viewer.wait() == 1  # the run failed
    assert b"\x1b[" in output  # drawn live, with rich's own control sequences
    assert CLEAR.encode() not in output and TITLE.encode() not in output
    assert b"\x07" not in output
    assert b"campaign\\x1b[2J" in output and b"Research\\x1b[2J" in output


# A CSI for terminals that honour C1 controls in UTF-8, a right-to-left override, DEL and a
# line separator: characters json.dumps(ensure_ascii=False) writes as they are.
RAW = "\x9b2J\u202eRTL\x7f\u2028"
READABLE = "café ✔ 日本"


async def test_json_output_escapes_what_a_terminal_would_act_on_and_keeps_text_readable(
    server: RunstreamServer,
) -> None:
    """`get --json` (and every --json) wrote a producer's U+009B and U+202E to the terminal
    as they were, where the tables escape them (found in review)."""
    runs = server.runs
    assert runs is not None
    step = StepSpec(step_id="s", name="S", description=f"{READABLE} {RAW}")
    await runs.create_run(
        run_id="raw", workflow="wf", display_name=f"{READABLE}{RAW}", labels={}, steps=[step]
    )
    option = event_pb2.DecisionOption(value="yes", label="Yes", description=RAW)
    await runs.append(
        "raw",
        [
            event_pb2.RunEvent(run_started=event_pb2.RunStarted(message=f"{READABLE} {RAW}")),
            event_pb2.RunEvent(
                decision_requested=event_pb2.DecisionRequested(
                    decision_id="d", prompt=f"{READABLE}?{RAW}", options=[option]
                )
            ),
        ],
    )
    target = ("--target", server.target)
    commands = [
        ("runs", "--json"),
        ("runs", "--watch", "--json"),
        ("get", "raw", "--json"),
        ("steps", "raw", "--json"),
        ("events", "raw", "--json"),
        ("events", "raw", "--newest", "--json"),
        ("decisions", "raw", "--json"),
    ]
    for command in commands:
        if "--watch" in command:
            out = await _first_line_of(*command, *target)
        else:
            done = await cli(*command, *target)
            assert done.returncode == 0, (command, done.stderr)
            out = done.stdout
        assert not [c for c in "\x9b\u202e\x7f\u2028" if c in out], (command, out)
        assert "\\u009b2J\\u202eRTL\\u007f\\u2028" in out, (command, out)
        assert READABLE in out, (command, out)  # as it is, not \u00e9
        # Once parsed, the same strings as the producer wrote.
        assert [text for text in _strings(json.loads(out)) if RAW in text], (command, out)


def _strings(value: object) -> list[str]:
    """Every string in parsed JSON, keys too."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


async def _first_line_of(*args: str) -> str:
    """The first line `runstream runs --watch --json` prints (piped)."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV
    )
    assert process.stdout is not None
    try:
        return (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    finally:
        process.kill()
        await process.wait()


async def test_get_says_why_a_failed_run_is_failing_after_retention_purged_its_log(
    server_process: ServerProcess,
) -> None:
    """`get` read the reason of a troubled run's health from its last HealthChanged event
    (ListEvents newest first), which retention removes with the log: `get` on an ended,
    failed run past `--retention-runs` exited with FAILED_PRECONDITION. The reason now comes
    with the run."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run_ids = []
        for _ in range(2):
            run = await client.start_run("nightly")
            async with run.step("research") as step:
                await step.fail("the search API timed out")
            await run.fail("research failed")
            await run.close()
            run_ids.append(run.run_id)
    assert server_process.terminate() == 0

    server_process.extra = ("--retention-runs", "1")  # the older run's log goes at start
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        for _ in range(200):
            old = await client.get_run(run_ids[0])
            if old.purged_seq:
                break
            await asyncio.sleep(0.05)
    assert old.purged_seq == old.last_seq

    details = await cli("get", run_ids[0], "--target", server_process.target)
    assert details.returncode == 0, details.stderr
    health = next(line for line in details.stdout.splitlines() if "Health" in line)
    assert re.search(r"FAILING\s+.*research", health), health


async def test_a_run_of_one_step_is_counted_in_the_singular(
    server_process: ServerProcess,
) -> None:
    """Found in review: "slow · 1 steps", "Run created: slow (1 steps planned)"."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("slow", steps=["only"])
        async with run.step("only"):
            pass
        await run.complete()
        await run.close()
    watched = await cli("watch", run.run_id, "--target", server_process.target, "--plain")
    assert watched.returncode == 0, watched.stderr
    assert " · slow · 1 step · " in watched.stdout
    assert "(1 step planned)" in watched.stdout


async def test_watch_and_events_print_what_the_manager_reference_centred_on(
    server_process: ServerProcess,
) -> None:
    """The manager reference's `pipeline_status` flags came with each phase and the CLI left
    them out (found in review, parity52). Its demo printed "Manager: route_planning -
    Analyzing…" and "Workflow: phase_transition"; the CLI printed the analysis alone, the same
    phase line for "agent_completed" and "phase_transition", and error recoveries without
    their severity or that a person must act (found in review, port60 item 7)."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("estimate")
        await run.workflow_state(
            "phase_transition",
            current_stage="Mapping",
            completion_percentage=40,
            pipeline_status={"trades_mapped": False, "files_processed": True, "QA_passed": True},
        )
        await run.thinking(
            "Analyzing user intent",
            thinking_type="route_planning",
            stage="Intent Classification",
            factors=["file_types", "user_query", "existing_data", "complexity", "urgency"],
            confidence=0.85,
            agent_id="manager",
        )
        await run.workflow_state(
            "agent_completed", current_stage="Task Delegation", completion_percentage=60
        )
        await run.error_recovery(
            "API rate limit exceeded",
            severity=runstream.Severity.HIGH,
            recovery_strategy="wait for a new key",
            user_action_required=True,
        )
        await run.complete()
        await run.close()
    target = server_process.target
    kinds = "thinking,workflow_state_change,error_recovery"
    watched, listed = await asyncio.gather(
        cli("watch", run.run_id, "--target", target, "--plain"),
        cli("events", run.run_id, "--target", target, "--kinds", kinds),
    )
    for shown in (watched, listed):
        assert shown.returncode == 0, shown.stderr
        assert (
            "phase_transition · Phase: Mapping (40%) · ✓ QA passed · ✓ files processed · "
            "○ trades mapped"
        ) in shown.stdout, shown.stdout
        assert (
            "manager: route_planning in Intent Classification — Analyzing user intent "
            "(85% confident) · factors: file_types, user_query, existing_data +2 more"
        ) in shown.stdout, shown.stdout
        assert "agent_completed · Phase: Task Delegation (60%)" in shown.stdout, shown.stdout
        assert (
            "HIGH: API rate limit exceeded; wait for a new key (attempt 1); user action required"
        ) in shown.stdout, shown.stdout


async def test_steps_and_get_show_a_done_steps_summary_not_its_last_progress(
    server_process: ServerProcess,
) -> None:
    """A SUCCEEDED step's DETAIL was its last progress text ("generating — Project Manager
    is writing") where the dashboard shows its summary (found in review, port60 item 14)."""
    server_process.start()
    async with runstream.connect(server_process.target) as client:
        run = await client.start_run("campaign", steps=["pm", "copy"])
        async with run.step("pm") as step:
            await step.progress(50, "generating", detail="Project Manager is writing")
            await step.complete("Project Manager: done")
        copy = await run.start_step("copy")
        await copy.progress(30, "drafting", detail="Copy Team is writing")
        await run.flush()
        steps, got = await asyncio.gather(
            cli("steps", run.run_id, "--target", server_process.target),
            cli("get", run.run_id, "--target", server_process.target),
        )
        await run.complete()
        await run.close()
    for shown in (steps, got):
        assert shown.returncode == 0, shown.stderr
        rows = {
            match.group(1): line
            for line in shown.stdout.splitlines()
            if (match := re.match(r"\s*\d+\s+(\S+)\s", line))
        }
        done, running = rows["pm"], rows["copy"]
        assert "Project Manager: done" in done and "is writing" not in done, shown.stdout
        assert "drafting — Copy Team is writing" in running, shown.stdout
