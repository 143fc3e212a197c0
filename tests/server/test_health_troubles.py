"""Which troubles lower a run's health, which step they are on, and which one its reason
names: what GetRun says of a run's health as its producer reports."""

from __future__ import annotations

from runstream.v1 import run_pb2

from tests.server.conftest import BOTH_STORES, Stubs
from tests.server.support import append, create_run, ev, get_run

# What a run's health says: the commit path changes nothing here.
STORES = BOTH_STORES


def alert(severity: int, message: str, step_id: str) -> ev.RunEvent:
    said = ev.Alert(severity=severity, message=message, step_id=step_id)  # type: ignore[arg-type]
    return ev.RunEvent(alert=said)


def started(step_id: str) -> ev.RunEvent:
    return ev.RunEvent(step_started=ev.StepStarted(step_id=step_id))


def completed(step_id: str) -> ev.RunEvent:
    return ev.RunEvent(step_completed=ev.StepCompleted(step_id=step_id))


def recovering(step_id: str, message: str) -> ev.RunEvent:
    said = ev.ErrorRecovery(step_id=step_id, error_message=message, can_continue=True)
    return ev.RunEvent(error_recovery=said)


async def health(stubs: Stubs, run_id: str) -> tuple[int, str]:
    run = await get_run(stubs, run_id)
    return run.health, run.health_reason


async def test_only_a_high_or_critical_alert_degrades_the_run(stubs: Stubs) -> None:
    run = await create_run(stubs, "fetch", "write")
    await append(stubs, run.run_id, started("fetch"))
    for severity in (run_pb2.SEVERITY_INFO, run_pb2.SEVERITY_LOW, run_pb2.SEVERITY_MEDIUM):
        await append(stubs, run.run_id, alert(severity, "cache cold", "fetch"))
        assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")
    await append(stubs, run.run_id, alert(run_pb2.SEVERITY_CRITICAL, "quota low", "fetch"))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "alert: quota low")


async def test_an_alert_naming_a_finished_step_ends_with_the_next_steps_completion(
    stubs: Stubs,
) -> None:
    """The step it names will never complete again: the trouble is the run's, not stuck on
    a step done already (the run would stay DEGRADED to its end)."""
    run = await create_run(stubs, "fetch", "write")
    await append(stubs, run.run_id, started("fetch"), completed("fetch"))
    await append(stubs, run.run_id, alert(run_pb2.SEVERITY_HIGH, "late reply", "fetch"))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "alert: late reply")
    await append(stubs, run.run_id, started("write"), completed("write"))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")


async def test_the_reason_names_the_trouble_raised_last_also_on_a_step_troubled_before(
    stubs: Stubs,
) -> None:
    run = await create_run(stubs, "a", "b")
    await append(stubs, run.run_id, started("a"), started("b"), recovering("a", "first"))
    await append(stubs, run.run_id, recovering("b", "second"))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "recovering: second")
    await append(stubs, run.run_id, recovering("a", "third"))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_DEGRADED, "recovering: third")


async def test_a_run_that_succeeds_is_healthy_whatever_it_recovered_from(stubs: Stubs) -> None:
    run = await create_run(stubs, "a")
    await append(stubs, run.run_id, started("a"), recovering("a", "retrying the upload"))
    assert (await health(stubs, run.run_id))[0] == run_pb2.RUN_HEALTH_DEGRADED
    await append(stubs, run.run_id, ev.RunEvent(run_completed=ev.RunCompleted()))
    assert await health(stubs, run.run_id) == (run_pb2.RUN_HEALTH_HEALTHY, "")
