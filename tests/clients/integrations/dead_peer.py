"""A client of the AG-UI bridge whose network goes away, on a quiet run: run by
test_agui.py in a network namespace of its own (``unshare -n``), where taking the loopback
interface down leaves every TCP connection on it unanswered, as a peer that vanished does.

The Runstream server listens on a unix socket, which the loopback's state does not touch, so
the bridge's watch stays up and the server can say how many watch the run. Prints one line,
``ended after S s`` or ``still watched after S s``, and exits 0 either way.

    unshare -n python -m tests.clients.integrations.dead_peer DIR SEND_TIMEOUT
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import runstream
from runstream.integrations.agui_bridge import AguiBridge
from runstream_server.app import RunstreamServer, ServerConfig

from tests.clients.support import until

from .test_agui import stalled_client, viewers

GIVE_UP = 12.0
"""Seconds to wait for the stream to end once the network is gone."""


async def loopback(state: str) -> None:
    await asyncio.to_thread(subprocess.run, ["ip", "link", "set", "lo", state], check=True)


async def main(directory: Path, send_timeout: float) -> None:
    await loopback("up")
    config = ServerConfig(store_path=directory / "runstream.db", address=f"unix:{directory}/s")
    server = RunstreamServer(config)
    await server.start()
    try:
        async with runstream.connect(server.target) as client:
            run = await client.start_run("campaign")
            await run.flush()
            bridge = AguiBridge(client, port=0, keepalive=0.2, send_timeout=send_timeout)
            async with bridge:
                gone = await stalled_client(bridge.port, f"/runs/{run.run_id}/events")
                try:
                    await until(viewers(client, run.run_id, 1), within=10)
                    await loopback("down")
                    start = time.monotonic()
                    try:
                        await until(viewers(client, run.run_id, 0), within=GIVE_UP)
                    except AssertionError:
                        print(f"still watched after {time.monotonic() - start:.1f} s")
                    else:
                        print(f"ended after {time.monotonic() - start:.1f} s")
                finally:
                    gone.close()
            await run.close()
    finally:
        await server.stop(grace=0.5)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2])))
