"""A run keeps at most MAX_RUN_OWN_ARTIFACTS artifacts of no step: a step's artifacts live in
the snapshot, held to its byte limit, but the run's own live only in its log, and each one's
id stays in memory with the run (so that a report under the same id replaces it)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from runstream.v1 import run_pb2
from runstream_server.domain import artifacts

from tests.conftest import ConfigFactory
from tests.server.support import (
    append,
    assert_refused,
    create_run,
    custom,
    ev,
    get_run,
    rpc_error,
    serving,
)

LIMIT = 3


def artifact(artifact_id: str = "", step_id: str = "", kind: str = "html") -> ev.RunEvent:
    return ev.RunEvent(
        artifact_produced=ev.ArtifactProduced(
            artifact=run_pb2.Artifact(
                artifact_id=artifact_id, name="page", kind=kind, step_id=step_id
            )
        )
    )


async def test_a_run_keeps_at_most_its_limit_of_artifacts_of_no_step_also_after_a_restart(
    tmp_path: Path, server_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "MAX_RUN_OWN_ARTIFACTS", LIMIT)
    config = server_config(tmp_path / "a.db")
    async with serving(config) as (_, stubs):
        run = await create_run(stubs, "s")
        await append(stubs, run.run_id, artifact(), artifact("a1"), artifact("a2"))
        before = await get_run(stubs, run.run_id)

        assert_refused(
            await rpc_error(append(stubs, run.run_id, custom(1), artifact("a3"))),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"events[1].artifact_produced.artifact: run {run.run_id!r} keeps {LIMIT} artifacts "
            "of no step, the most a run may keep; report more with the step_id of a step of the "
            "run",
            "ARTIFACT_LIMIT",
            {"event_index": "1"},
        )
        exc = await rpc_error(append(stubs, run.run_id, artifact()))  # no id: a new one
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        after = await get_run(stubs, run.run_id)
        assert after.last_seq == before.last_seq  # nothing of them kept
        assert after.artifacts_summary == before.artifacts_summary

        # The run takes its own reported again (a new version, counted once) and a step's.
        await append(stubs, run.run_id, artifact("a1", kind="pdf"), artifact("s1", "s"))
        assert by_kind(await get_run(stubs, run.run_id)) == (4, {"html": 3, "pdf": 1})
        # One of its own moved to a step frees its place.
        await append(stubs, run.run_id, artifact("a2", "s"), artifact("a3"))
        assert by_kind(await get_run(stubs, run.run_id)) == (5, {"html": 4, "pdf": 1})

    async with serving(config) as (_, stubs):  # the run read again from its store
        for refused in (artifact("a4"), artifact("a2")):  # a2 back to no step: one more
            exc = await rpc_error(append(stubs, run.run_id, refused))
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"keeps {LIMIT} artifacts of no step" in exc.details()
        await append(stubs, run.run_id, artifact("a3", kind="pdf"))
        assert by_kind(await get_run(stubs, run.run_id)) == (5, {"html": 3, "pdf": 2})


def by_kind(run: run_pb2.Run) -> tuple[int, dict[str, int]]:
    return run.artifacts_summary.total, dict(run.artifacts_summary.by_kind)
