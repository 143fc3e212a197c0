"""The CLI's identity: `runstream token`, `serve --jwt-secret-file`, and client commands that
take their token from --token, $RUNSTREAM_TOKEN or a file, against a real server process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import pytest
import runstream
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.auth.edge import SecurityConfig, TlsConfig, check_exposure

from tests.clients.support import until
from tests.conftest import ServerProcess, free_port
from tests.identity import Pki, start_server

SECRET = b"0123456789abcdef0123456789abcdef-dev"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_clean([sys.executable, "-m", "runstream.cli.main", *args], env)


def run_clean(
    command: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`command`, with none of the caller's RUNSTREAM_ variables, and `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return path


def test_token_prints_a_signed_token_with_the_claims_asked_for(secret_file: Path) -> None:
    result = cli(
        "token", "--secret-file", str(secret_file), "--sub", "alice", "--tenant", "acme",
        "--role", "operator", "--role", "producer", "--ttl", "1h", "--audience", "runstream",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="runstream")
    assert (claims["sub"], claims["tenant"], claims["roles"]) == (
        "alice",
        "acme",
        ["operator", "producer"],
    )
    assert claims["exp"] - claims["iat"] == 3600


def test_token_help_says_its_default_lifetime_as_a_duration() -> None:
    """It said "(default: 3600.0)", a number --ttl itself reads as seconds but no example
    writes."""
    result = cli("token", "--help")
    assert "lifetime, e.g. 1h (default: 1h)" in " ".join(result.stdout.split())


def test_token_refuses_a_short_secret(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("password")
    result = cli("token", "--secret-file", str(short), "--sub", "a", "--tenant", "t", "--role",
                 "viewer")  # fmt: skip
    assert result.returncode == 1
    assert "at least 32 bytes" in result.stderr
    assert "password" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [SECRET + b"\n\n", SECRET[:-1] + b"\r", SECRET + b"\r\n"],
    ids=["blank-line", "ends-in-cr", "crlf"],
)
def test_a_token_verifies_with_the_secret_file_it_was_signed_from(
    tmp_path: Path, content: bytes
) -> None:
    """The CLI and the server read a secret file by one rule, whatever bytes end it."""
    from runstream_server.auth.tokens import AuthConfig, TokenVerifier

    path = tmp_path / "secret"
    path.write_bytes(content)
    minted = cli("token", "--secret-file", str(path), "--sub", "alice", "--tenant", "acme",
                 "--role", "viewer")  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    principal = TokenVerifier(AuthConfig(secret_file=path)).verify(minted.stdout.strip())
    assert (principal.subject, principal.tenant) == ("alice", "acme")


@pytest.mark.parametrize("flag", ["--sub", "--tenant"])
def test_a_token_with_an_empty_subject_or_tenant_is_a_usage_error(
    secret_file: Path, flag: str
) -> None:
    names = {"--sub": "alice", "--tenant": "acme", flag: " "}
    result = cli("token", "--secret-file", str(secret_file), "--sub", names["--sub"],
                 "--tenant", names["--tenant"], "--role", "viewer")  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert f"argument {flag}: must not be empty" in result.stderr


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("ali\nce", "must not contain control characters (U+000A at 3)"),
        ("a" * 257, "is 257 characters; the limit is 256 characters"),
    ],
)
def test_a_token_whose_subject_servers_refuse_is_a_usage_error(
    secret_file: Path, name: str, problem: str
) -> None:
    result = cli("token", "--secret-file", str(secret_file), "--sub", name,
                 "--tenant", "acme", "--role", "viewer")  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert f"argument --sub: {problem}" in result.stderr


def test_a_token_expiring_after_the_year_9999_is_a_usage_error(secret_file: Path) -> None:
    """It was printed, and every server refused it ("claim 'exp' must be a time between
    1970 and the year 9999")."""
    result = cli("token", "--secret-file", str(secret_file), "--sub", "alice",
                 "--tenant", "acme", "--role", "viewer", "--ttl", "3000000d")  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert "argument --ttl: must end before the year 10000" in result.stderr


def test_the_cli_and_the_server_agree_on_the_latest_expiry() -> None:
    from runstream.cli import auth
    from runstream_server.auth import tokens

    assert auth._LAST_SECOND == tokens.LAST_SECOND


@pytest.fixture
def secured(tmp_path: Path, secret_file: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A `serve --jwt-secret-file` process on loopback, and a viewer token it accepts."""
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "r.db",
        extra=("--jwt-secret-file", str(secret_file)),
    )
    server.start()
    try:
        minted = cli("token", "--secret-file", str(secret_file), "--sub", "alice", "--tenant",
                     "acme", "--role", "viewer")  # fmt: skip
        yield server, minted.stdout.strip()
    finally:
        assert server.terminate() == 0


def test_client_commands_take_the_token_from_flag_env_or_file(
    tmp_path: Path, secured: tuple[ServerProcess, str], secret_file: Path
) -> None:
    server, token = secured
    # Named the header to send (found in review, port60 item 14); a person gives options.
    refused = cli("runs", "--target", server.target)
    assert refused.returncode == 1
    assert (
        "runstream: unauthenticated: the server wants a bearer token and none was given: "
        "--token JWT, --token-file PATH, or $RUNSTREAM_TOKEN or $RUNSTREAM_TOKEN_FILE"
    ) in " ".join(refused.stderr.split()), refused.stderr
    assert "authorization" not in refused.stderr
    assert cli("runs", "--target", server.target, "--token", token).returncode == 0
    assert cli("runs", "--target", server.target, env={"RUNSTREAM_TOKEN": token}).returncode == 0
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    by_file = cli("runs", "--target", server.target, "--token-file", str(token_file))
    assert by_file.returncode == 0, by_file.stderr
    denied = cli("cancel", "0" * 32, "--target", server.target, "--token", token)
    assert denied.returncode == 1
    assert "permission denied: CancelRun needs the 'operator' role" in denied.stderr
    # An option beats the environment: an exported viewer token did, silently (found in
    # review), so an operator's --token-file got "needs the 'operator' role".
    operator_file = tmp_path / "operator"
    minted = cli("token", "--secret-file", str(secret_file), "--sub", "olga", "--tenant", "acme",
                 "--role", "operator")  # fmt: skip
    operator_file.write_text(minted.stdout)
    environment = {"RUNSTREAM_TOKEN": token, "RUNSTREAM_TOKEN_FILE": str(token_file)}
    for option in (["--token-file", str(operator_file)], ["--token", minted.stdout.strip()]):
        cancel = cli("cancel", "0" * 32, "--target", server.target, *option, env=environment)
        assert "not found" in cancel.stderr, cancel.stderr
    forged = jwt.encode({"sub": "x", "tenant": "acme", "exp": 2**40}, b"x" * 32)
    bad = cli("runs", "--target", server.target, "--token", forged)
    assert "unauthenticated: bad signature" in bad.stderr


# `runstream ARGV` whose CLI reads this machine's clock 1000 s behind the server's (the
# SDK's clock is left alone, so that a token goes to the server as sent).
CLOCK_BEHIND_BY_1000_S = """
import sys, time, types
from runstream.cli import auth
real_time = time.time
auth.time = types.SimpleNamespace(time=lambda: real_time() - 1000, monotonic=time.monotonic)
from runstream.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


async def test_a_token_file_holding_an_expired_token_is_named_with_what_to_do(
    tmp_path: Path, secured: tuple[ServerProcess, str]
) -> None:
    """A watch whose token file was never renewed ended "token expired 0 s ago by this
    server's clock (exp); clocks out of sync?" once it had re-read the file at expiry and got
    the same token: it names the file and says to renew it (found in review)."""
    server, _ = secured

    def token(roles: list[str], exp: float) -> str:
        claims = {"sub": "alice", "tenant": "acme", "roles": roles, "exp": int(exp)}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    async with runstream.connect(
        server.target, token=token(["producer"], time.time() + 300)
    ) as producer:
        run = await producer.start_run("expiring")  # open: a watch of it waits for events
        short = tmp_path / "short.jwt"
        short.write_text(token(["viewer"], time.time() + 3) + "\n")
        given = token(["viewer"], time.time() + 3)  # a string cannot be read again: no file
        watched, watched_given = await asyncio.gather(
            asyncio.to_thread(
                cli, "watch", run.run_id, "--plain", "--target", server.target,
                "--token-file", str(short),
            ),
            asyncio.to_thread(
                cli, "watch", run.run_id, "--plain", "--target", server.target, "--token", given
            ),
        )  # fmt: skip
        await run.close()
    assert watched.returncode == 1
    said = watched.stderr.splitlines()[-1]
    assert said.startswith(f"runstream: unauthenticated: the token in {short} expired "), said
    assert said.endswith("renew it, writing the new token to that file"), said
    assert "clocks out of sync" not in said and short.read_text().strip() not in watched.stderr
    assert watched_given.returncode == 1
    said = watched_given.stderr.splitlines()[-1]
    assert said.startswith("runstream: unauthenticated: the token given with --token expired "), (
        said
    )
    assert said.endswith(
        "give a fresh one, or --token-file PATH, read again when its token expires"
    )
    assert "clocks out of sync" not in said and given not in watched_given.stderr
    stale = tmp_path / "stale.jwt"  # the same for a command that makes one request
    stale.write_text(token(["viewer"], time.time() - 100))
    listed = cli("runs", "--target", server.target, "--token-file", str(stale))
    assert listed.returncode == 1
    assert f"the token in {stale} expired 10" in listed.stderr, listed.stderr
    listed = cli("runs", "--target", server.target, env={"RUNSTREAM_TOKEN": stale.read_text()})
    assert "the token given with $RUNSTREAM_TOKEN expired 10" in listed.stderr, listed.stderr

    # This machine's clock 1000 s behind the server's: the token expired by the server's
    # clock only, so the server's words, which ask whether the clocks agree, are the point;
    # a stale $RUNSTREAM_TOKEN is not the one a --token-file command sent.
    older = {"RUNSTREAM_TOKEN": token(["viewer"], time.time() - 2000)}
    for source in (["--token", stale.read_text()], ["--token-file", str(stale)]):
        argv = ["runs", "--target", server.target, *source]
        listed = run_clean([sys.executable, "-c", CLOCK_BEHIND_BY_1000_S, *argv], older)
        assert listed.returncode == 1, listed.stderr
        said = listed.stderr.strip().splitlines()[-1]
        assert said.startswith("runstream: unauthenticated: token expired 10"), said
        assert said.endswith("by this server's clock (exp); clocks out of sync?"), said


async def test_answer_with_another_producers_token_names_the_role_answering_needs(
    secured: tuple[ServerProcess, str],
) -> None:
    """A producer's token answering another subject's question was told "a producer's token
    reports to, and reads, its own runs; another's needs the 'viewer' role to read it,
    'operator' to report to it", the refusal of the read that maps a label to its value,
    where a skip was told what answering needs (found in review)."""
    server, _ = secured

    def token(subject: str, roles: list[str]) -> str:
        claims = {"sub": subject, "tenant": "acme", "roles": roles, "exp": int(time.time()) + 300}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    async with runstream.connect(server.target, token=token("alice", ["producer"])) as producer:
        run = await producer.start_run("asking")
        asking = asyncio.create_task(run.ask("Which?", ["a", "b"], decision_id="which"))

        async def asked() -> bool:
            return bool(await producer.list_decisions(run.run_id))

        await until(asked)
        other = token("mallory", ["producer"])
        for given in (["a"], ["--skip"]):
            refused = await asyncio.to_thread(
                cli, "answer", run.run_id, "which", *given, "--target", server.target,
                "--token", other,
            )  # fmt: skip
            assert refused.returncode == 1
            assert refused.stderr.strip() == (
                "runstream: permission denied: SubmitDecision needs the 'operator' role; the "
                "token grants producer"
            ), refused.stderr
        asking.cancel()
        await run.close()


def test_the_demo_reports_to_a_server_with_auth_with_the_usual_token_options(
    tmp_path: Path, secret_file: Path, secured: tuple[ServerProcess, str]
) -> None:
    """`demo --target` took no --token and ignored $RUNSTREAM_TOKEN: against any server with
    a key it ended at once, "unauthenticated: missing authorization metadata"."""
    server, _ = secured
    minted = cli("token", "--secret-file", str(secret_file), "--sub", "alice", "--tenant",
                 "acme", "--role", "producer", "--role", "viewer")  # fmt: skip
    token = minted.stdout.strip()
    demo = ("demo", "--target", server.target, "--speed", "40", "--plain")
    by_env = cli(*demo, env={"RUNSTREAM_TOKEN": token})
    assert by_env.returncode == 0, by_env.stdout[-2000:] + by_env.stderr
    assert "SUCCEEDED" in by_env.stdout, by_env.stdout[-2000:]
    token_file = tmp_path / "demo-token"
    token_file.write_text(token + "\n")
    by_file = cli(*demo, "--token-file", str(token_file))
    assert by_file.returncode == 0, by_file.stdout[-2000:] + by_file.stderr
    refused = cli(*demo)
    assert refused.returncode == 1
    assert "unauthenticated: the server wants a bearer token and none was given" in refused.stderr
    prefixed = tmp_path / "bearer-token"  # as the header carries it: the CLI takes either
    prefixed.write_text(f"Bearer {token}\n")
    by_prefixed = cli(*demo, "--token-file", str(prefixed))
    assert by_prefixed.returncode == 0, by_prefixed.stdout[-2000:] + by_prefixed.stderr
    # The commands each demo suggests at its end work as printed, in the demo's environment:
    # they went without the token (found in review), refused as unauthenticated; grpcurl's
    # then said "Bearer Bearer" for a file holding the prefix.
    for done, env in ((by_file, {}), (by_env, {"RUNSTREAM_TOKEN": token}), (by_prefixed, {})):
        commands = inspect_commands(done.stdout)
        run_id = done.stdout.split("Started run ", 1)[1].split()[0]
        assert sum("grpcurl" in c for c in commands) == 3, commands
        assert len(commands) == 7, commands
        for command in commands:
            assert token not in command
            ran = run_clean(["bash", "-c", command], env)
            assert ran.returncode == 0, (command, ran.stdout[-500:], ran.stderr[-500:])
            if "grpcurl" in command:
                said = "runstream.v1.RunService" if command.endswith(" list") else run_id
                assert said in ran.stdout, (command, ran.stdout[-500:])


async def test_the_demo_over_mutual_tls_suggests_commands_that_connect_as_it_did(
    tmp_path: Path,
) -> None:
    """Its suggested grpcurl commands said -plaintext, and its `runstream` ones took no CA
    or client certificate: against a server with TLS, none of them connected."""
    pki = Pki.make(tmp_path / "pki")
    tls = TlsConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca_file)
    server = await start_server(tmp_path, SecurityConfig(tls=tls))
    try:
        demo = await asyncio.to_thread(
            cli, "demo", "--target", f"localhost:{server.port}", "--speed", "40", "--plain",
            "--ca-file", str(pki.ca_file), "--client-cert", str(pki.client_cert),
            "--client-key", str(pki.client_key),
        )  # fmt: skip
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr
        commands = inspect_commands(demo.stdout)
        assert len(commands) == 7, commands
        for command in commands:
            ran = await asyncio.to_thread(run_clean, ["bash", "-c", command])
            assert ran.returncode == 0, (command, ran.stdout[-500:], ran.stderr[-500:])
    finally:
        await server.stop(grace=0.1)


def test_the_demo_suggests_grpcurl_over_tls_for_a_client_certificate_without_a_ca_file(
    tmp_path: Path,
) -> None:
    """A client certificate alone connects with TLS against the system's roots, as the SDK
    does: the suggested grpcurl said -plaintext beside -cert, which grpcurl refuses."""
    from runstream.cli.auth import repeated_security

    pki = Pki.make(tmp_path / "pki")
    args = argparse.Namespace(client_cert=str(pki.client_cert), client_key=str(pki.client_key))
    for_cli, for_grpcurl = repeated_security(args)
    assert for_grpcurl.split() == ["-cert", str(pki.client_cert), "-key", str(pki.client_key)]
    assert for_cli.split() == [
        "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)
    ]  # fmt: skip


def inspect_commands(output: str) -> list[str]:
    """The commands under "Inspect the run:" at the end of a demo's output."""
    lines = output[output.rindex("Inspect the run:") :].splitlines()[1:]
    return [line.strip().removeprefix("$ ") for line in lines if line.strip().startswith("$ ")]


def test_a_token_no_header_can_carry_is_one_line_that_does_not_show_it(
    tmp_path: Path, secured: tuple[ServerProcess, str]
) -> None:
    """A line break or a non-ASCII letter inside the token was a traceback of grpc's
    ExecuteBatchError after a C log line."""
    server, token = secured
    broken = token[:20] + "\u00e9" + token[20:]
    token_file = tmp_path / "token"
    token_file.write_text(broken + "\n")
    for given, env in (
        (["--token", token[:20] + "\n" + token[20:]], None),
        ([], {"RUNSTREAM_TOKEN": broken}),
        (["--token-file", str(token_file)], None),
    ):
        result = cli("runs", "--target", server.target, *given, env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "character 21 of the token is U+" in result.stderr, result.stderr
        assert token[:20] not in result.stderr


def test_a_token_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    """A binary file given as --token-file printed "'utf-8' codec can't decode byte 0xff in
    position 0" without naming the file (found in review)."""
    binary = tmp_path / "binary.jwt"
    binary.write_bytes(b"\xff\xfe" + b"x" * 40)
    result = cli("runs", "--target", "127.0.0.1:1", "--token-file", str(binary))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"runstream: the token file {binary} is not text (a byte 0xff at 0); a token is a line "
        "of ASCII"
    ), result.stderr


def test_client_commands_refuse_a_token_in_clear_beyond_loopback(
    secured: tuple[ServerProcess, str],
) -> None:
    server, token = secured
    # This machine first (gRPC connects there), but the target names a host beyond it.
    mixed = f"ipv4:127.0.0.1:{server.port},192.0.2.2:{server.port}"
    for command, target, env in (
        ("runs", mixed, {"RUNSTREAM_TOKEN": token}),  # the token from anywhere: the SDK judges
        ("agui", "192.0.2.2:50051", {"RUNSTREAM_TOKEN": token}),
    ):
        refused = cli(command, "--target", target, env=env)
        assert (refused.returncode, refused.stdout) == (2, ""), refused.stderr
        assert refused.stderr.strip().count("\n") == 0, refused.stderr
        assert refused.stderr.startswith(
            f"runstream: refusing to send the token in clear to {target}"
        )
        assert "--ca-file" in refused.stderr and "--insecure-token" in refused.stderr
        assert token not in refused.stderr
    allowed = cli("runs", "--target", mixed, "--token", token, "--insecure-token")
    assert allowed.returncode == 0, allowed.stderr
    by_env = cli("runs", "--target", mixed, "--token", token,
                 env={"RUNSTREAM_INSECURE_TOKEN": "1"})  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert cli("runs", "--target", f"localhost:{server.port}", "--token", token).returncode == 0


def test_an_insecure_token_variable_other_than_1_is_named_in_the_refusal() -> None:
    """RUNSTREAM_INSECURE_TOKEN=true was ignored without a word: the refusal told the user to
    pass --insecure-token, as if the variable had not been set (found in review). Only 1
    counts, as for the server's RUNSTREAM_INSECURE_NO_AUTH."""
    env = {"RUNSTREAM_TOKEN": "header.payload.signature", "RUNSTREAM_INSECURE_TOKEN": "true"}
    refused = cli("runs", "--target", "192.0.2.2:50051", env=env)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(
        "runstream: RUNSTREAM_INSECURE_TOKEN='true' is not 1, so it allows nothing; refusing "
        "to send the token in clear to 192.0.2.2:50051"
    ), refused.stderr
    assert "header.payload.signature" not in refused.stderr


def test_a_ca_file_that_is_no_certificate_is_named_not_taken_for_a_server_down(
    tmp_path: Path,
) -> None:
    not_a_certificate = tmp_path / "key.pem"
    not_a_certificate.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    target = f"127.0.0.1:{free_port()}"
    for command in ("runs", "health"):  # health, the image's check, builds its own channel
        result = cli(command, "--target", target, "--ca-file", str(not_a_certificate))
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"runstream: TLS options: the CA file {not_a_certificate} holds no PEM certificate"
        ]
    # A file that is not there is named by its option, not as Python's FileNotFoundError
    # ("TLS options: [Errno 2] No such file or directory: '...'"), by every command alike.
    missing = tmp_path / "missing.pem"
    for command in ("runs", "health"):
        result = cli(command, "--target", target, "--ca-file", str(missing))
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"runstream: --ca-file {missing}: cannot read it (No such file or directory)"
        ]


def test_serve_refuses_a_public_address_without_auth(tmp_path: Path) -> None:
    result = cli("serve", "--address", "0.0.0.0:0", "--store", str(tmp_path / "r.db"))
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0:0 without authentication" in result.stderr


@pytest.mark.parametrize("flag", ["--jwt-secret-file", "--jwt-public-key"])
def test_serve_names_a_key_file_it_cannot_read(tmp_path: Path, flag: str) -> None:
    """It said `runstream: auth: [Errno 2] No such file or directory: '...'`, naming no option."""
    missing = tmp_path / "missing.pem"
    result = cli("serve", "--address", "127.0.0.1:0", "--store", str(tmp_path / "r.db"),
                 flag, str(missing))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == f"runstream: cannot read {flag} {missing}: No such file or directory\n"
    assert not (tmp_path / "r.db").exists()


def test_insecure_no_auth_is_allowed_but_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runstream.auth"):
        check_exposure("0.0.0.0:50051", SecurityConfig(insecure_no_auth=True))
    assert "WITHOUT authentication" in caplog.text
    with pytest.raises(ValueError, match="--insecure-no-auth"):
        check_exposure("0.0.0.0:50051", SecurityConfig())
    check_exposure("127.0.0.1:0", SecurityConfig())  # loopback needs nothing
    check_exposure("[::1]:0", SecurityConfig())


def test_serve_insecure_no_auth_logs_its_warning_once(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        port=port,
        store_path=tmp_path / "r.db",
        extra=("--address", f"0.0.0.0:{port}", "--insecure-no-auth"),
    )
    server.start()
    assert server.terminate() == 0
    written = (tmp_path / "r.log").read_text()
    assert written.count("WITHOUT authentication") == 1, written


def test_serve_help_shows_the_servers_limit_defaults() -> None:
    from runstream.cli.auth import LIMIT_OPTIONS
    from runstream_server.auth.limits import CallerLimits

    defaults = CallerLimits()
    assert {field: default for _, field, _, default, _ in LIMIT_OPTIONS} == {
        field: getattr(defaults, field) for _, field, _, _, _ in LIMIT_OPTIONS
    }


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--append-rate", "nan"), ("--append-rate", "-5"), ("--append-burst", "-3"),
     ("--max-watch-streams", "-1"), ("--max-active-runs", "inf"),
     # Taken, it overflowed SQLite's integers: every CreateRun was INTERNAL.
     ("--max-active-runs", "9223372036854775807"), ("--append-burst", "2147483648")],
)  # fmt: skip
def test_a_limit_that_is_not_a_count_is_a_usage_error(
    tmp_path: Path, flag: str, value: str
) -> None:
    store = str(tmp_path / "r.db")
    result = cli("serve", "--address", "127.0.0.1:0", "--store", store, flag, value)
    assert result.returncode == 2
    assert f"argument {flag}:" in result.stderr
    assert not (tmp_path / "r.db").exists()


async def test_a_ca_that_did_not_sign_the_servers_certificate_is_said_at_once(
    tmp_path: Path,
) -> None:
    """Found in review: a one-request command waited its whole --reconnect-timeout for a
    server whose certificate its CA did not sign, then said no server answered, the
    certificate error lost."""
    pki, other = Pki.make(tmp_path / "pki"), Pki.make(tmp_path / "other")
    server = await start_server(
        tmp_path, SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key))
    )
    try:
        started = time.monotonic()
        result = await asyncio.to_thread(
            cli, "get", "any-run", "--target", f"localhost:{server.port}",
            "--ca-file", str(other.ca_file), "--reconnect-timeout", "30",
        )  # fmt: skip
        assert result.returncode == 1
        [said] = result.stderr.splitlines()  # one line: gRPC's own log of it is not printed
        assert said.startswith(
            f"runstream: unavailable: a server at localhost:{server.port} answered over TLS "
            "with a certificate the CA of --ca-file did not sign (gRPC: "
        ), said
        assert "certificate signature failure" in said
        assert time.monotonic() - started < 25
        assert "is a Runstream server running" not in said
    finally:
        await server.stop(grace=0.1)


@contextlib.asynccontextmanager
async def delaying_proxy(upstream: int, delay: float) -> AsyncIterator[int]:
    """A TCP proxy on a free loopback port (yielded) to `upstream` that holds every chunk
    `delay` seconds each way: a link with a round trip of twice that."""
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                loop.call_later(delay, writer.write, chunk)
        await asyncio.sleep(delay)
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream)
        writers.extend((client_w, server_w))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    proxy = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield proxy.sockets[0].getsockname()[1]
    finally:
        proxy.close()
        for writer in writers:
            writer.close()
        await asyncio.sleep(2 * delay)  # the chunks still held, written to closed writers
        for writer in writers:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await proxy.wait_closed()


async def test_one_request_commands_reach_a_tls_server_over_a_slow_link(tmp_path: Path) -> None:
    """Over a link with a round trip of 120 ms or more, `runs`, `get`, `cancel` ... exited
    in half a second "cannot connect ... over TLS" while `watch` and the SDK worked: their
    check for a server gave each connection attempt 100 ms (found in review)."""
    pki = Pki.make(tmp_path / "pki")
    server = await start_server(
        tmp_path, SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key))
    )
    try:
        async with delaying_proxy(server.port, 0.1) as port:
            result = await asyncio.to_thread(
                cli, "runs", "--target", f"localhost:{port}", "--ca-file", str(pki.ca_file),
                "--reconnect-timeout", "20",
            )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "No runs yet" in result.stdout
    finally:
        await server.stop(grace=0.1)


@dataclass
class TlsServers:
    """Servers that each fail a client differently; `at(kind)` is one's target."""

    pki: Pki  # the CA and client certificate of tls and mutual
    stranger: Pki  # another CA, and a client certificate it signed
    named: Pki  # the CA of elsewhere, whose certificate names only elsewhere.example
    ports: dict[str, int]

    def at(self, kind: str) -> str:
        return f"127.0.0.1:{self.ports[kind]}"


@pytest.fixture
async def tls_servers(tmp_path: Path) -> AsyncIterator[TlsServers]:
    """A TLS server (tls), one that wants client certificates (mutual), a plaintext one
    (plain), and a TLS one whose certificate names only elsewhere.example (elsewhere)."""
    pki, stranger = Pki.make(tmp_path / "pki"), Pki.make(tmp_path / "stranger")
    named = Pki.make(tmp_path / "named", server_names=("elsewhere.example",))
    securities = {
        "tls": SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key)),
        "mutual": SecurityConfig(tls=TlsConfig(pki.server_cert, pki.server_key, pki.ca_file)),
        "plain": SecurityConfig(),
        "elsewhere": SecurityConfig(tls=TlsConfig(named.server_cert, named.server_key)),
    }
    servers = []
    try:
        for kind, security in securities.items():
            servers.append(await start_server(tmp_path / kind, security))
        ports = {kind: server.port for kind, server in zip(securities, servers, strict=False)}
        yield TlsServers(pki, stranger, named, ports)
    finally:
        for server in servers:
            await server.stop(grace=0.1)


def _tls_case(servers: TlsServers, case: str) -> tuple[str, list[str], str]:
    """The target, the TLS options and what the CLI says for one way of failing."""
    pki, at = servers.pki, servers.at
    ca = ["--ca-file", str(pki.ca_file)]
    stranger = ["--client-cert", str(servers.stranger.client_cert),
                "--client-key", str(servers.stranger.client_key)]  # fmt: skip
    return {
        "no-ca-file": (at("tls"), [], f"a server at {at('tls')} serves TLS: give --ca-file"),
        "tls-at-plaintext": (
            at("plain"), ca,
            f"a server at {at('plain')} answered without TLS: connect without --ca-file",
        ),
        "another-host": (
            at("elsewhere"), ["--ca-file", str(servers.named.ca_file)],
            f"a server at {at('elsewhere')} answered over TLS with a certificate that does not "
            "name 127.0.0.1",
        ),
        "no-client-cert": (
            at("mutual"), ca,
            f"a server at {at('mutual')} wants a client certificate: give --client-cert and "
            "--client-key",
        ),
        "stranger-client-cert": (
            at("mutual"), ca + stranger,
            f"a server at {at('mutual')} refused the client certificate "
            f"{servers.stranger.client_cert}: is it signed by a CA the server trusts, and "
            "still valid?",
        ),
        "mutual-without-ca-file": (
            at("mutual"), [],
            f"a server at {at('mutual')} serves TLS and wants a client certificate: give "
            "--ca-file with --client-cert and --client-key",
        ),
    }[case]  # fmt: skip


TLS_CASES = ["no-ca-file", "tls-at-plaintext", "another-host", "no-client-cert",
             "stranger-client-cert", "mutual-without-ca-file"]  # fmt: skip


@pytest.mark.parametrize("case", TLS_CASES)
async def test_a_tls_failure_is_said_at_once_with_its_cause(
    tls_servers: TlsServers, case: str
) -> None:
    """Found in review: a command at a server that closed the connection as it opened (TLS
    reached in plaintext, mutual TLS without the client certificate it wants) or whose
    certificate names another host waited out its --reconnect-timeout, then said "no server
    answered ... is a Runstream server running?" of a server that was running. A TLS
    failure on the first connection does not mend by waiting: it is said at once, by what
    it is."""
    target, options, cause = _tls_case(tls_servers, case)
    started = time.monotonic()
    result = await asyncio.to_thread(
        cli, "runs", "--target", target, *options, "--reconnect-timeout", "30"
    )
    assert result.returncode == 1
    [said] = result.stderr.splitlines()
    assert said.startswith(f"runstream: unavailable: {cause} (gRPC: "), said
    assert "is a Runstream server running" not in said
    assert time.monotonic() - started < 20  # not the 30 s of --reconnect-timeout


@pytest.mark.parametrize(
    ("command", "case"),
    [("watch", "no-ca-file"), ("watch", "another-host"), ("runs --watch", "no-client-cert"),
     ("agui", "no-ca-file"), ("agui", "tls-at-plaintext")],
)  # fmt: skip
async def test_a_watch_says_a_tls_failure_at_once(
    tls_servers: TlsServers, command: str, case: str
) -> None:
    """Found in review: `watch` and `runs --watch` printed nothing for a minute (their
    reconnect timeout) in every TLS case, a CA that did not sign the server's certificate
    included, then said that no server could serve them. `agui` started serving and answered
    every request 503, "give ca_file" (the SDK's word), printing nothing; it stops at start
    now, as `dashboard` does (a server out of reach it still waits for while serving)."""
    target, options, cause = _tls_case(tls_servers, case)
    words = {"watch": ["watch", "any-run"], "runs --watch": ["runs", "--watch", "--plain"],
             "agui": ["agui", "--address", "127.0.0.1:0"]}[command]  # fmt: skip
    started = time.monotonic()
    result = await asyncio.to_thread(cli, *words, "--target", target, *options)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"runstream: unavailable: {cause} (gRPC: ")
    assert time.monotonic() - started < 30  # not the minute of its reconnect timeout


async def test_health_names_a_client_certificate_a_server_wants_wherever_it_runs(
    tls_servers: TlsServers,
) -> None:
    """The hint came only where RUNSTREAM_TLS_CLIENT_CA was set in the client's own
    environment (the server's container): elsewhere it said gRPC's "Socket closed" alone."""
    result = await asyncio.to_thread(
        cli, "health", "--target", tls_servers.at("mutual"), "--ca-file",
        str(tls_servers.pki.ca_file),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        f"(a server at {tls_servers.at('mutual')} wants a client certificate: give "
        "RUNSTREAM_CLIENT_CERT and RUNSTREAM_CLIENT_KEY)"
    ), result.stderr
    result = await asyncio.to_thread(
        cli, "health", "--target", tls_servers.at("tls"), "--timeout", "2"
    )
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith(
        f"(a server at {tls_servers.at('tls')} serves TLS: give RUNSTREAM_TLS_CERT or --ca-file)"
    ), result.stderr


def test_health_names_the_variable_of_a_tls_file_it_cannot_read_and_caps_its_timeout(
    tmp_path: Path,
) -> None:
    """The image's HEALTHCHECK reads RUNSTREAM_TLS_CERT as `serve` does: a file missing said
    `[Errno 2] No such file or directory: ...`, naming neither the variable nor an option;
    and `--timeout 1e10` was a deadline gRPC took as past (DEADLINE_EXCEEDED, the server
    healthy)."""
    missing = tmp_path / "missing.pem"
    for args, env, said in (
        ((), {"RUNSTREAM_TLS_CERT": str(missing)}, f"$RUNSTREAM_TLS_CERT {missing}"),
        (("--ca-file", str(missing)), {}, f"--ca-file {missing}"),
    ):
        result = cli("health", "--target", "127.0.0.1:1", *args, env=env)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"runstream: {said}: cannot read it (No such file or directory)"
        ]
    result = cli("health", "--timeout", "1e10")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "runstream health: error: argument --timeout: must be at most 3600 seconds"
    ]


async def test_serve_on_a_unix_socket_needs_no_auth_option(tmp_path: Path) -> None:
    """A unix socket is guarded by its file's permissions, and the SDK already sends a token
    in clear to one as to loopback: it was refused "without authentication" as if the
    network reached it. A network address still is."""
    socket_path = tmp_path / "rs.sock"
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address",
            f"unix:{socket_path}", "--store", str(tmp_path / "r.db")]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=clean)  # noqa: ASYNC220
    assert process.stderr is not None
    try:
        with process.stderr as logged:
            # (A default: a StopIteration raised into the thread's future leaves it pending.)
            found = (line for line in logged if "serving" in line or "refusing" in line)
            line = await asyncio.to_thread(next, found, "")
            assert f"serving on unix:{socket_path}: " in line, line
            async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
                runs = run_service_pb2_grpc.RunServiceStub(channel)
                created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
                assert created.run.workflow == "wf"
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 20) == 0
    result = cli("serve", "--address", "0.0.0.0:0", "--store", str(tmp_path / "r.db"))
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0:0 without authentication" in result.stderr
