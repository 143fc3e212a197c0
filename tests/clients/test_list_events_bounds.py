"""``list_events``' bounds at their edges: ``after_seq=1`` leaves out the first event, and
``kinds`` given as one number, not a list, is refused naming it."""

from __future__ import annotations

import pytest
from runstream import Client, InvalidArgumentError


async def test_after_seq_1_leaves_out_the_first_event_only(client: Client) -> None:
    run = await client.start_run("campaign")
    for n in range(3):
        await run.custom("tick", {"n": n})
    await run.flush()
    every = [e.seq async for e in client.list_events(run.run_id)]
    assert every[0] == 1
    assert [e.seq async for e in client.list_events(run.run_id, after_seq=1)] == every[1:]
    page, _ = await client.list_events_page(run.run_id, after_seq=1)
    assert [e.seq for e in page] == every[1:]


async def test_kinds_given_as_one_number_is_invalid_argument_naming_it(client: Client) -> None:
    run = await client.start_run("campaign")
    with pytest.raises(InvalidArgumentError) as listing:
        [event async for event in client.list_events(run.run_id, kinds=5)]  # type: ignore[arg-type]
    assert listing.value.message == "kinds: must be a list of EventKind, not 5"
