"""Runs a Runstream server for the benchmarks: PORT STORE SYNCHRONOUS.

STORE is a SQLite file path, or a redis:// URL to run as one replica of several.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from runstream_server.app import ServerConfig, serve_forever

if __name__ == "__main__":
    port, store, sync = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    config = ServerConfig(address=f"127.0.0.1:{port}", sqlite_synchronous=sync)
    if store.startswith("redis://"):
        config = replace(config, store_url=store)
    else:
        config = replace(config, store_path=Path(store))
    asyncio.run(serve_forever(config))
