"""Creating a run: the checks a CreateRun request passes, and the RunCreated event it makes.

The event is seq 1 of the run's log; the run manager stores it with the new run's snapshot
in one append that fails (ALREADY_EXISTS) when the id is taken, on this replica or another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from runstream.v1 import event_pb2, run_pb2

from runstream_server.auth import principal as access
from runstream_server.domain.events import check_id
from runstream_server.domain.limits import Limits
from runstream_server.domain.queries import LABEL_KEY
from runstream_server.domain.state import to_timestamp
from runstream_server.errors import InvalidArgument


def run_created(
    *,
    run_id: str,
    workflow: str,
    display_name: str,
    labels: Mapping[str, str],
    steps: Sequence[run_pb2.StepSpec],
    targets: Sequence[run_pb2.Target],
    limits: Limits,
    now: datetime,
) -> event_pb2.RunEvent:
    """The run's first event, once the request passed every check (INVALID_ARGUMENT naming
    the field otherwise)."""
    check_id("run_id", run_id)
    if not workflow.strip():
        raise InvalidArgument("workflow", "is required")
    if len(workflow) > 128 or '"' in workflow:
        raise InvalidArgument("workflow", "must be at most 128 characters, without '\"'")
    if len(labels) > limits.max_labels:
        raise InvalidArgument("labels", f"at most {limits.max_labels} labels")
    for key in labels:
        if not LABEL_KEY.match(key):
            raise InvalidArgument(f"labels[{key!r}]", "invalid label key")
    if len(steps) > limits.max_steps:
        raise InvalidArgument("steps", f"at most {limits.max_steps} steps")
    seen: set[str] = set()
    for i, spec in enumerate(steps):
        check_id(f"steps[{i}].step_id", spec.step_id)
        if spec.step_id in seen:
            raise InvalidArgument(f"steps[{i}].step_id", f"duplicate step id {spec.step_id!r}")
        seen.add(spec.step_id)
    for i, target in enumerate(targets):
        if not target.metric.strip():
            raise InvalidArgument(f"targets[{i}].metric", "is required")
        if not target.value == target.value or target.value in (float("inf"), float("-inf")):
            raise InvalidArgument(f"targets[{i}].value", "must be a finite number")
    created = event_pb2.RunEvent(
        run_id=run_id,
        seq=1,
        run_created=event_pb2.RunCreated(
            workflow=workflow,
            display_name=display_name,
            labels=labels,
            steps=steps,
            targets=targets,
            tenant=access.new_run_tenant(),
            created_by=access.acting_as(""),
        ),
    )
    created.event_time.CopyFrom(to_timestamp(now))
    return created
