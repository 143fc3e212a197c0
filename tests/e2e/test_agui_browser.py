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


# As AG-UI's HttpAgent (@ag-ui/client) does in a browser: POST a RunAgentInput as JSON,
# Accept: text/event-stream, and read the SSE answer from the response's body.
HTTP_AGENT = """(() => {
  window.__posted = { status: null, events: [], error: null, done: false };
  const input = {
    threadId: crypto.randomUUID(), runId: crypto.randomUUID(), state: {}, tools: [],
    context: [], forwardedProps: {},
    messages: [{ id: "m1", role: "user", content: "How is the campaign going?" }],
  };
  fetch("URL", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(input),
  }).then(async (response) => {
    window.__posted.status = response.status;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      buffer += chunk.value;
      const messages = buffer.split("\\n\\n");
      buffer = messages.pop();
      for (const message of messages) {
        for (const line of message.split("\\n")) {
          if (line.startsWith("data: ")) window.__posted.events.push(line.slice(6));
        }
      }
    }
    window.__posted.done = true;
  }).catch((error) => { window.__posted.error = String(error); });
})()"""


async def test_a_cross_origin_post_as_ag_uis_http_agent_sends_it_gets_the_live_stream(
    server: RunstreamServer,
) -> None:
    """Chromium's fetch POSTs a RunAgentInput to a bridge on another origin, as HttpAgent
    does: preflighted (its Content-Type is application/json), then streamed live. The
    bridge allowed GET alone, and not Content-Type."""
    require_chromium()
    async with (
        runstream.connect(server.target) as client,
        AguiBridge(client, port=0) as page_bridge,  # serves the page: its /healthz
    ):
        origin = f"http://127.0.0.1:{page_bridge.port}"
        async with AguiBridge(client, port=0, origins=[origin]) as bridge:
            run = await client.start_run("agui-post")
            async with browser() as page:
                await page.goto(f"{origin}/healthz")
                await page.eval(HTTP_AGENT.replace("URL", bridge.url(run.run_id)))
                async with run:
                    await page.wait("window.__posted.events.length >= 2")  # the run started
                    async with run.step("draft"):
                        for i in range(3):
                            await run.text("writer", "m1", f"part {i} ", step_id="draft")
                        await run.text("writer", "m1", "end", final=True, step_id="draft")
                    await run.complete(summary="published")
                await page.wait("window.__posted.done || window.__posted.error", within=60)
                posted = await page.eval("window.__posted")
                assert [e for e in await page.errors() if "Failed to load resource" not in e] == []
            expected = await read_all(bridge.port, f"/runs/{run.run_id}/events")

    assert (posted["status"], posted["error"]) == (200, None)
    assert posted["events"] == [m.data for m in expected]
    types = [json.loads(data)["type"] for data in posted["events"]]
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    assert types.count("TEXT_MESSAGE_CONTENT") == 4
