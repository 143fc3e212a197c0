"""A producer process that exits from a task other than the one inside ``async with run:``.

    python -m tests.faults.exiting_producer TARGET exit|interrupt|unclosed|cleanup

It starts a run and prints its id, then, from a task of its own (every LangGraph node runs
in one), reports EVENTS events and at once calls ``sys.exit(3)`` or raises
KeyboardInterrupt. The exception leaves ``asyncio.run`` from that task, and asyncio.run
cancels every task left, the reporter's stream task among them, before ``async with run:``
ends in the cancelled main task. ``unclosed`` reports EVENTS events, which linger, and
returns from ``main()`` at once, closing neither its reporter nor its client: asyncio.run
cancels the stream task with them unsent. ``cleanup`` exits as ``exit`` does, and the main
task, cancelled inside ``async with run:``, cleans up for a while (the stream task has
delivered what waited and ended by then) and reports one more event before the block ends.
"""

from __future__ import annotations

import asyncio
import sys

import runstream

EVENTS = 50
EXIT_STATUS = 3
CLEANUP = 0.5


async def main(target: str, how: str) -> None:
    if how == "unclosed":
        await unclosed(target)
        return
    async with runstream.connect(target, reconnect_timeout=5) as client:
        run = await client.start_run("exiting")
        print(run.run_id, flush=True)
        async with run:
            try:
                await asyncio.create_task(work(run, how))
            except asyncio.CancelledError:
                if how == "cleanup":
                    await asyncio.sleep(CLEANUP)
                    await run.custom("cleaned up", {"i": EVENTS})
                raise


async def work(run: runstream.RunReporter, how: str) -> None:
    for i in range(EVENTS):
        await run.custom("tick", {"i": i})
    if how in ("exit", "cleanup"):
        sys.exit(EXIT_STATUS)
    raise KeyboardInterrupt


async def unclosed(target: str) -> None:
    client = runstream.connect(target, reconnect_timeout=5)
    # With a linger, the events are still queued when main() returns.
    run = await client.start_run("exiting", linger=30)
    print(run.run_id, flush=True)
    await run.flush()  # the stream is open: what follows waits only to be sent
    for i in range(EVENTS):
        await run.custom("tick", {"i": i})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
