"""``start_run()`` checks its ``message`` before the run exists: a message the server would
refuse raises InvalidArgumentError and leaves no run behind."""

from __future__ import annotations

import pytest
from runstream import Client, InvalidArgumentError, StepSpec, Target


async def test_a_message_too_long_creates_no_run(client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", message="x" * 4097)
    assert refused.value.message.startswith("message: ")
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        ("plan", "steps: must be a list of steps (StepSpec or step ids), not 'plan'"),
        (["a", 7], "steps[1]: must be a StepSpec or a step id, not 7"),
        (
            ["ab", StepSpec("c", depends_on="ab")],  # type: ignore[arg-type]
            "steps[1].depends_on: must be a list of step ids, not 'ab'",
        ),
    ],
    ids=["a-string", "not-a-step", "depends-on-a-string"],
)
async def test_steps_given_as_a_string_are_refused_not_read_letter_by_letter(
    client: Client, steps: object, said: str
) -> None:
    """Found in review: steps="plan" planned the steps 'p', 'l', 'a' and 'n' (and "analyze"
    was refused for a duplicate step 'a'), and depends_on="ab" made a step wait for steps
    'a' and 'b'."""
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", steps=steps)  # type: ignore[arg-type]
    assert refused.value.message == said
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []


@pytest.mark.parametrize(
    ("max_buffered", "said"),
    [
        (0, "max_buffered: must be at least 1, got 0"),
        (-1, "max_buffered: must not be negative, got -1"),
        (2.5, "max_buffered: must be a whole number, got 2.5"),
    ],
)
async def test_a_max_buffered_below_one_is_refused_not_taken_as_one(
    client: Client, max_buffered: int, said: str
) -> None:
    """Found in review: 0 and -1 (read as "no limit") were taken as 1 without a word, the
    producer then waiting on every event's acknowledgement."""
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", max_buffered=max_buffered)
    assert refused.value.message == said
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []
    run = await client.start_run("started")
    with pytest.raises(InvalidArgumentError) as refused:
        await client.attach_run(run.run_id, max_buffered=max_buffered)
    assert refused.value.message == said
    await run.complete()
    await run.close()


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"labels": {"team": 7}}, "labels['team']: must be a string, got 7"),
        ({"labels": ["team"]}, "labels: must be a mapping, got ['team']"),
        ({"display_name": 5}, "display_name: must be a string, got 5"),
        ({"run_id": 5}, "run_id: must be a string, got 5"),
        ({"steps": [StepSpec("a", 5)]}, "steps[0].name: must be a string, got 5"),  # type: ignore[arg-type]
        ({"targets": [("found", 50)]}, "targets[0]: must be a Target, not ('found', 50)"),
        (
            {"targets": [Target("kept", 3), Target("found", "50")]},  # type: ignore[arg-type]
            "targets[1].value: must be a finite number, got '50'",
        ),
    ],
    ids=[
        "label-value",
        "labels-list",
        "display-name",
        "run-id",
        "step-name",
        "target-tuple",
        "target-value",
    ],
)
async def test_a_value_of_the_wrong_type_is_named_not_a_bare_type_error(
    client: Client, arguments: dict[str, object], said: str
) -> None:
    """Found in review: these raised TypeError "bad argument type for built-in operation"
    from protobuf (or AttributeError 'tuple' object has no attribute 'metric'), naming no
    argument. A target's value was named by its metric (targets['found'].value) where its
    other fields, and the server, name it by its place in the list (targets[1].metric)."""
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", **arguments)  # type: ignore[arg-type]
    assert refused.value.message == said
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []


async def test_an_empty_run_id_is_refused_none_generates_one(client: Client) -> None:
    """Found in review: run_id="" was sent as an id of the caller's and the server generated
    one, a new one for each retry of a CreateRun whose answer was lost (one run per attempt),
    where the docstring says None generates it (and a retry then finds its run)."""
    with pytest.raises(InvalidArgumentError) as refused:
        await client.start_run("never-started", run_id="")
    assert refused.value.message == "run_id: must be a non-empty string (None generates one)"
    assert [run async for run in client.list_runs() if run.workflow == "never-started"] == []
