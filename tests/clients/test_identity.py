"""The SDK with tokens and TLS against a real server: long streams outlive their tokens.

The server ends a stream at its token's ``exp``; a client built with a token provider
reconnects with a fresh token and resumes from its cursor, so the watcher sees every seq
exactly once. Certificates are made by the test with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import runstream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from runstream import DecisionPrompt
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.auth.edge import SecurityConfig, TlsConfig
from runstream_server.auth.followed import RECHECK_SECONDS
from runstream_server.auth.limits import CallerLimits
from runstream_server.auth.tokens import AuthConfig
from runstream_server.principal import EXPIRED_DURING_STREAM

from tests.clients.support import collect_garbage, loop_complaints, proxy_to, question, until
from tests.identity import Keys, Pki, claims, rs256_auth, start_server, write_jwks

MISSING = "0" * 32


@pytest.fixture
async def producer(secured: RunstreamServer, keys: Keys) -> AsyncIterator[runstream.Client]:
    async with runstream.connect(secured.target, token=keys.token(["producer"])) as client:
        yield client


async def test_a_watch_stream_ends_unauthenticated_when_its_token_expires(
    secured: RunstreamServer, keys: Keys, producer: runstream.Client
) -> None:
    run = await producer.start_run("wf")
    short = keys.token(["viewer"], exp=int(time.time()) + 2)
    async with grpc.aio.insecure_channel(secured.target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        stream = stub.WatchRun(
            rs.WatchRunRequest(run_id=run.run_id, keep_open=True),
            metadata=[("authorization", f"Bearer {short}")],
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stream:
                pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == EXPIRED_DURING_STREAM
    await run.close()


async def test_a_token_provider_keeps_report_and_watch_exact_across_expiries(
    secured: RunstreamServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="runstream")
    issued: list[str] = []

    def provider() -> str:
        # Three seconds (two to three, exp being whole seconds): several expiries per test.
        issued.append(keys.token(["viewer"], exp=int(time.time()) + 3))
        return issued[-1]

    async def producer_token() -> str:  # async providers work too
        return keys.token(["producer"], exp=int(time.time()) + 3)

    producer = runstream.connect(secured.target, token=producer_token)
    run = await producer.start_run("wf")
    total = 60

    async def produce() -> None:
        for i in range(total):
            await run.custom("tick", {"i": i})
            await asyncio.sleep(0.1)
        await run.complete(summary="done")

    def operator_token() -> str:
        return keys.token(["operator"], exp=int(time.time()) + 3)

    producing = asyncio.create_task(produce())
    seqs: list[int] = []
    async with (
        runstream.connect(secured.target, token=operator_token) as operator,
        operator.interact([run.run_id]),  # its stream renews its token beside the watch
        runstream.connect(secured.target, token=provider) as viewer,
    ):
        async for event in viewer.watch(run.run_id):
            seqs.append(event.seq)
    await producing
    await run.close()
    await producer.close()
    assert seqs == list(range(1, seqs[-1] + 1)), "a seq was lost or repeated"
    assert seqs[-1] >= total + 2  # created, the ticks, completed (plus server insight events)
    assert len(issued) >= 2, "the stream should have outlived at least one token"
    # A renewal is no outage: `watch --plain` printed "lost (UNAUTHENTICATED)" and "is back"
    # at every expiry. Said at DEBUG, where a renewal shows for whoever looks.
    renewals = [r.getMessage() for r in caplog.records if "lost (UNAUTHENTICATED" in r.getMessage()]
    for stream in ("watch of run", "report stream", "interact stream"):
        assert [m for m in renewals if m.startswith(stream)], (stream, renewals)
    outages = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO
        and (" lost (" in r.getMessage() or "is back" in r.getMessage())
    ]
    assert not outages, outages
    async with runstream.connect(secured.target, token=keys.token(["viewer"])) as reader:
        ticks = [e async for e in reader.watch(run.run_id) if e.kind == runstream.EventKind.CUSTOM]
    assert [e.payload.data["i"] for e in ticks] == list(range(total)), (
        "the producer lost or repeated one"
    )


async def test_a_fixed_token_cannot_be_refreshed_so_the_watch_fails_unauthenticated(
    secured: RunstreamServer, keys: Keys, producer: runstream.Client
) -> None:
    run = await producer.start_run("wf")
    token = keys.token(["viewer"], exp=int(time.time()) + 2)
    async with runstream.connect(secured.target, token=token) as viewer:
        with pytest.raises(runstream.UnauthenticatedError, match="token expired") as info:
            async for _ in viewer.watch(run.run_id, keep_open=True):
                pass
        # The cause, not the server's question whether the clocks agree (they do): the
        # token was fixed, so the reconnect at its expiry had nothing fresh to send.
        assert "clocks out of sync" not in info.value.message
        assert "never renewed" in info.value.message
        assert info.value.details.reason == "TOKEN_EXPIRED"
        with pytest.raises(runstream.UnauthenticatedError, match="never renewed"):
            await viewer.get_run(run.run_id)
    # Stale from the start, it goes to the server, whose refusal says by its own clock how
    # stale: a clock out of sync may then be the point.
    stale = keys.token(["viewer"], exp=int(time.time()) - 100)
    async with runstream.connect(secured.target, token=stale) as viewer:
        with pytest.raises(runstream.UnauthenticatedError, match="by this server's clock"):
            await viewer.get_run(run.run_id)
    await run.close()


async def test_a_token_provider_keeps_report_and_watch_exact_when_its_key_is_withdrawn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The identity provider withdraws the key that signed the tokens in use and signs with
    a new one: the server cuts the streams opened with the old key's tokens, the SDK asks its
    providers again at once (the old tokens had minutes left) and resumes, so the watcher
    sees every seq once and every event is stored once. A fixed token of the old key cannot
    be replaced: that watch fails UNAUTHENTICATED, naming the key."""
    caplog.set_level(logging.INFO, logger="runstream")
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, [("2026-11", old), ("2026-12", new)])
    server = await start_server(tmp_path, SecurityConfig(auth=AuthConfig(public_key_file=jwks)))
    signing: tuple[str, ec.EllipticCurvePrivateKey] = ("2026-11", old)
    asked = {"producer": 0, "viewer": 0}

    def provider(role: str) -> Callable[[], str]:
        def token() -> str:
            asked[role] += 1
            kid, key = signing
            return jwt.encode(claims([role]), key, algorithm="ES256", headers={"kid": kid})

        return token

    total = 40
    withdrawn = asyncio.Event()
    producer = runstream.connect(server.target, token=provider("producer"))
    fixed = runstream.connect(server.target, token=provider("viewer")())
    try:
        run = await producer.start_run("wf")

        async def produce() -> None:
            for i in range(total):
                await run.custom("tick", {"i": i})
                await asyncio.sleep(0.05)
                if i == total // 4:
                    write_jwks(jwks, [("2026-12", new)])  # the old key withdrawn
                    nonlocal signing
                    signing = ("2026-12", new)
                    withdrawn.set()
            await run.complete(summary="done")

        async def watch_with_the_fixed_token() -> None:
            async for _ in fixed.watch(run.run_id, keep_open=True):
                pass

        producing = asyncio.create_task(produce())
        fixed_watch = asyncio.create_task(watch_with_the_fixed_token())
        seqs: list[int] = []
        async with runstream.connect(server.target, token=provider("viewer")) as viewer:
            async for event in viewer.watch(run.run_id):
                seqs.append(event.seq)
        await producing
        with pytest.raises(runstream.UnauthenticatedError, match="unknown key id '2026-11'"):
            await asyncio.wait_for(fixed_watch, 10)
        await run.close()
        assert withdrawn.is_set()
        # A key withdrawn is no routine renewal (a token's exp is): its cut is said at INFO.
        cuts = [r for r in caplog.records if "lost (UNAUTHENTICATED" in r.getMessage()]
        assert cuts and all(r.levelno == logging.INFO for r in cuts), caplog.text
        assert seqs == list(range(1, seqs[-1] + 1)), "a seq was lost or repeated"
        assert asked["producer"] >= 2 and asked["viewer"] >= 3, "providers asked again"
        async with runstream.connect(server.target, token=provider("viewer")) as reader:
            ticks = [
                e.payload.data["i"]
                async for e in reader.watch(run.run_id)
                if e.kind == runstream.EventKind.CUSTOM
            ]
        assert ticks == list(range(total)), "the producer lost or repeated one"
    finally:
        await producer.close()
        await fixed.close()
        await server.stop(grace=0.5)


async def test_tls_with_a_certificate_the_test_made(tmp_path: Path) -> None:
    pki = Pki.make(tmp_path / "pki")
    tls = TlsConfig(pki.server_cert, pki.server_key)
    server = await start_server(tmp_path, SecurityConfig(tls=tls))
    try:
        target = f"localhost:{server.port}"
        async with runstream.connect(target, ca_file=pki.ca_file) as client:
            run = await client.start_run("wf")
            assert (await client.get_run(run.run_id)).run_id == run.run_id
            await run.close()
        async with runstream.connect(target, timeout=3, reconnect_timeout=0) as plaintext:
            with pytest.raises(runstream.UnavailableError):
                await plaintext.get_run(run.run_id)
    finally:
        await server.stop(grace=0.5)


async def test_a_certificate_renewed_in_place_serves_new_connections_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The files were read once, at start: a certificate renewed by cert-manager or certbot
    needed a restart (dropping every stream) to serve. Now the next connection after a
    change gets the new one; a pair that does not match yet (the certificate written before
    its key) is not taken, the last good one serving on."""
    first, renewed = Pki.make(tmp_path / "first"), Pki.make(tmp_path / "renewed")
    cert, key = tmp_path / "tls.pem", tmp_path / "tls-key.pem"
    cert.write_bytes(first.server_cert.read_bytes())
    key.write_bytes(first.server_key.read_bytes())
    server = await start_server(tmp_path, SecurityConfig(tls=TlsConfig(cert, key)))
    target = f"localhost:{server.port}"

    async def reaches(ca: Path) -> bool:
        async with runstream.connect(target, ca_file=ca, timeout=3, reconnect_timeout=0) as c:
            try:
                await c.list_runs_page()
            except runstream.UnavailableError:
                return False
            return True

    try:
        async with runstream.connect(target, ca_file=first.ca_file) as before:
            run = await before.start_run("wf")
            await run.flush()
            cert.write_bytes(renewed.server_cert.read_bytes())  # its key not yet
            await asyncio.sleep(RECHECK_SECONDS + 0.2)
            with caplog.at_level(logging.WARNING, logger="runstream.auth"):
                assert await reaches(first.ca_file)
            assert "TLS files changed but cannot serve yet" in caplog.text
            key.write_bytes(renewed.server_key.read_bytes())
            await asyncio.sleep(RECHECK_SECONDS + 0.2)
            assert await reaches(renewed.ca_file)
            assert not await reaches(first.ca_file)
            # A connection made before keeps the certificate it was made with.
            assert (await before.get_run(run.run_id)).run_id == run.run_id
            await run.close()
    finally:
        await server.stop(grace=0.5)


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, keys: Keys
) -> None:
    pki = Pki.make(tmp_path / "pki")
    tls = TlsConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca_file)
    security = SecurityConfig(auth=rs256_auth(keys).auth, tls=tls)
    server = await start_server(tmp_path, security)
    try:
        target = f"localhost:{server.port}"
        async with runstream.connect(
            target, ca_file=pki.ca_file, timeout=3, token=keys.token()
        ) as anonymous:
            with pytest.raises(runstream.UnavailableError):
                await anonymous.get_run(MISSING)
        async with runstream.connect(
            target,
            ca_file=pki.ca_file,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
            token=keys.token(),
        ) as client:
            with pytest.raises(runstream.NotFoundError):  # through TLS and auth to the service
                await client.get_run(MISSING)
    finally:
        await server.stop(grace=0.5)


async def test_tls_files_grpc_could_not_use_are_refused_at_connect_naming_them(
    tmp_path: Path,
) -> None:
    """gRPC took a key as the CA, logged its own errors on every attempt and failed each call
    UNAVAILABLE, "Failed to create security handshaker", as if no server were there."""
    pki = Pki.make(tmp_path / "pki")
    for files, problem in [
        ({"ca_file": pki.server_key}, f"the CA file {pki.server_key} holds no PEM certificate"),
        (
            {"ca_file": pki.ca_file, "client_cert": pki.client_key, "client_key": pki.client_key},
            f"the client certificate {pki.client_key} and key {pki.client_key} are not a PEM "
            "certificate and its unencrypted private key (unreadable as PEM)",
        ),
        (
            {"ca_file": pki.ca_file, "client_cert": pki.client_cert, "client_key": pki.server_key},
            "are not a PEM certificate and its unencrypted private key (the key is not the "
            "certificate's)",
        ),
        # A file that is not there: a ValueError naming it, as documented, not Python's
        # FileNotFoundError.
        (
            {"ca_file": tmp_path / "none.pem"},
            f"cannot read the CA file {tmp_path / 'none.pem'} (No such file or directory)",
        ),
        (
            {"ca_file": pki.ca_file, "client_cert": pki.client_cert, "client_key": tmp_path},
            f"cannot read the client key {tmp_path} (Is a directory)",
        ),
    ]:
        with pytest.raises(ValueError) as refused:
            runstream.connect("localhost:1", **files)
        assert problem in str(refused.value)
    async with runstream.connect("localhost:1", ca_file=pki.ca_file):  # the right files
        pass


async def test_tls_files_grpc_could_not_use_refuse_the_start_naming_them(tmp_path: Path) -> None:
    """gRPC says only that it could not create the server, which was taken for a busy port;
    the files are now checked before the store is opened, and named."""
    pki = Pki.make(tmp_path / "pki")
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"password"),
        )
    )
    for tls, problem in [
        (TlsConfig(pki.server_cert, tmp_path / "missing.pem"), "cannot read --tls-key"),
        (TlsConfig(pki.server_cert, pki.client_key), "(the key is not the certificate's)"),
        (TlsConfig(pki.server_cert, encrypted), "(the key is encrypted)"),
        (TlsConfig(pki.server_key, pki.server_key), "(unreadable as PEM)"),
        (
            TlsConfig(pki.server_cert, pki.server_key, client_ca_file=pki.server_key),
            f"--tls-client-ca {pki.server_key} holds no PEM certificate",
        ),
    ]:
        server = RunstreamServer(
            ServerConfig(
                address="127.0.0.1:0",
                store_path=tmp_path / "new" / "r.db",
                security=SecurityConfig(tls=tls),
            )
        )
        with pytest.raises(OSError) as refused:
            await server.start()
        said = str(refused.value)
        assert said.startswith("cannot serve TLS on 127.0.0.1:0: ") and problem in said, said
        assert not (tmp_path / "new").exists()


async def test_a_watch_held_back_by_a_limit_says_why(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: a second `runstream watch` of a run at its watcher limit waited and
    retried with no word on screen (the CLI shows the SDK's warnings)."""
    limits = CallerLimits(watchers_per_run=1, stream_retry_after=0.2)
    server = await start_server(tmp_path, dataclasses.replace(rs256_auth(keys), limits=limits))
    try:
        token = keys.token(["producer", "viewer"])
        async with runstream.connect(server.target, token=token) as client:
            run = await client.start_run("wf")
            await run.flush()
            first = client.watch(run.run_id)
            assert (await anext(first)).kind == runstream.EventKind.RUN_CREATED
            second = asyncio.create_task(anext(client.watch(run.run_id)))
            await until(lambda: _said(caplog, "the most allowed"), within=10)
            assert f"watch of run {run.run_id} waits 0.2s: run {run.run_id!r} has 1 watcher" in (
                caplog.text
            )
            assert not second.done()
            await first.aclose()  # a place is free: the second watcher gets its events
            assert (await asyncio.wait_for(second, 10)).kind == runstream.EventKind.RUN_CREATED
            await run.close()
    finally:
        await server.stop(grace=0.5)


async def _said(caplog: pytest.LogCaptureFixture, words: str) -> bool:
    return any(words in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)


async def test_the_sdk_waits_out_limits_and_loses_nothing(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Over the append rate the Report stream ends RESOURCE_EXHAUSTED with RetryInfo; the
    reporter waits that long, resends what was not acknowledged, and every event lands once.
    Over the tenant's active runs, start_run waits until a run ends."""
    caplog.set_level(logging.INFO, logger="runstream")
    limits = CallerLimits(
        append_events_per_second=40.0,
        append_burst=10,
        active_runs_per_tenant=1,
        runs_retry_after=0.5,
    )
    security = dataclasses.replace(rs256_auth(keys), limits=limits)
    server = await start_server(tmp_path, security)
    try:
        token = keys.token(["producer", "viewer"])
        async with runstream.connect(server.target, token=token) as client:
            run = await client.start_run("wf")
            for i in range(60):
                await run.custom("tick", {"i": i})
                if i % 10 == 9:
                    await run.flush()  # batches of ten: the bucket (ten, 40/s) runs dry
            second = asyncio.create_task(client.start_run("wf"))  # waits: 1 active run at most
            await run.complete(summary="done")
            await run.close()
            ticks = [
                e.payload.data["i"]
                async for e in client.watch(run.run_id)
                if e.kind == runstream.EventKind.CUSTOM
            ]
            assert ticks == list(range(60))
            snapshot = await client.get_run(run.run_id)
            assert (snapshot.tenant, snapshot.created_by) == ("acme", "alice")
            assert "lost (RESOURCE_EXHAUSTED" in caplog.text  # the limit did bite
            other = await second
            assert other.run_id != run.run_id
            await other.close()
    finally:
        await server.stop(grace=0.5)


async def test_an_interaction_with_a_token_leaves_no_task_behind(
    secured: RunstreamServer, keys: Keys
) -> None:
    # With a token, grpc feeds the stream's writes through a request iterator of its own, in
    # a task that waited for the next write for good once the stream failed; collected, it
    # logged "Task was destroyed but it is pending!" and "aclose(): asynchronous generator is
    # already running", after a stream that failed and after each reconnect.
    with loop_complaints() as complaints:
        async with (
            proxy_to(secured.port) as proxy,
            runstream.connect(secured.target, token=keys.token(["producer"])) as producer,
            runstream.connect(proxy.target, token=keys.token(["operator"])) as viewer,
        ):
            interaction = viewer.interact(["no-such-run"], viewer="ana")
            with pytest.raises(runstream.NotFoundError):
                async for _ in interaction:
                    pass
            await interaction.aclose()

            run = await producer.start_run("wf")
            await producer.raw_report_service.AppendEvents(question(run.run_id, "d"))
            interaction = viewer.interact([run.run_id], viewer="ana")
            assert isinstance(await asyncio.wait_for(anext(interaction), 10), DecisionPrompt)
            proxy.cut()
            await asyncio.sleep(0.2)
            proxy.restore()
            decision = await asyncio.wait_for(interaction.answer(run.run_id, "d", "a"), 20)
            assert decision.choice == "a"  # answered on the stream after the reconnect
            await interaction.aclose()
            del interaction
            await collect_garbage()
            await run.close()
    assert complaints == []


async def test_a_reporter_with_a_token_leaves_no_task_behind(
    secured: RunstreamServer, keys: Keys
) -> None:
    """The same for a reporter's Report stream, at each reconnect (found in review: six
    complaints for three reconnects)."""
    with loop_complaints() as complaints:
        async with (
            proxy_to(secured.port) as proxy,
            runstream.connect(proxy.target, token=keys.token(["producer"])) as producer,
        ):
            run = await producer.start_run("wf")
            for i in range(3):
                await run.custom("tick", {"i": i})
                await run.flush()
                proxy.cut()
                await asyncio.sleep(0.2)
                proxy.restore()
                await run.custom("tock", {"i": i})
                await asyncio.wait_for(run.flush(), 20)
            await run.complete()
            await run.close()
            await collect_garbage()
    assert complaints == []


BEYOND_LOOPBACK = "192.0.2.2:58111"  # TEST-NET-1: nothing answers there


@pytest.mark.parametrize("kind", ["fixed", "provider", "metadata"])
async def test_a_token_in_clear_beyond_loopback_is_refused_before_anything_connects(
    keys: Keys, kind: str
) -> None:
    token = keys.token(["viewer"])
    asked: list[str] = []

    def provider() -> str:
        asked.append(token)
        return token

    given: dict[str, Any] = {
        "fixed": {"token": token},
        "provider": {"token": provider},
        "metadata": {"metadata": {"authorization": f"Bearer {token}"}},
    }[kind]
    for target in (BEYOND_LOOPBACK, "runstream:50051", "ipv4:127.0.0.1:1,192.0.2.2:1"):
        with pytest.raises(ValueError) as info:
            runstream.connect(target, **given)
        message = str(info.value)
        assert f"refusing to send a token in clear to {target}" in message
        assert "ca_file" in message and "loopback" in message and "insecure_token=True" in message
        assert token not in message
    assert asked == [], "the provider was asked for a token that was never to be sent"
    # The opt-in connects as before (lazily: nothing is sent until a call).
    client = runstream.connect(BEYOND_LOOPBACK, insecure_token=True, **given)
    await client.close()


async def test_a_token_in_clear_stays_allowed_on_this_machine(keys: Keys) -> None:
    token = keys.token(["viewer"])
    local = ("127.0.0.1:1", "127.8.0.1:1", "localhost:1", "[::1]:1", "dns:///localhost:1",
             "unix:/tmp/runstream.sock", "unix-abstract:runstream")  # fmt: skip
    for target in local:
        await runstream.connect(target, token=token).close()
    await runstream.connect(BEYOND_LOOPBACK).close()  # without a token there is nothing to leak


async def test_the_opt_in_sends_the_token_to_a_target_beyond_loopback(
    secured: RunstreamServer, keys: Keys
) -> None:
    # Two addresses, the first this machine's: gRPC connects to it, yet the target also
    # names a host beyond loopback, so the token goes only with the opt-in.
    target = f"ipv4:127.0.0.1:{secured.port},192.0.2.2:{secured.port}"
    with pytest.raises(ValueError, match="insecure_token=True"):
        runstream.connect(target, token=keys.token(["producer"]))
    async with runstream.connect(
        target, token=keys.token(["producer"]), insecure_token=True
    ) as client:
        run = await client.start_run("wf")
        await run.complete()
        await run.close()


@pytest.mark.parametrize("bad", ["\n", "é", "\t", "\x00", "\ufeff"])
async def test_a_token_no_header_can_carry_is_refused_without_showing_it(
    secured: RunstreamServer, keys: Keys, bad: str
) -> None:
    """A pasted line break, a BOM or a non-ASCII letter in a token made the first call fail
    with grpc's ExecuteBatchError (not a RunstreamError) after a C log line."""
    token = keys.token(["viewer"])
    broken = token[:20] + bad + token[20:]
    with pytest.raises(ValueError) as info:
        runstream.connect(secured.target, token=broken)
    assert "character 21 of the token" in str(info.value)
    assert token[:20] not in str(info.value)

    # From a provider: the SDK's error, as for any provider that fails.
    async with runstream.connect(secured.target, token=lambda: broken) as client:
        with pytest.raises(runstream.UnauthenticatedError) as failed:
            await client.list_runs_page()
    assert "the token provider failed: ValueError: character 21 of the token" in str(failed.value)
    assert token[:20] not in str(failed.value)


async def test_a_producer_token_is_enough_for_every_producer_feature(
    secured: RunstreamServer, keys: Keys, producer: runstream.Client
) -> None:
    """attach_run reads the run and the questions asked before it, and a reporter that
    reconnects reads back the answers it may have missed: reads a producer-only token was
    refused ("GetRun needs the 'viewer' role"), so attach_run always failed, and ask() waited
    forever for an answer given while its stream reconnected (found in review)."""
    async with (
        proxy_to(secured.port) as proxy,
        runstream.connect(proxy.target, token=keys.token(["producer"])) as flaky,
        runstream.connect(secured.target, token=keys.token(["operator"])) as operator,
    ):
        run = await flaky.start_run("wf")
        asking = asyncio.create_task(run.ask("Ship it?", ["a", "b"], decision_id="q"))

        async def asked() -> bool:
            return bool(await operator.list_decisions(run.run_id))

        await until(asked)
        proxy.cut()  # the producer's stream is down while the answer is given ...
        await operator.submit_decision(run.run_id, "q", "a")
        proxy.restore()  # ... and the server has no stream to push it on
        answer = await asyncio.wait_for(asking, 15)
        assert answer.choice == "a"
        await run.close()  # left RUNNING, for another process to continue

        again = await producer.attach_run(run.run_id)
        await again.complete(summary="continued")
        await again.close()
        assert (await operator.get_run(run.run_id)).status == runstream.RunStatus.SUCCEEDED


async def test_a_producer_token_reads_no_more_than_its_reporting_needs(
    secured: RunstreamServer, keys: Keys, producer: runstream.Client
) -> None:
    run = await producer.start_run("wf")
    await run.flush()
    assert (await producer.get_run(run.run_id)).run_id == run.run_id
    assert await producer.list_decisions(run.run_id) == []
    for read in (
        producer.list_runs_page(),
        producer.list_events_page(run.run_id),
        anext(aiter(producer.watch(run.run_id))),
    ):
        with pytest.raises(runstream.PermissionDeniedError, match="needs the 'viewer' role"):
            await read
    other = runstream.connect(secured.target, token=keys.token(["producer"], tenant="other"))
    async with other:
        with pytest.raises(runstream.NotFoundError):
            await other.get_run(run.run_id)
    await run.close()
