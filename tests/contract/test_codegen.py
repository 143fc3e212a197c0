"""The committed generated Python is exactly what scripts/gen.sh makes from protos/.

Other teams generate their stubs from the protos, while Python users import the committed
code: if the two drift, they speak different contracts. The check runs the project's own
generator (scripts/gen.sh and the SDK's scripts/gen_sdk_events.py, copied with protos/ into a
temporary tree so the work tree is never touched), then compares every generated file byte
for byte: the stubs in runstream/v1 and the SDK's event payload types, runstream/_events.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = Path("src/clients/python/runstream")
PATTERNS = ("v1/*_pb2.py", "v1/*_pb2.pyi", "v1/*_pb2_grpc.py", "_events.py")
GENERATORS = ("gen.sh", "gen_sdk_events.py")


def generated_files(tree: Path) -> dict[str, bytes]:
    """The generated files under `tree`'s runstream package, by path in it (v1/run_pb2.py)."""
    folder = tree / SDK
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for pattern in PATTERNS
        for path in folder.glob(pattern)
    }


def regenerate(tmp_path: Path) -> dict[str, bytes]:
    """Runs scripts/gen.sh on a copy of protos/ and returns what it generated."""
    (tmp_path / "scripts").mkdir()
    for script in GENERATORS:
        shutil.copy2(ROOT / "scripts" / script, tmp_path / "scripts" / script)
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    (tmp_path / SDK).parent.mkdir(parents=True)
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "gen.sh")],
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"scripts/gen.sh failed:\n{result.stdout}{result.stderr}"
    return generated_files(tmp_path)


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    committed = generated_files(ROOT)
    fresh = regenerate(tmp_path)
    assert fresh, "scripts/gen.sh generated no files"

    differing = sorted(
        name for name in committed.keys() & fresh.keys() if committed[name] != fresh[name]
    )
    missing = sorted(fresh.keys() - committed.keys())
    stale = sorted(committed.keys() - fresh.keys())
    problems = [
        *(f"differs from the protos: {SDK / name}" for name in differing),
        *(f"not generated yet: {SDK / name}" for name in missing),
        *(f"no proto generates it any more: {SDK / name}" for name in stale),
    ]
    assert not problems, (
        "generated Python is out of date with protos/; run `make gen` and commit the result:\n  "
        + "\n  ".join(problems)
    )


def test_every_proto_has_generated_messages_and_services() -> None:
    """Each proto file has its _pb2 module and stubs; each service has a client stub class."""
    committed = generated_files(ROOT)
    for proto in sorted((ROOT / "protos" / "runstream" / "v1").glob("*.proto")):
        stem = proto.stem
        assert f"v1/{stem}_pb2.py" in committed, f"no generated module for {proto.name}"
        assert f"v1/{stem}_pb2.pyi" in committed, f"no type stubs for {proto.name}"
        for service in re.findall(r"^service (\w+) \{", proto.read_text(), flags=re.MULTILINE):
            grpc_module = committed[f"v1/{stem}_pb2_grpc.py"].decode()
            assert f"class {service}Stub" in grpc_module, f"no client stub for {service}"
