"""Helpers shared by the SDK tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Waits until ``condition()`` holds; fails the test if it does not ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {within:g}s")
        await asyncio.sleep(0.005)
