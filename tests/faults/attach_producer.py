"""A producer process for the attach test: run it, kill it, run it again with ``attach``.

    python -m tests.faults.attach_producer TARGET RUN_ID start|attach

It reports 20 "prep" events, asks a question with a fixed decision id, then 10 "after"
events and completes. With ``attach`` it continues the run with ``attach_run`` and the same
key prefix, replaying the same calls: the events already stored are acknowledged as the
duplicates they are, and the question already asked is waited for, not asked again. Each
stage prints one JSON line on stdout for the test to follow.
"""

from __future__ import annotations

import asyncio
import json
import sys

import runstream

KEY_PREFIX = "attach-test-worker"


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(target: str, run_id: str, mode: str) -> None:
    async with runstream.connect(target, reconnect_timeout=30) as client:
        if mode == "start":
            run = await client.start_run("attach", run_id=run_id, key_prefix=KEY_PREFIX)
        else:
            run = await client.attach_run(run_id, key_prefix=KEY_PREFIX)
            say(
                stage="attached",
                last_seq=run.last_seq,
                paused=run.paused,
                open=[d.decision_id for d in run.open_decisions],
            )
        async with run:
            for i in range(20):
                await run.custom("prep", {"i": i})
            await run.flush()
            say(stage="asking", acked=run.events_acknowledged)
            result = await run.ask("Which persona?", ["gen_z", "pros"], decision_id="persona")
            say(stage="answered", choice=result.choice)
            await run.wait_if_paused()
            for i in range(10):
                await run.custom("after", {"i": i, "choice": result.choice})
            await run.complete("done")
        say(stage="done", last_seq=run.last_seq)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
