"""`runstream demo --replicas 2`: the demo's run crosses from one replica to another."""

from __future__ import annotations

import re

from tests.e2e.test_cli import STEP_NAMES, runstream_cli


def test_demo_reports_on_one_replica_and_watches_through_the_other() -> None:
    result = runstream_cli("demo", "--replicas", "2", "--speed", "20", "--plain")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    match = re.search(r"replicas (127\.0\.0\.1:\d+), (127\.0\.0\.1:\d+)", out)
    assert match, out
    first, second = match.groups()
    assert first != second
    assert f"Reporting to {first}, watching through {second}" in out
    # Every step, seen through the replica that did not receive it.
    for name in STEP_NAMES:
        assert f"{name} done" in out, name
    assert "SUCCEEDED" in out
    assert "Traceback" not in result.stderr


def test_demo_replicas_refuses_a_target() -> None:
    result = runstream_cli("demo", "--replicas", "2", "--target", "127.0.0.1:1")
    assert result.returncode == 2  # a usage error, as for the other conflicting options
    assert "--replicas starts its own Redis" in result.stderr
