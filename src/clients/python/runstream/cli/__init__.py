"""The `runstream` command line: serve, demo, watch, and inspect runs.

The entry point is :func:`runstream.cli.main.main`. Client commands talk to a server only
through the public SDK (``import runstream``); ``serve`` and the embedded demo server import
``runstream_server`` lazily, so the client commands work without the server package's
dependencies being exercised.
"""

from __future__ import annotations

__all__: list[str] = []
