"""The auth matrix on every RPC of the contract, straight to a real server.

The server verifies RS256 with a public key the test made and requires an issuer and an
audience; every refused token gets UNAUTHENTICATED with a reason naming the failed check,
every valid token without the method's role gets PERMISSION_DENIED naming the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from runstream.v1 import (
    decision_service_pb2,
    decision_service_pb2_grpc,
    event_pb2,
    report_service_pb2,
    report_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    stats_service_pb2,
)
from runstream_server.api import decoding
from runstream_server.app import RunstreamServer, ServerConfig
from runstream_server.auth.edge import SecurityConfig, TlsConfig
from runstream_server.auth.followed import RECHECK_SECONDS
from runstream_server.auth.policy import PRODUCER_READS, ROLE_BY_METHOD, allowed
from runstream_server.auth.streams import OpenStreams
from runstream_server.auth.tokens import AuthConfig, TokenVerifier
from runstream_server.principal import EXPIRED_DURING_STREAM

from tests.identity import (
    ISSUER,
    Keys,
    Pki,
    claims,
    hmac_token,
    rs256_auth,
    start_server,
    unsigned_token,
    write_jwks,
)
from tests.server.conftest import BOTH_STORES
from tests.server.support import custom, keyless, status_detail

# Requests refused or let through before any commit: the commit path changes nothing here.
STORES = BOTH_STORES

SERVICES = [
    d.services_by_name[name]
    for d, name in (
        (run_service_pb2.DESCRIPTOR, "RunService"),
        (report_service_pb2.DESCRIPTOR, "ReportService"),
        (decision_service_pb2.DESCRIPTOR, "DecisionService"),
        (stats_service_pb2.DESCRIPTOR, "StatsService"),
    )
]
METHODS = [m for s in SERVICES for m in s.methods]
METHOD_IDS = [m.name for m in METHODS]


def path(method: Any) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


async def call(
    channel: grpc.aio.Channel,
    method: Any,
    token: str | None,
    *,
    header: str | None = None,
    refused: bool = False,
) -> tuple[grpc.StatusCode, str]:
    """Calls any RPC with an empty request; OK once the server sends anything back.

    A call expected to be `refused` sends nothing on a client stream: the server answers
    before reading, and a message racing its answer could fail on the client's side.
    """
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    metadata = []
    if header is not None:
        metadata.append(("authorization", header))
    elif token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    kwargs: dict[str, Any] = {
        "request_serializer": request_type.SerializeToString,
        "response_deserializer": response_type.FromString,
    }
    name = path(method)
    try:
        if method.client_streaming:
            multi = (
                channel.stream_stream(name, **kwargs)
                if method.server_streaming
                else channel.stream_unary(name, **kwargs)
            )

            async def requests() -> AsyncIterator[Any]:
                if refused:
                    await asyncio.Event().wait()  # cancelled when the call ends
                yield request_type()

            rpc = multi(requests(), metadata=metadata, timeout=10)
        elif method.server_streaming:
            rpc = channel.unary_stream(name, **kwargs)(
                request_type(), metadata=metadata, timeout=10
            )
        else:
            await channel.unary_unary(name, **kwargs)(request_type(), metadata=metadata, timeout=10)
            return grpc.StatusCode.OK, ""
        if method.server_streaming:
            async for _ in rpc:
                rpc.cancel()
                return grpc.StatusCode.OK, ""
        else:
            await rpc
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""


@pytest.fixture
async def channel(secured: RunstreamServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(secured.target) as ch:
        yield ch


def test_every_rpc_has_a_role() -> None:
    """A new RPC must be given a role in runstream_server/auth/policy.py (else admin only)."""
    missing = [path(m) for m in METHODS if path(m) not in ROLE_BY_METHOD]
    assert missing == [], f"add these to ROLE_BY_METHOD: {missing}"


BadToken = Callable[[Keys], tuple[str | None, str | None]]

BAD_TOKENS: dict[str, tuple[BadToken, str]] = {
    "no token": (lambda k: (None, None), "missing authorization metadata"),
    "malformed header": (lambda k: (None, "Token abc"), "malformed authorization header"),
    "empty bearer": (lambda k: (None, "Bearer "), "malformed authorization header"),
    "not a jwt": (lambda k: ("not-a-jwt", None), "malformed token"),
    "alg none": (
        lambda k: (unsigned_token(claims(["admin"])), None),
        "algorithm 'none' is not accepted",
    ),
    "HS256 signed with the public key": (
        lambda k: (hmac_token(claims(["admin"]), k.public_key_file.read_bytes()), None),
        "algorithm 'HS256' is not accepted",
    ),
    "bad signature": (
        lambda k: (jwt.encode(claims(["admin"]), k.stranger, algorithm="RS256"), None),
        "bad signature",
    ),
    "expired": (
        lambda k: (k.token(["admin"], exp=int(time.time()) - 60), None),
        "token expired",
    ),
    # The skew allowed for a token from the future gives none past its exp.
    "expired a second ago": (
        lambda k: (k.token(["admin"], exp=int(time.time()) - 1), None),
        "token expired",
    ),
    "not yet valid": (
        lambda k: (k.token(["admin"], nbf=int(time.time()) + 600), None),
        "token not yet valid (nbf is ",
    ),
    # A trailing slash is the usual mismatch: the refusal names the issuer accepted.
    "wrong issuer": (
        lambda k: (k.token(["admin"], iss=f"{ISSUER}/"), None),
        f"wrong issuer (this server accepts only iss {ISSUER!r})",
    ),
    "wrong audience": (lambda k: (k.token(["admin"], aud="someone-else"), None), "wrong audience"),
    "no tenant": (lambda k: (k.token(["admin"], tenant=None), None), "missing claim 'tenant'"),
    # It said "invalid token (InvalidSubjectError)", a library's class (found in review).
    "subject as a number": (
        lambda k: (k.token(["admin"], sub=5), None),
        "claim 'sub' must be a non-empty string",
    ),
    # Stored as the names of what the caller does (created_by, answered_by) and its tenant:
    # held to what those names may hold when sent in a request (found in review: a subject
    # with ESC or a newline was stored, one sent as answered_by refused).
    "subject with an escape": (
        lambda k: (k.token(["admin"], sub="op\x1b[2Jerator"), None),
        "claim 'sub' must not contain control characters (U+001B at 2)",
    ),
    "tenant with a bidi override": (
        lambda k: (k.token(["admin"], tenant="acme\u202e"), None),
        "claim 'tenant' must not contain control characters (U+202E at 4)",
    ),
    "subject of 257 characters": (
        lambda k: (k.token(["admin"], sub="a" * 257), None),
        "claim 'sub' must be at most 256 characters",
    ),
    "no expiry": (lambda k: (k.token(["admin"], exp=None), None), "missing claim 'exp'"),
    "expiry as a string": (
        lambda k: (k.token(["admin"], exp=str(int(time.time()) + 600)), None),
        "claim 'exp' must be a number",
    ),
    "expiry of 400 digits": (
        lambda k: (k.token(["admin"], exp=10**400), None),
        "claim 'exp' must be a time between 1970 and the year 9999",
    ),
    "expiry past the year 9999": (
        lambda k: (k.token(["admin"], exp=1e20), None),
        "claim 'exp' must be a time between 1970 and the year 9999",
    ),
    "not-before as a string": (
        lambda k: (k.token(["admin"], nbf=str(int(time.time()) - 60)), None),
        "claim 'nbf' must be a number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_tokens_are_unauthenticated_on_every_rpc(
    channel: grpc.aio.Channel, keys: Keys, case: str
) -> None:
    make, reason = BAD_TOKENS[case]
    token, header = make(keys)
    for method in METHODS:
        code, details = await call(channel, method, token, header=header, refused=True)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method.name, code, details)
        assert reason in details, (method.name, details)
        if token:
            assert token not in details
        assert keys.secret.decode() not in details


# A token with every role but the one each method needs (and not one that includes it).
LACKING = {
    "producer": ["viewer", "operator"],
    "viewer": ["producer"],
    "operator": ["producer"],
    "admin": ["producer", "operator"],
}


def lacking(method: str) -> list[str]:
    """The roles of a token that may not call `method`: every role but the ones that may."""
    if method in PRODUCER_READS:
        return []  # a viewer's read a producer may make too: only no role at all lacks both
    return LACKING[ROLE_BY_METHOD[method].value]


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
async def test_a_missing_role_is_permission_denied_naming_it(
    channel: grpc.aio.Channel, keys: Keys, method: Any
) -> None:
    needed = " or ".join(repr(role.value) for role in allowed(path(method)))
    code, details = await call(channel, method, keys.token(lacking(path(method))), refused=True)
    assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
    assert f"needs the {needed} role" in details


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
async def test_the_right_role_gets_past_auth(
    channel: grpc.aio.Channel, keys: Keys, method: Any
) -> None:
    """With the role (or admin) the call reaches the service: whatever it answers (an empty
    request is often INVALID_ARGUMENT), it is not an auth refusal."""
    for roles in (*([r.value] for r in allowed(path(method))), ["admin"]):
        code, details = await call(channel, method, keys.token(roles))
        assert code not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ), (roles, code, details)


# The README's table of roles ("Identity and access"), written out here rather than read
# from policy.py: the tests above take their expectations from the table they test, so a
# role changed there (GetStats opened to viewers, found by a mutation audit) failed none.
_VIEWER_READS = {
    "GetRun", "ListRuns", "ListSteps", "ListEvents", "WatchRun", "WatchRuns", "GetDecision",
    "ListDecisions",
}  # fmt: skip
README_ROLES = {
    "producer": {"CreateRun", "Report", "AppendEvents", "GetRun", "GetDecision", "ListDecisions"},
    "viewer": _VIEWER_READS,
    "operator": _VIEWER_READS
    | {"SubmitDecision", "Interact", "PauseRun", "ResumeRun", "CancelRun"},
    "admin": set(METHOD_IDS),
}


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
async def test_each_role_calls_what_the_readme_says_and_nothing_else(
    channel: grpc.aio.Channel, keys: Keys, method: Any
) -> None:
    for role, methods in README_ROLES.items():
        # A refused stream sends nothing: a request racing the server's PERMISSION_DENIED could
        # fail on the client's side as INTERNAL "Internal error from Core" (seen once in CI).
        refused = method.name not in methods
        code, details = await call(channel, method, keys.token([role]), refused=refused)
        if not refused:
            assert code != grpc.StatusCode.PERMISSION_DENIED, (role, details)
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, code, details)


async def test_operator_includes_viewer(channel: grpc.aio.Channel, keys: Keys) -> None:
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    assert (await call(channel, list_runs, keys.token(["operator"])))[0] == grpc.StatusCode.OK


async def test_a_token_from_an_identity_provider_whose_clock_runs_ahead_is_accepted(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    """Zero skew was allowed: with the provider's clock 0.2-0.5 s ahead, 7 to 15 of 40 fresh
    tokens were refused "not yet valid (iat is in the future)", and an SDK watcher with a
    token provider died on a refreshed token (found in review). Up to 60 s ahead passes
    for `nbf`. `iat` is information (RFC 7519): a token that `runstream token` minted on a
    machine an hour ahead of this server was refused for it; it is accepted."""
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    ahead = int(time.time()) + 30
    hour_ahead = int(time.time()) + 3600
    for token in (
        keys.token(["viewer"], iat=ahead),
        keys.token(["viewer"], nbf=ahead),
        keys.token(["viewer"], iat=hour_ahead, exp=hour_ahead + 3600),
    ):
        assert (await call(channel, list_runs, token))[0] == grpc.StatusCode.OK


async def test_a_token_refused_for_its_times_says_how_far_off_this_servers_clock_they_are(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    """ "token expired (exp is in the past)" did not tell a clock out of sync from a stale
    token: the refusal now says by how much, which the caller, holding the token and its own
    clock, knows anyway."""
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    now = int(time.time())
    code, details = await call(channel, list_runs, keys.token(["viewer"], exp=now - 42))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert re.fullmatch(
        r"token expired 4[23] s ago by this server's clock \(exp\); clocks out of sync\?",
        details,
    ), details
    code, details = await call(channel, list_runs, keys.token(["viewer"], nbf=now + 300))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert re.fullmatch(
        r"token not yet valid \(nbf is (299|300) s ahead of this server's clock; "
        r"clocks out of sync\?\)",
        details,
    ), details


def refusal_reason(exc: grpc.aio.AioRpcError) -> str:
    info = status_detail(exc, error_details_pb2.ErrorInfo)
    assert info is not None and info.domain == "runstream", exc
    return info.reason


async def test_an_auth_refusal_says_its_kind_for_programs(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    """Whether to fetch a new token, fix the clock or ask for a role was in the message text
    only: each refusal now carries an ErrorInfo reason."""
    runs = run_service_pb2_grpc.RunServiceStub(channel)
    now = int(time.time())
    cases = [
        (None, "ListRuns", "TOKEN_MISSING"),
        (keys.token(["viewer"], exp=now - 42), "ListRuns", "TOKEN_EXPIRED"),
        (keys.token(["viewer"], nbf=now + 300), "ListRuns", "TOKEN_NOT_YET_VALID"),
        (keys.token(["viewer"])[:-4] + "AAAA", "ListRuns", "TOKEN_INVALID"),
        (keys.token(["viewer"]), "CancelRun", "ROLE_MISSING"),
    ]
    requests = {
        "ListRuns": run_service_pb2.ListRunsRequest(),
        "CancelRun": run_service_pb2.CancelRunRequest(run_id="r"),
    }
    for token, method, reason in cases:
        metadata = [] if token is None else [("authorization", f"Bearer {token}")]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await getattr(runs, method)(requests[method], metadata=metadata)
        assert refusal_reason(refused.value) == reason, (reason, refused.value.details())


async def test_a_token_with_many_groups_is_taken_every_time(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    """Tokens of 8-16 KiB (an identity provider listing many groups) were refused at random,
    RESOURCE_EXHAUSTED, by gRPC's default limit on a call's headers (found in review)."""
    token = keys.token(["viewer"], groups=[f"team-{n:04}-engineering" for n in range(600)])
    assert len(token) > 16 * 1024
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    codes = [(await call(channel, list_runs, token))[0] for _ in range(20)]
    assert codes == [grpc.StatusCode.OK] * 20


async def test_health_needs_no_token(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = await health.Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_no_token_in_either_version(channel: grpc.aio.Channel) -> None:
    for version in ("v1", "v1alpha"):
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        [reply] = [
            r async for r in info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        ]
        assert "runstream.v1.RunService" in {s.name for s in reply.list_services_response.service}


async def test_hs256_server_refuses_rs256_and_accepts_its_own(tmp_path: Path, keys: Keys) -> None:
    server = await start_server(
        tmp_path, SecurityConfig(auth=AuthConfig(secret_file=keys.secret_file))
    )
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    try:
        async with grpc.aio.insecure_channel(server.target) as ch:
            assert (await call(ch, list_runs, keys.hs_token()))[0] == grpc.StatusCode.OK
            code, details = await call(ch, list_runs, keys.token())
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert "algorithm 'RS256' is not accepted (accepted: HS256)" in details
            forged = jwt.encode(claims(), b"not the secret, but long enough ok", algorithm="HS256")
            assert (await call(ch, list_runs, forged)) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "bad signature",
            )
    finally:
        await server.stop(grace=0.5)


@contextlib.asynccontextmanager
async def jwks_channel(
    tmp_path: Path, keys: list[tuple[str | None, ec.EllipticCurvePrivateKey]]
) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a server verifying tokens with a JWKS file of these keys' public halves
    (under their kid; None: without one)."""
    write_jwks(tmp_path / "jwks.json", keys)
    auth = AuthConfig(public_key_file=tmp_path / "jwks.json")
    server = await start_server(tmp_path, SecurityConfig(auth=auth))
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            yield channel
    finally:
        await server.stop(grace=0.5)


async def test_a_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    signing = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    async with jwks_channel(tmp_path, [("k1", signing), ("k2", other)]) as ch:
        good = jwt.encode(claims(), signing, algorithm="ES256", headers={"kid": "k1"})
        assert (await call(ch, list_runs, good))[0] == grpc.StatusCode.OK
        wrong_kid = jwt.encode(claims(), signing, algorithm="ES256", headers={"kid": "k2"})
        assert (await call(ch, list_runs, wrong_kid)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "bad signature",
        )
        unknown = jwt.encode(claims(), signing, algorithm="ES256", headers={"kid": "k9"})
        assert (await call(ch, list_runs, unknown)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "unknown key id 'k9'",
        )


async def test_a_jwks_file_of_keys_without_kid_accepts_a_token_of_each(tmp_path: Path) -> None:
    """An identity provider rotating its keys publishes the old and the new, and kid is
    optional: each key was stored under "", the last replacing the others, so the server
    started without a word and refused every token of the others as "bad signature"."""
    old, new, stranger = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    async with jwks_channel(tmp_path, [(None, old), (None, new)]) as ch:
        for key in (old, new):
            token = jwt.encode(claims(), key, algorithm="ES256")
            assert (await call(ch, list_runs, token))[0] == grpc.StatusCode.OK
        # A kid the file does not name: the keys without one may still have signed it.
        named = jwt.encode(claims(), new, algorithm="ES256", headers={"kid": "2026-12"})
        assert (await call(ch, list_runs, named))[0] == grpc.StatusCode.OK
        forged = jwt.encode(claims(), stranger, algorithm="ES256")
        assert (await call(ch, list_runs, forged)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "bad signature",
        )
        expired = jwt.encode(claims(exp=int(time.time()) - 60), old, algorithm="ES256")
        code, details = await call(ch, list_runs, expired)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert details.startswith("token expired 6"), details


async def test_keys_rotated_in_the_jwks_file_verify_the_next_token_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The key files were read once, at start: an identity provider's new key (its JWKS
    synced into the file) was "unknown" until a restart, and a key taken out still
    vouched for its tokens. Now the next token after a change is checked with the file as
    it is; a file that does not load (cut short) is not taken, the last keys serving on."""
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    jwks = tmp_path / "jwks.json"
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    signed_old = jwt.encode(claims(), old, algorithm="ES256", headers={"kid": "2026-11"})
    signed_new = jwt.encode(claims(), new, algorithm="ES256", headers={"kid": "2026-12"})
    async with jwks_channel(tmp_path, [("2026-11", old)]) as ch:
        assert (await call(ch, list_runs, signed_old))[0] == grpc.StatusCode.OK
        assert (await call(ch, list_runs, signed_new)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "unknown key id '2026-12'",
        )
        write_jwks(jwks, [("2026-11", old), ("2026-12", new)])
        await asyncio.sleep(RECHECK_SECONDS + 0.1)
        for token in (signed_old, signed_new):
            assert (await call(ch, list_runs, token))[0] == grpc.StatusCode.OK
        jwks.write_text('{"keys": [')  # a sync cut short: not taken
        await asyncio.sleep(RECHECK_SECONDS + 0.1)
        with caplog.at_level(logging.WARNING, logger="runstream.auth"):
            assert (await call(ch, list_runs, signed_new))[0] == grpc.StatusCode.OK
        assert "token key files changed but cannot be used" in caplog.text
        write_jwks(jwks, [("2026-12", new)])  # the old key retired
        await asyncio.sleep(RECHECK_SECONDS + 0.1)
        assert (await call(ch, list_runs, signed_old)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "unknown key id '2026-11'",
        )
        assert (await call(ch, list_runs, signed_new))[0] == grpc.StatusCode.OK


async def test_a_key_taken_out_of_the_jwks_file_ends_the_streams_its_tokens_opened(
    tmp_path: Path,
) -> None:
    """A key withdrawn (leaked, or rotated out) refused new calls, but a watch or a Report
    stream opened with a token it signed went on until that token's exp (an hour, say).
    Now each open stream's token is verified again when the key files change, with no call
    needed to look at them: the streams of the old key end UNAUTHENTICATED saying why, a
    Report stream after acknowledging what it was sent; those of the new key go on."""
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))

    def token(key: ec.EllipticCurvePrivateKey, kid: str, role: str) -> list[tuple[str, str]]:
        signed = jwt.encode(claims([role]), key, algorithm="ES256", headers={"kid": kid})
        return [("authorization", f"Bearer {signed}")]

    async with jwks_channel(tmp_path, [("2026-11", old), ("2026-12", new)]) as ch:
        runs = run_service_pb2_grpc.RunServiceStub(ch)
        producer = token(new, "2026-12", "producer")
        run_id = (
            await runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="w"), metadata=producer)
        ).run.run_id
        watch = run_service_pb2_grpc.RunServiceStub(ch).WatchRun
        request = run_service_pb2.WatchRunRequest(run_id=run_id, keep_open=True)
        old_watch = watch(request, metadata=token(old, "2026-11", "viewer"))
        new_watch = watch(request, metadata=token(new, "2026-12", "viewer"))
        for stream in (old_watch, new_watch):
            assert [e.seq for e in (await stream.read()).events] == [1]
        report = report_service_pb2_grpc.ReportServiceStub(ch).Report(
            metadata=token(old, "2026-11", "producer")
        )
        await report.write(
            report_service_pb2.ReportRequest(run_id=run_id, batch_id=1, events=[keyless(1)])
        )
        assert (await report.read()).ack.batch_id == 1
        for stream in (old_watch, new_watch):
            assert [e.seq for e in (await stream.read()).events] == [2]

        write_jwks(tmp_path / "jwks.json", [("2026-12", new)])  # the old key withdrawn
        withdrawn = (
            "token no longer accepted during the stream (unknown key id '2026-11'); "
            "reconnect with a fresh token"
        )
        for stream in (old_watch, report):
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(stream.read(), 3 * RECHECK_SECONDS + 1)
            assert (ended.value.code(), ended.value.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                withdrawn,
            )
        more = report_service_pb2_grpc.ReportServiceStub(ch).Report(metadata=producer)
        await more.write(
            report_service_pb2.ReportRequest(run_id=run_id, batch_id=1, events=[keyless(3)])
        )
        assert (await more.read()).ack.batch_id == 1
        assert [e.seq for e in (await new_watch.read()).events] == [3]
        await more.done_writing()
        new_watch.cancel()


async def test_a_key_withdrawn_long_after_the_streams_opened_still_ends_them(
    tmp_path: Path,
) -> None:
    """The files are looked at once a second for as long as streams are open, not only in
    the first second: a watch that has run quietly for a while, on a server that gets no
    other call, still ends within seconds of its key's withdrawal (looking once, then no
    more, failed no test: every other test withdrew the key within that first second)."""
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    signed = jwt.encode(
        claims(["producer", "viewer"]), old, algorithm="ES256", headers={"kid": "old"}
    )
    metadata = [("authorization", f"Bearer {signed}")]
    async with jwks_channel(tmp_path, [("old", old), ("new", new)]) as ch:
        runs = run_service_pb2_grpc.RunServiceStub(ch)  # type: ignore[no-untyped-call]
        create = run_service_pb2.CreateRunRequest(workflow="w")
        run_id = (await runs.CreateRun(create, metadata=metadata)).run.run_id
        request = run_service_pb2.WatchRunRequest(run_id=run_id, keep_open=True)
        watch = runs.WatchRun(request, metadata=metadata)
        assert [e.seq for e in (await watch.read()).events] == [1]
        await asyncio.sleep(3 * RECHECK_SECONDS)  # quiet: the files looked at, unchanged
        write_jwks(tmp_path / "jwks.json", [("new", new)])
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(watch.read(), 3 * RECHECK_SECONDS + 1)
        assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "(unknown key id 'old')" in (ended.value.details() or "")


async def test_a_stream_whose_key_is_withdrawn_before_it_is_held_is_cut_too(
    tmp_path: Path,
) -> None:
    """A WatchRun's token is verified when its headers come, but the stream is held (its
    token verified again at each key change) only once its request came, which the client
    may hold back: a key withdrawn in between let the stream run until the token's exp (a
    leaked key signs tokens that expire in 9999). Found in review."""
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, [("old", old), ("new", new)])
    verifier = TokenVerifier(AuthConfig(public_key_file=jwks))
    streams = OpenStreams(verifier)
    token = jwt.encode(claims(exp=int(time.time()) + 86400), old, "ES256", headers={"kid": "old"})
    principal = verifier.verify(token)  # the call's headers: admitted
    write_jwks(jwks, [("new", new)])
    await asyncio.sleep(RECHECK_SECONDS + 0.1)
    verifier.recheck_files()  # another call saw the change

    async def responses() -> AsyncIterator[int]:
        for n in itertools.count():
            yield n
            await asyncio.sleep(0.05)

    class Context:
        async def abort(self, code: grpc.StatusCode, details: str, **_: object) -> None:
            raise grpc.aio.AbortError(f"{code.name}: {details}")

    assert principal.expires_at is not None
    sent = []
    with pytest.raises(grpc.aio.AbortError) as ended:
        async with asyncio.timeout(3 * RECHECK_SECONDS):
            async for n in streams.serve(responses(), token, principal.expires_at, Context()):  # type: ignore[arg-type]
                sent.append(n)
    assert str(ended.value) == (
        "UNAUTHENTICATED: token no longer accepted during the stream (unknown key id 'old'); "
        "reconnect with a fresh token"
    )
    assert sent == []
    streams.close()


async def test_a_key_file_written_again_as_it_was_is_not_taken_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sidecar that syncs the JWKS on a schedule writes the file again unchanged: each
    time, every token was verified afresh, and now every open stream's token too (10,000
    RS256 tokens take over a second of the server's CPU). The same bytes are the same keys."""
    key, added = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    jwks = tmp_path / "jwks.json"
    list_runs = SERVICES[0].methods_by_name["ListRuns"]
    signed = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "k1"})
    changed = "token key files changed: tokens are verified with the new keys"
    async with jwks_channel(tmp_path, [("k1", key)]) as ch:
        with caplog.at_level(logging.INFO, logger="runstream.auth"):
            for keys in ([("k1", key)], [("k1", key), ("k2", added)]):
                caplog.clear()
                written = jwks.stat().st_mtime_ns
                write_jwks(jwks, keys)
                os.utime(jwks, ns=(written + 10**9, written + 10**9))  # however coarse the clock
                await asyncio.sleep(RECHECK_SECONDS + 0.1)
                assert (await call(ch, list_runs, signed))[0] == grpc.StatusCode.OK
                taken = [r.getMessage() for r in caplog.records if r.getMessage() == changed]
                assert len(taken) == len(keys) - 1, "taken again only when the keys changed"


def test_bad_key_configuration_fails_at_startup(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"too short")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier(AuthConfig(secret_file=short))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="not a PEM public key"):
        TokenVerifier(AuthConfig(public_key_file=garbage))
    twice = tmp_path / "twice.json"  # which of the two would a token naming k1 mean?
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    twice.write_text(json.dumps({"keys": [{**key, "kid": "k1"}, {**key, "kid": "k1"}]}))
    with pytest.raises(ValueError, match="two keys have the key id 'k1'"):
        TokenVerifier(AuthConfig(public_key_file=twice))
    # A public key given as the HS256 secret passed this check, then every token failed
    # "invalid token (InvalidKeyError)" (found in review).
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(ValueError, match="not an HS256 secret"):
        TokenVerifier(AuthConfig(secret_file=pem))


async def test_many_refused_tokens_log_at_most_two_lines(
    channel: grpc.aio.Channel, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone who reaches the port can send bad tokens: they are summarised with the other
    rejected calls, the first as one line, not one line each."""
    caplog.set_level(logging.INFO)
    expired = keys.token(["viewer"], exp=int(time.time()) - 60)
    for method in METHODS * 3:
        await call(channel, method, expired, refused=True)
        await call(channel, method, keys.token(lacking(path(method))), refused=True)
    server = [r for r in caplog.records if r.name.startswith("runstream")]
    lines = [r.getMessage() for r in server if r.levelno >= logging.INFO]
    assert len(lines) == 1, lines
    assert "UNAUTHENTICATED: token expired" in lines[0]
    assert expired not in caplog.text


async def test_a_refused_token_is_logged_with_the_address_it_came_from(
    channel: grpc.aio.Channel, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad token names no principal: the caller's address (the JSON lines' `peer`, as the
    README lists it) is what an operator chasing it has to go on (found in review)."""
    caplog.set_level(logging.INFO)
    await call(channel, METHODS[0], keys.token(["viewer"], exp=int(time.time()) - 60), refused=True)
    (line,) = [r for r in caplog.records if "UNAUTHENTICATED" in r.getMessage()]
    assert re.fullmatch(r"ipv[46]:(127\.0\.0\.1|\[::1\]):\d+", line.peer), line.peer


async def test_a_permission_denied_line_names_the_principal_and_tenant_refused(
    channel: grpc.aio.Channel, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Who was refused is what an operator reading the log needs; the token stays out."""
    caplog.set_level(logging.INFO)
    cancel = SERVICES[0].methods_by_name["CancelRun"]
    token = keys.token(["viewer"], sub="bob", tenant="globex")
    code, _ = await call(channel, cancel, token, refused=True)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    (line,) = [r for r in caplog.records if "PERMISSION_DENIED" in r.getMessage()]
    assert line.getMessage().startswith(
        "rejected /runstream.v1.RunService/CancelRun with PERMISSION_DENIED "
        "for principal 'bob' in tenant 'globex': CancelRun needs the 'operator' role"
    )
    assert (line.principal, line.tenant) == ("bob", "globex")  # JSON lines' fields
    assert token not in caplog.text


NOT_A_MESSAGE = b"\x12\xff\xff\x3f" + b"x" * 64
"""Field 2 claiming a megabyte and carrying 64 bytes: truncated, so no request type decodes it."""

WELL_FORMED = {
    "/runstream.v1.ReportService/AppendEvents": report_service_pb2.AppendEventsRequest(
        run_id="r-1", events=[custom(1)]
    ),
    "/runstream.v1.RunService/WatchRun": run_service_pb2.WatchRunRequest(run_id="r-1"),
}


@pytest.mark.parametrize("name", list(WELL_FORMED))
async def test_a_refused_call_is_refused_before_its_request_is_decoded(
    tmp_path: Path,
    keys: Keys,
    server_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Decoding and checking a large request costs far more CPU than refusing a token (about
    0.1 s for 4 MiB), so a caller without credentials, or without the method's role, must not
    get that far: no request of theirs reaches the field checks, and bytes that are not even a
    message are answered by the token. Only a caller who may call the method hears that the
    request is malformed. The metrics count each final status."""
    checked: list[str] = []
    check_request = decoding.check_request

    def counted(message: Any, encoded: bytes | None = None) -> None:
        checked.append(message.DESCRIPTOR.full_name)
        check_request(message, encoded)

    monkeypatch.setattr(decoding, "check_request", counted)
    config = server_config(
        tmp_path / "runstream.db", security=rs256_auth(keys), metrics_address="127.0.0.1:0"
    )
    server = RunstreamServer(config)
    await server.start()
    role = ROLE_BY_METHOD[name].value
    refusals = [
        ([("authorization", "Bearer x.y.z")], grpc.StatusCode.UNAUTHENTICATED, "malformed token"),
        ([], grpc.StatusCode.UNAUTHENTICATED, "missing authorization metadata"),
        (
            [("authorization", f"Bearer {keys.token(LACKING[role])}")],
            grpc.StatusCode.PERMISSION_DENIED,
            f"needs the {role!r} role",
        ),
    ]
    admitted = [("authorization", f"Bearer {keys.token([role])}")]
    try:
        async with grpc.aio.insecure_channel(server.target) as ch:
            # No serializers: the bytes go out as they are, the answer comes back as bytes.
            watching = name.endswith("WatchRun")
            rpc = ch.unary_stream(name) if watching else ch.unary_unary(name)

            async def send(body: bytes, metadata: list[tuple[str, str]]) -> tuple[Any, str]:
                try:
                    if watching:
                        async for _ in rpc(body, metadata=metadata, timeout=10):
                            pass
                    else:
                        await rpc(body, metadata=metadata, timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details() or ""
                return grpc.StatusCode.OK, ""

            well_formed = WELL_FORMED[name].SerializeToString()
            for metadata, code, reason in refusals:
                for body in (well_formed, NOT_A_MESSAGE):
                    answer, details = await send(body, metadata)
                    assert (answer, reason in details) == (code, True), details
            assert checked == []
            assert (await send(well_formed, admitted))[0] == grpc.StatusCode.NOT_FOUND
            assert checked == [WELL_FORMED[name].DESCRIPTOR.full_name]
            answer, details = await send(NOT_A_MESSAGE, admitted)
            assert answer == grpc.StatusCode.INVALID_ARGUMENT
            assert "request: is not a valid runstream.v1." in details
        assert server.telemetry is not None and server.telemetry.metrics is not None
        registry = server.telemetry.metrics.registry

        def counted() -> dict[str, float | None]:
            return {
                code: registry.get_sample_value(
                    "runstream_grpc_requests_total", {"method": name.lstrip("/"), "code": code}
                )
                for code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT")
            }

        # A call is counted as its handler ends, which can be just after its client has the
        # status (seen on a busy machine): wait for the last call's count.
        for _ in range(100):
            if counted()["INVALID_ARGUMENT"]:
                break
            await asyncio.sleep(0.05)
        counted_codes = counted()
        assert counted_codes == {
            "UNAUTHENTICATED": 4,
            "PERMISSION_DENIED": 2,
            "INVALID_ARGUMENT": 1,
        }
    finally:
        await server.stop(grace=0.5)


async def test_tokens_without_tls_beyond_loopback_are_warned_of_once_at_start(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """The server starts (a proxy in front may terminate TLS) but says tokens reach it in
    clear; on loopback, or with TLS, it has nothing to say."""
    pki = Pki.make(tmp_path / "pki")
    auth = rs256_auth(keys)
    with_tls = dataclasses.replace(auth, tls=TlsConfig(pki.server_cert, pki.server_key))
    warned: dict[str, int] = {}
    for address, security in (("0.0.0.0:0", auth), ("127.0.0.1:0", auth),
                              ("0.0.0.0:0", with_tls)):  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="runstream.auth"):
            server = RunstreamServer(
                ServerConfig(
                    address=address, store_path=tmp_path / "runstream.db", security=security
                )
            )
            await server.start()
            await server.stop(grace=0.5)
        key = f"{address}{' tls' if security.tls else ''}"
        warned[key] = caplog.text.count("with tokens but WITHOUT TLS: bearer tokens reach it")
    assert warned == {"0.0.0.0:0": 1, "127.0.0.1:0": 0, "0.0.0.0:0 tls": 0}


async def test_a_report_stream_whose_token_expires_during_a_commit_acknowledges_it_first(
    secured: RunstreamServer, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token expires while a batch's commit is being made: the batch is stored, its ack
    goes out, and only then does the stream end UNAUTHENTICATED. (The stream was cut at the
    expiry with the commit under way: the producer, told nothing of the batch, sent it again
    with its fresh token, twice stored without idempotency keys. Found in review.)"""
    store = secured._store
    assert store is not None
    original = store.append
    holding, committing, release = False, asyncio.Event(), asyncio.Event()

    async def held(
        run_id: str, events: Any, snapshot: Any, *, expected_seq: int, encoded: Any = None
    ) -> None:
        if holding:
            committing.set()
            await release.wait()
        await original(run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)

    monkeypatch.setattr(store, "append", held)
    expires = int(time.time()) + 2
    auth = [("authorization", f"Bearer {keys.token(['producer'], exp=expires)}")]

    async with grpc.aio.insecure_channel(secured.target) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        created = await runs.CreateRun(
            run_service_pb2.CreateRunRequest(workflow="w"), metadata=auth
        )
        run_id = created.run.run_id
        call = report_service_pb2_grpc.ReportServiceStub(channel).Report(metadata=auth)
        await call.write(
            report_service_pb2.ReportRequest(run_id=run_id, batch_id=1, events=[keyless(1)])
        )
        assert (await call.read()).ack.batch_id == 1
        holding = True
        await call.write(report_service_pb2.ReportRequest(batch_id=2, events=[keyless(2)]))
        await asyncio.wait_for(committing.wait(), 10)
        await asyncio.sleep(expires - time.time() + 0.3)  # the token expires meanwhile
        release.set()
        assert (await call.read()).ack.batch_id == 2
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ended.value.details() == EXPIRED_DURING_STREAM
    assert refusal_reason(ended.value) == "TOKEN_EXPIRED"
    assert [e.seq for e in await store.read_events(run_id, 0, 10)] == [1, 2, 3]


async def test_a_producer_reports_to_and_reads_only_the_runs_its_subject_created(
    channel: grpc.aio.Channel, keys: Keys
) -> None:
    """Found in review: any producer token of a tenant could append a RunCancelled (or any
    event) to another producer's run and end it, which CancelRun keeps to operators, and
    read its activity and questions. A producer now reaches its own runs; a viewer's role
    adds reading the others, an operator's reporting to them."""

    def acting(subject: str, *roles: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {keys.token(list(roles), sub=subject)}")]

    runs = run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]
    report = report_service_pb2_grpc.ReportServiceStub(channel)  # type: ignore[no-untyped-call]
    decisions = decision_service_pb2_grpc.DecisionServiceStub(channel)  # type: ignore[no-untyped-call]
    job_1, job_2 = acting("ci-job-1", "producer"), acting("ci-job-2", "producer")
    create = run_service_pb2.CreateRunRequest(workflow="nightly")
    run_id = (await runs.CreateRun(create, metadata=job_1)).run.run_id
    cancel = report_service_pb2.AppendEventsRequest(
        run_id=run_id, events=[event_pb2.RunEvent(run_cancelled=event_pb2.RunCancelled())]
    )
    get = run_service_pb2.GetRunRequest(run_id=run_id)

    async def refused(call: Any) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        return info.value.details() or ""

    details = await refused(report.AppendEvents(cancel, metadata=job_2))
    assert "a producer's token reports to, and reads, its own runs" in details
    # What the refusal of a read says to ask for: a producer reads to report too
    # (attach_run), which takes an operator; it named the viewer role alone (found in review).
    assert (await refused(runs.GetRun(get, metadata=job_2))).endswith(
        "another's needs the 'viewer' role to read it, 'operator' to report to it"
    )
    listing = decision_service_pb2.ListDecisionsRequest(run_id=run_id)
    await refused(decisions.ListDecisions(listing, metadata=job_2))
    stream = report.Report(metadata=job_2)
    await stream.write(report_service_pb2.ReportRequest(run_id=run_id, events=cancel.events))
    await refused(stream.read())
    # A viewer reads it but does not report to it; an operator may (as CancelRun).
    readers = acting("ci-job-2", "producer", "viewer")
    assert (await runs.GetRun(get, metadata=readers)).run.status != run_pb2.RUN_STATUS_CANCELLED
    assert (await refused(report.AppendEvents(cancel, metadata=readers))).endswith(
        "another's needs the 'operator' role"
    )
    await report.AppendEvents(cancel, metadata=acting("on-call", "producer", "operator"))
    assert (await runs.GetRun(get, metadata=job_1)).run.status == run_pb2.RUN_STATUS_CANCELLED
    newest = run_service_pb2.ListEventsRequest(run_id=run_id, order_by="seq desc", page_size=1)
    [last] = (await runs.ListEvents(newest, metadata=acting("auditor", "viewer"))).events
    assert last.run_cancelled.cancelled_by == "on-call"
