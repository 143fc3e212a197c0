"""The protos name the package each language's generated code goes in, and keep naming it.

Teams outside Python and TypeScript generate their stubs with plain protoc (README, "Other
languages"): `go_package` lets protoc-gen-go run without one `M` flag per file, and
`java_multiple_files`/`java_package` give Java `dev.runstream.v1.Run` rather than
`runstream.v1.RunOuterClass.Run`. Changing one of these options later renames every generated
type in that language, a source break for each team, which the wire never shows; buf.yaml
leaves these options to this test (buf flagged their one change, from protoc's defaults), and
this test pins every value. That plain protoc and its plugins take them is shown where
they are used: tests/e2e/test_go_client.py and test_java_client.py generate, build and run
those clients from the protos.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"

# The same in every file of runstream.v1 (buf lint STANDARD's PACKAGE_SAME_* rules agree).
PACKAGE_OPTIONS = {
    "go_package": "runstream.dev/gen/go/runstream/v1;runstreamv1",
    "java_package": "dev.runstream.v1",
    "java_multiple_files": True,
    "csharp_namespace": "Runstream.V1",
    "php_namespace": "Runstream\\V1",
    "ruby_package": "Runstream::V1",
    "objc_class_prefix": "RST",
}


def protoc(*args: str, cwd: Path = PROTOS) -> None:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", *args, *files],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"


def test_every_proto_names_the_same_package_for_every_language(tmp_path: Path) -> None:
    out = tmp_path / "descriptors.pb"
    protoc(f"--descriptor_set_out={out}")
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == len(list(PROTOS.rglob("*.proto")))
    for file in files:
        options = file.options
        for name, value in PACKAGE_OPTIONS.items():
            assert options.HasField(name), f"{file.name} does not set option {name}"
            assert getattr(options, name) == value, f"{file.name}: option {name}"
        # googleapis' habit: the outer class is the file's name plus Proto (run.proto: RunProto),
        # so it never clashes with a message of the same name as protoc's default would.
        stem = Path(file.name).stem
        expected = "".join(part.title() for part in stem.split("_")) + "Proto"
        assert options.java_outer_classname == expected, file.name
