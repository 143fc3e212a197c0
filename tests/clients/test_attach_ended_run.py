"""``attach_run()`` on a run that already ended says how it ended, as documented:
RunCancelledError with the operator's reason for a cancelled run, FailedPreconditionError
naming the status for one that succeeded or failed."""

from __future__ import annotations

import pytest
from runstream import Client, FailedPreconditionError, RunCancelledError


async def test_attaching_to_a_cancelled_run_raises_run_cancelled_with_its_reason(
    client: Client,
) -> None:
    run = await client.start_run("campaign")
    await run.flush()
    await client.cancel_run(run.run_id, reason="budget spent")
    with pytest.raises(RunCancelledError) as cancelled:
        await client.attach_run(run.run_id)
    assert (cancelled.value.run_id, cancelled.value.reason) == (run.run_id, "budget spent")
    await run.close()


@pytest.mark.parametrize("ending", ["SUCCEEDED", "FAILED"])
async def test_attaching_to_a_run_that_ended_names_how_it_ended(
    client: Client, ending: str
) -> None:
    run = await client.start_run("campaign")
    if ending == "FAILED":
        await run.fail("the model is down")
    else:
        await run.complete()
    await run.close()
    with pytest.raises(FailedPreconditionError) as ended:
        await client.attach_run(run.run_id)
    assert not isinstance(ended.value, RunCancelledError)
    assert ended.value.message == (
        f"run {run.run_id!r} already ended ({ending}); nothing can be reported"
    )
