"""The SDK's tests talk to a real server (tests/conftest.py's ``server``, on every store)
through a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import runstream
from runstream_server.app import RunstreamServer


@pytest.fixture
async def client(server: RunstreamServer) -> AsyncIterator[runstream.Client]:
    """A client connected to the test's server, closed after the test."""
    async with runstream.connect(server.target) as connected:
        yield connected
