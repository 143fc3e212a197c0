"""Runs a Runstream server for the benchmarks: PORT STORE SYNCHRONOUS [options].

STORE is a SQLite file path, or a redis:// URL to run as one replica of several. Options:
--metrics-address HOST:PORT and --otlp-endpoint URL, as `runstream serve` takes them, for
the observability scenario (metrics and traces on versus off).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from runstream_server.app import ServerConfig, serve_forever

if __name__ == "__main__":
    port, store, sync = sys.argv[1], sys.argv[2], sys.argv[3]
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics-address", default=None)
    parser.add_argument("--otlp-endpoint", default=None)
    options = parser.parse_args(sys.argv[4:])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    config = ServerConfig(
        address=f"127.0.0.1:{port}",
        sqlite_synchronous=sync,
        metrics_address=options.metrics_address,
        otlp_endpoint=options.otlp_endpoint,
    )
    if store.startswith("redis://"):
        config = replace(config, store_url=store)
    else:
        config = replace(config, store_path=Path(store))
    asyncio.run(serve_forever(config))
