"""After a gap in notices a replica arms the decision deadlines the gap may have carried,
from the store. Found in review: when the store refused that scan (a Redis Cluster still
recovering from the outage that made the gap), the replica logged "the stored deadlines were
not armed" and never tried again until the next gap or restart, so a question asked on
another replica during the outage could rest on that one alone. The scan is now asked
again, less and less often, until the store answers.

The scan is the test's own (it fails twice as a store out of reach does); the rest is the
replica's Notices as it runs.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from runstream_server.domain import following
from runstream_server.domain.following import Notices
from runstream_server.errors import Unavailable
from runstream_server.store.clock import StoreClock


async def test_a_deadline_scan_the_store_refused_is_asked_again_until_it_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(following, "REARM_RETRY", (0.01, 0.02))
    caplog.set_level(logging.INFO, "runstream.runs")
    scans: list[str] = []
    done = asyncio.Event()

    async def rearm() -> None:
        if len(scans) < 2:
            scans.append("refused")
            raise Unavailable("the Redis cluster is down")
        scans.append("armed")
        done.set()

    tasks: list[asyncio.Task[None]] = []
    nothing: Any = None
    store: Any = SimpleNamespace(clock=StoreClock())  # the one thing of it a gap reads
    notices = Notices(
        nothing, nothing, store, nothing,
        elsewhere=nothing, viewers_changed=nothing, rearm=rearm,
        spawn=lambda work: tasks.append(asyncio.ensure_future(work)),
    )  # fmt: skip
    notices._rearm_soon()
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.gather(*tasks)
    assert scans == ["refused", "refused", "armed"]
    said = [r.getMessage() for r in caplog.records]
    assert sum("the stored deadlines wait for the store" in m for m in said) == 1, said
    assert any("the stored deadlines are armed" in m for m in said), said
