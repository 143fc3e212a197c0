"""Instructions per event, counted by callgrind: a figure that does not move with the machine.

Server CPU per delivery (``message``, ``ingest``) moves from day to day with how busy this
kind of machine is, often by more than a change does. Callgrind counts the instructions a
process executes in user space, the same for the same work whatever else runs beside it, so
two versions of the server can be compared on any day. It does not count the kernel's work
(sockets, wake-ups, the disk), which both servers share, nor what an instruction costs (cache
misses): it says how much work the code asks of the processor, not how long that takes.

Each server runs under ``valgrind --tool=callgrind`` with counting off, so it starts at
nearly full speed; counting is switched on for a measured loop (report one event, wait for
the ack, repeat), the counters are dumped, and the difference between a short and a long
loop, divided by the events between them, is the figure per event: what a run's start, a
watcher's connection and the stream's setup cost falls out of it. Each loop is a run of its
own, of one workflow, after an uncounted first run: every run counted has its workflow's
history, as a workflow run again and again does (its estimate is made again on batches),
where the ``message`` scenario's runs are each their server's first.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import harness

COUNTS = (200, 600)
"""Events in the short and the long loop; callgrind runs a server about 30 times slower."""


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


class Counted:
    """A server running under callgrind, counting only while :meth:`loop` runs."""

    def __init__(self, srv: harness.Server, out: Path) -> None:
        self.srv = srv
        self.out = out
        self.dumps = 0

    def _control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.srv.pid)], capture_output=True, check=True
        )

    def _count(self, on: bool) -> None:
        if on:
            self._control("--zero")
        self._control("--instr=on" if on else "--instr=off")

    def loop(self, count: int, watchers: int, steps: int = 0) -> int:
        """Instructions the server executed in one closed loop of `count` events (into a run
        of `steps` planned steps, a third of them done and up to three running)."""
        harness.open_loop(
            self.srv,
            watchers=watchers,
            rate=0,
            count=count,
            closed=True,
            window=self._count,
            steps=steps,
        )
        self._control(f"--dump=loop{count}")
        self.dumps += 1
        dump = Path(f"{self.out}.{self.srv.pid}.{self.dumps}")
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {dump}")

    def per_event(self, watchers: int, steps: int = 0) -> float:
        short, long = (self.loop(count, watchers, steps) for count in COUNTS)
        return (long - short) / (COUNTS[1] - COUNTS[0])


@contextmanager
def counted(system: str, sync: str = "NORMAL") -> Iterator[Counted]:
    """`system` (as harness.server takes it) under callgrind, on the server's core."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        store = str(Path(tmp) / "bench.db")
        port = harness.free_port()
        argv = harness.server_argv(system, port, sync, store, (), None)
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}.%p",
            *argv,
        ]
        with harness.spawn(argv, harness.SERVER_CPU, quiet=True) as proc:
            harness.wait_for_port(port, 180, proc=proc)
            srv = harness.Server(proc.pid, system, f"127.0.0.1:{port}")
            harness.open_loop(srv, watchers=0, rate=0, count=50, closed=True)  # the history
            yield Counted(srv, out)


def per_event(system: str, watchers: int) -> float:
    with counted(system) as server:
        return server.per_event(watchers)


if __name__ == "__main__":  # one figure: instructions.py runstream|baseline [watchers]
    watchers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    print(f"{per_event(sys.argv[1], watchers) / 1000:.0f} k instructions per event")
