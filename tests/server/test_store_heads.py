"""The store's heads of many runs in one read, on every store: what a replica on Redis
compares the runs it holds with after a gap in its notices (tests/faults/test_replica_resync.py
checks the resync itself)."""

from __future__ import annotations

from typing import Any

from runstream_server.app import RunstreamServer

from tests.server.support import append, create_run, custom


async def test_heads_are_the_stored_last_seqs_and_unknown_runs_are_left_out(
    server: RunstreamServer, stubs: Any
) -> None:
    quiet = await create_run(stubs)
    busy = await create_run(stubs)
    acked = await append(stubs, busy.run_id, custom(1), custom(2), custom(3))
    store = server._store
    assert store is not None

    # More unknown runs than the SQLite store reads in one query, a run asked for twice.
    unknown = [f"never-created-{n}" for n in range(600)]
    heads = await store.heads([*unknown, quiet.run_id, busy.run_id, quiet.run_id])

    assert heads == {quiet.run_id: quiet.last_seq, busy.run_id: acked.last_seq}
    assert acked.last_seq == busy.last_seq + 3
    assert await store.heads([]) == {}
