"""The AG-UI bridge against a server with identity on: what its own token may not do is a 502
at once, never a 200 that EventSource retries for ever or a reply with no status."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest
import runstream
from runstream.integrations.agui_bridge import AguiBridge
from runstream_server.app import RunstreamServer
from runstream_server.auth.limits import CallerLimits

from tests.clients.support import until
from tests.identity import Keys, rs256_auth, start_server

from .sse import SseClient


async def test_a_bridge_whose_token_may_not_watch_answers_502(
    secured: RunstreamServer, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A producer's token reads its own runs (GetRun), which the bridge checked, but may not
    watch them: it answered 200, then the stream closed empty, and Chromium's EventSource
    reconnected ten times in ten seconds (found in review). The bridge's log says so too: it
    said nothing, and a browser shows a failed EventSource, not the 502's text."""
    token = keys.token(["producer"])
    async with runstream.connect(secured.target, token=token) as producer:
        run = await producer.start_run("wf")
        await run.flush()
        async with AguiBridge(producer, port=0) as bridge:
            for _ in range(2):  # what EventSource does next: the same request again
                response = await SseClient(bridge.port).open(f"/runs/{run.run_id}/events")
                assert response.status == 502, response
                assert "refused the bridge" in response.body
                assert "needs the 'viewer' role" in response.body
        await run.close()
    refusals = [m for m in caplog.messages if m.startswith("the Runstream server refused")]
    assert len(refusals) == 2 and "needs the 'viewer' role" in refusals[0], caplog.messages
    assert token.split(".")[2] not in caplog.text  # never the token


async def test_a_bridge_whose_token_file_went_missing_answers_502_once_its_token_expired(
    secured: RunstreamServer, keys: Keys, tmp_path: Path
) -> None:
    """The CLI's --token-file provider raises when the file cannot be read (a rotation that
    deletes, then writes): the bridge sent no status line at all and logged a traceback per
    request. The last token serves while it is valid; then 502 names the failure."""
    token_file = tmp_path / "token"
    exp = int(time.time()) + 3
    token_file.write_text(keys.token(["viewer"], exp=exp))

    def from_file() -> str:
        return token_file.read_text()  # FileNotFoundError once the file is gone

    async with runstream.connect(secured.target, token=keys.token(["producer"])) as producer:
        run = await producer.start_run("wf")
        await run.flush()
        async with (
            runstream.connect(secured.target, token=from_file) as viewer,
            AguiBridge(viewer, port=0) as bridge,
        ):
            path = f"/runs/{run.run_id}/events"

            async def status() -> int:
                client = SseClient(bridge.port)
                try:
                    return (await client.open(path)).status
                finally:
                    await client.close()

            assert await status() == 200
            token_file.unlink()
            # Past the token's refresh point (a tenth of its life before exp), still valid.
            await asyncio.sleep(max(0.0, exp - 0.5 - time.time()))
            assert await status() == 200
            await asyncio.sleep(max(0.0, exp + 0.2 - time.time()))  # expired
            response = await SseClient(bridge.port).open(path)
            assert response.status == 502, response
            assert "the bridge has no token" in response.body
            assert "FileNotFoundError" in response.body
        await run.close()


async def test_a_watch_the_server_refuses_for_a_limit_is_a_503_with_its_retry_after(
    tmp_path: Path, keys: Keys
) -> None:
    """The bridge's token shares the server's watch streams per identity with whatever else
    uses it (a dashboard, `runstream watch`): once they were all taken, the bridge answered
    200 OK and then nothing, retrying the watch in silence (found in review). The server's
    refusal, and the wait its RetryInfo names, reach the client before any 200."""
    limits = CallerLimits(watch_streams_per_principal=2, stream_retry_after=3.0)
    server = await start_server(tmp_path, dataclasses.replace(rs256_auth(keys), limits=limits))
    viewer = keys.token(["viewer"], sub="carol")
    try:
        async with (
            runstream.connect(server.target, token=keys.token(["producer"])) as producer,
            runstream.connect(server.target, token=viewer) as dashboard,
            runstream.connect(server.target, token=viewer) as bridged,
            AguiBridge(bridged, port=0) as bridge,
        ):
            run = await producer.start_run("wf")
            await run.flush()
            watches = [dashboard.watch(run.run_id) for _ in range(2)]  # carol's two places
            for watch in watches:
                assert (await anext(watch)).kind == runstream.EventKind.RUN_CREATED
            path = f"/runs/{run.run_id}/events"
            response = await SseClient(bridge.port).open(path)
            assert response.status == 503, response
            assert response.headers["retry-after"] == "3"
            assert "refused the bridge a watch: 2 watch streams are open for carol" in (
                response.body
            )
            await watches.pop().aclose()  # a place is free: the bridge streams the run
            sse = SseClient(bridge.port)

            async def streamed() -> bool:  # once the server counted the place free
                return (await sse.open(path)).status == 200

            await until(streamed, within=10)
            first = await asyncio.wait_for(sse.next(), 30)
            assert first is not None and json.loads(first.data)["type"] == "RUN_STARTED"
            await sse.close()
            await watches.pop().aclose()
            await run.close()
    finally:
        await server.stop(grace=0.5)
