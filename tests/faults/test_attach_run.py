"""A producer process that restarts continues its run with ``client.attach_run``.

Issue 8, item 16: after a crash the SDK had no way to attach to an existing run, so the run
could only be abandoned. Here a real producer process is SIGKILLed while it waits for an
answer; the run is paused meanwhile; a new process attaches, learns the run's last seq, the
open question and the pause, replays the same calls under the same key prefix, gets the
answer to the question asked by the dead process, and finishes the run. The log holds every
event once.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
import runstream
from runstream import Custom, EventKind
from runstream_server.app import RunstreamServer

from tests.conftest import ROOT


class Producer:
    """tests/faults/attach_producer.py as a real process, read line by line."""

    def __init__(self, target: str, run_id: str, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.attach_producer", target, run_id, mode],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def next_line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60)
        if not line:
            assert self.process.stderr is not None
            raise AssertionError(f"producer ended: {self.process.stderr.read()}")
        message: dict[str, Any] = json.loads(line)
        return message

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        self.kill()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


async def test_a_restarted_producer_attaches_and_finishes_the_run(
    server: RunstreamServer,
) -> None:
    run_id = "attached-run"
    async with runstream.connect(server.target) as client:
        first = Producer(server.target, run_id, "start")
        try:
            assert (await first.next_line())["stage"] == "asking"

            async def asked() -> bool:
                decisions = await client.list_decisions(run_id)
                return [d.decision_id for d in decisions if d.is_open] == ["persona"]

            for _ in range(400):
                if await asked():
                    break
                await asyncio.sleep(0.05)
            assert await asked()
        finally:
            first.close()  # SIGKILL while it waits for the answer
        before = await client.get_run(run_id)
        await client.pause_run(run_id, reason="checking", requested_by="ops")

        second = Producer(server.target, run_id, "attach")
        try:
            attached = await second.next_line()
            assert attached == {
                "stage": "attached",
                "last_seq": (await client.get_run(run_id)).last_seq,
                "paused": True,
                "open": ["persona"],
            }
            assert attached["last_seq"] >= before.last_seq
            assert (await second.next_line())["stage"] == "asking"
            await client.submit_decision(run_id, "persona", "pros", answered_by="ana")
            assert await second.next_line() == {"stage": "answered", "choice": "pros"}
            # Paused: the producer holds at its next boundary until the run is resumed.
            assert (await client.get_run(run_id)).status == runstream.RunStatus.PAUSED
            await client.resume_run(run_id, requested_by="ops")
            done = await second.next_line()
            assert done["stage"] == "done"
            assert await asyncio.to_thread(second.process.wait, 30) == 0
        finally:
            second.close()

        events = [e async for e in client.watch(run_id)]
        run = await client.get_run(run_id)

    assert run.status == runstream.RunStatus.SUCCEEDED
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    ticks = [e.payload for e in events if isinstance(e.payload, Custom)]
    assert [(t.type, t.data["i"]) for t in ticks] == [("prep", i) for i in range(20)] + [
        ("after", i) for i in range(10)
    ]
    assert all(t.data["choice"] == "pros" for t in ticks if t.type == "after")
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.RUN_STARTED) == 1
    assert kinds.count(EventKind.DECISION_REQUESTED) == 1
    assert kinds.count(EventKind.RUN_COMPLETED) == 1
    keys = [e.idempotency_key for e in events if e.idempotency_key]
    assert len(keys) == len(set(keys))
    assert all(key.startswith("attach-test-worker:") for key in keys)


@pytest.mark.parametrize("ending", ["complete", "cancel"])
async def test_attaching_to_an_ended_run_is_refused(server: RunstreamServer, ending: str) -> None:
    async with runstream.connect(server.target) as client:
        run = await client.start_run("attach")
        if ending == "complete":
            await run.complete("done")
            expected: type[runstream.RunstreamError] = runstream.FailedPreconditionError
        else:
            await client.cancel_run(run.run_id, reason="stop")
            expected = runstream.RunCancelledError
        await run.close()
        with pytest.raises(expected):
            await client.attach_run(run.run_id)
        with pytest.raises(runstream.NotFoundError):
            await client.attach_run("no-such-run")


async def test_attaching_to_a_running_run_returns_and_reports_on(server: RunstreamServer) -> None:
    """The run is neither paused nor waiting: nothing but the attach acknowledgement comes
    back, and attach_run returns on it (it used to wait for a control message forever)."""
    async with runstream.connect(server.target) as client:
        first = await client.start_run("attach", steps=["a"])
        await first.flush()
        await first.close()  # what a producer that died leaves: a RUNNING run
        async with await asyncio.wait_for(client.attach_run(first.run_id), 10) as attached:
            async with attached.step("a"):
                pass
            await attached.complete("done")
        finished = await client.get_run(first.run_id)
        assert finished.status == runstream.RunStatus.SUCCEEDED


async def test_a_replayed_event_leaves_the_attached_reporters_last_seq_where_it_was(
    server: RunstreamServer,
) -> None:
    """A replay's first events are acknowledged as duplicates at their old seqs: the
    reporter's ``last_seq`` (at least the run's last seq when it attached) must not go back
    to them."""
    async with runstream.connect(server.target) as client:
        first = await client.start_run("attach", key_prefix="replayed")
        for name in ("a", "b", "c"):
            await first.custom(name, {})
        await first.flush()
        head = first.last_seq
        await first.close()  # what a producer that died leaves: a RUNNING run
        attached = await client.attach_run(first.run_id, key_prefix="replayed")
        await attached.custom("a", {})  # stored already, under the same key
        await attached.flush()
        assert attached.last_seq >= head
        await attached.close()
