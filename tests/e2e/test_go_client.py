"""The contract works from Go: src/clients/go, built from stubs plain protoc generates.

src/clients/go/build.sh generates the stubs from protos/ (protoc, protoc-gen-go,
protoc-gen-go-grpc) and builds runstream-go against Debian's Go packages, as a Go team would
(README, "Other languages"). The tests run it against real `runstream serve` processes: a
producer reporting over the Report stream and a watcher, both through a server killed and
restarted under them, and a decision answered from Go reaching the producer; then the same
over TLS with a token; then a watch over a run holding an event of a kind newer than its stubs,
which it skips (the scenarios, shared with the Java client's test, are in client_support.py);
then its usage errors, and what it says while the server is unreachable.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port

from .client_support import (
    LanguageClient,
    build,
    first_complaint,
    over_a_kind_newer_than_its_stubs,
    over_tls_with_a_token,
    through_a_restart_with_an_answer,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "src" / "clients" / "go" / "build.sh"
TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")


@pytest.fixture(scope="module")
def runstream_go(tmp_path_factory: pytest.TempPathFactory) -> LanguageClient:
    """runstream-go, generated and built by src/clients/go/build.sh."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: scripts/setup.sh test installs Go's packages")
    return build(BUILD, tmp_path_factory.mktemp("go"), "runstream-go", key_prefix="go")


async def test_go_producer_and_watcher_through_a_server_restart_and_an_answer_from_go(
    server_process: ServerProcess, runstream_go: LanguageClient
) -> None:
    await through_a_restart_with_an_answer(server_process, runstream_go, "go-run")


async def test_go_client_over_tls_with_a_token(
    tmp_path: Path, runstream_go: LanguageClient
) -> None:
    refusal = await over_tls_with_a_token(tmp_path, runstream_go)
    assert "Unauthenticated" in refusal  # grpc-go's name of the code


async def test_go_watcher_skips_an_event_of_a_kind_newer_than_its_stubs(
    tmp_path: Path, runstream_go: LanguageClient
) -> None:
    await over_a_kind_newer_than_its_stubs(tmp_path, runstream_go)


def test_go_client_names_a_missing_operand_and_refuses_negative_counts(
    runstream_go: LanguageClient,
) -> None:
    """`runstream-go produce` without its RUN_ID listed the flags alone, so nothing said what
    was missing; `-steps -1` completed a run "-1 steps". Neither connects to anything."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(runstream_go.command), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    missing = run("produce", "-target", "127.0.0.1:1")
    assert missing.returncode == 2
    assert "produce: expected RUN_ID, got 0 operand(s)" in missing.stderr
    assert "usage: runstream-go produce [flags] RUN_ID" in missing.stderr
    answer = run("answer", "-target", "127.0.0.1:1", "some-run", "approve")
    assert answer.returncode == 2
    assert "usage: runstream-go answer [flags] RUN_ID DECISION CHOICE" in answer.stderr
    negative = run("produce", "-target", "127.0.0.1:1", "-steps", "-1", "some-run")
    assert negative.returncode == 2
    assert "-steps and -progress are 0 or more, got -1 and 4" in negative.stderr


def test_go_client_says_what_it_waits_for_while_the_server_is_unreachable(
    runstream_go: LanguageClient,
) -> None:
    """`runstream-go produce` at an address nobody listens on said nothing for the minute
    before it gave up, while `watch` logs each retry: its CreateRun retries silently."""
    target = f"127.0.0.1:{free_port()}"
    produce = first_complaint(runstream_go, "produce", "-target", target, "some-run")
    assert "CreateRun: Unavailable" in produce
    assert "connection refused" in produce
    assert "; trying again in " in produce
    answer = first_complaint(runstream_go, "answer", "-target", target, "run", "approve", "yes")
    assert "SubmitDecision: Unavailable" in answer
    assert "; trying again in " in answer
