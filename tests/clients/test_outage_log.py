"""An outage is said in a few lines per stream, not one per reconnect attempt (found in review:
~45 lines a minute per watch in ``runstream watch --plain``, and as many in an application's
log per watch, per reporter and per interaction, for as long as the server was away)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest
import runstream
from runstream import LinkState, RunsUpdate, WatchLink
from runstream._retry import OutageLog

from tests.clients.support import collecting, eventually, link_states, restartable
from tests.conftest import ConfigFactory


def lines(
    caplog: pytest.LogCaptureFixture, level: int, about: str, saying: str
) -> list[logging.LogRecord]:
    """The records logged at `level` about one stream (`about`) that say `saying`."""
    return [
        record
        for record in caplog.records
        if record.levelno == level and about in (said := record.getMessage()) and saying in said
    ]


async def test_an_outage_of_many_attempts_is_said_once_then_every_while_then_once_back(
    tmp_path: Path,
    server_config: ConfigFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every = 1.0
    monkeypatch.setattr("runstream._retry.STILL_OUT_EVERY", every)  # 30 s in real life
    caplog.set_level(logging.DEBUG, logger="runstream")
    async with (
        restartable(server_config, tmp_path / "outage.db") as served,
        runstream.connect(served.server.target) as client,
    ):
        run = await client.start_run("outage")
        await run.flush()
        links: list[WatchLink] = []
        runs_links: list[WatchLink] = []
        interact_links: list[WatchLink] = []

        async def follow(seen: list[runstream.Event]) -> None:
            watching = client.watch(run.run_id, heartbeat_interval=0.5, on_link=links.append)
            async for event in watching:
                seen.append(event)

        async def follow_runs(updates: list[RunsUpdate]) -> None:
            watching = client.watch_runs(heartbeat_interval=0.5, on_link=runs_links.append)
            async for update in watching:
                updates.append(update)

        async with (
            collecting(follow) as seen,
            collecting(follow_runs),
            client.interact([run.run_id], on_link=interact_links.append),
        ):
            streams = (links, runs_links, interact_links)
            await eventually(lambda: all(link_states(s)[-1:] == [LinkState.LIVE] for s in streams))
            await served.server.stop(grace=0.2)
            starting = asyncio.create_task(client.start_run("started-meanwhile"))
            await asyncio.sleep(2.5)  # attempts every 0.05 s, growing to every 2 s
            await served.start_again()
            await run.custom("after", {})
            await eventually(lambda: len(seen) == 3)
            await (await starting).close()
            await eventually(lambda: len(lines(caplog, logging.INFO, "", "is back after")) == 5)
        await run.close()

    for about in (
        f"watch of run {run.run_id}",
        "watch of runs",
        f"report stream of run {run.run_id}",
        "interact stream",
        "CreateRun of workflow 'started-meanwhile'",
    ):
        failures = lines(caplog, logging.DEBUG, about, ": failure ")
        assert len(failures) >= 4, (about, caplog.text)  # many attempts failed, quietly
        assert len(lines(caplog, logging.INFO, about, " lost (")) == 1, (about, caplog.text)
        said = lines(caplog, logging.INFO, about, " lost ")  # the loss, then "still lost"
        assert len(said) >= 2, (about, caplog.text)
        apart = [later.created - earlier.created for earlier, later in itertools.pairwise(said)]
        assert min(apart) > every - 0.1, (about, apart)  # at most a line every `every` s
        assert len(lines(caplog, logging.INFO, about, " is back after ")) == 1, about


def test_a_token_renewal_is_said_at_debug_unless_it_turns_into_an_outage(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream the server ended at its token's exp and that came back with a fresh token is
    no outage (DEBUG); one that then fails otherwise, or stays out STILL_OUT_EVERY seconds,
    is one, and its loss and return are said at INFO as any outage's."""
    caplog.set_level(logging.DEBUG, logger="runstream")
    said = OutageLog(logging.getLogger("runstream.watch"), "watch of run R")

    def at_info() -> list[str]:
        infos = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        caplog.clear()
        return infos

    said.lost("UNAUTHENTICATED", "reconnecting", renewing=True)
    said.back()
    assert at_info() == []
    said.lost("UNAUTHENTICATED", "reconnecting", renewing=True)
    said.lost("UNAVAILABLE", "reconnecting")  # the server went away meanwhile
    said.back()
    infos = at_info()
    assert [m.split(" after ")[0] for m in infos] == [
        "watch of run R lost (UNAVAILABLE); reconnecting",
        "watch of run R is back",
    ], infos
    monkeypatch.setattr("runstream._retry.STILL_OUT_EVERY", 0.0)  # 30 s in real life
    said.lost("UNAUTHENTICATED", "reconnecting", renewing=True)
    said.lost("UNAUTHENTICATED", "reconnecting", renewing=True)  # still out, so long
    said.back()
    infos = at_info()
    assert [m.split(" after ")[0] for m in infos] == [
        "watch of run R still lost",
        "watch of run R is back",
    ], infos
