"""`runstream serve --store redis://...`: a replica on Redis, its password kept out of sight."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runstream.v1 import run_service_pb2, run_service_pb2_grpc
from runstream_server.store.redis_url import parse_url

from tests.conftest import RedisProcess, ServerProcess, free_port, wait_until_linked
from tests.identity import Pki


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


async def serve_a_run(redis: RedisProcess, store_url: str, tmp_path: Path) -> str:
    """Runs `runstream serve --store STORE_URL` until SERVING, makes and reads a run through
    it, stops it and Redis; returns what the server logged."""
    server = ServerProcess(
        port=free_port(), store_path=tmp_path / "replica.db", store_url=store_url
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
    return server.store_path.with_suffix(".log").read_text()


async def test_serve_on_a_password_protected_redis_with_the_password_in_a_file(
    tmp_path: Path,
) -> None:
    secret = "s3cret-never-logged"
    redis = RedisProcess(tmp_path / "redis", "--requirepass", secret)
    redis.start()
    password_file = tmp_path / "redis.password"
    password_file.write_text(secret + "\n")
    log = await serve_a_run(redis, f"{redis.url}?password_file={password_file}", tmp_path)
    assert "redis://127.0.0.1" in log  # it says where it stores...
    assert secret not in log  # ...but never the password
    # What is in force, said as it starts: the store, and that its copies are Redis's own.
    store = f"store Redis {redis.url}?password_file={password_file}"
    assert f" | {store} | " in log and " | backups: Redis's own (AOF on) | " in log, log


async def test_serve_on_redis_over_tls_with_the_password_in_the_url(tmp_path: Path) -> None:
    secret = "tls-s3cret-never-logged"
    pki = Pki.make(tmp_path / "pki")
    redis = RedisProcess(tmp_path / "redis", "--requirepass", secret, tls=pki)
    redis.start()
    # rediss://: TLS, the server's certificate checked against the CA named in the URL.
    log = await serve_a_run(redis, f"{redis.url}&password={secret}", tmp_path)
    assert "rediss://127.0.0.1" in log
    assert secret not in log


async def test_a_password_parameter_with_escapes_in_its_name_is_not_logged(
    tmp_path: Path,
) -> None:
    """redis-py reads ``?pass%77ord=`` as the password (it decodes the names); the logs
    showed it, since only a parameter spelled ``password`` was hidden."""
    secret = "escaped-s3cret-never-logged"
    redis = RedisProcess(tmp_path / "redis", "--requirepass", secret)
    redis.start()
    log = await serve_a_run(redis, f"{redis.url}?pass%77ord={secret}", tmp_path)
    assert "redis://127.0.0.1" in log
    assert secret not in log


def test_the_passphrase_of_a_tls_key_is_not_shown_when_redis_cannot_be_reached(
    tmp_path: Path,
) -> None:
    """``ssl_password`` (the passphrase of the client's TLS key) was printed with the URL in
    the line saying Redis cannot be reached."""
    url = f"rediss://127.0.0.1:{free_port()}/0?ssl_password=key-s3cret&ssl_cert_reqs=none"
    done = serve_and_exit(url, tmp_path)
    assert done.returncode != 0
    assert b"cannot reach the Redis store rediss://127.0.0.1" in done.stderr, done.stderr
    assert b"ssl_password=***" in done.stderr
    assert b"key-s3cret" not in done.stdout + done.stderr


async def test_a_wrong_password_is_refused_at_start_without_echoing_it(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path.parent / f"{tmp_path.name}-redis", "--requirepass", "right")
    redis.start()
    try:
        done = serve_and_exit(f"redis://:wrong-guess@127.0.0.1:{redis.port}/0", tmp_path)
        without = serve_and_exit(f"redis://127.0.0.1:{redis.port}/0", tmp_path)
    finally:
        redis.stop()
    assert done.returncode != 0
    assert b"wrong-guess" not in done.stdout + done.stderr
    # Both said "cannot reach the Redis store", though Redis answered (found in review).
    for refused, shown in ((done, ":***@"), (without, "")):
        assert refused.returncode == 1
        assert (
            refused.stderr.decode()
            .splitlines()[-1]
            .startswith(
                f"runstream: the Redis store redis://{shown}127.0.0.1:{redis.port}/0 refused this "
                "server's login (AuthenticationError: "
            )
        ), refused.stderr


def test_a_database_redis_does_not_have_is_named_not_said_out_of_reach(tmp_path: Path) -> None:
    """Found in review: /16 on a Redis of 16 databases said "cannot reach the Redis store",
    though Redis answered, and an operator would look for a network fault."""
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        done = serve_and_exit(f"redis://127.0.0.1:{redis.port}/16", tmp_path)
    finally:
        redis.stop()
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == (
        f"runstream: the Redis store redis://127.0.0.1:{redis.port}/16 has no database 16 "
        "(ResponseError: DB index is out of range): Redis has as many as its `databases` "
        "setting, 16 by default, numbered from 0"
    )


def test_an_unknown_store_scheme_is_refused_not_taken_for_a_file(tmp_path: Path) -> None:
    done = serve_and_exit("memcached://127.0.0.1:1/0", tmp_path)
    assert done.returncode == 2
    assert b"unsupported store scheme memcached://" in done.stderr
    assert list(tmp_path.iterdir()) == []  # no directory named "memcached:"


def test_a_tls_redis_whose_certificate_is_not_trusted_is_refused_at_start(
    tmp_path: Path,
) -> None:
    redis = RedisProcess(tmp_path / "redis", tls=Pki.make(tmp_path / "pki"))
    redis.start()
    stranger = Pki.make(tmp_path / "other-pki")  # a CA that never signed Redis's certificate
    try:
        done = serve_and_exit(
            f"rediss://127.0.0.1:{redis.port}/0?ssl_ca_certs={stranger.ca_file}", tmp_path
        )
        plain = serve_and_exit(f"redis://127.0.0.1:{redis.port}/0", tmp_path)  # no TLS at all
    finally:
        redis.stop()
    for refused in (done, plain):
        said = refused.stderr.decode()
        assert refused.returncode == 1
        assert "Traceback" not in said
        assert said.splitlines()[-1].startswith("runstream: cannot reach the Redis store redis")
    assert "certificate verify failed" in done.stderr.decode()


def test_a_password_written_where_the_user_goes_is_not_shown(tmp_path: Path) -> None:
    """`redis://TOKEN@host` (no colon: a provider's URL copied as is, or a slip) was logged
    as `redis://TOKEN:***@host` when Redis could not be reached (found in review)."""
    secret = secrets.token_hex(12)
    for creds in (secret, f"ops:{secret}"):
        done = serve_and_exit(f"redis://{creds}@127.0.0.1:{free_port()}/0", tmp_path)
        said = done.stderr.decode()
        assert done.returncode == 1
        assert "cannot reach the Redis store redis://" in said
        assert secret not in said + done.stdout.decode()
    assert "redis://ops:***@127.0.0.1" in said  # the user, who is no secret, is kept


def test_bad_redis_url_options_are_refused_before_starting(tmp_path: Path) -> None:
    secret_file = tmp_path / "redis-password"
    secret_file.write_text("an0ther\n")
    for options, message in [
        ("wait=two", "wait='two' must be a whole number"),
        ("wait_timeout_ms=-5", "wait_timeout_ms='-5' must be a whole number"),
        # Redis reads WAIT 1 0 as "block forever": every write hung while health said SERVING.
        ("wait=1&wait_timeout_ms=0", "wait_timeout_ms='0' must be a whole number of at least 1"),
        (f"password_file={tmp_path / 'missing'}", "password_file: cannot read"),
        # Both: the file's won, unseen (found in review).
        (f"password_file={secret_file}", "a password in the URL and a password_file: give one"),
        (f"password=x&password_file={secret_file}", "a password in the URL and a password_file"),
        ("bogus=1", "unknown option 'bogus'"),
        ("prefix=x&socket_timout=3", "unknown option 'socket_timout'"),
        ("ssl_ca_certs=/ca.pem", "'ssl_ca_certs' is for TLS: use a rediss:// URL"),
        ("db=x", "Invalid value for 'db'"),
    ]:
        done = serve_and_exit(f"redis://:s3cret@127.0.0.1:1/0?{options}", tmp_path)
        said = done.stderr.decode()
        assert done.returncode == 2, options
        assert message in said and "s3cret" not in said and "an0ther" not in said, said


def test_a_cluster_asked_of_a_plain_redis_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Options redis-py takes but the Redis refuses (a cluster asked of a plain Redis) end the
    server with one line when it connects: one that names the option (it said "cannot reach"
    a Redis it had reached; found in review)."""
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        for options, said_in in [
            ("cluster=1", "is not a Redis Cluster: remove ?cluster=1 from the URL"),
            (
                "socket_timeout=3&client_name=runstream&cluster=1",
                "is not a Redis Cluster: remove ?cluster=1 from the URL",
            ),
        ]:
            done = serve_and_exit(f"redis://:s3cret@127.0.0.1:{redis.port}/0?{options}", tmp_path)
            said = done.stderr.decode() + done.stdout.decode()
            assert done.returncode == 1, said
            assert "Traceback" not in said and "s3cret" not in said
            last = said.splitlines()[-1]
            assert last.startswith("runstream: ") and said_in in last, last
    finally:
        redis.stop()


def test_a_password_that_splits_the_url_is_refused_without_echoing_any_of_it(
    tmp_path: Path,
) -> None:
    for secret in ("s3cr/et", "s3cr?et", "s3cr#et"):
        done = serve_and_exit(f"redis://:{secret}@127.0.0.1:1/0", tmp_path)
        said = done.stderr.decode() + done.stdout.decode()
        assert done.returncode == 2, secret
        assert "percent-encode" in said
        assert "s3cr" not in said and "et@" not in said, said


def test_a_database_path_that_is_not_a_number_is_refused_without_echoing_the_password(
    tmp_path: Path,
) -> None:
    """redis://HOST/1O (a letter O for a zero) served on database 0 without a word."""
    done = serve_and_exit("redis://:s3cret@127.0.0.1:1/1O", tmp_path)
    said = done.stderr.decode() + done.stdout.decode()
    assert done.returncode == 2
    assert said.splitlines() == [
        "runstream serve: --store: the URL's database path '/1O' is not a database number: "
        "give redis://HOST:PORT/0 (or /1, /2, ...)"
    ]
    assert "s3cret" not in said


def test_only_a_number_is_read_as_the_database() -> None:
    for path, db in [("", 0), ("/", 0), ("/0", 0), ("/15", 15)]:
        assert parse_url(f"redis://127.0.0.1:6379{path}").db == db
    assert parse_url("redis://127.0.0.1:6379/?db=3").db == 3  # the query's, with no path
    for path in ("/1/2", "/-1", "/db1", "/1 "):  # redis-py read 12, -1, 0 and 1
        with pytest.raises(ValueError, match=r"database path .* is not a database number"):
            parse_url(f"redis://:s3cret@127.0.0.1:6379{path}")


def test_url_options_that_would_quietly_mean_something_else_are_refused() -> None:
    """``?cluster=on`` read as "not a cluster", ``?prefix=`` as the default prefix, and
    ``?prefix=a&prefix=b`` as one of the two, all without a word."""
    for value, cluster in [("1", True), ("True", True), ("on", True), ("YES", True)]:
        assert parse_url(f"redis://127.0.0.1:6379/0?cluster={value}").cluster is cluster
    for value in ("0", "False", "off", "no"):
        assert parse_url(f"redis://127.0.0.1:6379/0?cluster={value}").cluster is False
    for options, message in [
        ("cluster=2", "cluster='2' must be 1, true, yes or on, or 0, false, no or off"),
        ("cluster=enabled", "cluster='enabled' must be 1, true, yes or on"),
        ("prefix=", "option 'prefix' is empty: give it a value or leave it out"),
        ("cluster=", "option 'cluster' is empty"),
        # redis-py logged in with the URL's password and ignored this one, unseen.
        ("password=an0ther", "a password in the URL and ?password=: give one of them"),
        # Database 1 was served, the /0 of the path dropped without a word.
        ("db=1", "the database is given twice, as the path '/0' and as ?db=: give one"),
        ("prefix=a&prefix=b", "option 'prefix' is given 2 times: give it once"),
        ("wait=1&wait=2", "option 'wait' is given 2 times"),
        ("socket_timeout=1&socket_timeout=2", "option 'socket_timeout' is given 2 times"),
        ("wait_timeout_ms=0", "wait_timeout_ms='0' must be a whole number of at least 1"),
        ("nodes=10.0.0.2:6379", "nodes= names more nodes of a Redis Cluster: add ?cluster=1"),
        ("cluster=1&nodes=10.0.0.2", "nodes: '10.0.0.2' is not HOST:PORT"),
        ("cluster=1&nodes=10.0.0.2:6379,:7000", "nodes: ':7000' is not HOST:PORT"),
        ("cluster=1&nodes=10.0.0.2:99999", "nodes: '10.0.0.2:99999' is not HOST:PORT"),
    ]:
        with pytest.raises(ValueError) as refused:
            parse_url(f"redis://:s3cret@127.0.0.1:6379/0?{options}")
        said = str(refused.value)
        assert message in said and "s3cret" not in said and "an0ther" not in said, options
    assert parse_url("redis://127.0.0.1:6379/0?wait=1&wait_timeout_ms=1").wait_timeout_ms == 1
    seeds = parse_url("redis://10.0.0.1:7000/0?cluster=1&nodes=10.0.0.2:7001,[::1]:7002").nodes
    assert seeds == (("10.0.0.2", 7001), ("::1", 7002))


def test_an_empty_password_file_is_refused_as_empty(tmp_path: Path) -> None:
    """An empty password file said "refused this server's login: give its password in a file
    named by ?password_file=", to a user who had (found in review)."""
    blank = tmp_path / "blank"
    blank.write_text("\n")
    with pytest.raises(ValueError) as refused:
        parse_url(f"redis://127.0.0.1:6379/0?password_file={blank}")
    assert str(refused.value) == f"password_file: {blank} is empty"


# --- Redis's own settings, checked at start (review 61, findings 1 and 3) ----------------------


def test_a_redis_that_evicts_keys_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    """An evicting policy deletes acknowledged events when Redis is full; the server started
    on one without a word."""
    secret = "evict-s3cret-never-shown"
    password_file = tmp_path / "redis.password"
    password_file.write_text(secret)
    redis = RedisProcess(
        tmp_path / "redis", "--requirepass", secret, "--maxmemory-policy", "allkeys-lru"
    )
    redis.start()
    try:
        in_file = serve_and_exit(f"{redis.url}?password_file={password_file}", tmp_path)
        in_url = serve_and_exit(f"redis://:{secret}@127.0.0.1:{redis.port}/0", tmp_path)
    finally:
        redis.stop()
    for done, shown in [
        (in_file, f"{redis.url}?password_file={password_file}"),
        (in_url, f"redis://:***@127.0.0.1:{redis.port}/0"),
    ]:
        said = done.stderr.decode() + done.stdout.decode()
        assert done.returncode == 1, said
        assert said.splitlines() == [
            f"runstream: the Redis store {shown} evicts keys when its memory is full "
            "(maxmemory-policy allkeys-lru), which would delete events this server "
            "acknowledged as stored: set maxmemory-policy noeviction (CONFIG SET, and in "
            "redis.conf or the provider's settings)"
        ]
        assert secret not in said


async def test_aof_off_is_warned_at_start_and_a_volatile_policy_is_served(
    tmp_path: Path,
) -> None:
    """volatile-lru, the default of managed services, evicts only keys with a TTL, which no
    record, log or index of the store has: served. AOF off: served, with one warning."""
    secret = "aof-s3cret-never-logged"
    redis = RedisProcess(
        tmp_path / "redis",
        "--requirepass", secret,
        "--appendonly", "no",
        "--maxmemory-policy", "volatile-lru",
    )  # fmt: skip
    redis.start()
    url = f"redis://:{secret}@127.0.0.1:{redis.port}/0"
    log = await serve_a_run(redis, url, tmp_path)
    warnings = [line.partition(" WARNING ")[2] for line in log.splitlines() if " WARNING " in line]
    assert warnings == [
        f"runstream.store.redis: the Redis store redis://:***@127.0.0.1:{redis.port}/0 runs "
        "with appendonly no: a restart of Redis loses every event it acknowledged since its "
        "last RDB save; set appendonly yes (CONFIG SET, and in redis.conf)"
    ]
    # The line saying what is in force says it too, rather than that AOF keeps every event.
    off = "AOF off: a restart of Redis keeps only its last RDB save"
    assert f" | backups: Redis's own ({off}) | " in log, log
    assert secret not in log


async def test_fewer_replicas_than_wait_asks_for_is_warned_and_served_once_one_connects(
    tmp_path: Path,
) -> None:
    """`?wait=1` on a Redis without a replica started SERVING without a word, then refused
    every write. It still starts (a replica may be reconnecting, as after a failover), says
    so at start, and writes are acknowledged once a replica connects, without a restart."""
    primary = RedisProcess(tmp_path / "primary")
    replica = RedisProcess(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    primary.start()
    url = f"{primary.url}?prefix=few&wait=1&wait_timeout_ms=1000"
    server = ServerProcess(port=free_port(), store_path=tmp_path / "replica.db", store_url=url)
    try:
        server.start()
        async with grpc.aio.insecure_channel(server.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest())
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            runs = run_service_pb2_grpc.RunServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "only 0 of 1 Redis replicas acknowledged" in str(refused.value.details())

            replica.start()
            await asyncio.to_thread(wait_until_linked, primary, replica)
            # As a client told "retry to confirm" would: the replica's first acknowledgements
            # may still be on their way (one WAIT of a loaded CI machine's timed out so).
            for attempt in range(10):
                try:
                    request = run_service_pb2.CreateRunRequest(workflow="wf")
                    created = await runs.CreateRun(request)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == 9:
                        raise
            assert created.run.workflow == "wf"
    finally:
        server.terminate()
        replica.stop()
        primary.stop()
    log = server.store_path.with_suffix(".log").read_text()
    warnings = [line.partition(" WARNING ")[2] for line in log.splitlines() if " WARNING " in line]
    assert warnings[0] == (
        f"runstream.store.redis: the Redis store {url} has fewer replicas than ?wait=1 asks "
        "for (connected: 0): writes are answered UNAVAILABLE until enough connect; check "
        "wait= and the replicas"
    )
