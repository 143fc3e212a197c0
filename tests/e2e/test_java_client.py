"""The contract works from Java: src/clients/java, built from stubs protoc generates.

src/clients/java/build.sh generates the stubs from protos/ (protoc, grpc_java_plugin) and
compiles runstream-java with javac against Debian's jars, no Maven or Gradle (README, "Other
languages"). The tests run it against real `runstream serve` processes, in the scenarios the
Go client's test runs (client_support.py): a producer reporting over the Report stream and a
watcher, both through a server killed and restarted under them, and a decision answered from
Java reaching the producer; then the same over TLS with a token, where a call without the
token is refused with the reason the server put in the status details; then a watch over a run
holding an event of a kind newer than its stubs, which it skips; then what it says while the
server is unreachable.
"""

from __future__ import annotations

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
BUILD = ROOT / "src" / "clients" / "java" / "build.sh"


@pytest.fixture(scope="module")
def runstream_java(tmp_path_factory: pytest.TempPathFactory) -> LanguageClient:
    """runstream-java, generated and compiled by src/clients/java/build.sh (skipped, outside
    CI, on a machine without the JDK or Debian's gRPC jars)."""
    return build(BUILD, tmp_path_factory.mktemp("java"), "runstream-java", key_prefix="java")


async def test_java_producer_and_watcher_through_a_server_restart_and_an_answer_from_java(
    server_process: ServerProcess, runstream_java: LanguageClient
) -> None:
    await through_a_restart_with_an_answer(server_process, runstream_java, "java-run")


async def test_java_client_over_tls_with_a_token(
    tmp_path: Path, runstream_java: LanguageClient
) -> None:
    refusal = await over_tls_with_a_token(tmp_path, runstream_java)
    # The code and the reason from the refusal's google.rpc.ErrorInfo detail.
    assert "runstream-java: UNAUTHENTICATED: " in refusal, refusal
    assert refusal.rstrip().endswith("[TOKEN_MISSING]"), refusal


async def test_java_watcher_skips_an_event_of_a_kind_newer_than_its_stubs(
    tmp_path: Path, runstream_java: LanguageClient
) -> None:
    await over_a_kind_newer_than_its_stubs(tmp_path, runstream_java)


def test_java_client_says_what_it_waits_for_while_the_server_is_unreachable(
    runstream_java: LanguageClient,
) -> None:
    """`runstream-java produce` at an address nobody listens on said nothing for the minute
    before it gave up, while its watch logs each retry: its CreateRun retried silently."""
    target = f"127.0.0.1:{free_port()}"
    produce = first_complaint(runstream_java, "produce", "--target", target, "some-run")
    assert "CreateRun: UNAVAILABLE" in produce, produce
    assert "; trying again in " in produce, produce
    answer = first_complaint(runstream_java, "answer", "--target", target, "run", "approve", "yes")
    assert "SubmitDecision: UNAVAILABLE" in answer, answer
    assert "; trying again in " in answer, answer
