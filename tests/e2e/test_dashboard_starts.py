"""`runstream dashboard --demo` starts every time.

Envoy used to be started with a ``preexec_fn``, which made Python fork() a process whose gRPC
threads were busy: gRPC's fork handlers logged "skipping fork() handlers" and about one
launch in twelve the child crashed before exec (Envoy "exited with status -6"). The command is
started 8 times in a row here, each time until its page and Envoy answer, then stopped; the
fork-handler line the old way logged fails a launch whether or not Envoy crashed.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import urllib.request

import pytest

from .web_support import require

pytestmark = pytest.mark.timeout(600)

LAUNCHES = 8


async def launch_once() -> str:
    """Starts the dashboard demo, waits for its page, stops it; returns everything it said."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runstream.cli.main",
        "dashboard",
        "--demo",
        "--port",
        "0",
        "--envoy-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while line := (await process.stdout.readline()).decode():
                seen.append(line)
                if match := re.search(r"Runstream dashboard: (\S+)", line):
                    page = await asyncio.to_thread(
                        lambda: urllib.request.urlopen(match[1], timeout=10).status
                    )
                    assert page == 200
                if "Demo run: " in line:
                    break
        assert any("Demo run: " in line for line in seen), "".join(seen)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        seen.append(rest.decode())
    assert process.returncode == 0, "".join(seen)
    return "".join(seen)


async def test_dashboard_demo_starts_eight_times_in_a_row() -> None:
    from runstream.dashboard.envoy import envoy_binary

    try:
        envoy_binary()
    except Exception:  # any reason Envoy is unavailable
        require(False, "envoy (the envoy extra)")
    for attempt in range(1, LAUNCHES + 1):
        output = await launch_once()
        assert "Envoy exited" not in output, f"launch {attempt}:\n{output}"
        # No gRPC fork-handler noise, no C-core log lines.
        assert "fork" not in output, f"launch {attempt}:\n{output}"
        assert not re.search(r"^[EIW]\d{4} ", output, re.M), f"launch {attempt}:\n{output}"
