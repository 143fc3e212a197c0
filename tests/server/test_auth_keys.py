"""The HS256 secret's length rule at its edge, on a real server.

Found by a mutation audit of runstream_server/auth: refusing a secret of exactly 32 bytes,
the README's own `head -c 32 /dev/urandom > secret`, failed no test.
"""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import pytest
from runstream.v1 import run_service_pb2 as rs
from runstream_server.auth.edge import SecurityConfig
from runstream_server.auth.tokens import AuthConfig

from tests.identity import claims, start_server
from tests.server.support import Caller


async def test_a_secret_of_32_bytes_verifies_tokens_and_one_of_31_is_refused(
    tmp_path: Path,
) -> None:
    secret = os.urandom(31) + b"!"  # 32 bytes, none of them a final newline to drop
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(secret)
    server = await start_server(tmp_path, SecurityConfig(auth=AuthConfig(secret_file=secret_file)))
    caller = Caller(server.target, jwt.encode(claims(), secret, algorithm="HS256"))
    try:
        assert (await caller.runs.ListRuns(rs.ListRunsRequest())) is not None
    finally:
        await caller.channel.close()
        await server.stop(grace=0.5)
    secret_file.write_bytes(secret[:31])
    with pytest.raises(ValueError, match=r"at least 32 bytes \(it is 31\)"):
        await start_server(tmp_path, SecurityConfig(auth=AuthConfig(secret_file=secret_file)))
