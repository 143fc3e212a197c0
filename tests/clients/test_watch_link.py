"""A watch tells where its stream stands (``on_link``): what a relay in front of browsers needs
to show "Live" or "Reconnecting", which the SDK's watches kept to themselves (found in
review: a Python relay could not tell a quiet run from a lost server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import runstream
from runstream import Event, LinkState, RunsUpdate, WatchLink
from runstream_server.app import RunstreamServer

from tests.clients.support import collecting, eventually, link_states, proxy_to, restartable
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


async def test_a_watch_on_a_link_gone_silent_says_so_within_its_heartbeats_and_resumes(
    server: RunstreamServer,
) -> None:
    """Found in review (N6): a watch stream only receives, so a link that went silent (no
    RST, no FIN) showed only at gRPC's next keepalive ping, 10 to 40 s later, while the watch
    said LIVE and the run seemed to stand still. Now 2.5 heartbeat intervals without any
    message are a lost stream: RECONNECTING, then every event exactly once after it."""
    async with (
        proxy_to(server.port) as proxy,
        runstream.connect(server.target) as producer,
        runstream.connect(proxy.target) as viewer,
    ):
        run = await producer.start_run("silent")
        await run.custom("tick", {"i": 0})
        await run.flush()
        links: list[WatchLink] = []
        runs_links: list[WatchLink] = []

        async def follow_runs(updates: list[RunsUpdate]) -> None:
            watching = viewer.watch_runs(heartbeat_interval=0.2, on_link=runs_links.append)
            async for update in watching:
                updates.append(update)

        async with (
            following(viewer, run.run_id, links, heartbeat_interval=0.2) as seen,
            collecting(follow_runs) as updates,
        ):
            await eventually(lambda: len(seen) == 3 and len(updates) > 0)
            proxy.stall()  # the bytes go nowhere; the connection stays open
            for i in range(1, 4):
                await run.custom("tick", {"i": i})
            await run.flush()
            # 2.5 x 0.2 s; gRPC's keepalive would say nothing for 30 s.
            await eventually(lambda: LinkState.RECONNECTING in link_states(links), within=5)
            await eventually(lambda: LinkState.RECONNECTING in link_states(runs_links), within=5)
            lost = links[2]
            assert lost.after_seq == 3  # where it resumes
            assert isinstance(lost.error, runstream.UnavailableError)
            assert "sent nothing for 0.5s" in lost.error.message
            assert isinstance(runs_links[2].error, runstream.UnavailableError)

            proxy.flow()
            await eventually(lambda: link_states(links)[-1] == LinkState.LIVE)
            await eventually(lambda: link_states(runs_links)[-1] == LinkState.LIVE)
            await run.complete()
            await run.close()
            last_seq = (await producer.get_run(run.run_id)).last_seq
            await eventually(lambda: len(seen) == last_seq)
            await eventually(lambda: updates[-1].runs[0].status.is_terminal)
    assert [e.seq for e in seen] == list(range(1, last_seq + 1))  # once each, across the loss


async def test_a_caller_slow_over_an_event_does_not_make_its_watch_look_silent(
    server: RunstreamServer,
) -> None:
    """The silence that counts is the stream's: while the caller spends longer over an event
    than 2.5 heartbeats, the next messages wait in gRPC's buffers, not lost, and the watch
    must not cut and reopen its stream for it."""
    async with runstream.connect(server.target) as client:
        run = await client.start_run("slow-reader")
        await run.custom("tick", {"i": 0})
        await run.flush()
        links: list[WatchLink] = []
        seen: list[Event] = []

        async def follow() -> None:
            watching = client.watch(run.run_id, heartbeat_interval=0.1, on_link=links.append)
            async for event in watching:
                seen.append(event)
                if event.seq == 3:
                    await asyncio.sleep(1.0)  # four times the 0.25 s bound

        watcher = asyncio.create_task(follow())
        await eventually(lambda: len(seen) == 3)
        for i in range(1, 4):
            await run.custom("tick", {"i": i})
        await run.complete()
        await run.close()
        await asyncio.wait_for(watcher, 10)
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert seen[-1].kind == runstream.EventKind.RUN_COMPLETED
    assert link_states(links) == [LinkState.CONNECTING, LinkState.LIVE]


async def drained(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


async def entered(client: runstream.Client, run_id: str, on_link: object) -> None:
    async with client.interact([run_id], on_link=on_link):  # type: ignore[arg-type]
        pass


async def test_an_async_on_link_is_refused_before_the_stream_not_left_unawaited(
    server: RunstreamServer,
) -> None:
    """Found in review: an ``async def`` on_link (a relay pushing "Live" to its browsers)
    was called and its coroutine dropped, Python saying only "coroutine ... was never
    awaited", and the relay never heard LIVE; a string failed at the first change. An
    object with an ``async def __call__`` was not refused, as an async def was."""

    async def relay(link: WatchLink) -> None:
        raise AssertionError("never awaited")

    class Relay:
        """A relay object, as one holding its browsers' sockets would be written."""

        async def __call__(self, link: WatchLink) -> None:
            raise AssertionError("never awaited")

    async with runstream.connect(server.target) as client:
        run = await client.start_run("relayed")
        await run.flush()
        for on_link, said in [
            (relay, "on_link: must be a plain function, called on the watch's task"),
            (Relay(), "on_link: must be a plain function, called on the watch's task"),
            ("live", "on_link: must be a function, got 'live'"),
        ]:
            with pytest.raises(runstream.InvalidArgumentError, match=said):
                await asyncio.wait_for(drained(client.watch(run.run_id, on_link=on_link)), 10)  # type: ignore[arg-type]
            with pytest.raises(runstream.InvalidArgumentError, match=said):
                await asyncio.wait_for(drained(client.watch_runs(on_link=on_link)), 10)  # type: ignore[arg-type]
            with pytest.raises(runstream.InvalidArgumentError, match=said):
                await asyncio.wait_for(entered(client, run.run_id, on_link), 10)
        await run.close()
