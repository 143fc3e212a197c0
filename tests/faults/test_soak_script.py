"""scripts/soak.py, the chaos soak run by hand: it refuses values that make no soak, and
Ctrl-C or SIGTERM end it in one line with every process it started stopped.

The soak itself runs for minutes; these tests start its SQLite mode (one `runstream serve`)
on a port of this worker's own rather than its fixed one, and stop it as soon as it runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import free_port

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"

# soak.py as `python scripts/soak.py` runs it, on a port given here instead of its fixed one.
ON_A_PORT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import soak
soak.SQLITE_PORT = int(sys.argv[2])
sys.exit(asyncio.run(soak.main(sys.argv[3:])))
"""


@pytest.fixture(scope="module")
def soak() -> Iterator[ModuleType]:
    """scripts/soak.py imported (its dataclasses want it in sys.modules as they are made)."""
    spec = importlib.util.spec_from_file_location("scripts_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--minutes", "0", "expected more than 0, got 0"),
        ("--minutes", "-1", "expected more than 0, got -1"),
        ("--minutes", "nan", "expected a finite number, got nan"),
        ("--producers", "0", "expected at least 1, got 0"),
        ("--pace", "-1", "expected at least 0, got -1"),
        ("--drain", "inf", "expected a finite number, got inf"),
        ("--producers", "2.5", "expected a whole number, got '2.5'"),
    ],
)
def test_soak_refuses_a_value_that_makes_no_soak_naming_the_option(
    soak: ModuleType, option: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--minutes 0`, `-1` and `nan` each ran the shortest round and reported success."""
    with pytest.raises(SystemExit) as exited:
        soak.parse_args([option, value])
    assert exited.value.code == 2
    assert f"argument {option}: {said}" in capsys.readouterr().err


def test_soak_takes_the_least_value_each_option_allows(soak: ModuleType) -> None:
    """One producer, no pause between events, no drain: a soak still, at each bound."""
    args = soak.parse_args(["--minutes", "0.5", "--producers", "1", "--pace", "0", "--drain", "0"])
    assert (args.minutes, args.producers, args.pace, args.drain) == (0.5, 1, 0, 0)
    assert isinstance(args.producers, int)


@pytest.mark.timeout(120)
def test_ctrl_c_and_sigterm_end_the_soak_in_one_line_with_its_server_stopped(
    tmp_path: Path,
) -> None:
    """Both ended in a CancelledError traceback (Ctrl-C a KeyboardInterrupt one as well)."""
    for signum, code, said in (
        (signal.SIGTERM, 143, "terminated"),
        (signal.SIGINT, 130, "interrupted"),
    ):
        port = free_port()
        workdir = tmp_path / signum.name
        argv = ["--mode", "sqlite", "--minutes", "5", "--seed", "7", "--workdir", str(workdir)]
        command = [sys.executable, "-c", ON_A_PORT, str(SOAK.parent), str(port), *argv]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            watchdog = threading.Timer(90, process.kill)
            watchdog.start()
            try:
                assert process.stdout is not None and process.stderr is not None
                started = process.stdout.readline()  # printed once its server listens
                assert started.startswith("soak: sqlite, 1 server(s)"), started
                process.send_signal(signum)
                out, err = process.communicate()
            finally:
                watchdog.cancel()
                process.kill()
        assert "Traceback" not in err, err
        assert process.returncode == code, (out, err)
        last = out.strip().splitlines()[-1]
        assert last == f"soak: {said}; the processes it started are stopped; logs in {workdir}"
        with pytest.raises(ConnectionRefusedError):  # its server is gone
            socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_sigterm_as_the_soak_starts_its_server_stops_that_server_too(tmp_path: Path) -> None:
    """A signal while the servers started cancelled the soak before the try whose finally
    stops them, so the one starting was left running on the soak's port."""
    port = free_port()
    argv = ["--mode", "sqlite", "--minutes", "5", "--seed", "7", "--workdir", str(tmp_path)]
    command = [sys.executable, "-c", ON_A_PORT, str(SOAK.parent), str(port), *argv]
    log = tmp_path / "sqlite.log"  # written as its server is started, before it listens
    # Its own session, so that the finally below also ends a server the soak left behind.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            deadline = time.monotonic() + 60
            while not log.exists():
                assert process.poll() is None and time.monotonic() < deadline, "no server started"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):  # none left: the soak's own doing
                os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in err, err
    assert process.returncode == 143, (out, err)
    assert out.strip().splitlines()[-1].startswith("soak: terminated;"), out
    assert "--- soak: SIGKILL" in log.read_text()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
