"""What a token's claims grant at their edges, straight to a real server: the longest names
the server accepts, and roles given as one space-separated string.

Found by a mutation audit of runstream_server/auth: refusing a subject of exactly 256
characters, or reading a `roles` string as one role name, failed no test.
"""

from __future__ import annotations

import grpc
import jwt
import pytest
from runstream.v1 import run_pb2
from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.identity import Keys, claims
from tests.server.conftest import BOTH_STORES
from tests.server.support import Caller

# Refused or let through before any commit: the commit path changes nothing here.
STORES = BOTH_STORES


async def test_a_subject_and_tenant_of_256_characters_are_accepted_and_shown_whole(
    secured: RunstreamServer, keys: Keys
) -> None:
    """The README: `sub` and `tenant` hold 1 to 256 characters (257 is refused in
    test_auth.py); the longest that fits becomes the run's creator and tenant as sent."""
    subject, tenant = "s" * 256, "t" * 256
    caller = Caller(secured.target, keys.token(["producer"], sub=subject, tenant=tenant))
    try:
        run = (await caller.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run
        assert (run.created_by, run.tenant) == (subject, tenant)
        fetched = await caller.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
        assert (fetched.run.created_by, fetched.run.tenant) == (subject, tenant)
    finally:
        await caller.channel.close()


def scoped(keys: Keys, roles: str) -> str:
    """A valid RS256 token whose `roles` claim is one string, as an OAuth `scope` is."""
    return jwt.encode({**claims(), "roles": roles}, keys.signing, algorithm="RS256")


async def test_roles_given_as_one_space_separated_string_each_count(
    secured: RunstreamServer, keys: Keys
) -> None:
    """An identity provider that writes its roles OAuth-scope style ("producer operator")
    grants each of them, as a list would: this token creates a run (producer) and cancels
    it (operator); one naming only unknown roles gets none."""
    caller = Caller(secured.target, scoped(keys, "producer operator"))
    stranger = Caller(secured.target, scoped(keys, "auditor reader"))
    try:
        run = (await caller.runs.CreateRun(rs.CreateRunRequest(workflow="wf"))).run
        await caller.runs.CancelRun(rs.CancelRunRequest(run_id=run.run_id))
        got = await caller.runs.GetRun(rs.GetRunRequest(run_id=run.run_id))
        assert got.run.status == run_pb2.RUN_STATUS_CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stranger.runs.ListRuns(rs.ListRunsRequest())
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (info.value.details() or "").endswith("the token grants no roles")
    finally:
        await caller.channel.close()
        await stranger.channel.close()


@pytest.mark.parametrize(
    "roles", [{"admin": True}, 5, ["viewer", 5], None], ids=["object", "number", "mixed", "null"]
)
async def test_a_roles_claim_that_is_no_list_of_names_is_refused_by_name(
    secured: RunstreamServer, keys: Keys, roles: object
) -> None:
    """`roles` must be role names (a list, or one space-separated string): an object whose
    keys name roles grants none of them (were it read as names, {"admin": true} would be an
    admin), and a number is refused UNAUTHENTICATED naming the claim, not UNKNOWN."""
    token = jwt.encode({**claims(), "roles": roles}, keys.signing, algorithm="RS256")
    caller = Caller(secured.target, token)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await caller.runs.ListRuns(rs.ListRunsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
        assert info.value.details() == "claim 'roles' must be a list of role names"
    finally:
        await caller.channel.close()
