"""A write the store applied without the server hearing its answer (a Redis that took the
command, then stopped answering and woke after the server's timeout): the caller is told
UNAVAILABLE, "may still be applied", and is advised to read the run before repeating the
change. That read must tell what the log holds, not what this process held before the write
(the store's notice of the write, which would correct it, can come after the read). The lost
answer is forced: the real store's append runs, then the call raises as a timed-out one
does (a frozen Redis runs such a command on waking only sometimes)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
from runstream.v1 import run_pb2, run_service_pb2
from runstream_server.errors import Unavailable
from runstream_server.observability import ObservedStore
from runstream_server.store.base import StoredEvent

from tests.server.conftest import BOTH_STORES, Stubs

STORES = BOTH_STORES


@pytest.fixture
def unanswered(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Run ids whose next append is stored, then answered UNAVAILABLE."""
    runs: set[str] = set()
    append = ObservedStore.append

    async def stored_unanswered(
        self: ObservedStore,
        run_id: str,
        events: Sequence[StoredEvent],
        snapshot: run_pb2.Run,
        *,
        expected_seq: int,
        encoded: bytes | None = None,
    ) -> None:
        await append(self, run_id, events, snapshot, expected_seq=expected_seq, encoded=encoded)
        if run_id in runs:
            runs.discard(run_id)
            raise Unavailable("no answer in time; a change may still be applied")

    monkeypatch.setattr(ObservedStore, "append", stored_unanswered)
    return runs


async def _created(stubs: Stubs) -> str:
    created = await stubs.runs.CreateRun(run_service_pb2.CreateRunRequest(workflow="wf"))
    return created.run.run_id


async def _cancel_unanswered(stubs: Stubs, run_id: str, unanswered: set[str]) -> None:
    unanswered.add(run_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs.runs.CancelRun(run_service_pb2.CancelRunRequest(run_id=run_id))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_run_read_after_an_unanswered_cancel_is_cancelled(
    stubs: Stubs, unanswered: set[str]
) -> None:
    run_id = await _created(stubs)
    await _cancel_unanswered(stubs, run_id, unanswered)
    # As the status advises, the run is read before the cancel is repeated: it says so.
    got = await stubs.runs.GetRun(run_service_pb2.GetRunRequest(run_id=run_id))
    assert got.run.status == run_pb2.RUN_STATUS_CANCELLED
    assert got.run.last_seq == 2
