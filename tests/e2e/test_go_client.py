"""The contract works from Go: src/clients/go, built from stubs plain protoc generates.

src/clients/go/build.sh generates the stubs from protos/ (protoc, protoc-gen-go,
protoc-gen-go-grpc) and builds runstream-go against Debian's Go packages, as a Go team would
(README, "Other languages"). The tests run it against real `runstream serve` processes: a
producer reporting over the Report stream and a watcher, both through a server killed and
restarted under them, and a decision answered from Go reaching the producer; then the same
over TLS with a token.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import runstream

from tests.conftest import ServerProcess, free_port
from tests.identity import AUDIENCE, ISSUER, Keys, Pki

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "src" / "clients" / "go" / "build.sh"
TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
# 1 RunStarted, per step 1 StepStarted + 4 StepProgress + 1 StepCompleted (3 steps),
# 1 DecisionRequested, 1 RunCompleted: the producer's events, keyed go:1 .. go:21.
PRODUCED = 1 + 3 * 6 + 1 + 1


@pytest.fixture(scope="module")
def runstream_go(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runstream-go, generated and built by src/clients/go/build.sh."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: scripts/setup.sh test installs Go's packages")
    out = tmp_path_factory.mktemp("go")
    result = subprocess.run(
        ["bash", str(BUILD), str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"build.sh failed:\n{result.stdout}{result.stderr}"
    return out / "runstream-go"


async def start(binary: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(binary), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def read_until(process: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> str:
    """Reads stdout lines into `seen` until one matches `pattern`; returns that line."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"exited before a line matching {pattern!r}: {seen}"
            seen.append(line.strip())
            if re.search(pattern, line):
                return line


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        output, errors = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
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


async def test_go_producer_and_watcher_through_a_server_restart_and_an_answer_from_go(
    server_process: ServerProcess, runstream_go: Path
) -> None:
    server_process.start()
    target = ["-target", server_process.target]
    run_id = "go-run"
    producer = await start(
        runstream_go, "produce", *target, "-interval", "120ms", "-ask", "approve", run_id
    )
    watcher = None
    try:
        await wait_for_run(server_process.target, run_id)
        watcher = await start(runstream_go, "watch", *target, run_id)
        watched: list[str] = []
        await read_until(watcher, r"^6 ", watched)  # mid-stream: the producer is still at it
        server_process.kill()
        server_process.start()  # same port, same store
        produced: list[str] = []
        await read_until(producer, r"^asked approve", produced)
        code, output, errors = await finish(
            await start(runstream_go, "answer", *target, run_id, "approve", "yes")
        )
        assert code == 0, errors
        assert "answered approve: yes" in output
        code, output, producer_log = await finish(producer)
        assert code == 0, producer_log
        # The answer reached the producer, pushed on its Report stream (or read back with
        # GetDecision had it been given while the producer was reconnecting).
        assert "decision approve: yes" in output, output
        assert f"completed {run_id}: 3 steps, approve: yes" in output
        assert "resending what is not acknowledged" in producer_log  # the restart cut it
        code, output, watcher_log = await finish(watcher)
    finally:
        for process in (producer, watcher):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 0, watcher_log
    assert "resuming after seq" in watcher_log  # the restart cut the watch too
    watched += output.splitlines()

    async with runstream.connect(server_process.target) as client:
        run = await client.get_run(run_id)
        stored = [event async for event in client.list_events(run_id)]
    # Every event of the run exactly once, in order, across the cut.
    assert event_seqs(watched) == list(range(1, run.last_seq + 1)), watched
    assert watched[-1] == f"ended after seq {run.last_seq}"
    assert f"{run.last_seq} EVENT_KIND_RUN_COMPLETED" in watched
    # Each of the producer's events stored once, although the restart made it resend.
    keys = Counter(event.idempotency_key for event in stored if event.idempotency_key)
    producer_keys = {key: count for key, count in keys.items() if key.startswith("go:")}
    assert producer_keys == {f"go:{n}": 1 for n in range(1, PRODUCED + 1)}
    assert run.status == runstream.RunStatus.SUCCEEDED


async def test_go_client_over_tls_with_a_token(tmp_path: Path, runstream_go: Path) -> None:
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
    secure = ["-target", server.target, "-ca", str(pki.ca_file)]
    try:
        server.start()
        producer = await start(
            runstream_go, "produce", *secure, "-token-file", str(token), "-steps", "1", "tls-run"
        )
        code, output, errors = await finish(producer)
        assert code == 0, errors
        assert "completed tls-run: 1 steps" in output

        watcher = await start(runstream_go, "watch", *secure, "-token-file", str(token), "tls-run")
        code, output, errors = await finish(watcher)
        assert code == 0, errors
        lines = output.splitlines()
        assert event_seqs(lines) == list(range(1, len(event_seqs(lines)) + 1))
        assert lines[-1] == f"ended after seq {len(event_seqs(lines))}"

        # Without the token the server refuses, and the client does not retry the refusal.
        anonymous = await start(runstream_go, "watch", *secure, "tls-run")
        code, _, errors = await finish(anonymous)
        assert code == 1
        assert "Unauthenticated" in errors
    finally:
        server.kill()
