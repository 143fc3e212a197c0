"""A producer's appends on one replica are charged on the others once, not at every exchange.

Two real grpc.aio servers with auth on one real redis-server, exchanging usage every 50 ms
(the setup of tests/faults/test_replica_limits.py, whose fixtures this uses). Found by a
mutation audit of runstream_server/auth: charging another replica's whole count at every
exchange, instead of what it appended since the last, failed no test.
"""

from __future__ import annotations

import asyncio

from runstream.v1 import report_service_pb2 as rp
from runstream.v1 import run_service_pb2 as rs

from tests.faults.test_replica_limits import LIMITS, callers, replicas
from tests.server.support import Caller, custom

__all__ = ["callers", "replicas"]  # fixtures, shared with tests/faults


async def test_appends_on_one_replica_are_charged_once_on_the_other(
    callers: dict[str, Caller],
) -> None:
    """Half the burst spent on A leaves the other half on B, however many exchanges pass
    before B is used: B learns of A's 5 events once (charged at each of ten exchanges,
    they put B 40 events in debt, some 200 s at 0.2 events a second)."""
    on_a, on_b = callers["bot on a"], callers["bot on b"]
    run_id = (await on_a.runs.CreateRun(rs.CreateRunRequest(workflow="limits"))).run.run_id
    half = LIMITS.append_burst // 2
    events = [custom(i) for i in range(1, half + 1)]
    await on_a.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=events))
    await asyncio.sleep(10 * LIMITS.share_interval)  # ten exchanges or so
    rest = [custom(i) for i in range(half + 1, LIMITS.append_burst)]  # one short: no race
    accepted = await on_b.report.AppendEvents(rp.AppendEventsRequest(run_id=run_id, events=rest))
    assert accepted.last_seq == LIMITS.append_burst
