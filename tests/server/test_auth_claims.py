"""What a token's claims grant at their edges, straight to a real server: the longest names
the server accepts.

Found by a mutation audit of runstream_server/auth: refusing a subject of exactly 256
characters failed no test.
"""

from __future__ import annotations

from runstream.v1 import run_service_pb2 as rs
from runstream_server.app import RunstreamServer

from tests.identity import Keys
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
