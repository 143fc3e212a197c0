"""Creating a run: the checks a CreateRun request passes, and the RunCreated event it makes.

The event is seq 1 of the run's log; the run manager stores it with the new run's snapshot
in one append that fails (ALREADY_EXISTS) when the id is taken, on this replica or another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from runstream.v1 import event_pb2, run_pb2

from runstream_server import principal as access
from runstream_server.domain.events import check_id
from runstream_server.domain.limits import Limits
from runstream_server.domain.queries import LABEL_KEY, LABEL_KEY_RULE
from runstream_server.domain.state import target_milestone_id, to_timestamp
from runstream_server.domain.steps import MAX_RUN_STEPS
from runstream_server.errors import InvalidArgument


class NewRun(Protocol):
    """What a new run is made of: a CreateRunRequest, or the RunCreated event made of one."""

    @property
    def workflow(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def steps(self) -> Sequence[run_pb2.StepSpec]: ...
    @property
    def targets(self) -> Sequence[run_pb2.Target]: ...


def check_create(run_id: str, run: NewRun, limits: Limits) -> None:
    """A new run's checks, which need no store (INVALID_ARGUMENT naming the field); an empty
    `run_id` is one the server will choose."""
    check_id("run_id", run_id, required=False)
    workflow, labels, steps, targets = run.workflow, run.labels, run.steps, run.targets
    if not workflow.strip():
        raise InvalidArgument("workflow", "is required")
    if len(workflow) > 128:  # the field table says so first; a direct caller gets it here
        raise InvalidArgument("workflow", f"is {len(workflow)} characters; the limit is 128")
    if '"' in workflow:
        raise InvalidArgument("workflow", "holds '\"', which a ListRuns filter could not quote")
    if len(labels) > limits.max_labels:
        raise InvalidArgument("labels", f"at most {limits.max_labels} labels")
    for key in labels:
        if not LABEL_KEY.match(key):
            raise InvalidArgument(
                f"labels[{key!r}]", f"{key[:40]!r} is not a valid label key ({LABEL_KEY_RULE})"
            )
    if len(steps) > limits.max_steps:
        raise InvalidArgument(
            "steps",
            f"has {len(steps)} entries; a run plans at most {limits.max_steps} steps "
            f"(it may start more, {MAX_RUN_STEPS:,} in all)",
        )
    seen: set[str] = set()
    for i, spec in enumerate(steps):
        check_id(f"steps[{i}].step_id", spec.step_id)
        if spec.step_id in seen:
            raise InvalidArgument(f"steps[{i}].step_id", f"duplicate step id {spec.step_id!r}")
        seen.add(spec.step_id)
    _check_graph(steps)
    _check_targets(targets)


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
    check_create(run_id, created.run_created, limits)
    created.event_time.CopyFrom(to_timestamp(now))
    created.receive_time.CopyFrom(created.event_time)
    return created


def _check_targets(targets: Sequence[run_pb2.Target]) -> None:
    """Each target names a metric and a finite value, and no two of one kind share a metric:
    they would share the milestone the server fires for them (INVALID_ARGUMENT naming the
    field otherwise)."""
    declared: dict[str, int] = {}
    for i, target in enumerate(targets):
        if not target.metric.strip():
            raise InvalidArgument(f"targets[{i}].metric", "is required")
        if not target.value == target.value or target.value in (float("inf"), float("-inf")):
            raise InvalidArgument(f"targets[{i}].value", "must be a finite number")
        milestone_id = target_milestone_id(target)
        if milestone_id in declared:
            kind = "quality" if target.kind == run_pb2.TARGET_KIND_QUALITY else "count"
            raise InvalidArgument(
                f"targets[{i}].metric",
                f"targets[{declared[milestone_id]}] already declares a {kind} target for "
                f"metric {target.metric!r}; a run takes one count and one quality target per "
                "metric",
            )
        declared[milestone_id] = i


def _check_graph(steps: Sequence[run_pb2.StepSpec]) -> None:
    """Each ``depends_on`` names another step of the plan, and the steps make no cycle
    (dashboards draw them as a graph); INVALID_ARGUMENT naming the field otherwise."""
    index = {spec.step_id: i for i, spec in enumerate(steps)}
    for i, spec in enumerate(steps):
        for j, other in enumerate(spec.depends_on):
            if other == spec.step_id or other not in index:
                problem = "is the step itself" if other == spec.step_id else "is not in the plan"
                raise InvalidArgument(f"steps[{i}].depends_on[{j}]", f"step {other!r} {problem}")
    # Take away, again and again, the steps whose dependencies are all taken away: what is
    # left depends on something left, so following dependencies from it comes round.
    waiting = {i: len(set(spec.depends_on)) for i, spec in enumerate(steps)}
    needed_by: dict[int, list[int]] = {i: [] for i in waiting}
    for i, spec in enumerate(steps):
        for other in set(spec.depends_on):
            needed_by[index[other]].append(i)
    free = [i for i, n in waiting.items() if n == 0]
    while free:
        for later in needed_by[free.pop()]:
            waiting[later] -= 1
            if waiting[later] == 0:
                free.append(later)
    left = [i for i, n in waiting.items() if n > 0]
    if left:
        chain, at = [left[0]], {left[0]: 0}
        while True:
            step = steps[chain[-1]]
            node = next(index[d] for d in step.depends_on if waiting[index[d]] > 0)
            chain.append(node)
            if node in at:
                break
            at[node] = len(chain) - 1
        cycle = chain[at[chain[-1]] :]
        raise InvalidArgument(
            f"steps[{cycle[0]}].depends_on",
            " -> ".join(repr(steps[k].step_id) for k in cycle) + " is a cycle",
        )
