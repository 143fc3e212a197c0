"""Runs a Runstream server for the benchmarks: PORT STORE_PATH SYNCHRONOUS."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from runstream_server.app import ServerConfig, serve_forever

if __name__ == "__main__":
    port, store, sync = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    config = ServerConfig(address=f"127.0.0.1:{port}", store_path=store, sqlite_synchronous=sync)
    asyncio.run(serve_forever(config))
