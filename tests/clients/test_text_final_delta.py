"""``run.text(..., "", final=True)`` ends a streamed message with an empty delta that carries
``final``: the message's end reaches the watchers though there is no more text."""

from __future__ import annotations

from runstream import Client, EventKind, TextDelta

from tests.clients.test_decisions import log_of


async def test_an_empty_final_delta_is_reported(client: Client) -> None:
    run = await client.start_run("writer")
    await run.text("writer", "m1", "Hello")
    await run.text("writer", "m1", "", final=True)
    await run.complete()
    await run.close()
    deltas = [e.payload for e in await log_of(client, run.run_id) if e.kind == EventKind.TEXT_DELTA]
    assert [(d.delta, d.final) for d in deltas if isinstance(d, TextDelta)] == [
        ("Hello", False),
        ("", True),
    ]
