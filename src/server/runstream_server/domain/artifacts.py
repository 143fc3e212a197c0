"""A run's artifacts: what artifact events, and the artifacts a completed step lists, do to
the run's snapshot (each step's list, the run's count by kind), and the index by id that lets
an artifact reported again replace the one it names.

A step's artifacts live in the snapshot; the run's own (of no step) only in its log, so the
index is all that holds them between events, and :meth:`RunArtifacts.restore` puts them back
when the run is loaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from runstream.v1 import run_pb2

from runstream_server.errors import ResourceExhausted

MAX_RUN_OWN_ARTIFACTS = 10_000
"""The most artifacts of no step a run keeps, by id. A step's artifacts live in the snapshot,
held to its byte limit; the run's own are only in its log, and each one's id stays in memory
with the run (to replace it when reported again) and is read again when the run is loaded."""

StepOf = Callable[[str], run_pb2.Step | None]
"""The run's step of an id, None when it has none."""


class RunArtifacts:
    """The artifacts of one run's snapshot and log, by id."""

    __slots__ = ("_held", "_own", "_shared", "run")

    def __init__(
        self,
        run: run_pb2.Run,
        held: dict[str, tuple[str, str]] | None = None,
        own: int = 0,
    ) -> None:
        """`held` and `own`: :attr:`_held` and :attr:`_own` when known (a copy of a run:
        `held` shared with the run copied, until one of them changes it). It holds nothing
        of the run's steps but the run: a state is copied for every commit, and a reference
        back (a lookup of RunSteps') made each copy a cycle only the garbage collector frees,
        at 6 us a commit."""
        self.run = run
        self._shared = held is not None
        self._held = self._in_steps() if held is None else held
        """The step (empty for none) and kind of each of the run's artifacts, by id."""
        self._own = own
        """How many of them are of no step: what :data:`MAX_RUN_OWN_ARTIFACTS` limits."""

    def over(self, run: run_pb2.Run) -> RunArtifacts:
        """The same artifacts in `run`, a copy of this one's run."""
        self._shared = True
        return RunArtifacts(run, self._held, self._own)

    def _in_steps(self) -> dict[str, tuple[str, str]]:
        return {
            artifact.artifact_id: (step.step_id, artifact.kind)
            for step in self.run.steps[:]
            for artifact in step.artifacts[:]
        }

    def produced(self, artifact: run_pb2.Artifact, path: str, step_of: StepOf) -> None:
        """An ArtifactProduced event's artifact (at `path`), its step checked already (found
        by `step_of`): refused when it would be one more of the run's own past their limit."""
        if not artifact.step_id and self._own >= MAX_RUN_OWN_ARTIFACTS:
            held = self._held.get(artifact.artifact_id) if artifact.artifact_id else None
            if held is None or held[0]:  # not one of the run's own, reported again
                raise ResourceExhausted(
                    f"{path}.artifact: run {self.run.run_id!r} keeps {self._own} "
                    "artifacts of no step, the most a run may keep; report more with the "
                    "step_id of a step of the run",
                    reason="ARTIFACT_LIMIT",
                )
        self.add(artifact, artifact.step_id, step_of)

    def add(self, artifact: run_pb2.Artifact, step_id: str, step_of: StepOf) -> None:
        """Adds the artifact to the run, or replaces the one of its id: an artifact reported
        again (a new version, uri or size) is counted once, in its step's place when its
        step is the same (`step_of`: the run's step of an id)."""
        # The id and step are filled in on the event itself, before it is stored, so the log
        # and the snapshot name the artifact the same way, and a replay gives the same ids.
        artifact.step_id = artifact.step_id or step_id
        if not artifact.artifact_id:
            artifact.artifact_id = uuid.uuid4().hex[:12]
        stored = run_pb2.Artifact()
        stored.CopyFrom(artifact)
        summary = self.run.artifacts_summary
        place = self._take(stored.artifact_id, stored.step_id, step_of)
        step = step_of(stored.step_id) if stored.step_id else None
        if step is not None and place is not None:
            step.artifacts[place].CopyFrom(stored)
        elif step is not None:
            step.artifacts.append(stored)
        summary.total += 1
        kind = stored.kind or "other"
        summary.by_kind[kind] = summary.by_kind[kind] + 1
        self._hold(stored.artifact_id, stored.step_id, stored.kind)

    def _hold(self, artifact_id: str, step_id: str, kind: str) -> None:
        """Indexes the artifact (one of its id already out of the count), copying the index
        first while a copy of the run shares it."""
        if self._shared:
            self._held = dict(self._held)
            self._shared = False
        self._held[artifact_id] = (step_id, kind)
        if not step_id:
            self._own += 1

    def _take(self, artifact_id: str, step_id: str, step_of: StepOf) -> int | None:
        """Takes the run's artifact of that id, if it has one, out of its count, and out of
        its step unless that is `step_id`: its place there, to be replaced, when it is."""
        held = self._held.get(artifact_id)
        if held is None:
            return None
        held_step_id, held_kind = held
        if not held_step_id:
            self._own -= 1
        summary = self.run.artifacts_summary
        summary.total -= 1
        kind = held_kind or "other"
        summary.by_kind[kind] -= 1
        if summary.by_kind[kind] <= 0:
            del summary.by_kind[kind]
        step = step_of(held_step_id) if held_step_id else None
        if step is None:
            return None
        place = next(i for i, a in enumerate(step.artifacts) if a.artifact_id == artifact_id)
        if held_step_id == step_id:
            return place
        del step.artifacts[place]
        return None

    def restore(self, artifact: run_pb2.Artifact) -> None:
        """Puts back, on load, an artifact of no step its log holds: the last of an id
        counts, unless a step holds that id since (the snapshot says so)."""
        held = self._held.get(artifact.artifact_id)
        if artifact.step_id or (held is not None and held[0]):
            return
        if held is not None:  # one of the run's own, reported again: counted once
            self._own -= 1
        self._hold(artifact.artifact_id, "", artifact.kind)
