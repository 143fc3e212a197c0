"""How long a replica on Redis takes to check every run it holds after a gap in notices:
figures, never pass/fail.

When a replica's subscription to commit notices breaks (a Redis restart, a network blip),
it may have missed commits of other replicas, so it checks each run it holds in memory
against the store; the notices that arrive meanwhile wait for the whole check. This holds N
runs in one in-process server on a real redis-server and times that resync, in alternating
rounds: reading each run's snapshot, 32 at once (as before), and the server's resync, which
reads the heads of many runs in each round trip. No run moved during the gap here, the
common case: a run that did is caught up the same way in both.

    .venv/bin/python bench/resync.py                 # 2,000 and 10,000 runs, ~1 minute
    .venv/bin/python bench/resync.py --runs 500 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src/server"), str(ROOT / "src/clients/python")]

from runstream.cli.replicas import redis_server  # noqa: E402
from runstream_server.app import RunstreamServer, ServerConfig  # noqa: E402
from runstream_server.domain.runs import Limits  # noqa: E402


async def _resyncs(url: str, runs: int, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per resync of `runs` held runs, each way."""
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            address="127.0.0.1:0",
            store_path=Path(tmp) / "unused.db",
            store_url=f"{url}?prefix=resync{runs}",
            limits=Limits(cached_runs=runs + 10),
        )
        server = RunstreamServer(config)
        await server.start()
        try:
            manager = server.runs
            assert manager is not None
            for start in range(0, runs, 100):
                await asyncio.gather(
                    *(
                        manager.create_run(
                            run_id=f"r{i}", workflow="wf", display_name="", labels={}, steps=[]
                        )
                        for i in range(start, min(runs, start + 100))
                    )
                )
            notices, ledger, store = manager._notices, manager._ledger, server._store
            assert store is not None

            async def snapshots() -> None:  # the resync before: each run's snapshot
                held = ledger.held_runs()
                for start in range(0, len(held), 32):
                    await asyncio.gather(
                        *(store.load_run(run_id) for run_id, _ in held[start : start + 32])
                    )

            async def heads() -> None:  # the server's resync, after a gap that began now
                await notices._resync(notices._now_us())

            took: dict[str, list[float]] = {"snapshots": [], "heads": []}
            for _ in range(rounds):
                for way, resync in (("snapshots", snapshots), ("heads", heads)):
                    begun = time.perf_counter()
                    await resync()
                    took[way].append((time.perf_counter() - begun) * 1000)
            return took
        finally:
            await server.stop(grace=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[2_000, 10_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp), fsync="everysec") as url:
        print(
            "| held runs | each snapshot, 32 at once (before): median (min-max) "
            "| heads (now) | ratio |"
        )
        print("|---|---|---|---|")
        for runs in args.runs:
            took = asyncio.run(_resyncs(url, runs, args.rounds))
            before, now = took["snapshots"], took["heads"]
            print(
                f"| {runs:,} | {statistics.median(before):.0f} ms ({min(before):.0f}-"
                f"{max(before):.0f}) | {statistics.median(now):.0f} ms "
                f"({min(now):.0f}-{max(now):.0f}) | "
                f"{statistics.median(before) / statistics.median(now):.1f}x |"
            )


if __name__ == "__main__":
    main()
