"""An artifact of no kind is counted under "other", also when it is reported again: the new
version takes the old one's place in the count, whatever kinds the two have."""

from __future__ import annotations

from runstream.v1 import run_pb2

from tests.server.conftest import Stubs
from tests.server.support import append, create_run, ev, get_run


def produced(kind: str) -> ev.RunEvent:
    artifact = run_pb2.Artifact(artifact_id="log", name="log.txt", kind=kind)
    return ev.RunEvent(artifact_produced=ev.ArtifactProduced(artifact=artifact))


async def test_an_artifact_of_no_kind_reported_again_is_counted_once(stubs: Stubs) -> None:
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, produced(""), produced(""))
    summary = (await get_run(stubs, run.run_id)).artifacts_summary
    assert (summary.total, dict(summary.by_kind)) == (1, {"other": 1})
    await append(stubs, run.run_id, produced("text"))  # now of a kind
    summary = (await get_run(stubs, run.run_id)).artifacts_summary
    assert (summary.total, dict(summary.by_kind)) == (1, {"text": 1})
