"""The last port a target may name is 65535: one past it is refused at connect, naming it."""

from __future__ import annotations

import re

import pytest
import runstream


async def test_port_65535_is_taken_and_65536_refused_at_connect() -> None:
    client = runstream.connect("127.0.0.1:65535")
    assert client.target == "127.0.0.1:65535"
    await client.close()
    with pytest.raises(ValueError, match=re.escape("'127.0.0.1:65536': a port is 1 to 65535")):
        runstream.connect("127.0.0.1:65536")
