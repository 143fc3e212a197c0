"""Raw generated stubs on a channel to the `server` fixture: the contract as any client sees it.

Every server test runs twice, on the embedded SQLite store and on Redis (the replica store):
both must keep every guarantee the tests check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from runstream.v1 import report_service_pb2_grpc, run_service_pb2_grpc
from runstream_server.app import RunstreamServer


@dataclass
class Stubs:
    channel: grpc.aio.Channel
    runs: run_service_pb2_grpc.RunServiceStub
    report: report_service_pb2_grpc.ReportServiceStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            channel,
            run_service_pb2_grpc.RunServiceStub(channel),
            report_service_pb2_grpc.ReportServiceStub(channel),
        )


STORES = ("sqlite", "sqlite-normal", "redis")
"""Both stores, for every test here; SQLite also with ``synchronous=NORMAL``, whose commits
take another path (on the event loop)."""

BOTH_STORES = ("sqlite", "redis")
"""For a module whose tests the commit path cannot change (requests refused before any
commit, timers, waits): it sets ``STORES = BOTH_STORES``."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Runs each test that uses a store on every store of its module's ``STORES``."""
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", getattr(metafunc.module, "STORES", STORES))


@pytest.fixture
async def stubs(server: RunstreamServer) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield Stubs.on(channel)
