"""The AG-UI bridge in a real browser: Chromium's own EventSource, through a TCP relay that
drops its connection mid-run, resumes with Last-Event-ID and shows every event once."""

from __future__ import annotations

import json

import runstream
from runstream.integrations.agui_bridge import AguiBridge
from runstream_server.app import RunstreamServer

from tests.clients.integrations.sse import read_all
from tests.clients.support import TcpProxy

from .web_support import browser, require_chromium

LISTEN = """(() => {
  window.__events = [];
  window.__ids = [];
  window.__drops = 0;
  const source = new EventSource("/runs/RUN_ID/events");
  window.__source = source;
  source.onmessage = (message) => {
    window.__events.push(message.data);
    window.__ids.push(message.lastEventId);
  };
  source.onerror = () => { window.__drops += 1; };
})()"""


async def test_eventsource_resumes_after_a_dropped_connection_with_every_event_once(
    server: RunstreamServer,
) -> None:
    require_chromium()
    async with runstream.connect(server.target) as client:
        bridge = AguiBridge(client, port=0)
        await bridge.start()
        proxy = TcpProxy(bridge.port)
        await proxy.start()
        try:
            run = await client.start_run("agui-browser")
            async with browser() as page:
                # Same origin as the stream: the page is the bridge's own health check.
                await page.goto(f"http://127.0.0.1:{proxy.port}/healthz")
                await page.eval(LISTEN.replace("RUN_ID", run.run_id))
                async with run:
                    async with run.step("draft"):
                        for i in range(5):
                            await run.text("writer", "m1", f"part {i} ", step_id="draft")
                        await page.wait("window.__events.length >= 9")
                        proxy.cut()  # the browser's stream drops mid-message
                        proxy.restore()
                        for i in range(5, 10):  # reported while the browser reconnects
                            await run.text("writer", "m1", f"part {i} ", step_id="draft")
                        await run.text("writer", "m1", "end", final=True, step_id="draft")
                    async with run.step("publish"):
                        await run.metrics({"posts": 3})
                    await run.complete(summary="published")
                # After RUN_FINISHED the stream ends; the reconnect gets 204 and EventSource
                # stops (readyState CLOSED).
                await page.wait("window.__source.readyState === 2", within=60)
                received: list[str] = await page.eval("window.__events")
                ids: list[str] = await page.eval("window.__ids")
                drops: int = await page.eval("window.__drops")
                # (The browser's own favicon request gets a 404: not an error of the page.)
                assert [e for e in await page.errors() if "Failed to load resource" not in e] == []
            expected = await read_all(bridge.port, f"/runs/{run.run_id}/events")
        finally:
            await proxy.close()
            await bridge.stop()

    assert drops >= 2  # the cut, and the end of the stream
    assert ids == [m.id for m in expected]
    assert received == [m.data for m in expected]
    types = [json.loads(data)["type"] for data in received]
    assert types.count("TEXT_MESSAGE_CONTENT") == 11
    assert types[-1] == "RUN_FINISHED"
