"""How the server reads the `authorization` header, straight to a real server.

Found by a mutation audit of runstream_server/auth: taking the first of two authorization
headers, or only the scheme spelt "Bearer", failed no test.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from runstream.v1 import run_service_pb2 as rs
from runstream.v1 import run_service_pb2_grpc
from runstream_server.app import RunstreamServer

from tests.identity import Keys
from tests.server.conftest import BOTH_STORES

# Refused or let through before any commit: the commit path changes nothing here.
STORES = BOTH_STORES


@pytest.fixture
async def runs(secured: RunstreamServer) -> AsyncIterator[run_service_pb2_grpc.RunServiceStub]:
    async with grpc.aio.insecure_channel(secured.target) as channel:
        yield run_service_pb2_grpc.RunServiceStub(channel)  # type: ignore[no-untyped-call]


async def test_two_authorization_headers_are_refused_whichever_comes_first(
    runs: run_service_pb2_grpc.RunServiceStub, keys: Keys
) -> None:
    """A call carrying two tokens (a client's and one a proxy added, or one smuggled past
    it) is refused, UNAUTHENTICATED, rather than judged by whichever the server reads first:
    a viewer's token beside an admin's gets no admin's cancel, in either order."""
    viewer, admin = keys.token(["viewer"]), keys.token(["admin"])
    for first, second in ((viewer, admin), (admin, viewer)):
        metadata = [("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await runs.CancelRun(rs.CancelRunRequest(run_id="r"), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        details = info.value.details() or ""
        assert details == "malformed authorization header: sent more than once"
        assert first not in details and second not in details


async def test_the_bearer_scheme_is_read_in_any_case(
    runs: run_service_pb2_grpc.RunServiceStub, keys: Keys
) -> None:
    """An authentication scheme is case-insensitive (RFC 9110 11.1): `bearer` and `BEARER`,
    as curl and grpcurl users type them, are taken as `Bearer` is."""
    token = keys.token(["viewer"])
    for scheme in ("Bearer", "bearer", "BEARER"):
        metadata = [("authorization", f"{scheme} {token}")]
        assert (await runs.ListRuns(rs.ListRunsRequest(), metadata=metadata)) is not None


async def test_a_token_sent_under_another_scheme_is_shown_nowhere(
    runs: run_service_pb2_grpc.RunServiceStub, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A real token behind the wrong word ("Token", "JWT", none) is refused as a malformed
    header, and the refusal, told to the caller and logged, never repeats the token: whoever
    reads the error or the log could replay it until its exp."""
    caplog.set_level(logging.DEBUG)
    token = keys.token(["admin"])
    for header in (f"Token {token}", f"JWT {token}", token, f"Bearer{token}"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await runs.ListRuns(rs.ListRunsRequest(), metadata=[("authorization", header)])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        details = info.value.details() or ""
        assert details == "malformed authorization header: expected 'Bearer <jwt>'", details
    assert "malformed authorization header" in caplog.text
    # Any stretch of it: a message cut to fit would still give most of it away.
    for part in token.split("."):
        assert part[:16] not in caplog.text
