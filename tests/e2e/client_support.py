"""What the tests of the Go and Java clients share: building a client, and the scenarios.

src/clients/go and src/clients/java build a command with the same interface (`produce`,
`watch`, `answer`; `--target`, `--ca`, `--token-file`, `--interval 120ms`, `--ask`, ...) and
the same output ("N EVENT_KIND_X" per event of a kind its stubs know, "ended after seq N",
"asked D", "decision D: C", "completed RUN: SUMMARY"), so one scenario runs either against
real `runstream serve` processes: a producer reporting over the Report stream and a watcher,
both through a server killed and restarted under them, and a decision answered from the
client reaching the producer; then the same over TLS with a token; then a watch over a run
holding an event of a kind newer than the client's stubs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import runstream

from tests.conftest import ServerProcess, free_port
from tests.identity import AUDIENCE, ISSUER, Keys, Pki

from .kind_support import CHANGES_NOTHING, copy_with_a_new_kind
from .web_support import require

MISSING = 3  # a build.sh's exit status when a tool or a library is not installed
# 1 RunStarted, per step 1 StepStarted + 4 StepProgress + 1 StepCompleted (3 steps),
# 1 DecisionRequested, 1 RunCompleted: the producer's events, keyed PREFIX:1 .. PREFIX:21.
PRODUCED = 1 + 3 * 6 + 1 + 1


@dataclass(frozen=True)
class LanguageClient:
    """A built client: its command, and the idempotency-key prefix its producer uses."""

    command: Path
    key_prefix: str


def build(script: Path, out: Path, command: str, key_prefix: str) -> LanguageClient:
    """Runs a client's build.sh into `out`, which makes the command `out/command` there. A
    build.sh that exits 3 names what is not installed: skipped on a developer machine, a
    failure in CI."""
    result = subprocess.run(
        ["bash", str(script), str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    require(result.returncode != MISSING, result.stderr.strip())
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}{result.stderr}"
    return LanguageClient(command=out / command, key_prefix=key_prefix)


async def start(client: LanguageClient, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(client.command), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def read_until(process: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> str:
    """Reads stdout lines into `seen` until one matches `pattern`; returns that line."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                errors = await process.stderr.read() if process.stderr else b""
                raise AssertionError(
                    f"exited before a line matching {pattern!r}: {seen}\n{errors.decode()}"
                )
            seen.append(line.strip())
            if re.search(pattern, line):
                return line


async def finish(process: asyncio.subprocess.Process, within: float = 60) -> tuple[int, str, str]:
    """Waits for the process to exit; returns its exit status, stdout and stderr. One still
    running after `within` seconds gets SIGQUIT first (Go and the JVM both print every
    thread's stack on it), then SIGKILL, and fails the test with what it wrote."""
    reading = asyncio.ensure_future(process.communicate())
    try:
        output, errors = await asyncio.wait_for(asyncio.shield(reading), within)
    except TimeoutError:
        process.send_signal(signal.SIGQUIT)
        await asyncio.sleep(1)
        if process.returncode is None:
            process.kill()
        output, errors = await reading
        raise AssertionError(
            f"still running after {within} s:\n{output.decode()}\n{errors.decode()}"
        ) from None
    assert process.returncode is not None
    return process.returncode, output.decode(), errors.decode()


async def wait_for_run(target: str, run_id: str) -> None:
    async with runstream.connect(target) as client:
        async with asyncio.timeout(20):
            while True:
                try:
                    await client.get_run(run_id)
                    return
                except runstream.NotFoundError:
                    await asyncio.sleep(0.05)


def event_seqs(lines: list[str]) -> list[int]:
    return [int(line.split()[0]) for line in lines if re.fullmatch(r"\d+ EVENT_KIND_\w+", line)]


async def through_a_restart_with_an_answer(
    server_process: ServerProcess, client: LanguageClient, run_id: str
) -> None:
    """A producer and a watcher through a server killed and restarted under them, and a
    decision answered with the client reaching the producer: every event watched exactly once
    and in order, each of the producer's events stored once."""
    server_process.start()
    target = ["--target", server_process.target]
    producer = await start(
        client, "produce", *target, "--interval", "120ms", "--ask", "approve", run_id
    )
    watcher = None
    try:
        await wait_for_run(server_process.target, run_id)
        watcher = await start(client, "watch", *target, run_id)
        watched: list[str] = []
        await read_until(watcher, r"^6 ", watched)  # mid-stream: the producer is still at it
        server_process.kill()
        server_process.start()  # same port, same store
        produced: list[str] = []
        await read_until(producer, r"^asked approve", produced)
        code, output, errors = await finish(
            await start(client, "answer", *target, run_id, "approve", "yes")
        )
        assert code == 0, errors
        assert "answered approve: yes" in output
        code, output, producer_log = await finish(producer)
        assert code == 0, producer_log
        # The answer reached the producer, pushed on its Report stream (or read back with
        # GetDecision had it been given while the producer was reconnecting).
        assert "decision approve: yes" in output, output
        assert f"completed {run_id}: 3 steps, approve: yes" in output
        # The restart cut the Report stream.
        assert "resending what is not acknowledged" in producer_log, (output, producer_log)
        code, output, watcher_log = await finish(watcher)
    finally:
        for process in (producer, watcher):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 0, watcher_log
    assert "resuming after seq" in watcher_log, (output, watcher_log)  # the restart cut it too
    watched += output.splitlines()

    async with runstream.connect(server_process.target) as sdk:
        run = await sdk.get_run(run_id)
        stored = [event async for event in sdk.list_events(run_id)]
    # Every event of the run exactly once, in order, across the cut.
    assert event_seqs(watched) == list(range(1, run.last_seq + 1)), watched
    assert watched[-1] == f"ended after seq {run.last_seq}"
    assert f"{run.last_seq} EVENT_KIND_RUN_COMPLETED" in watched
    # Each of the producer's events stored once, although the restart made it resend.
    keys = Counter(event.idempotency_key for event in stored if event.idempotency_key)
    prefix = f"{client.key_prefix}:"
    producer_keys = {key: count for key, count in keys.items() if key.startswith(prefix)}
    assert producer_keys == {f"{prefix}{n}": 1 for n in range(1, PRODUCED + 1)}
    assert run.status == runstream.RunStatus.SUCCEEDED


async def over_tls_with_a_token(tmp_path: Path, client: LanguageClient) -> str:
    """A producer and a watcher over TLS with a token; then a watch without the token, refused
    and not retried. Returns that refusal's stderr."""
    keys = Keys.make(tmp_path / "keys")
    pki = Pki.make(tmp_path / "pki")
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "runstream.db",
        extra=(
            "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--jwt-secret-file", str(keys.secret_file),
            "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        ),
    )  # fmt: skip
    token = tmp_path / "token.jwt"
    token.write_text(keys.hs_token(roles=["admin"]) + "\n")
    secure = ["--target", server.target, "--ca", str(pki.ca_file)]
    try:
        server.start()
        producer = await start(
            client, "produce", *secure, "--token-file", str(token), "--steps", "1", "tls-run"
        )
        code, output, errors = await finish(producer)
        assert code == 0, errors
        assert "completed tls-run: 1 steps" in output

        watcher = await start(client, "watch", *secure, "--token-file", str(token), "tls-run")
        code, output, errors = await finish(watcher)
        assert code == 0, errors
        lines = output.splitlines()
        assert event_seqs(lines) == list(range(1, len(event_seqs(lines)) + 1))
        assert lines[-1] == f"ended after seq {len(event_seqs(lines))}"

        # Without the token the server refuses, and the client does not retry the refusal.
        anonymous = await start(client, "watch", *secure, "tls-run")
        code, _, errors = await finish(anonymous)
        assert code == 1
        assert "unauthenticated" in errors.lower(), errors
        return errors
    finally:
        server.kill()


NEWER_KIND_PRODUCER = """
import asyncio, sys
import runstream
from runstream.v1 import event_pb2


async def main(target: str, run_id: str) -> None:
    async with runstream.connect(target) as client:
        run = await client.start_run("budgeted", run_id=run_id)
        warning = event_pb2.BudgetWarning(spent_usd=41.5)
        await run.report_event(event_pb2.RunEvent(budget_warning=warning))
        await run.complete("within budget")
        kinds = [runstream.EventKind.BUDGET_WARNING]
        [newer] = [event.seq async for event in client.list_events(run_id, kinds=kinds)]
        print(newer, (await client.get_run(run_id)).last_seq)


asyncio.run(main(*sys.argv[1:]))
"""


async def over_a_kind_newer_than_its_stubs(tmp_path: Path, client: LanguageClient) -> None:
    """A watch over a run holding an event of a kind the client's stubs do not know (its
    server and producer made from a copy of the protos with one kind more): the watcher leaves
    that event out of what it prints, and its seq still moves the cursor, to the run's end."""
    copy = copy_with_a_new_kind(tmp_path / "copy", CHANGES_NOTHING)
    server = ServerProcess(port=free_port(), store_path=tmp_path / "r.db", pythonpath=copy)
    try:
        server.start()
        producer = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", NEWER_KIND_PRODUCER, server.target, "newer-run"),
            env={**os.environ, "PYTHONPATH": copy},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        code, output, errors = await finish(producer)
        assert code == 0, errors
        newer, last = map(int, output.split())
        watcher = await start(client, "watch", "--target", server.target, "newer-run")
        code, output, errors = await finish(watcher)
    finally:
        server.kill()
    assert code == 0, errors
    lines = output.splitlines()
    assert "UNSPECIFIED" not in output, output
    assert event_seqs(lines) == [seq for seq in range(1, last + 1) if seq != newer], lines
    assert newer < last  # the run's completion came after it, and was printed
    assert lines[-1] == f"ended after seq {last}"


def first_complaint(client: LanguageClient, *args: str) -> str:
    """The first line the client run with ARGS writes to stderr, within 30 s (then killed)."""
    with subprocess.Popen(
        [str(client.command), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        watchdog = threading.Timer(30, process.kill)
        watchdog.start()
        try:
            assert process.stderr is not None
            return process.stderr.readline()
        finally:
            watchdog.cancel()
            process.kill()
