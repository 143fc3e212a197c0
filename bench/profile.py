"""Where the CPU goes at real-time rates: py-spy profiles, summarised as top functions.

    .venv/bin/python bench/profile.py server     # the server, 100 watchers x 100 events/s
    .venv/bin/python bench/profile.py message    # the server, one event per message, 1 watcher
    .venv/bin/python bench/profile.py producer   # the SDK producer at 200 events/s
    .venv/bin/python bench/profile.py summary FILE  # top lines of a raw py-spy profile

Each prints the functions with the most samples on top of the stack ("self") and the ones
most often anywhere on it ("total"), as shares of all samples, including the time the
process sat idle in the event loop's poll (shown as such).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import harness

FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _label(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "runstream_server/", "runstream/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['name']} ({file})"


IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "poll ", "select ")


def _is_python(frame: str) -> bool:
    return ".py)" in frame


def summary(raw: Path, top: int = 25) -> str:
    """Top lines of the main thread's busy samples (idle waits in the poll left out)."""
    python_self: Counter[str] = Counter()
    native_self: Counter[str] = Counter()
    python_total: Counter[str] = Counter()
    main = busy = others = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if f]
        if not any(f.startswith("Runner.run ") for f in frames):
            others += count  # grpc's and the store's threads
            continue
        main += count
        if frames[-1].startswith(IDLE_LEAVES):
            continue
        busy += count
        native_self[frames[-1]] += count
        python = [f for f in frames if _is_python(f)]
        if python:
            python_self[python[-1]] += count
        for frame in set(python):
            python_total[frame] += count
    out = [
        f"main thread: {main} samples, {busy} busy ({100 * busy / max(1, main):.0f}%); "
        f"other threads: {others} samples; shares below are of busy main-thread samples"
    ]
    for title, counter in (
        ("innermost Python function", python_self),
        ("innermost frame (native included)", native_self),
        ("Python function anywhere on the stack", python_total),
    ):
        out.append(f"  -- top {top} by {title}")
        for frame, count in counter.most_common(top):
            out.append(f"  {100 * count / max(1, busy):5.1f}%  {frame}")
    return "\n".join(out)


def profile_server(
    out: Path, watchers: int, rate: float, seconds: float, *, sync: str = "FULL"
) -> None:
    count = int(rate * seconds) if rate else int(2_000 * seconds)
    with harness.server("runstream", profile=out, sync=sync) as srv:
        result = harness.open_loop(srv, watchers=watchers, rate=rate, count=count, closed=not rate)
    print(
        f"server at {watchers} x {rate:g}/s: p50 {result.latency.get('p50', 0):.1f} ms, "
        f"p99 {result.latency.get('p99', 0):.1f} ms, server core {100 * result.server_busy:.0f}%"
    )


def profile_producer(out: Path, rate: float, seconds: float) -> None:
    with harness.server("runstream") as srv:
        argv = harness.producer_argv(srv, rate, int(rate * seconds))
        pyspy = str(Path(sys.executable).parent / "py-spy")
        argv = [
            pyspy,
            "record",
            "--native",
            "--idle",
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--",
            *argv,
        ]
        with harness.spawn(argv, None) as producer:
            producer.read()
            producer.send("go")
            done = producer.read(600)
            producer.process.wait(60)
    per_event = done["cpu"] / int(rate * seconds) * 1e6
    print(f"producer at {rate:g}/s: {per_event:.0f} us CPU per event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["server", "message", "producer", "summary"])
    parser.add_argument("file", nargs="?", type=Path)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.what == "summary":
        print(summary(args.file, args.top))
        return
    out = args.file or Path(tempfile.mkdtemp()) / f"{args.what}.txt"
    if args.what == "server":
        profile_server(out, 100, 100, args.seconds)
    elif args.what == "message":  # one event per message, closed loop, as bench/run.py's
        profile_server(out, 1, 0, args.seconds, sync="NORMAL")
    else:
        profile_producer(out, 200, args.seconds)
    print(f"raw profile: {out}")
    print(summary(out, args.top))


if __name__ == "__main__":
    main()
