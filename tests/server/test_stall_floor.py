"""A step its history says takes a second is not STALLED after three: the stall factor's
threshold is never under ``stall_min`` seconds of silence."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from runstream.v1 import run_pb2
from runstream_server.domain.insight import InsightPolicy

from tests.conftest import ConfigFactory
from tests.server.conftest import BOTH_STORES
from tests.server.support import append, clocked_server, create_run, ev, get_run, until_health
from tests.server.test_insight_thresholds import dated

# Stalls are found by the background check: the commit path changes nothing here.
STORES = BOTH_STORES


async def test_a_quick_step_is_given_stall_min_before_it_is_stalled(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    check_every = 0.02
    policy = InsightPolicy(stall_after=12, stall_min=20, stall_factor=3, check_every=check_every)
    async with clocked_server(tmp_path, server_config, policy) as (stubs, clock):
        past = await create_run(stubs, "s", workflow="quick")
        began = clock.now - timedelta(hours=1)
        await append(
            stubs,
            past.run_id,
            dated(ev.RunEvent(step_started=ev.StepStarted(step_id="s")), began),
            dated(
                ev.RunEvent(step_completed=ev.StepCompleted(step_id="s")),
                began + timedelta(seconds=1),
            ),
            dated(ev.RunEvent(run_completed=ev.RunCompleted()), began + timedelta(seconds=1)),
        )
        quick = await create_run(stubs, "s", workflow="quick")
        unknown = await create_run(stubs, "x", workflow="never-run-before")
        for run_id, step in ((quick.run_id, "s"), (unknown.run_id, "x")):
            await append(stubs, run_id, ev.RunEvent(step_started=ev.StepStarted(step_id=step)))

        clock.move(15)  # 5 x s's usual second, short of stall_min
        await until_health(stubs, unknown.run_id, run_pb2.RUN_HEALTH_STALLED)  # checks ran
        await asyncio.sleep(5 * check_every)
        assert (await get_run(stubs, quick.run_id)).health == run_pb2.RUN_HEALTH_HEALTHY

        clock.move(6)  # 21 s
        stalled = await until_health(stubs, quick.run_id, run_pb2.RUN_HEALTH_STALLED)
        assert stalled.health_reason == "s: no report for 21s (expected within 20s)"
