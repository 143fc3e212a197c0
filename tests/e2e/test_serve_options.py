"""`runstream serve` options reach the server: retention purges at startup, for real; and
values the server could not use are refused at start, in one line naming the option."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import grpc
import pytest
from runstream.cli.main import build_parser, main
from runstream.dashboard.envoy import main as envoy_main
from runstream.v1 import (
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)
from runstream_server.app import (
    MAX_GRPC_SECONDS,
    RunstreamServer,
    ServerConfig,
    announce_store_check,
)
from runstream_server.domain.limits import MAX_RETENTION_DAYS, Retention
from runstream_server.domain.watching import DEFAULT_HEARTBEAT_SECONDS, HEARTBEAT_SECONDS

from tests.clients.support import until
from tests.conftest import ROOT, ServerProcess, free_port
from tests.e2e.test_cli import runstream_cli
from tests.identity import Keys, Pki


async def finished_run(target: str) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        report = report_service_pb2_grpc.ReportServiceStub(channel)
        run_id = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))).run.run_id
        done = event_pb2.RunEvent(run_completed=event_pb2.RunCompleted())
        await report.AppendEvents(
            report_service_pb2.AppendEventsRequest(run_id=run_id, events=[done])
        )
        return run_id


async def test_retention_runs_purges_older_logs_at_startup(tmp_path: Path) -> None:
    plain = ServerProcess(port=free_port(), store_path=tmp_path / "r.db")
    plain.start()
    try:
        old = await finished_run(plain.target)
        new = await finished_run(plain.target)
    finally:
        plain.terminate()

    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "runstream.cli.main",
        "serve",
        "--address",
        f"127.0.0.1:{port}",
        "--store",
        str(tmp_path / "r.db"),
        "--retention-runs",
        "1",
        "--sync",
        "normal",
    ]
    process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts the server and returns at once
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            for _ in range(100):
                snap = (await runs.GetRun(run_service_pb2.GetRunRequest(run_id=old))).run
                if snap.purged_seq:
                    break
                await asyncio.sleep(0.05)
            assert snap.purged_seq == snap.last_seq
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=old)):
                    pass
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            kept = [
                e
                async for r in runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=new))
                for e in r.events
            ]
            assert [e.seq for e in kept] == [1, 2]
        # The CLI says it in its own words (the server's name API calls), and a run that
        # succeeded is no failure for `watch` (found in review).
        target = f"127.0.0.1:{port}"
        watched = await asyncio.to_thread(runstream_cli, "watch", old, "--target", target)
        assert watched.returncode == 0, watched.stderr
        purged = f"Its events 1..{snap.purged_seq} were removed by the retention policy"
        assert purged in watched.stdout
        assert f"Run {old} ended: ✔ SUCCEEDED" in watched.stdout
        listed = await asyncio.to_thread(runstream_cli, "events", old, "--target", target)
        assert listed.returncode == 1
        assert listed.stderr.strip() == (
            f"runstream: events 1..{snap.purged_seq} of run {old} were removed by the "
            f"retention policy; runstream get {old} shows its snapshot"
        )
    finally:
        process.terminate()
        assert process.wait(20) == 0


@contextlib.asynccontextmanager
async def served(store: Path, *options: str) -> AsyncIterator[tuple[str, grpc.aio.Channel]]:
    """`runstream serve --store STORE OPTIONS` on a free port, until the block ends (it must
    then stop cleanly): its target and a channel to it. Its log goes to STORE's name with
    the suffix .log."""
    target = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", target,
            "--store", str(store), *options]  # fmt: skip
    # The child gets a descriptor of its own: the file can close at once.
    with open(store.with_suffix(".log"), "ab") as log:  # noqa: ASYNC230 - a local file
        process = subprocess.Popen(  # noqa: ASYNC220 - Popen starts the server, returns at once
            argv, stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            yield target, channel
    finally:
        process.terminate()
        assert process.wait(20) == 0


async def test_retention_passes_come_every_retention_interval(tmp_path: Path) -> None:
    """The pass came as the server started and then every hour, which no option changed: a
    busy store set to keep 100 runs held thousands more for up to an hour."""
    options = ("--retention-runs", "1", "--retention-interval", "0.5")
    async with served(tmp_path / "r.db", *options) as (target, channel):
        older = await finished_run(target)  # both end after the pass at start
        await finished_run(target)
        runs = run_service_pb2_grpc.RunServiceStub(channel)

        async def purged() -> bool:
            request = run_service_pb2.GetRunRequest(run_id=older)
            return bool((await runs.GetRun(request)).run.purged_seq)

        await until(purged, within=20)
    refused = runstream_cli("serve", "--retention-interval", "0")
    assert refused.returncode == 2 and "--retention-interval" in refused.stderr


async def test_abandon_after_ends_a_run_its_producer_left_failed_abandoned(
    tmp_path: Path,
) -> None:
    """A producer that died between CreateRun and its first event: the run is STALLED
    after --start-within, and ended FAILED (ABANDONED) once STALLED for --abandon-after."""
    options = ("--start-within", "0.5", "--abandon-after", "1s")
    async with served(tmp_path / "a.db", *options) as (_, channel):
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="left"))
        request = run_service_pb2.GetRunRequest(run_id=created.run.run_id)

        async def ended() -> bool:
            return (await runs.GetRun(request)).run.status == run_pb2.RUN_STATUS_FAILED

        await until(ended, within=20)
        run = (await runs.GetRun(request)).run
    assert run.error.code == "ABANDONED"
    assert run.error.message.startswith("abandoned: STALLED and silent for ")
    assert run.error.message.endswith(
        "s, never started by its producer; the server ends a run that stays so for longer than 1s"
    )
    # The server acting on its own says so in its log (it said nothing), in one line with
    # the run's id and nothing its producer sent (its workflow's name).
    logged = (tmp_path / "a.log").read_text().splitlines()
    [line] = [line for line in logged if "ABANDONED" in line]
    assert line.endswith(f"run {run.run_id} ended FAILED, ABANDONED: {run.error.message}")
    assert "left" not in line


async def test_the_store_is_copied_while_it_serves_and_a_copy_serves_as_a_store(
    tmp_path: Path,
) -> None:
    """The server holds its file exclusively: `sqlite3 .backup`, `VACUUM INTO` and
    replication tools are told it is locked, and a copy of the file alone after a crash
    misses what its -wal holds (found in review). --backup-dir takes whole copies itself."""
    copies = tmp_path / "copies"
    options = ("--backup-dir", str(copies), "--backup-interval", "0.3", "--backup-keep", "2")
    async with served(tmp_path / "live.db", *options) as (target, _):
        run_id = await finished_run(target)  # acknowledged: in every copy from now on
        acknowledged = time.time()

        def newer_copies() -> list[Path]:
            return [c for c in copies.glob("runstream-*.db") if c.stat().st_mtime > acknowledged]

        async def two_newer() -> bool:
            return len(newer_copies()) >= 2

        await until(two_newer, within=20)
        [newest] = sorted(newer_copies())[-1:]
        with sqlite3.connect(newest) as conn:  # readable while the server runs
            assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        restored = tmp_path / "restored.db"
        shutil.copy(newest, restored)
    assert len(list(copies.glob("runstream-*.db"))) <= 2  # the oldest removed
    assert not list(copies.glob("*.part"))
    server = ServerProcess(port=free_port(), store_path=restored)
    server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            run = (await runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))).run
        assert (run.status, run.last_seq) == (run_pb2.RUN_STATUS_SUCCEEDED, 2)
    finally:
        server.terminate()
    refused = runstream_cli("serve", "--store", "redis://127.0.0.1:1/0", "--backup-dir", "x")
    assert refused.returncode == 2 and "a Redis store keeps its own" in refused.stderr


def _serve(
    port: int, store: Path | str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", f"127.0.0.1:{port}"]
    return subprocess.run(
        [*argv, "--store", str(store), *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_serve_on_a_busy_port_says_so_in_one_line_and_leaves_no_store(tmp_path: Path) -> None:
    """The address is tried before the store is opened: a busy port gets one line naming it
    (no gRPC log line), exit status 1, and no new store file or directory; an existing store
    is left as it was."""
    existing = ServerProcess(port=free_port(), store_path=tmp_path / "old.db")
    existing.start()
    assert existing.terminate() == 0
    before = (tmp_path / "old.db").read_bytes()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for store in (tmp_path / "new" / "runs.db", tmp_path / "old.db"):
            result = _serve(port, store)
            assert result.returncode == 1, result.stderr
            # That line alone: no INFO "starting" line above it (there was one, logged before
            # the port was tried, telling the operator it was starting when it could not).
            assert result.stderr.splitlines() == [
                f"runstream: cannot listen on 127.0.0.1:{port}: the port is in use"
            ]
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "old.db").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db", "old.log"]


def test_a_name_that_resolves_to_nothing_or_a_missing_socket_directory_is_said_in_one_line(
    tmp_path: Path,
) -> None:
    """Found in review: these were left to gRPC, which logged its own line, while the store
    was created (and removed again) and the exit line said only "gRPC could not bind it"."""
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--store"]
    cases = {
        "nosuchhost.invalid:50051": "the name nosuchhost.invalid does not resolve here (",
        f"unix:{tmp_path}/missing/runstream.sock": f"its directory {tmp_path}/missing does not",
    }
    for address, said in cases.items():
        result = subprocess.run(
            [*argv, str(tmp_path / "new" / "runs.db"), "--address", address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "RUNSTREAM_INSECURE_NO_AUTH": "1"},
        )
        assert result.returncode == 1, result.stderr
        lines = [
            line for line in result.stderr.splitlines() if "WITHOUT authentication" not in line
        ]
        assert len(lines) == 1 and lines[0].startswith(
            f"runstream: cannot listen on {address}: {said}"
        ), result.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("value", ["true", "yes"])
def test_an_insecure_no_auth_variable_that_is_not_1_is_named_in_the_refusal(
    tmp_path: Path, value: str
) -> None:
    """Only 1 counts, and it fails closed; but the refusal said to pass --insecure-no-auth,
    not that the variable's value was not understood (found in review)."""
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", "0.0.0.0:0"]
    result = subprocess.run(
        [*argv, "--store", str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "RUNSTREAM_INSECURE_NO_AUTH": value},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        f"runstream: RUNSTREAM_INSECURE_NO_AUTH='{value}' is not 1, so it allows nothing; "
        "refusing to listen on 0.0.0.0:0 without authentication"
    ), result.stderr
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        # Watches that set no heartbeat of their own would all be refused INVALID_ARGUMENT:
        ("--heartbeat", "600", "must be between 0.1 and 300 seconds"),
        ("--heartbeat", "0.05", "must be between 0.1 and 300 seconds"),
        ("--heartbeat", "0", "must be between 0.1 and 300 seconds"),  # was "greater than 0"
        # A clock looking at every stream's sends many times a second; negative:
        ("--watch-send-timeout", "0.5", "must be between 1 and 86400 seconds (or 0: never)"),
        ("--watch-send-timeout", "-1", "must be 0 or more"),
        # Tracebacks, or a port that wraps around, or gRPC's port 443 for a host alone:
        ("--metrics-address", "nonsense", "'nonsense' is not HOST:PORT or [IPV6]:PORT"),
        ("--metrics-address", ":99999", "a port is 0 to 65535"),
        ("--address", ":99999", "a port is 0 to 65535"),
        ("--address", "127.0.0.1", "'127.0.0.1' is not HOST:PORT or [IPV6]:PORT"),
        ("--address", "[::1]", "'[::1]' is not HOST:PORT or [IPV6]:PORT"),
        # gRPC's OverflowError at start; every retention pass failing once serving:
        ("--max-connection-age", "2592000", "must be at most 2147483 seconds"),
        ("--max-connection-age-grace", "2592000", "must be at most 2147483 seconds"),
        ("--retention-days", "1e6", "must be at most 36500 days"),
        ("--abandon-after", "0", "must be greater than 0"),
        (
            "--abandon-after",
            "a week",
            "not a duration: 'a week' (seconds, or e.g. 90s, 30m, 1h, 7d)",
        ),
        # A traceback at every retention pass (SQLite's integers overflowed), retention off:
        ("--retention-runs", "99999999999999999999999", "must be at most 2147483647"),
        ("--backup-keep", "2147483648", "must be at most 2147483647"),
        # A stop that never ends (1e308), or of 83 minutes (5000: milliseconds meant):
        ("--drain-delay", "1e308", "must be at most 3600 seconds"),
        ("--drain-delay", "5000", "must be at most 3600 seconds"),
        ("--shutdown-grace", "1e308", "must be at most 3600 seconds"),
    ],
)
def test_a_value_the_server_cannot_use_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], option: str, value: str, said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", option, value])
    assert exited.value.code == 2
    # The one line, not after argparse's usage block of 18 lines.
    assert capsys.readouterr().err.splitlines() == [
        f"runstream serve: error: argument {option}: {said}"
    ]


def test_serve_help_gives_the_defaults_and_ranges_the_readme_gives() -> None:
    """Found in review: these ranges and defaults were in the README only, and
    --retention-runs did not say that N counts each tenant's runs."""
    shown = " ".join(runstream_cli("serve", "--help").stdout.split())
    for said in (
        "gets a heartbeat; 0.1 to 300 (what a watch may ask for) (default: 15.0)",
        "DAYS ago (snapshots stay); at most 36500 (default: keep them for ever)",
        "most recently ended runs of each tenant (T tenants keep up to T x N)",
        "needs the observability extra) (default: off)",
        "rebalance across replicas; at most 2147483 (default: never)",
        "how long open streams may still run; at most 2147483 (default: until they end)",
        "(streams end at once); at most 3600, and a second signal cuts it short (default: 5)",
    ):
        assert said in shown, said


def test_serve_heartbeat_defaults_to_what_the_server_and_the_contract_say() -> None:
    """The CLI writes out `serve --heartbeat`'s default (it builds its parser without
    importing the server, and its help shows the value): it must be the heartbeat of a
    server started any other way, and what the contract promises a watch that sets none."""
    assert build_parser().parse_args(["serve"]).heartbeat == DEFAULT_HEARTBEAT_SECONDS
    assert ServerConfig().heartbeat_interval == DEFAULT_HEARTBEAT_SECONDS
    proto = ROOT / "protos" / "runstream" / "v1" / "run_service.proto"
    contract = " ".join(proto.read_text().replace("//", " ").split())  # comments, unwrapped
    assert contract.count(f"heartbeat: 100ms to 5m, {DEFAULT_HEARTBEAT_SECONDS:g}s when unset") == 2


def test_serve_help_names_the_environment_variables_no_option_names() -> None:
    """RUNSTREAM_PAGE_TOKEN_KEY was in the README only: replicas that differ on it break
    paging across them, and without it page tokens are tagged with a public key (found in
    review); the OTLP headers and gRPC's verbosity were in the README only too."""
    shown = runstream_cli("serve", "--help").stdout
    environment = shown[shown.index("\nenvironment") :]
    for variable in (
        "RUNSTREAM_PAGE_TOKEN_KEY",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "GRPC_VERBOSITY",
    ):
        assert variable in environment, environment
    assert "the same on every replica" in environment


def test_the_watch_send_timeout_defaults_to_a_minute_and_takes_zero_for_never() -> None:
    assert build_parser().parse_args(["serve"]).watch_send_timeout == 60
    assert build_parser().parse_args(["serve", "--watch-send-timeout", "0"]).watch_send_timeout == 0


def test_drain_delay_takes_its_own_default_of_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """`--drain-delay 0`, the default its help names (a manifest's `${DRAIN_DELAY:-0}`), was
    refused "must be greater than 0"."""
    assert build_parser().parse_args(["serve", "--drain-delay", "0"]).drain_delay == 0
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--drain-delay", "-1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "runstream serve: error: argument --drain-delay: must be 0 or more"
    ]


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    """The lines `runstream ARGV` says on stderr as it refuses its command line (exit 2)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["get"], "runstream get: error: the following arguments are required: RUN_ID"),
        (["serve", "--sync", "off"], "runstream serve: error: argument --sync: invalid choice"),
        (["nope"], "runstream: error: argument COMMAND: invalid choice: 'nope'"),
    ],
)
def test_every_command_refuses_a_bad_command_line_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    errors = refused(capsys, argv)
    assert len(errors) == 1 and errors[0].startswith(said), errors


ONLY_WITH_AUTH = (
    "need --jwt-secret-file or --jwt-public-key (per-principal and per-tenant limits apply to "
    "verified callers only)"
)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--max-active-runs", "5", "--append-rate", "10"],
         f"--max-active-runs and --append-rate {ONLY_WITH_AUTH}"),
        (["--insecure-no-auth", "--max-watch-streams", "1"],
         f"--max-watch-streams {ONLY_WITH_AUTH}".replace(" need ", " needs ")),
        (["--max-report-streams", "1", "--append-burst", "1", "--max-watchers-per-run", "1"],
         f"--max-report-streams and --append-burst {ONLY_WITH_AUTH}"),
        (["--backup-interval", "60", "--backup-keep", "5"],
         "--backup-interval and --backup-keep need --backup-dir"),
        (["--retention-interval", "60"],
         "--retention-interval needs --retention-days or --retention-runs"),
        (["--max-connection-age-grace", "30"],
         "--max-connection-age-grace needs --max-connection-age"),
        (["--store", "redis://127.0.0.1:1/0", "--sync", "normal"],
         "--sync applies to a SQLite store, not to a redis:// one (whose durability is "
         "Redis's own: see the README's Replicas on Redis)"),
        (["--store", "redis://127.0.0.1:1/0", "--skip-store-check", "--sync", "full"],
         "--sync and --skip-store-check apply to a SQLite store, not to a redis:// one "
         "(whose durability is Redis's own: see the README's Replicas on Redis)"),
    ],
)  # fmt: skip
def test_an_option_that_would_do_nothing_without_another_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    """Taken in silence, they did nothing: limits that protected no one without auth (the
    compose file's case), backups "configured" but never taken."""
    # A store that is a directory: without the refusal, a start that fails at once.
    argv = ["serve", "--address", f"127.0.0.1:{free_port()}", "--store", str(tmp_path)]
    assert main([*argv, *options]) == 2
    assert capsys.readouterr().err.splitlines() == [f"runstream serve: {said}"]


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlU0VDUkVU"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # Found in review: the password and the token were printed as given, into container
        # and CI logs.
        (["serve", "--sotre", "redis://:S3cretPW@127.0.0.1:6379/0"],
         "--sotre redis://***@127.0.0.1:6379/0 (did you mean --store?)"),
        (["serve", "--sotre=rediss://user:S3cret/PW@redis:6380/0"],
         "--sotre=rediss://***@redis:6380/0 (did you mean --store?)"),
        (["serve", "--stor", "redis://redis:6379/0?prefix=a&password=S3cretPW"],
         "--stor redis://redis:6379/0?prefix=a&password=*** (did you mean --store?)"),
        (["runs", "--tokn", "S3cretTOKEN"], "--tokn *** (did you mean --token?)"),
        (["get", "RUN", "--tkn=S3cretTOKEN"], "--tkn=*** (did you mean --token?)"),
        (["watch", "RUN", "--jwt-secet-file", "/run/S3cret"], "--jwt-secet-file ***"),
        (["serve", "--redis-passwd", "S3cretPW"], "--redis-passwd ***"),
        (["stats", "--bearer", JWT], "--bearer ***"),
        # A token where no flag names it is recognised by its shape:
        (["runs", JWT], "***"),
        # Abbreviations are no longer taken: `--max-active 5` was `--max-active-runs 5`, and
        # an option added later could change what a command line meant.
        # (--store: without the fix, a start refused at once rather than a server.)
        (["serve", "--max-active", "5", "--store", "postgres://x"],
         "--max-active 5 (did you mean --max-active-runs?)"),
        (["runs", "--lim", "5"], "--lim 5 (did you mean --limit?)"),
        # serve and demo listen on --address; the commands that talk to a server take
        # --target, and `runs --address HOST:PORT` said only that it was not recognized:
        (["runs", "--address", "127.0.0.1:1"],
         "--address 127.0.0.1:1 (--target names the server to talk to; --address is where "
         "serve listens)"),
        (["watch", "RUN", "--adress=h:1"],
         "--adress=h:1 (--target names the server to talk to; --address is where serve "
         "listens)"),
        (["serve", "--adress", "h:1"], "--adress h:1 (did you mean --address?)"),
        (["runs", "--frobnicate"], "--frobnicate"),
        # The hint is for the first mistyped option, past a stray word before it; an
        # abbreviation of several options names none of them rather than one at random.
        (["get", "RUN", "extra", "--tkn=S3cretTOKEN"], "extra --tkn=*** (did you mean --token?)"),
        (["serve", "--max", "5"], "--max 5"),
    ],
)  # fmt: skip
def test_a_mistyped_command_line_is_refused_without_repeating_a_secret(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert refused(capsys, argv) == [f"runstream: error: unrecognized arguments: {said}"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--tokn", "S3cretTOKEN"], "unrecognized arguments: --tokn ***"),
        (["--upstream-cleint-key=S3cret.pem"],
         "unrecognized arguments: --upstream-cleint-key=*** (did you mean --upstream-client-key?)"),
        (["--upstream", "h:1", JWT], "unrecognized arguments: ***"),
        # Abbreviations are not taken (as in the runstream commands):
        (["--upstream-ca", "ca.pem"],
         "unrecognized arguments: --upstream-ca ca.pem (did you mean --upstream-ca-file?)"),
    ],
)  # fmt: skip
def test_the_envoy_config_printer_refuses_a_command_line_without_repeating_a_secret(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    """``python -m runstream.dashboard.envoy`` had a parser of its own, which repeated a
    mistyped option's value as given and took abbreviations (found in review)."""
    with pytest.raises(SystemExit) as exited:
        envoy_main(argv)
    assert exited.value.code == 2
    prog = "python -m runstream.dashboard.envoy"
    assert capsys.readouterr().err.splitlines() == [f"{prog}: error: {said}"]


def test_a_store_or_address_with_brackets_is_named_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Paths and addresses are the user's text, never rich markup: a store ``d[/x]`` crashed
    with a MarkupError and ``[fe80::1]:PORT`` was said as ``:PORT``."""
    store = tmp_path / "d[" / "x]"
    store.mkdir(parents=True)
    argv = ["serve", "--insecure-no-auth", "--address"]
    for address, store_option, said in [
        ("127.0.0.1:0", store, f"runstream: store {store} is a directory, not a database file"),
        ("[fe80::1]:1", tmp_path / "runs.db", "runstream: cannot listen on [fe80::1]:1"),
    ]:
        assert main([*argv, address, "--store", str(store_option)]) == 1
        errors = capsys.readouterr().err.splitlines()
        assert [line for line in errors if line.startswith(said)], errors


def test_every_option_in_seconds_takes_a_unit_as_abandon_after_does() -> None:
    """`--abandon-after 7d` took a unit and `--shutdown-grace 1m` was "not a number" (found in
    review): every option in seconds now takes 90s, 30m, 1h or 7d, and plain seconds still."""
    args = build_parser().parse_args(
        ["serve", "--stall-after", "5m", "--start-within", "90s", "--abandon-after", "7d",
         "--backup-dir", "b", "--backup-interval", "1h", "--retention-interval", "0.5h",
         "--heartbeat", "30s", "--watch-send-timeout", "2m", "--drain-delay", "1m",
         "--shutdown-grace", "10s", "--max-connection-age", "1h",
         "--max-connection-age-grace", "30"]
    )  # fmt: skip
    assert (args.stall_after, args.start_within, args.abandon_after) == (300, 90, 7 * 86400)
    assert (args.backup_interval, args.retention_interval) == (3600, 1800)
    assert (args.heartbeat, args.watch_send_timeout, args.drain_delay) == (30, 120, 60)
    assert args.shutdown_grace == 10
    assert (args.max_connection_age, args.max_connection_age_grace) == (3600, 30)
    watch = build_parser().parse_args(["watch", "RUN", "--reconnect-timeout", "2m"])
    assert watch.reconnect_timeout == 120
    health = build_parser().parse_args(["health", "--timeout", "1m"])
    assert health.timeout == 60
    bridge = build_parser().parse_args(["agui", "--keepalive", "1m", "--send-timeout", "2m"])
    assert (bridge.keepalive, bridge.send_timeout) == (60, 120)
    assert build_parser().parse_args(["agui"]).send_timeout == 60
    assert build_parser().parse_args(["agui", "--send-timeout", "0"]).send_timeout == 0  # never


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--shutdown-grace", "5x"],
         "argument --shutdown-grace: not a duration: '5x' (seconds, or e.g. 90s, 30m, 1h, 7d)"),
        (["serve", "--shutdown-grace", "2h"],
         "argument --shutdown-grace: must be at most 3600 seconds"),
        (["serve", "--stall-after", "0s"], "argument --stall-after: must be greater than 0"),
        (["agui", "--send-timeout", "1w"],
         "argument --send-timeout: not a duration: '1w' (seconds, or e.g. 90s, 30m, 1h, 7d)"),
        (["agui", "--send-timeout=-1"], "argument --send-timeout: must be 0 or more"),
        (["agui", "--keepalive", "0.001"], "argument --keepalive: must be at least 0.1 seconds"),
        (["runs", "--reconnect-timeout=-1m"],
         "argument --reconnect-timeout: not a duration: '-1m' (seconds, or e.g. 90s, 30m, 1h, "
         "7d)"),
    ],
)  # fmt: skip
def test_a_duration_out_of_its_options_bounds_is_refused_naming_them(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert refused(capsys, argv) == [f"runstream {argv[0]}: error: {said}"]


async def test_a_server_at_every_bound_serve_accepts_starts_and_serves(tmp_path: Path) -> None:
    """The bounds are what the server can use: gRPC takes the longest connection age, a
    retention pass subtracts the longest retention from now, and a watch without a heartbeat
    of its own gets the longest default."""
    args = build_parser().parse_args(
        ["serve", "--heartbeat", "300", "--max-connection-age", "2147483",
         "--max-connection-age-grace", "2147483", "--retention-days", "36500"]
    )  # fmt: skip
    assert args.heartbeat == HEARTBEAT_SECONDS[1]
    assert args.max_connection_age == args.max_connection_age_grace == MAX_GRPC_SECONDS
    assert args.retention_days == MAX_RETENTION_DAYS
    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=tmp_path / "r.db",
            heartbeat_interval=args.heartbeat,
            retention=Retention(days=args.retention_days),
            max_connection_age=args.max_connection_age,
            max_connection_age_grace=args.max_connection_age_grace,
        )
    )
    await server.start()
    try:
        run_id = await finished_run(server.target)
        assert server.runs is not None
        assert await server.runs.apply_retention() == []
        async with grpc.aio.insecure_channel(server.target) as channel:
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            watch = runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run_id))
            assert [e.seq async for r in watch for e in r.events] == [1, 2]
    finally:
        await server.stop(grace=0.5)


def test_the_address_options_take_ipv6_and_a_bare_metrics_port() -> None:
    args = build_parser().parse_args(["serve", "--address", "[::1]:0", "--metrics-address", "9464"])
    assert (args.address, args.metrics_address) == ("[::1]:0", ":9464")


def test_a_bare_metrics_port_serves_every_interface_and_logs_that_url(tmp_path: Path) -> None:
    """`--metrics-address PORT` logged http://PORT:PORT/metrics."""
    metrics = free_port()
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address", "127.0.0.1:0"]
    argv += ["--store", str(tmp_path / "r.db"), "--metrics-address", str(metrics)]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    with process.stderr as logged:
        try:
            next(line for line in logged if "serving on" in line)
            line = next(logged).rstrip()  # logged right after
            assert line.endswith(f"metrics on http://0.0.0.0:{metrics}/metrics"), line
        finally:
            process.terminate()
            assert process.wait(20) == 0


def test_tls_files_gRPC_cannot_use_are_named_not_taken_for_a_busy_port(tmp_path: Path) -> None:
    """A certificate that is not PEM was "cannot listen on ...; is the port taken?" after gRPC's
    own two log lines, with the store already created."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    port = free_port()
    store = tmp_path / "new" / "r.db"
    result = _serve(port, store, "--tls-cert", str(garbage), "--tls-key", str(garbage))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"runstream: cannot serve TLS on 127.0.0.1:{port}: --tls-cert {garbage} and --tls-key "
        f"{garbage} are not a PEM certificate and its unencrypted private key (unreadable as PEM)"
    ]
    assert not store.parent.exists()


@pytest.mark.parametrize(
    ("endpoint", "said"),
    [
        (
            "notaurl",
            "'notaurl' is not a URL; give http://HOST:PORT or https://HOST:PORT, "
            "e.g. http://localhost:4317",
        ),
        (
            "grpc://collector:4317",
            "'grpc://collector:4317': grpc:// is not http:// or https://; give http://HOST:PORT "
            "or https://HOST:PORT, e.g. http://localhost:4317",
        ),
        # A stray space (a copied value) said "' http://c:4317':  http:// is not http://".
        (
            " http://collector:4317",
            "' http://collector:4317' has white space in it; give http://HOST:PORT or "
            "https://HOST:PORT, e.g. http://localhost:4317",
        ),
        (
            "http://collector:99999",
            "'http://collector:99999': the port must be 1 to 65535; give http://HOST:PORT or "
            "https://HOST:PORT, e.g. http://localhost:4317",
        ),
        # OTLP/HTTP's URL: the exporter dropped the path and sent gRPC to the HTTP port, in
        # silence but for its retries (found in review).
        (
            "http://collector:4318/v1/traces",
            "'http://collector:4318/v1/traces' has a path or query, which OTLP/gRPC does not "
            "use (an OTLP/HTTP URL such as :4318/v1/traces?); give http://HOST:PORT or "
            "https://HOST:PORT, e.g. http://localhost:4317",
        ),
        *(
            (
                endpoint,
                "'http://***@collector:4317' has a user or password, which the OTLP/gRPC "
                "exporter does not send; give credentials as headers in "
                "$OTEL_EXPORTER_OTLP_HEADERS",
            )
            # A '/', '?' or '#' in the password ended the URL's host part early: the whole
            # endpoint was repeated back, password and all.
            for endpoint in (
                "http://otel:s3cret@collector:4317",
                "http://otel:s3cret/x@collector:4317",
                "http://otel:x?s3cret@collector:4317",
                "http://otel:x#s3cret@collector:4317",
                "http://otel:s3 cret@collector:4317",  # repeated back whole (found in review)
            )
        ),
        (
            "otel:s3cret@collector:4317",
            "'***@collector:4317' has a user or password, which the OTLP/gRPC exporter does "
            "not send; give credentials as headers in $OTEL_EXPORTER_OTLP_HEADERS",
        ),
        # A password as a query parameter was repeated back as given.
        (
            "http://collector:4317/?password=s3cret",
            "'http://collector:4317/?password=***' has a path or query, which OTLP/gRPC does "
            "not use (an OTLP/HTTP URL such as :4318/v1/traces?); give http://HOST:PORT or "
            "https://HOST:PORT, e.g. http://localhost:4317",
        ),
    ],
)
def test_an_otlp_endpoint_traces_cannot_reach_is_refused_before_serving(
    tmp_path: Path, endpoint: str, said: str
) -> None:
    """`--otlp-endpoint notaurl` started a server that never exported a trace and never said
    why; now the command line is refused, naming the flag and the form it takes, and a
    password in the URL is not repeated back."""
    result = _serve(free_port(), tmp_path / "runs.db", "--otlp-endpoint", endpoint)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"runstream serve: error: argument --otlp-endpoint: {said}"
    ]
    assert "s3cret" not in result.stderr and "cret@" not in result.stderr
    assert not (tmp_path / "runs.db").exists()


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_an_otlp_endpoint_from_the_environment_is_checked_as_the_flag_is(
    tmp_path: Path, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter reads these variables when no --otlp-endpoint is given: a bad one started
    a server that never exported a trace. Now serve refuses it in one line naming the
    variable, without repeating a password; a good one lets it start, and so does a bad one
    that --otlp-endpoint overrides."""
    result = _serve(
        free_port(), tmp_path / "runs.db", env={variable: "http://otel:s3cret@collector"}
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"runstream: environment variable {variable}: 'http://***@collector' has a user or "
        "password, which the OTLP/gRPC exporter does not send; give credentials as headers in "
        "$OTEL_EXPORTER_OTLP_HEADERS"
    ]
    assert "s3cret" not in result.stderr and "cret@" not in result.stderr
    assert not (tmp_path / "runs.db").exists()

    for value, flag in (
        ("127.0.0.1:1", ()),
        ("notaurl", ("--otlp-endpoint", "http://127.0.0.1:1")),
    ):
        monkeypatch.setenv(variable, value)
        server = ServerProcess(port=free_port(), store_path=tmp_path / "runs.db", extra=flag)
        server.start()
        assert server.terminate() == 0


def test_a_redis_store_without_the_redis_extra_names_the_install(tmp_path: Path) -> None:
    """Found in review: `make demo` and `make serve` install no Redis client, and a
    `--store redis://` then ended in a 30-line ModuleNotFoundError traceback."""
    shadow = tmp_path / "shadow" / "redis"
    shadow.mkdir(parents=True)  # a `redis` that is not installed, ahead of the real one
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redis'\", name='redis')\n"
    )
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    port = free_port()
    result = _serve(port, "redis://127.0.0.1:1/0", env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        "a redis:// store needs the redis package: pip install 'runstream[redis]'"
    ), result.stderr


def in_force_line(cwd: Path, *options: str) -> str:
    """The line a `runstream serve OPTIONS` process, started in `cwd` on a free port, logs to
    say what is in force (its message, after the time and logger); stopped after it."""
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address",
            f"127.0.0.1:{free_port()}", *options]  # fmt: skip
    process = subprocess.Popen(argv, cwd=cwd, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    with process.stderr as logged:
        try:
            line = next(line for line in logged if "serving on" in line)
        finally:
            process.terminate()
            assert process.wait(20) == 0
    return line[line.index("serving on") :].rstrip().removesuffix('"}')


def test_the_start_says_in_one_line_what_is_in_force(tmp_path: Path) -> None:
    """Four start-ups as different as no auth on loopback and JWT with TLS logged the same
    two lines: nothing said whether tokens were checked, where the data was (a relative
    --store was logged relative), whether logs were ever purged or the store ever copied,
    or which release ran (found in review)."""
    version = metadata.version("runstream")
    line = in_force_line(tmp_path, "--store", "runs.db")
    assert line.endswith(
        f": runstream {version} | TLS off | auth none: every caller may do anything | store "
        f"SQLite {tmp_path / 'runs.db'}, sync FULL | retention: event logs kept for ever | "
        "abandon-after: 7d | backups: off: "
        "the store cannot be copied while it serves; see --backup-dir | limits: 5000 watchers "
        "per run (the per-principal ones need auth)"
    ), line

    keys, pki = Keys.make(tmp_path / "keys"), Pki.make(tmp_path / "pki")
    line = in_force_line(
        tmp_path, "--store", "runs.db", "--log-format", "json", "--sync", "normal",
        "--jwt-secret-file", str(keys.secret_file), "--jwt-issuer", "https://id.example.com",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca_file), "--retention-days", "30", "--retention-runs",
        "100", "--retention-interval", "90s", "--abandon-after", "off", "--backup-dir",
        "copies", "--max-active-runs", "5", "--max-watch-streams", "0", "--append-rate", "0",
    )  # fmt: skip
    assert line.endswith(
        f": runstream {version} | TLS on, client certificates required | auth JWT (HS256), "
        f"issuer 'https://id.example.com', any audience | store SQLite {tmp_path / 'runs.db'}, "
        "sync NORMAL | retention: event logs purged 30d after their run ended and kept for "
        "the newest 100 ended runs per tenant, every 90s | abandon-after: never (silent runs "
        "wait for their producer for ever) | backups: every "
        f"1h into {tmp_path / 'copies'}, 24 kept | limits: no limit on watch streams and 1000 "
        "report streams per principal, 5 active runs per tenant, append rate off, 5000 "
        "watchers per run"
    ), line
    assert keys.secret.decode() not in line


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (64 << 20, "67 MB"),
        (999_400_000, "999 MB"),
        (1_000_000_000, "1.0 GB"),
        (1_234_567_890, "1.2 GB"),
    ],
)
def test_a_large_store_checked_at_start_is_said_in_mb_below_a_gb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, size: int, shown: str
) -> None:
    """Every store from 64 MiB to 150 MB was said to be "(0.1 GB)" (review rv65d)."""
    store = tmp_path / "runs.db"
    with open(store, "wb") as sparse:  # its size alone is read
        sparse.truncate(size)
    caplog.set_level(logging.INFO, logger="runstream.server")
    announce_store_check(ServerConfig(store_path=store))
    assert [r.getMessage() for r in caplog.records] == [
        f"checking the store {store} ({shown}) before serving: SQLite's quick_check reads every "
        "page, about 3 s per GB (--skip-store-check starts without it)"
    ]


def test_a_large_store_is_said_to_be_checked_before_its_check_starts(tmp_path: Path) -> None:
    """quick_check reads the whole store (about 3 s per GB), and nothing was logged before it
    ran: a large store's start was a silent gap that looked like a hang (found in review)."""
    store = tmp_path / "runs.db"
    made = ServerProcess(port=free_port(), store_path=store)
    made.start()
    assert made.terminate() == 0
    # 70 MB of free pages: SQLite keeps the file's size, and quick_check reads them all.
    with contextlib.closing(sqlite3.connect(store, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE padding (b BLOB)")
        conn.execute("INSERT INTO padding VALUES (zeroblob(70 * 1024 * 1024))")
        conn.execute("DROP TABLE padding")
    argv = [sys.executable, "-m", "runstream.cli.main", "serve", "--address",
            f"127.0.0.1:{free_port()}", "--store", str(store)]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    with process.stderr as logged:
        try:
            lines = []
            for line in logged:
                lines.append(line[line.index(": ") + 2 :].rstrip())
                if "serving on" in line:
                    break
        finally:
            process.terminate()
            assert process.wait(20) == 0
    assert lines[0] == (
        f"checking the store {store} (74 MB) before serving: SQLite's quick_check reads every "
        "page, about 3 s per GB (--skip-store-check starts without it)"
    ), lines
    assert lines[1].startswith("starting on"), lines
