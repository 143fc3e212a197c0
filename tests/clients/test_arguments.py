"""A bad argument to a reporting call fails at the call, naming the argument, against a real
server: nothing of it is reported, the reporter goes on. What only the server can refuse names
the call that reported the event."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from runstream import (
    ActivityType,
    AlertActionType,
    Client,
    EventKind,
    FailedPreconditionError,
    InvalidArgumentError,
    RunReporter,
    RunStatus,
    RunstreamError,
    StepReporter,
    StepSpec,
    SubStepDetails,
    Target,
    TargetKind,
)
from runstream.v1 import event_pb2
from runstream_server.domain import events as server_events
from runstream_server.domain import fields, queries, watching_runs

from tests.clients.support import producer_events

PLAN = [StepSpec("strategy", "Strategy Team"), StepSpec("web", "Web Developer")]
NOT_AN_ID = (
    "is not a valid id (ASCII letters, digits, '.', '_', '-'; at most 128 characters; starting "
    "with a letter or digit)"
)

Call = Callable[[RunReporter, StepReporter], Awaitable[Any]]


class _Mapping(dict[str, Any]):
    """A dict of the caller's own class (as some libraries hand out)."""


class _Float(float):
    """A float of the caller's own class (as numpy's float64 is)."""


# (id, the call, what InvalidArgumentError says): every producer call, and each kind of rule
# the server holds its events to (ranges, counts, required and bounded texts, enum values,
# ids, durations, times, list and map sizes, JSON-like data).
BAD_CALLS: list[tuple[str, Call, str]] = [
    # step.progress()
    (
        "progress-percent",
        lambda r, s: s.progress(150),
        "percent: must be between 0 and 100, got 150",
    ),
    (
        "progress-percent-rounded",
        lambda r, s: s.progress(100.0001),
        "percent: must be between 0 and 100, got 100.0001",
    ),
    (
        "progress-nan",
        lambda r, s: s.progress(math.nan),
        "percent: must be a finite number, got nan",
    ),
    ("progress-text", lambda r, s: s.progress("50"), "percent: must be a finite number, got '50'"),  # type: ignore[arg-type]
    ("progress-bool", lambda r, s: s.progress(True), "percent: must be a finite number, got True"),
    (
        "progress-tokens",
        lambda r, s: s.progress(50, tokens_processed=-1),
        "tokens_processed: must not be negative, got -1",
    ),
    (
        "progress-sub-step",
        lambda r, s: s.progress(50, "x" * 257),
        "sub_step: is 257 characters; the limit is 256 characters",
    ),
    (
        "progress-detail",
        lambda r, s: s.progress(50, detail="x" * 4097),
        "detail: is 4097 characters; the limit is 4096 characters",
    ),
    (
        "progress-remaining",
        lambda r, s: s.progress(50, estimated_time_remaining=-5),
        "estimated_time_remaining: must be a non-negative duration of at most 100 years, got -5",
    ),
    (
        "progress-details-end",
        lambda r, s: s.progress(
            50, details=SubStepDetails(estimated_completion_time=datetime(1969, 12, 31, tzinfo=UTC))
        ),
        "details.estimated_completion_time: must be a valid time between 1970 and 9999, "
        "got 1969-12-31 00:00:00+00:00",
    ),
    (
        "progress-details-model",
        lambda r, s: s.progress(50, details=SubStepDetails(model="m" * 257)),
        "details.model: is 257 characters; the limit is 256 characters",
    ),
    # run.items()
    ("items-completed", lambda r, s: r.items(-1, 5), "completed: must not be negative, got -1"),
    ("items-total", lambda r, s: r.items(1, 2.5), "total: must be a whole number, got 2.5"),  # type: ignore[arg-type]
    ("items-bool", lambda r, s: r.items(True, 5), "completed: must be a whole number, got True"),
    (
        "items-stage-count",
        lambda r, s: r.items(1, 5, by_stage={"search": -2}),
        "by_stage['search']: must not be negative, got -2",
    ),
    (
        "items-stage-name",
        lambda r, s: r.items(1, 5, by_stage={" ": 1}),
        "by_stage: keys must be non-blank strings, got ' '",
    ),
    (
        "items-remaining",
        lambda r, s: r.items(1, 5, estimated_time_remaining=math.inf),
        "estimated_time_remaining: must be a finite number, got inf",
    ),
    # run.skip_step()
    ("skip-step-id", lambda r, s: r.skip_step("not an id!"), f"step_id: 'not an id!' {NOT_AN_ID}"),
    ("skip-step-empty", lambda r, s: r.skip_step(""), "step_id: is required"),
    (
        "skip-step-reason",
        lambda r, s: r.skip_step("web", "x" * 4097),
        "reason: is 4097 characters; the limit is 4096 characters",
    ),
    # run.activity()
    (
        "activity-agent",
        lambda r, s: r.activity("", ActivityType.STARTED),
        "agent_id: agent_id or agent_name is required",
    ),
    (
        "activity-unspecified",
        lambda r, s: r.activity("writer", ActivityType.UNSPECIFIED),
        "activity: is required (any ActivityType but UNSPECIFIED)",
    ),
    (
        "activity-unknown",
        lambda r, s: r.activity("writer", 99),  # type: ignore[arg-type]
        "activity: 99 is not a known ActivityType value",
    ),
    (
        "activity-agent-id",
        lambda r, s: r.activity("a" * 129, ActivityType.STARTED),
        "agent_id: is 129 characters; the limit is 128 characters",
    ),
    (
        "activity-step-id",
        lambda r, s: r.activity("writer", ActivityType.STARTED, step_id="-x"),
        f"step_id: '-x' {NOT_AN_ID}",
    ),
    # run.thinking()
    (
        "thinking-confidence",
        lambda r, s: r.thinking("hmm", confidence=1.5),
        "confidence: must be between 0 and 1, got 1.5",
    ),
    (
        "thinking-factors",
        lambda r, s: r.thinking("hmm", factors=["f"] * 101),
        "factors: has 101 entries; the limit is 100",
    ),
    (
        "thinking-factors-string",
        lambda r, s: r.thinking("hmm", factors="cost"),
        "factors: must be a list of strings, not one string 'cost'",
    ),
    (
        "thinking-analysis",
        lambda r, s: r.thinking("x" * 65_537),
        "analysis: is 65537 characters; the limit is 65536 characters",
    ),
    # run.model_allocation()
    ("model-required", lambda r, s: r.model_allocation("writer", " "), "model: is required"),
    (
        "model-cost",
        lambda r, s: r.model_allocation("writer", "m", expected_cost_usd=-0.01),
        "expected_cost_usd: must be at least 0, got -0.01",
    ),
    (
        "model-context-window",
        lambda r, s: r.model_allocation("writer", "m", context_window=-1),
        "context_window: must not be negative, got -1",
    ),
    # run.text()
    ("text-message-id", lambda r, s: r.text("writer", "", "hi"), "message_id: is required"),
    (
        "text-step-id",
        lambda r, s: r.text("writer", "m1", "hi", step_id="a b"),
        f"step_id: 'a b' {NOT_AN_ID}",
    ),
    # run.metrics(), step.metrics()
    ("metrics-none", lambda r, s: r.metrics({}), "values: at least one entry is required"),
    (
        "metrics-blank-name",
        lambda r, s: r.metrics({"": 1}),
        "values: keys must be non-blank strings, got ''",
    ),
    (
        "metrics-too-many",
        lambda r, s: r.metrics({f"m{i}": i for i in range(257)}),
        "values: has 257 entries; the limit is 256",
    ),
    (
        "metrics-unit",
        lambda r, s: r.metrics({"ctr": 5}, units={"ctr": "x" * 33}),
        "units['ctr']: is 33 characters; the limit is 32 characters",
    ),
    (
        "step-metrics-name",
        lambda r, s: s.metrics({"x" * 129: 1}),
        "values: a key is 129 characters; the limit is 128",
    ),
    # run.milestone()
    ("milestone-title", lambda r, s: r.milestone(""), "title: is required"),
    (
        "milestone-type",
        lambda r, s: r.milestone("Half way", type=42),  # type: ignore[arg-type]
        "type: 42 is not a known MilestoneType value",
    ),
    (
        "milestone-id",
        lambda r, s: r.milestone("Half way", milestone_id="m" * 129),
        "milestone_id: is 129 characters; the limit is 128 characters",
    ),
    # run.alert()
    ("alert-message", lambda r, s: r.alert(""), "message: is required"),
    (
        "alert-severity",
        lambda r, s: r.alert("slow", severity=9),  # type: ignore[arg-type]
        "severity: 9 is not a known Severity value",
    ),
    (
        "alert-action-label",
        lambda r, s: r.alert("slow", action=AlertActionType.PAUSE_RUN, suggested_action="x" * 300),
        "suggested_action: is 300 characters; the limit is 256 characters",
    ),
    # run.error_recovery()
    ("recovery-message", lambda r, s: r.error_recovery(""), "error_message: is required"),
    (
        "recovery-attempt",
        lambda r, s: r.error_recovery("timeout", attempt=-1),
        "attempt: must not be negative, got -1",
    ),
    (
        "recovery-agents",
        lambda r, s: r.error_recovery("timeout", affected_agents=["a" * 257]),
        "affected_agents[0]: is 257 characters; the limit is 256 characters",
    ),
    # run.artifact(), step.artifact()
    ("artifact-name", lambda r, s: r.artifact(""), "name: is required"),
    (
        "artifact-kind",
        lambda r, s: r.artifact("a.md", kind="k" * 65),
        "kind: is 65 characters; the limit is 64 characters",
    ),
    (
        "artifact-uri",
        lambda r, s: r.artifact("a.md", uri="u" * 2049),
        "uri: is 2049 characters; the limit is 2048 characters",
    ),
    (
        "step-artifact-size",
        lambda r, s: s.artifact("a.md", size_bytes=-1),
        "size_bytes: must not be negative, got -1",
    ),
    (
        "artifact-metadata",
        lambda r, s: r.artifact("a.md", metadata={"blob": "x" * (1 << 20)}),
        "metadata: is 1048594 bytes encoded; the limit is 1048576 bytes",
    ),
    # A number as a key was said to be "not JSON-like (dict, list, str, number, ...)", and
    # what was wrong deep inside a value was put on the top-level key holding it.
    (
        "artifact-metadata-key",
        lambda r, s: r.artifact("a.md", metadata={"sizes": {1: "x"}}),
        "metadata: key 1 in 'sizes' is not a string (JSON's keys are strings)",
    ),
    (
        "artifact-metadata-deep-value",
        lambda r, s: r.artifact("a.md", metadata={"files": [{"tags": {"a"}}]}),
        "metadata: value of 'files'[0]['tags'] is not JSON-like "
        "(dict, list, str, number, bool or None)",
    ),
    # run.workflow_state()
    ("workflow-change-type", lambda r, s: r.workflow_state(""), "change_type: is required"),
    (
        "workflow-percentage",
        lambda r, s: r.workflow_state("phase", completion_percentage=math.inf),
        "completion_percentage: must be a finite number, got inf",
    ),
    (
        "workflow-percentage-range",
        lambda r, s: r.workflow_state("phase", completion_percentage=1000),
        "completion_percentage: must be between 0 and 100, got 1000",
    ),
    (
        "workflow-pipeline",
        lambda r, s: r.workflow_state("phase", pipeline_status={f"p{i}": True for i in range(101)}),
        "pipeline_status: has 101 entries; the limit is 100",
    ),
    (  # a JSON payload's flags ported as they were: a bare TypeError from protobuf before
        "workflow-pipeline-flag",
        lambda r, s: r.workflow_state("phase", pipeline_status={"files_processed": "yes"}),
        "pipeline_status['files_processed']: must be True or False, got 'yes'",
    ),
    (
        "workflow-pipeline-flag-number",
        lambda r, s: r.workflow_state("phase", pipeline_status={"files_processed": 1}),
        "pipeline_status['files_processed']: must be True or False, got 1",
    ),
    # run.custom()
    ("custom-type", lambda r, s: r.custom(""), "type: is required"),
    (
        "custom-type-long",
        lambda r, s: r.custom("t" * 257),
        "type: is 257 characters; the limit is 256 characters",
    ),
    (
        "custom-data-nan-deep",
        lambda r, s: r.custom("t", {"scores": [1, {"recall": math.nan}], "ok": True}),
        "data: numbers must be finite (no NaN or infinity)",
    ),
    (
        "custom-data-infinity-in-tuple",
        lambda r, s: r.custom("t", {"range": (0, "x", None, -math.inf)}),
        "data: numbers must be finite (no NaN or infinity)",
    ),
    (
        "custom-data-float-subclass",
        lambda r, s: r.custom("t", _Mapping({"n": _Float("inf")})),
        "data: numbers must be finite (no NaN or infinity)",
    ),
    (
        "custom-data-not-a-mapping",
        lambda r, s: r.custom("t", [1, 2]),  # type: ignore[arg-type]
        "data: must be a mapping (a dict), got [1, 2]",
    ),
    # starting, completing and failing steps and the run
    (
        "start-step-id",
        lambda r, s: r.start_step("not an id!"),
        f"step_id: 'not an id!' {NOT_AN_ID}",
    ),
    (
        "start-step-name",
        lambda r, s: r.start_step("extra", name="n" * 257),
        "name: is 257 characters; the limit is 256 characters",
    ),
    (
        "step-complete-summary",
        lambda r, s: s.complete("x" * 4097),
        "summary: is 4097 characters; the limit is 4096 characters",
    ),
    ("step-fail-message", lambda r, s: s.fail("  "), "message: is required"),
    (
        "run-complete-summary",
        lambda r, s: r.complete("x" * 4097),
        "summary: is 4097 characters; the limit is 4096 characters",
    ),
    ("run-fail-message", lambda r, s: r.fail(""), "message: is required"),
    (
        "run-fail-code",
        lambda r, s: r.fail("boom", code="c" * 257),
        "code: is 257 characters; the limit is 256 characters",
    ),
    # run.ask()
    (
        "ask-prompt",
        lambda r, s: r.ask("x" * 16_385, ["a", "b"]),
        "prompt: is 16385 characters; the limit is 16384 characters",
    ),
    (
        "ask-option",
        lambda r, s: r.ask("Which?", ["a" * 257, "b"]),
        "options[0].value: is 257 characters; the limit is 256 characters",
    ),
    (
        "ask-options",
        lambda r, s: r.ask("Which?", [str(i) for i in range(101)]),
        "options: has 101 entries; the limit is 100",
    ),
    (
        "ask-decision-id",
        lambda r, s: r.ask("Which?", ["a", "b"], decision_id="which one?"),
        f"decision_id: 'which one?' {NOT_AN_ID}",
    ),
    (
        "ask-decision-type",
        lambda r, s: r.ask("Which?", ["a", "b"], decision_type="t" * 257),
        "decision_type: is 257 characters; the limit is 256 characters",
    ),
    # control characters in a name (free text takes them: see the test after the limits')
    (
        "progress-sub-step-escape",
        lambda r, s: s.progress(50, "\x1b[2Jdrafting"),
        "sub_step: must not contain control characters (U+001B at 0)",
    ),
    (
        "metrics-name-newline",
        lambda r, s: r.metrics({"ctr\nfake": 1.0}),
        "values['ctr\\nfake']: must not contain control characters (U+000A at 3)",
    ),
    (
        "metrics-unit-tab",
        lambda r, s: r.metrics({"ctr": 1.0}, units={"ctr": "%\t"}),
        "units['ctr']: must not contain control characters (U+0009 at 1)",
    ),
    (
        "ask-option-bidi",
        lambda r, s: r.ask("Which?", ["safe\u202eexe.txt", "b"]),
        "options[0].value: must not contain control characters (U+202E at 4)",
    ),
    (
        "thinking-factor-bell",
        lambda r, s: r.thinking("why", factors=["cost\x07"]),
        "factors[0]: must not contain control characters (U+0007 at 4)",
    ),
    (
        "custom-type-carriage-return",
        lambda r, s: r.custom("deploy\rOK"),
        "type: must not contain control characters (U+000D at 6)",
    ),
]


@pytest.mark.parametrize(("call", "said"), [pytest.param(c, s, id=i) for i, c, s in BAD_CALLS])
async def test_a_bad_argument_fails_at_the_call_naming_it_and_nothing_is_reported(
    client: Client, call: Call, said: str
) -> None:
    """``step.progress(150)`` was queued, refused by the server later and raised by the next
    flush() as ``events[2].step_progress.percent: ...``, an index the caller never built."""
    run = await client.start_run("campaign", steps=PLAN)
    step = await run.start_step("strategy")
    await run.flush()
    head = (await client.get_run(run.run_id)).last_seq
    reported = run.events_reported

    with pytest.raises(InvalidArgumentError) as raised:
        await call(run, step)
    assert raised.value.message == said
    assert run.events_reported == reported

    # Nothing reached the server: the next good event is the next one stored, and the
    # reporter goes on to end the run without raising anything.
    await run.custom("next")
    await run.flush()
    stored = [e async for e in client.list_events(run.run_id) if e.seq > head]
    assert [(e.seq, e.kind) for e in stored] == [(head + 1, EventKind.CUSTOM)]
    await step.complete()
    await run.complete()
    await run.close()
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


async def test_arguments_at_the_limits_are_taken_by_the_sdk_and_the_server(client: Client) -> None:
    """The SDK is no stricter than the server: every value at the edge of its rule is reported
    and stored."""
    run = await client.start_run("campaign", steps=PLAN, message="m" * 4096)
    async with run:
        async with run.step("s" * 128, name="n" * 256, description="d" * 4096) as step:
            await step.progress(0)
            await step.progress(
                100,
                "s" * 256,
                detail="d" * 4096,
                tokens_processed=10**12,
                details=SubStepDetails("o" * 256, "m" * 256, datetime(1970, 1, 1, tzinfo=UTC)),
                estimated_time_remaining=timedelta(days=36_525),  # the server's 100 years
            )
            await step.metrics({f"m{i}": i for i in range(256)})
            await step.artifact("a" * 256, kind="k" * 64, uri="u" * 2048, size_bytes=0)
            step.set_summary("s" * 4096)
        await run.items(0, 0, unit="u" * 256, by_stage={"s" * 128: 0})
        await run.thinking("a" * 65_536, confidence=1, factors=["f" * 256] * 100)
        await run.thinking("", confidence=0)
        await run.model_allocation("a" * 128, "m", expected_cost_usd=0, context_window=0)
        await run.activity("", ActivityType.FAILED, agent_name="writer", step_id="s" * 128)
        await run.activity("a", ActivityType.COMPLETED, data={"blob": "x" * 100_000})
        await run.text("a" * 128, "m" * 128, "hi", final=True)
        await run.metrics({"x" * 128: 1.0}, units={"x" * 128: "u" * 32})
        await run.milestone("t" * 256, milestone_id="m" * 128)
        await run.alert("m", action=AlertActionType.PAUSE_RUN, suggested_action="l" * 256)
        await run.error_recovery("e" * 4096, attempt=0, affected_agents=["a"] * 100)
        await run.workflow_state("c" * 256, pipeline_status={"p" * 256: True})
        await run.custom("t" * 256, {"n": 1})
        await run.skip_step("web", "r" * 4096)
        await run.complete("s" * 4096)
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED
    stored = producer_events([e async for e in client.list_events(run.run_id)])
    assert len(stored) == run.events_reported + 1  # and RunCreated


async def test_free_text_keeps_its_control_characters_names_refuse_them(client: Client) -> None:
    """Messages, descriptions, analysis, streamed text and prompts are often model or tool
    output: the SDK and the server take them as written, newlines and escapes included, while
    the same characters in a name fail at the call (BAD_CALLS above)."""
    written = "line one\n\tline two \x1b[1mbold\x1b[0m \u202e"
    run = await client.start_run("campaign", steps=PLAN, message=written)
    async with run:
        async with run.step("strategy", description=written) as step:
            await step.progress(50, detail=written)
        await run.thinking(written)
        await run.model_allocation("writer", "gpt-x", reasoning=written)
        await run.text("writer", "m1", written, final=True)
        await run.alert(written, suggested_action=written)
    stored = [e async for e in client.list_events(run.run_id)]
    raws = [e.raw for e in stored]
    assert raws[1].run_started.message == written
    assert [r.step_started.description for r in raws if r.HasField("step_started")] == [written]
    assert [r.step_progress.detail for r in raws if r.HasField("step_progress")] == [written]
    assert [r.thinking.analysis for r in raws if r.HasField("thinking")] == [written]
    allocated = [r.model_allocation.reasoning for r in raws if r.HasField("model_allocation")]
    assert allocated == [written]
    assert [r.text_delta.delta for r in raws if r.HasField("text_delta")] == [written]
    alert = next(r.alert for r in raws if r.HasField("alert"))
    assert (alert.message, alert.suggested_action) == (written, written)


@pytest.mark.parametrize(
    ("key_prefix", "said"),
    [
        ("", "key_prefix: must be a non-empty string (None generates one)"),
        (
            "k" * 109,
            'key_prefix: is 109 characters; the limit is 108, so that the keys "<key_prefix>:<n>" '
            "stay within 128",
        ),
        ("replay\n1", "key_prefix: must not contain control characters (U+000A at 6)"),
        ("runstream.deadline", "key_prefix: must not start with 'runstream.' (the server's)"),
    ],
    ids=["empty", "too-long", "newline", "the-servers"],
)
async def test_a_bad_key_prefix_fails_before_the_run_is_created_or_attached(
    client: Client, key_prefix: str, said: str
) -> None:
    """An empty key_prefix was refused only after CreateRun had made the run (left PENDING),
    and one too long for the keys or holding a newline was refused by the server event by
    event, after the run was made."""
    before = [r.run_id async for r in client.list_runs()]
    with pytest.raises(InvalidArgumentError) as raised:
        await client.start_run("campaign", run_id="never-made", key_prefix=key_prefix)
    assert raised.value.message == said
    assert [r.run_id async for r in client.list_runs()] == before

    run = await client.start_run("campaign")
    await run.flush()
    with pytest.raises(InvalidArgumentError) as raised:
        await client.attach_run(run.run_id, key_prefix=key_prefix)
    assert raised.value.message == said
    await run.complete()
    await run.close()


async def test_two_targets_of_one_kind_on_one_metric_fail_start_run_naming_the_second(
    client: Client,
) -> None:
    """Found in review: start_run took them, and the metrics update that reached both
    stopped the reporter (FAILED_PRECONDITION "'target-found' already fired"), every later
    call raising it while the run stayed PENDING."""
    targets = [Target("found", 10), Target("found", 50), Target("found", 4, TargetKind.QUALITY)]
    with pytest.raises(InvalidArgumentError) as raised:
        await client.start_run("campaign", run_id="never-made", targets=targets)
    assert raised.value.message == (
        "targets[1].metric: targets[0] already declares a count target for metric 'found'; "
        "a run takes one count and one quality target per metric"
    )
    details = raised.value.details
    assert details is not None
    assert [field for field, _ in details.field_violations] == ["targets[1].metric"]
    assert [r.run_id async for r in client.list_runs()] == []


async def test_the_longest_key_prefix_reports_and_replays(client: Client) -> None:
    """108 characters leave room for ':' and any counter; its keys are stored and a
    replay under them is recognised."""
    prefix = "p" * 108
    run = await client.start_run("campaign", key_prefix=prefix)
    await run.custom("first")
    await run.close()
    again = await client.attach_run(run.run_id, key_prefix=prefix)
    await again.custom("first")  # the same event under the same key: stored once
    await again.complete()
    await again.close()
    stored = producer_events([e async for e in client.list_events(run.run_id)])
    assert [e.kind for e in stored].count(EventKind.CUSTOM) == 1
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


PLAN_IT = "plan it in CreateRun or start it with step_started"
SERVER_ONLY: list[tuple[str, Call, type[RunstreamError], str, str]] = [
    (
        "step-never-started",
        lambda r, s: r.step("nope").progress(10),
        InvalidArgumentError,
        "step.progress() of step 'nope'",
        ".step_progress.step_id: run '{run_id}' has no step 'nope'; " + PLAN_IT,
    ),
    (
        "step-completed-twice",
        lambda r, s: r.step("strategy").complete(),
        FailedPreconditionError,
        "step.complete() of step 'strategy'",
        ".step_completed: step 'strategy' already SUCCEEDED",
    ),
    (  # named step.complete() too, a call the producer never made (found in review)
        "step-completed-twice-by-report-event",
        lambda r, s: r.report_event(
            event_pb2.RunEvent(step_completed=event_pb2.StepCompleted(step_id="strategy"))
        ),
        FailedPreconditionError,
        "run.report_event() of step 'strategy'",
        ".step_completed: step 'strategy' already SUCCEEDED",
    ),
    (
        "metrics-of-an-unknown-step",
        lambda r, s: r.metrics({"x": 1}, step_id="nope"),
        InvalidArgumentError,
        "run.metrics() of step 'nope'",
        ".metrics_update.step_id: run '{run_id}' has no step 'nope'; " + PLAN_IT,
    ),
    (
        "milestone-fired-twice",
        lambda r, s: r.milestone("Again", milestone_id="half"),
        FailedPreconditionError,
        "run.milestone()",
        ".milestone.milestone_id: 'half' already fired",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "call_said", "server_said"),
    [pytest.param(c, e, cs, ss, id=i) for i, c, e, cs, ss in SERVER_ONLY],
)
async def test_a_refusal_only_the_server_can_make_names_the_call_and_its_step(
    client: Client,
    caplog: pytest.LogCaptureFixture,
    call: Call,
    error: type[RunstreamError],
    call_said: str,
    server_said: str,
) -> None:
    """The log and flush() said only ``events[0].step_progress.step_id: ...``: which of the
    run's calls reported that, the producer had to guess."""
    run = await client.start_run("campaign", steps=PLAN)
    async with run.step("strategy") as step:
        pass
    await run.milestone("Half way", milestone_id="half")
    await run.flush()

    with caplog.at_level(logging.WARNING, logger="runstream.reporter"):
        await call(run, step)  # what only the run's state on the server rules out
        with pytest.raises(error) as raised:
            await run.flush()
    message = raised.value.message
    prefix = f"{call_said}: events["
    assert message.startswith(prefix), message
    assert message.partition("]")[2] == server_said.format(run_id=run.run_id)
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert logged == [
        f"run {run.run_id}: the server refused {call_said}, the others are reported: "
        f"{error.default_code.name}: {message.removeprefix(f'{call_said}: ')}"
    ]

    await run.custom("after")  # the reporter goes on
    await run.complete()
    await run.close()
    assert (await client.get_run(run.run_id)).status == RunStatus.SUCCEEDED


def test_the_sdk_checks_the_limits_the_server_applies() -> None:
    """The SDK names each of the server's limits once (it cannot import the server): a limit
    changed on one side only fails here."""
    from runstream import _arguments as arguments  # the SDK's private module, pinned here

    def limit(field: str) -> fields.Limit:
        return fields.FIELD_LIMITS[f"{fields.PACKAGE}.{field}"]

    assert (fields.ID.chars,) * 2 == (arguments.ID_CHARS, server_events.MAX_KEY_LENGTH)
    assert fields.NAME.chars == arguments.NAME_CHARS
    assert fields.TEXT.chars == arguments.TEXT_CHARS
    assert fields.LONG_TEXT.chars == arguments.LONG_TEXT_CHARS
    assert fields.STRUCT.struct_bytes == arguments.STRUCT_BYTES
    assert (fields.NAMES.items, fields.NAMES.chars) == (arguments.NAMES_ITEMS, arguments.NAME_CHARS)
    for field in ("MetricsUpdate.values", "MetricsUpdate.units", "StepCompleted.metrics"):
        assert (limit(field).items, limit(field).key_chars) == (
            arguments.METRICS_ITEMS,
            arguments.METRIC_NAME_CHARS,
        )
    assert limit("MetricsUpdate.units").chars == arguments.UNIT_CHARS
    stages = limit("ItemProgress.by_stage")
    assert (stages.items, stages.key_chars) == (arguments.STAGES_ITEMS, arguments.STAGE_NAME_CHARS)
    pipeline = limit("WorkflowStateChange.pipeline_status")
    assert (pipeline.items, pipeline.key_chars) == (
        arguments.PIPELINE_ITEMS,
        arguments.PIPELINE_NAME_CHARS,
    )
    assert limit("Artifact.kind").chars == arguments.ARTIFACT_KIND_CHARS
    assert limit("Artifact.uri").chars == arguments.URI_CHARS
    assert limit("DecisionRequested.prompt").chars == arguments.PROMPT_CHARS
    assert limit("DecisionRequested.options").items == arguments.OPTIONS_ITEMS
    assert arguments.ID_PATTERN.pattern == server_events._ID_RE.pattern
    assert server_events.KINDS["step_progress"].ranges == (("percent", *arguments.PERCENT_RANGE),)
    assert server_events.KINDS["thinking"].ranges == (("confidence", *arguments.CONFIDENCE_RANGE),)
    assert server_events.KINDS["workflow_state_change"].ranges == (
        ("completion_percentage", *arguments.PERCENT_RANGE),
    )
    assert arguments.MAX_DURATION_SECONDS == fields._MAX_DURATION_SECONDS
    assert arguments.CONTROL.pattern == fields._CONTROL.pattern
    assert arguments.KEY_PREFIX_CHARS + len(f":{2**63 - 1}") == server_events.MAX_KEY_LENGTH
    assert arguments.MAX_DECISION_TIMEOUT_SECONDS == server_events.MAX_DECISION_TIMEOUT_SECONDS
    assert arguments.SERVER_KEY_PREFIX == server_events.SERVER_KEY_PREFIX
    assert arguments.MAX_SEQ == queries.MAX_SEQ - 1
    assert arguments.MAX_INITIAL_ENDED_LIMIT == watching_runs.MAX_INITIAL_ENDED_LIMIT


async def _first(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        return


# Reads and watches (id, the call on a run, what InvalidArgumentError says): values protobuf
# cannot carry used to escape as ValueError or OverflowError naming nothing.
BAD_READS: list[tuple[str, Callable[[Client, str], Awaitable[Any]], str]] = [
    (
        "watch-after-seq-past-int64",
        lambda c, run_id: _first(c.watch(run_id, after_seq=2**63)),
        "after_seq: must be at most 9223372036854775807, got 9223372036854775808",
    ),
    (
        "watch-after-seq-negative",
        lambda c, run_id: _first(c.watch(run_id, after_seq=-1)),
        "after_seq: must not be negative, got -1",
    ),
    (
        "watch-heartbeat-nan",
        lambda c, run_id: _first(c.watch(run_id, heartbeat_interval=math.nan)),
        "heartbeat_interval: must be a finite number, got nan",
    ),
    (
        "watch-runs-heartbeat-infinite",
        lambda c, run_id: _first(c.watch_runs(heartbeat_interval=math.inf)),
        "heartbeat_interval: must be a finite number, got inf",
    ),
    (
        "watch-runs-initial-ended-limit-zero",
        lambda c, run_id: _first(c.watch_runs(initial_ended_limit=0)),
        "initial_ended_limit: must be at least 1 (None: every run)",
    ),
    (
        "watch-runs-initial-ended-limit-past-the-servers",
        lambda c, run_id: _first(c.watch_runs(initial_ended_limit=100_001)),
        "initial_ended_limit: must be at most 100000, got 100001",
    ),
    (
        "list-runs-page-size-past-int32",
        lambda c, run_id: c.list_runs_page(page_size=2**40),
        "page_size: must be at most 2147483647, got 1099511627776",
    ),
    (
        "list-events-page-size-past-int32",
        lambda c, run_id: c.list_events_page(run_id, page_size=2**40),
        "page_size: must be at most 2147483647, got 1099511627776",
    ),
]


@pytest.mark.parametrize(("call", "said"), [pytest.param(c, s, id=i) for i, c, s in BAD_READS])
async def test_a_bad_read_or_watch_argument_fails_naming_it(
    client: Client, call: Callable[[Client, str], Awaitable[Any]], said: str
) -> None:
    run = await client.start_run("campaign", steps=PLAN)
    await run.flush()
    with pytest.raises(InvalidArgumentError) as raised:
        await call(client, run.run_id)
    assert raised.value.message == said
