"""A watch tells where its stream stands (``on_link``): what a relay in front of browsers needs
to show "Live" or "Reconnecting", which the SDK's watches kept to themselves (found in
review: a Python relay could not tell a quiet run from a lost server)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import runstream
from runstream import Event, LinkState, RunsUpdate, WatchLink
from runstream_server.app import RunstreamServer

from tests.clients.support import collecting, eventually, link_states, restartable
from tests.conftest import ConfigFactory


def following(
    client: runstream.Client, run_id: str, links: list[WatchLink], **options: object
) -> contextlib.AbstractAsyncContextManager[list[Event]]:
    """Watches `run_id` in a task, its links into `links`; yields the events it got."""

    async def follow(seen: list[Event]) -> None:
        async for event in client.watch(run_id, on_link=links.append, **options):  # type: ignore[arg-type]
            seen.append(event)

    return collecting(follow)


async def test_a_watch_is_live_once_the_server_accepts_it_before_any_event_comes(
    server: RunstreamServer,
) -> None:
    """An idle run sends nothing until its first heartbeat (15 s by default); the watch
    knows at once that its stream stands, from the headers the server sends as it accepts."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("quiet")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        links: list[WatchLink] = []
        async with following(client, run.run_id, links, after_seq=head) as seen:
            await eventually(lambda: LinkState.LIVE in link_states(links), within=5)
            assert seen == []  # nothing came on the stream yet: no event, no heartbeat
            await run.custom("tick", {})
            await eventually(lambda: len(seen) == 1)
        await run.close()
    assert links == [
        WatchLink(LinkState.CONNECTING, head),
        WatchLink(LinkState.LIVE, head),
    ]


async def test_a_watch_the_server_refuses_is_never_live(server: RunstreamServer) -> None:
    async with runstream.connect(server.target) as client:
        links: list[WatchLink] = []
        with pytest.raises(runstream.NotFoundError):
            async for _ in client.watch("no-such-run", on_link=links.append):
                pass
    assert link_states(links) == [LinkState.CONNECTING]


async def test_watches_lost_to_a_restart_say_reconnecting_then_live_again(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    async with (
        restartable(server_config, tmp_path / "restarted.db") as served,
        runstream.connect(served.server.target) as client,
    ):
        run = await client.start_run("restart")
        await run.custom("tick", {"i": 0})
        await run.flush()
        links: list[WatchLink] = []
        runs_links: list[WatchLink] = []
        updates: list[RunsUpdate] = []

        async def follow_runs() -> None:
            async for update in client.watch_runs(on_link=runs_links.append):
                updates.append(update)

        runs_task = asyncio.create_task(follow_runs())
        async with following(client, run.run_id, links) as seen:
            await eventually(lambda: len(seen) == 3 and len(updates) > 0)
            opened = [LinkState.CONNECTING, LinkState.LIVE]
            assert link_states(links) == link_states(runs_links) == opened

            await served.server.stop(grace=0.5)
            await eventually(lambda: LinkState.RECONNECTING in link_states(links))
            await eventually(lambda: LinkState.RECONNECTING in link_states(runs_links))
            lost = links[2]
            assert lost.after_seq == 3  # where it resumes
            assert isinstance(lost.error, runstream.UnavailableError)
            assert lost.retry_in is not None and lost.retry_in > 0
            assert isinstance(runs_links[2].error, runstream.UnavailableError)

            await served.start_again()  # same store file, same port
            await eventually(lambda: link_states(links)[-1] == LinkState.LIVE)
            await eventually(lambda: link_states(runs_links)[-1] == LinkState.LIVE)
            await run.custom("tick", {"i": 1})
            await run.complete()
            await run.close()
            last_seq = (await client.get_run(run.run_id)).last_seq
            await eventually(lambda: len(seen) == last_seq)
        runs_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runs_task

    assert [e.seq for e in seen] == list(range(1, last_seq + 1))  # once each, across the restart
    assert seen[-1].kind == runstream.EventKind.RUN_COMPLETED
    # Lost, retried while the server was down (each failed attempt says why), then live.
    assert set(link_states(links)[2:-1]) == {LinkState.RECONNECTING}
    assert links[-1] == WatchLink(LinkState.LIVE, 3)
    assert set(link_states(runs_links)[2:-1]) == {LinkState.RECONNECTING}


async def test_a_watch_live_again_after_an_outage_has_its_whole_reconnect_timeout_again(
    tmp_path: Path, server_config: ConfigFactory
) -> None:
    """Found in review: the outage a watch reconnected from ended only with a message, so a
    watch LIVE again on a quiet run (nothing sent for 2.5 s) that lost its server once more
    gave up at once with UnavailableError, never saying RECONNECTING."""
    async with (
        restartable(server_config, tmp_path / "twice.db") as served,
        runstream.connect(served.server.target, reconnect_timeout=2) as client,
    ):
        run = await client.start_run("quiet")
        await run.flush()
        head = (await client.get_run(run.run_id)).last_seq
        links: list[WatchLink] = []
        async with following(client, run.run_id, links, after_seq=head) as seen:
            await eventually(lambda: link_states(links)[-1:] == [LinkState.LIVE])
            await served.lost_and_back(links, away=1.2)  # 1.2 s of its 2
            await asyncio.sleep(2.5)  # live, with nothing to send
            await served.lost_and_back(links)
            await run.custom("tick", {})
            await eventually(lambda: len(seen) == 1)
        await run.close()
