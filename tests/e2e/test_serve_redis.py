"""`runstream serve --store redis://...`: a replica on Redis, its password kept out of sight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import run_service_pb2, run_service_pb2_grpc

from tests.conftest import RedisProcess, ServerProcess, free_port


def serve_and_exit(store: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """`runstream serve --store STORE`, expected to refuse and exit."""
    argv = ["serve", "--address", f"127.0.0.1:{free_port()}", "--store", store]
    return subprocess.run(
        [sys.executable, "-m", "runstream.cli.main", *argv],
        capture_output=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


async def test_serve_on_a_password_protected_redis_with_the_password_in_a_file(
    tmp_path: Path,
) -> None:
    secret = "s3cret-never-logged"
    redis = RedisProcess(tmp_path / "redis", "--requirepass", secret)
    redis.start()
    password_file = tmp_path / "redis.password"
    password_file.write_text(secret + "\n")
    server = ServerProcess(
        port=free_port(),
        store_path=tmp_path / "replica.db",
        store_url=f"{redis.url}?password_file={password_file}",
    )
    try:
        server.start()
        async with grpc.aio.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(100):
                answer = await health.Check(health_pb2.HealthCheckRequest())
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            created = await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
            got = await runs.GetRun(run_service_pb2.GetRunRequest(run_id=created.run.run_id))
            assert got.run.workflow == "wf"
    finally:
        server.terminate()
        redis.stop()
    log = server.store_path.with_suffix(".log").read_text()
    assert "redis://127.0.0.1" in log  # it says where it stores...
    assert secret not in log  # ...but never the password


async def test_a_wrong_password_is_refused_at_start_without_echoing_it(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path.parent / f"{tmp_path.name}-redis", "--requirepass", "right")
    redis.start()
    try:
        done = serve_and_exit(f"redis://:wrong-guess@127.0.0.1:{redis.port}/0", tmp_path)
    finally:
        redis.stop()
    assert done.returncode != 0
    assert b"wrong-guess" not in done.stdout + done.stderr


def test_an_unknown_store_scheme_is_refused_not_taken_for_a_file(tmp_path: Path) -> None:
    done = serve_and_exit("memcached://127.0.0.1:1/0", tmp_path)
    assert done.returncode == 2
    assert b"unsupported store scheme memcached://" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no directory named "memcached:"
