"""Real storage faults for tests: a small tmpfs to fill up, a file system to make read-only,
immutable files, an unprivileged user to whom file permissions apply, `runstream serve` as a
process, and the health answer that follows the store."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

NOBODY = 65534


@contextlib.contextmanager
def small_filesystem(size: str = "8m") -> Iterator[Path]:
    """A fresh tmpfs of `size`, mounted for the test and unmounted after (needs root)."""
    mount_point = Path(tempfile.mkdtemp(prefix="runstream-fs-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        with contextlib.suppress(OSError):
            mount_point.rmdir()


def remount(mount_point: Path, mode: str) -> None:
    """Remounts the tmpfs `ro` or `rw` (possible only while no file on it is open to write)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Writes a file into `directory` until its file system has no space left; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    with open(filler, "ab", buffering=0) as out:  # the last partial chunk's worth, too
        for _ in range(16):
            with contextlib.suppress(OSError):
                out.write(b"\0" * 4096)
    return filler


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Makes files immutable (``chattr +i``) for the block: even writes through descriptors
    already open fail, as when a running server loses write access. Needs root and a file
    system with the attribute (ext4 here)."""
    done = subprocess.run(
        ["chattr", "+i", *map(str, paths)], capture_output=True, text=True, check=False
    )
    try:
        if done.returncode != 0:
            pytest.skip(f"cannot make files immutable here: {done.stderr.strip()}")
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True, check=False)


@contextlib.contextmanager
def nobody_dir() -> Iterator[Path]:
    """A directory owned by the unprivileged user `nobody`, who file permissions apply to."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run the server as an unprivileged user")
    directory = Path(tempfile.mkdtemp(prefix="runstream-nobody-"))
    os.chown(directory, NOBODY, NOBODY)
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Refusal:
    """What a `runstream serve` that was expected to refuse to start did."""

    returncode: int
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stderr.strip().splitlines()[-1] if self.stderr.strip() else ""


def serve_refuses(store: str, *options: str, as_nobody: bool = False, address: str = "") -> Refusal:
    """Runs `runstream serve --store store [options]` and returns how it exited (it must
    exit)."""
    argv: Sequence[str] = [
        sys.executable,
        "-m",
        "runstream.cli.main",
        "serve",
        "--address",
        address or "127.0.0.1:0",
        "--store",
        store,
        "--log-level",
        "warning",
        *options,
    ]
    if as_nobody:
        argv = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            *argv,
        ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return Refusal(done.returncode, done.stderr)


async def health(channel: grpc.aio.Channel) -> int:
    """The server's overall health status (SERVING, NOT_SERVING)."""
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    return int(response.status)


async def until_health(channel: grpc.aio.Channel, wanted: int) -> None:
    for _ in range(400):
        if await health(channel) == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never became {wanted}")
