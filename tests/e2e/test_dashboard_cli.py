"""What `runstream dashboard` says as it starts, and how it refuses what it cannot do.

Found in review: in front of a server of the user's it announced an embedded server with
seeded recorded runs (it started and seeded nothing), while `--demo`, which does, no longer
said so; a bad `--origin` was found only after the page was up, exit 1 without naming the
option; a busy `--envoy-port` ended with Envoy's log crammed into one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import runstream
from runstream.v1 import run_service_pb2
from runstream_server.app import RunstreamServer

from tests.clients.support import until
from tests.conftest import free_port
from tests.identity import Keys, Pki, start_server

from .test_dashboard_starts import launch_once
from .web_support import grpc_web_call, require

pytestmark = pytest.mark.timeout(300)


def _require_envoy() -> None:
    from runstream.dashboard.envoy import envoy_binary

    try:
        envoy_binary()
    except Exception:  # any reason Envoy is unavailable
        require(False, "envoy (the envoy extra)")


def dashboard(*args: str) -> subprocess.CompletedProcess[str]:
    """`runstream dashboard ARGS`, expected to refuse and exit."""
    return subprocess.run(
        [sys.executable, "-m", "runstream.cli.main", "dashboard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Dashboard:
    """`runstream dashboard --target TARGET` on free ports, read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    @classmethod
    async def start(
        cls, target: str, page_port: int = 0, envoy_port: int = 0, *more: str
    ) -> Dashboard:
        argv = ["dashboard", "--target", target,
                "--port", str(page_port), "--envoy-port", str(envoy_port), *more]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runstream.cli.main", *argv,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(process)

    async def said(self, text: str) -> str:
        """The next line holding `text`."""
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            while line := (await self.process.stdout.readline()).decode():
                self.seen.append(line)
                if text in line:
                    return line
        raise AssertionError("".join(self.seen))

    async def envoy_target(self) -> str:
        """Envoy's HOST:PORT, once the command is up (gRPC clients can use it too)."""
        url = (await self.said("grpc-web: Envoy on")).split("Envoy on ")[1].split()[0]
        await self.said("Press Ctrl-C")
        return url.removeprefix("http://")

    async def ended(self) -> None:
        """Stops the command (and so its Envoy) if it still runs: a test that failed halfway
        leaves no process behind."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def stop(self) -> str:
        """SIGTERM; everything it said."""
        self.process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(self.process.communicate(), 30)
        self.seen.append(rest.decode())
        assert self.process.returncode == 0, "".join(self.seen)
        return "".join(self.seen)


async def shown_through(target: str, run_id: str, *more: str) -> tuple[runstream.Run, str]:
    """The run `run_id` as a client reads it through the Envoy of `runstream dashboard
    --target TARGET MORE`, and everything the command said."""
    dashboard = await Dashboard.start(target, 0, 0, *more)
    try:
        async with runstream.connect(await dashboard.envoy_target()) as client:
            shown = await client.get_run(run_id)
    finally:
        said = await dashboard.stop()
    return shown, said


async def test_in_front_of_a_users_server_it_announces_no_embedded_one(
    server: RunstreamServer,
) -> None:
    _require_envoy()
    dashboard = await Dashboard.start(server.target)
    try:
        await dashboard.said("Press Ctrl-C")
    finally:
        said = await dashboard.stop()
    assert re.search(rf"grpc-web: Envoy on \S+ -> Runstream server at {server.target}", said)
    assert "embedded" not in said and "seeded" not in said, said


async def test_its_envoy_answers_this_machines_names_and_the_allowed_hosts_only(
    server: RunstreamServer,
) -> None:
    """Against DNS rebinding (the hostile-client review's F4): a page of another site whose
    name was pointed at 127.0.0.1 called this Envoy same-origin, listing and cancelling runs
    of a server without tokens."""
    _require_envoy()
    dashboard = await Dashboard.start(server.target, 0, 0, "--allowed-host", "dash.example")
    try:
        url = "http://" + await dashboard.envoy_target()

        def status_for(host: str) -> tuple[int, str | None]:
            call = grpc_web_call(
                url, "runstream.v1.RunService/ListRuns", run_service_pb2.ListRunsRequest(),
                metadata={"host": host},
            )  # fmt: skip
            try:
                list(call.messages())
                return call.status, call.grpc_status()
            finally:
                call.close()

        for host, answer in (
            ("dash.example:8081", (200, "0")),
            ("localhost", (200, "0")),
            ("rebind.evil.example:8081", (403, "7")),
        ):
            assert await asyncio.to_thread(status_for, host) == answer, host
    finally:
        await dashboard.stop()


async def demo_saying(target: str, line: str) -> tuple[str, str]:
    """The line of `runstream dashboard --demo --target TARGET` that holds `line`, and all it
    said until stopped."""
    dashboard = await Dashboard.start(target, 0, 0, "--demo", "--speed", "40")
    try:
        found = await dashboard.said(line)
    finally:
        said = await dashboard.stop()
    return found, said


async def test_the_demo_plays_on_a_server_with_auth_with_the_usual_token_options(
    secured: RunstreamServer, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dashboard --demo --target` took no token and ignored $RUNSTREAM_TOKEN: its demo run
    was refused by any server with a key."""
    _require_envoy()
    monkeypatch.setenv("RUNSTREAM_TOKEN", keys.token(["producer"]))
    finished, said = await demo_saying(secured.target, "finished; the dashboard keeps serving")
    run_id = finished.split()[2]
    async with runstream.connect(secured.target, token=keys.token()) as client:
        run = await client.get_run(run_id)
    assert run.status is runstream.RunStatus.SUCCEEDED, said


async def test_a_demo_run_the_server_refuses_is_said_not_left_unseen(
    secured: RunstreamServer, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a token that may not report (or none), `dashboard --demo --target` served the
    page and said nothing more: the refused run was collected silently at Ctrl-C (found in
    review)."""
    _require_envoy()
    monkeypatch.setenv("RUNSTREAM_TOKEN", keys.token(["viewer"]))
    refused, said = await demo_saying(secured.target, "the demo run could not start")
    assert "permission denied: CreateRun needs the 'producer' role" in refused, said
    assert "which needs the producer role" in refused


async def _running(children: list[int]) -> bool:
    return len(children) == 1


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:  # the parent's pid, after the state
                found.append(int(stat.parent.name))
    return found


async def test_an_envoy_that_dies_is_started_again(server: RunstreamServer) -> None:
    """Envoy killed under the command: the page said "Reconnecting" for ever and nothing
    said why (found in review). Now the command says so and starts it again, on the same
    port, so the page reconnects; after four exits within a minute it gives up."""
    _require_envoy()
    dashboard = await Dashboard.start(server.target)
    pid = dashboard.process.pid
    try:
        url = (await dashboard.said("grpc-web: Envoy on")).split("Envoy on ")[1].split()[0]
        port = int(url.rsplit(":", 1)[1])
        await dashboard.said("Press Ctrl-C")
        await until(lambda: _running(_children(pid)))
        [envoy] = _children(pid)
        os.kill(envoy, signal.SIGKILL)
        restarted = await dashboard.said("started it again")
        assert f"Envoy exited with signal SIGKILL; started it again on {url}" in restarted
        [again] = _children(pid)
        assert again != envoy
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # Envoy listens on the page's grpc-web port again
        # One that keeps exiting is not started for ever: the fourth exit within a minute
        # ends the command, exit 1, saying so (as the README promises).
        for _ in range(3):
            await until(lambda: _running(_children(pid)))
            [envoy] = _children(pid)
            os.kill(envoy, signal.SIGKILL)
            line = await dashboard.said("Envoy exited with signal SIGKILL")
        assert "Envoy exited with signal SIGKILL 4 times in a minute" in line, dashboard.seen
        assert await asyncio.wait_for(dashboard.process.wait(), 30) == 1
    finally:
        await dashboard.ended()


async def test_the_demo_announces_its_embedded_server_and_seeded_history() -> None:
    _require_envoy()
    said = await launch_once()
    assert re.search(r"Runstream server \(embedded\) on 127\.0\.0\.1:\d+", said), said
    assert "ETA history: recorded runs of the campaign seeded" in said


def test_a_bad_origin_is_a_usage_error_naming_the_option() -> None:
    done = dashboard("--target", f"127.0.0.1:{free_port()}", "--origin", "foo")
    assert done.returncode == 2, done.stderr
    assert "argument --origin: an origin is scheme://host[:port] with no path" in done.stderr
    assert "embedded" not in done.stdout


@pytest.mark.parametrize("url", ["ftp://x", "envoy.internal:8081", "http://", "http://h/?q=1"])
def test_an_api_url_the_page_cannot_call_is_a_usage_error_naming_the_option(url: str) -> None:
    """`--api-url ftp://x` was taken, and the page then called grpc-web there (found in
    review); `--origin` was already refused in one line."""
    done = dashboard("--api-url", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "runstream dashboard: error: argument --api-url: the grpc-web URL is "
        f"http(s)://host[:port][/path], e.g. http://envoy.internal:8081; got {url!r}"
    ]
    assert done.stdout == ""


def test_an_api_url_with_credentials_is_refused_without_repeating_them() -> None:
    """`--api-url http://u:s3cret@h:8081` was taken, printed ("grpc-web: http://u:s3cret@...")
    and put in the page every visitor loads, whose fetch refuses such a URL anyway (found in
    review)."""
    done = dashboard("--api-url", "http://ops:s3cret@envoy.internal:8081")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "runstream dashboard: error: argument --api-url: the grpc-web URL has a user or "
        "password, which the page would show to every visitor and browsers refuse to call; "
        "got http://***@envoy.internal:8081"
    ]
    assert done.stdout == ""


def test_a_busy_envoy_port_is_one_line_saying_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = dashboard("--target", f"127.0.0.1:{free_port()}", "--port", "0",
                         "--envoy-port", str(port))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"runstream: cannot start Envoy on 127.0.0.1:{port}: Address already in use; "
        "pass --envoy-port 0 for a free port"
    ]


def test_one_port_for_the_page_and_envoy_is_a_usage_error() -> None:
    """`--port 8090 --envoy-port 8090` served the page, then failed with Envoy's own log
    lines, escaped "\\n" and all, after an embedded --demo server had started (found in
    review)."""
    port = str(free_port())
    done = dashboard("--demo", "--port", port, "--envoy-port", port)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"runstream: --port and --envoy-port are both {port}: the page and Envoy listen on a "
        "port each"
    ]
    assert done.stdout == ""


@pytest.mark.parametrize("form", ["ipv4:{live},{dead}", "{live},{dead}"])
async def test_replicas_listed_in_the_target_are_reached_through_envoy(
    server: RunstreamServer, form: str
) -> None:
    """Found in review: `--target ipv4:A,B`, the SDK's form for replicas, gave Envoy an
    address 'ipv4:127.0.0.1' that never resolves, so the page lost A without a word (and
    one `ipv4:` address answered every call 503); `A:PORT,B:PORT` was refused."""
    _require_envoy()
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("replicas", display_name="through a list of replicas")
        await run.close()
    target = form.format(live=server.target, dead=f"127.0.0.1:{free_port()}")
    shown, said = await shown_through(target, run.run_id)
    assert shown.display_name == "through a list of replicas"
    assert f"-> Runstream server at {target}" in said
    assert "warning:" not in said, said


async def test_it_starts_again_on_the_same_ports_right_after_it_stopped(
    server: RunstreamServer,
) -> None:
    """Found in review: the connections of the Envoy that had just stopped (TIME_WAIT, for a
    minute) made the command refuse its own --envoy-port, "Address already in use", while
    nothing listened on it."""
    _require_envoy()
    ports = free_port(), free_port()
    dashboard = await Dashboard.start(server.target, *ports)
    try:
        envoy = await dashboard.envoy_target()
        async with runstream.connect(envoy) as client:
            await client.list_runs_page()  # a connection Envoy closes first, as it stops
            await dashboard.stop()
        again = await Dashboard.start(server.target, *ports)
        try:
            assert await again.envoy_target() == envoy
            await again.stop()
        finally:
            await again.ended()
    finally:
        await dashboard.ended()


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_it_fronts_a_tls_server_with_the_ca_file_it_is_given(
    tmp_path: Path, mutual: bool
) -> None:
    """Left open at an earlier stop: its Envoy spoke plaintext to every server, so a server
    serving TLS (as any deployment does) was shown "Reconnecting" for ever, --ca-file (and
    --client-cert) used by the demo's client alone. Now Envoy reaches it over TLS, checking
    the server's certificate against --ca-file, and refuses one another CA signed."""
    from runstream_server.auth.edge import SecurityConfig, TlsConfig

    _require_envoy()
    pki = Pki.make(tmp_path / "pki")
    stranger = Pki.make(tmp_path / "other")
    tls = TlsConfig(pki.server_cert, pki.server_key, pki.ca_file if mutual else None)
    server = await start_server(tmp_path, SecurityConfig(tls=tls))
    try:
        async with runstream.connect(
            server.target,
            ca_file=pki.ca_file,
            client_cert=pki.client_cert if mutual else None,
            client_key=pki.client_key if mutual else None,
        ) as producer:
            run = await producer.start_run("tls", display_name="behind TLS")
            await run.close()
        client_files = ["--client-cert", str(pki.client_cert), "--client-key",
                        str(pki.client_key)] if mutual else []  # fmt: skip
        shown, said = await shown_through(
            server.target, run.run_id, "--ca-file", str(pki.ca_file), *client_files
        )
        assert shown.display_name == "behind TLS"
        assert "warning:" not in said, said

        # A server whose certificate the CA given does not vouch for is not reached.
        dashboard = await Dashboard.start(
            server.target, 0, 0, "--ca-file", str(stranger.ca_file), *client_files
        )
        try:
            envoy = await dashboard.envoy_target()
            async with runstream.connect(envoy, reconnect_timeout=0.5) as viewer:
                with pytest.raises(runstream.UnavailableError):
                    await viewer.get_run(run.run_id)
        finally:
            said = await dashboard.stop()
        # Why, not only that (found in review): gRPC's reason names the failed check.
        assert (
            f"warning: a server at {server.target} answered over TLS with a certificate the CA "
            "of --ca-file did not sign"
        ) in said, said
    finally:
        await server.stop(grace=1.0)


@pytest.mark.parametrize("given", ["no-client-cert", "no-ca-file"])
async def test_a_tls_server_that_closes_the_connection_is_named_with_the_likely_reason(
    tmp_path: Path, given: str
) -> None:
    """A server asking for a client certificate, reached without one, and one serving TLS,
    reached in plaintext, each close the connection as it opens: the start said only gRPC's
    "Socket closed" (found in review), where it names what is missing, as the CLI does."""
    from runstream_server.auth.edge import SecurityConfig, TlsConfig

    _require_envoy()
    pki = Pki.make(tmp_path / "pki")
    tls = TlsConfig(pki.server_cert, pki.server_key, pki.ca_file)
    server = await start_server(tmp_path, SecurityConfig(tls=tls))
    try:
        options = ["--ca-file", str(pki.ca_file)] if given == "no-client-cert" else []
        dashboard = await Dashboard.start(server.target, 0, 0, *options)
        try:
            await dashboard.envoy_target()  # up, and said what it found at start
        finally:
            said = await dashboard.stop()
    finally:
        await server.stop(grace=1.0)
    wants = (
        "wants a client certificate: give --client-cert and --client-key"
        if given == "no-client-cert"
        else "serves TLS and wants a client certificate: give --ca-file with --client-cert"
    )
    assert f"warning: a server at {server.target} {wants}" in said, said


def test_a_client_certificate_without_the_servers_ca_is_a_usage_error(tmp_path: Path) -> None:
    """Said before the page binds its port: the page's port taken (8080 by another program,
    once in CI) was said instead, exit 1."""
    pki = Pki.make(tmp_path / "pki")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        page_port = str(taken.getsockname()[1])
        done = dashboard("--target", f"127.0.0.1:{free_port()}", "--port", page_port,
                         "--client-cert", str(pki.client_cert),
                         "--client-key", str(pki.client_key))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--client-cert needs --ca-file" in done.stderr


async def test_a_target_named_localhost_reaches_a_server_on_127_0_0_1(
    server: RunstreamServer,
) -> None:
    """Envoy took the first address of a name alone: localhost is ::1 first here, so a
    server on 127.0.0.1 (serve's default) was never reached through `--target
    localhost:PORT`, every call 503 and the page Reconnecting for ever, while the command's
    own check (gRPC tries every address) said nothing was wrong (found in review)."""
    _require_envoy()
    async with runstream.connect(server.target) as producer:
        run = await producer.start_run("localhost", display_name="by name")
        await run.close()
    port = server.target.rsplit(":", 1)[1]
    shown, _ = await shown_through(f"localhost:{port}", run.run_id)
    assert shown.display_name == "by name"
