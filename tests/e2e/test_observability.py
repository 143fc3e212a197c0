"""`runstream serve` as operators run it: JSON logs, metrics and keepalive flags, for real.

The server is a real subprocess; its log is read line by line as a log pipeline would.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import runstream

from tests.conftest import ServerProcess, free_port
from tests.identity import AUDIENCE, ISSUER, Keys


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    text = server.store_path.with_suffix(".log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_json_logs_parse_line_by_line_and_carry_run_ids(tmp_path: Path) -> None:
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "runstream.db",
        extra=("--log-format", "json", "--log-level", "debug", "--max-connection-age", "600"),
    )
    server.start()
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("campaign", steps=["a"])
            async with run:
                async with run.step("a"):
                    pass
                await run.complete()
            await client.get_run(run.run_id)
            with pytest.raises(runstream.NotFoundError):
                await client.get_run("missing-run")
            events = [e async for e in client.watch(run.run_id)]
            assert events[-1].kind == runstream.EventKind.RUN_COMPLETED
    finally:
        assert server.terminate() == 0
    lines = log_lines(server)  # every line is one JSON object, or json.loads raised
    assert lines, "the server logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys()
        assert line["time"].endswith("+00:00")
    requests = [line for line in lines if line["logger"] == "runstream.requests"]
    get_runs = [line for line in requests if line["method"] == "runstream.v1.RunService/GetRun"]
    assert [(line["code"], line["run_id"]) for line in get_runs] == [
        ("OK", run.run_id),
        ("NOT_FOUND", "missing-run"),
    ]
    # One line per call at DEBUG: the default level (INFO) is not flooded by requests.
    assert {line["level"] for line in requests} == {"debug"}
    watch = [line for line in requests if line["method"] == "runstream.v1.RunService/WatchRun"]
    assert len(watch) == 1 and watch[0]["run_id"] == run.run_id and watch[0]["code"] == "OK"
    assert watch[0]["duration_ms"] >= 0
    report = [line for line in requests if line["method"] == "runstream.v1.ReportService/Report"]
    assert report and all(line["run_id"] == run.run_id for line in report)
    assert any(line["message"].startswith("stopped in ") for line in lines)
    # gRPC's own debug lines ("Loaded running loop", on every call) stay out of it.
    assert [line for line in lines if line["logger"].startswith("grpc")] == []


async def test_json_request_lines_name_the_verified_principal_and_tenant(tmp_path: Path) -> None:
    """With tokens required, each request's line carries who made it, as the README lists
    the JSON fields: the token's subject and tenant (never the token)."""
    keys = Keys.make(tmp_path / "keys")
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "runstream.db",
        extra=("--log-format", "json", "--log-level", "debug", "--jwt-public-key",
               str(keys.public_key_file), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE),
    )  # fmt: skip
    token = keys.token(["viewer"], sub="bob", tenant="globex")
    server.start()
    try:
        async with runstream.connect(server.target, token=token) as client:
            with pytest.raises(runstream.NotFoundError):
                await client.get_run("missing-run")
    finally:
        assert server.terminate() == 0
    # The call's own line, and the NOT_FOUND rejection logged while it was handled.
    get_runs = [
        line for line in log_lines(server) if line.get("method") == "runstream.v1.RunService/GetRun"
    ]
    assert [(line["principal"], line.get("tenant")) for line in get_runs] == [("bob", "globex")] * 2
    assert token not in server.store_path.with_suffix(".log").read_text()


async def test_watchers_that_hang_up_are_logged_at_debug_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    """Clients closing their connections with watch streams open, at debug level: each stream
    is logged CANCELLED with the client's address, and the server lives on (reading the
    peer of a call that was already gone used to end the process with SIGSEGV)."""
    from runstream.v1 import run_service_pb2 as rs
    from runstream.v1 import run_service_pb2_grpc as rs_grpc

    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "runstream.db",
        extra=("--log-format", "json", "--log-level", "debug"),
    )
    server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as control:
            runs = rs_grpc.RunServiceStub(control)
            run_id = (await runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run.run_id
            for _ in range(8):
                channel = grpc.aio.insecure_channel(server.target)
                stub = rs_grpc.RunServiceStub(channel)
                calls = [stub.WatchRuns(rs.WatchRunsRequest()) for _ in range(2)]
                calls += [
                    stub.WatchRun(rs.WatchRunRequest(run_id=run_id, keep_open=True))
                    for _ in range(2)
                ]
                for call in calls:
                    await call.read()
                    call.cancel()
                await channel.close()
                await asyncio.sleep(0.2)
                await runs.GetRun(rs.GetRunRequest(run_id=run_id), timeout=5)
    finally:
        assert server.terminate() == 0
    requests = [line for line in log_lines(server) if line["logger"] == "runstream.requests"]
    watches = [line for line in requests if line["method"].endswith(("/WatchRun", "/WatchRuns"))]
    assert len(watches) == 32
    assert {line["code"] for line in watches} == {"CANCELLED"}
    assert all(line["peer"].startswith("ipv4:127.0.0.1:") for line in watches)


async def test_metrics_flag_serves_prometheus_text(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "runstream.db",
        extra=("--metrics-address", f"127.0.0.1:{metrics_port}"),
    )
    server.start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            await channel.channel_ready()
        url = f"http://127.0.0.1:{metrics_port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        text = await asyncio.to_thread(scrape)
        assert "# TYPE runstream_events_appended_total counter" in text
        assert "runstream_uptime_seconds" in text
    finally:
        assert server.terminate() == 0


async def test_dashboard_page_only_mode_points_the_page_at_an_external_envoy() -> None:
    """compose.yaml's dashboard service: the page alone, calling the Envoy it is told about."""
    import subprocess
    import sys

    process = subprocess.Popen(  # noqa: ASYNC220 - starts the page server and returns at once
        [
            sys.executable,
            "-m",
            "runstream.cli.main",
            "dashboard",
            "--port",
            "0",
            "--api-url",
            "http://localhost:8081",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.to_thread(process.stdout.readline)
        assert first.startswith("Runstream dashboard: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()

        def fetch(path: str) -> bytes:
            with urllib.request.urlopen(url + path, timeout=10) as response:
                return bytes(response.read())

        config = json.loads(await asyncio.to_thread(fetch, "config.json"))
        assert config["api_url"] == "http://localhost:8081"
        assert b"<html" in (await asyncio.to_thread(fetch, "")).lower()
    finally:
        process.terminate()
        assert process.wait(10) == 0
        if process.stdout is not None:
            process.stdout.close()
