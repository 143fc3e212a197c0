"""How long a replica on Redis takes to check every run it holds after a gap in notices:
figures, never pass/fail.

When a replica's subscription to commit notices breaks (a Redis restart, a network blip),
it may have missed commits of other replicas, so it checks each run it holds in memory
against the store; the notices that arrive meanwhile wait for the whole check. This holds N
runs in one in-process server on a real redis-server and times that resync, in alternating
rounds, one run at a time (as before) and the server's default number at once.

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
from runstream_server.domain import following  # noqa: E402
from runstream_server.domain.runs import Limits  # noqa: E402


async def _resyncs(url: str, runs: int, rounds: int) -> dict[int, list[float]]:
    """Milliseconds per resync of `runs` held runs, by how many are checked at once."""
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
            notices = manager._notices
            default = following._RESYNC_AT_ONCE
            took: dict[int, list[float]] = {1: [], default: []}
            for _ in range(rounds):
                for at_once in took:
                    following._RESYNC_AT_ONCE = at_once
                    begun = time.perf_counter()
                    await notices._resync()
                    took[at_once].append((time.perf_counter() - begun) * 1000)
            following._RESYNC_AT_ONCE = default
            return took
        finally:
            await server.stop(grace=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[2_000, 10_000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp), fsync="everysec") as url:
        print("| held runs | one at a time: median (min-max) | at once (default) | ratio |")
        print("|---|---|---|---|")
        for runs in args.runs:
            took = asyncio.run(_resyncs(url, runs, args.rounds))
            (_, alone), (many, together) = took.items()
            print(
                f"| {runs:,} | {statistics.median(alone):.0f} ms ({min(alone):.0f}-"
                f"{max(alone):.0f}) | {statistics.median(together):.0f} ms "
                f"({min(together):.0f}-{max(together):.0f}), {many} at once | "
                f"{statistics.median(alone) / statistics.median(together):.2f}x |"
            )


if __name__ == "__main__":
    main()
