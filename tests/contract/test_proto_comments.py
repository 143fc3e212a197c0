"""Every element of the contract carries a leading comment (shared/STYLE.md requires it).

The protos are the documentation other teams generate code from: an uncommented service,
RPC, message, field, oneof, enum or enum value is a hole in that documentation. The check
reads protoc's descriptors with source info, so it sees exactly what code generators see.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]

# Field numbers inside descriptor.proto that make up SourceCodeInfo location paths.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM, MESSAGE_ONEOF = 2, 3, 4, 8
ENUM_VALUE = 2
SERVICE_METHOD = 2

Element = tuple[str, tuple[int, ...]]  # (human-readable name, source location path)


def descriptors(protos: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    """Compiles the protos under `protos` with source info and returns their descriptors."""
    out = tmp_path / "descriptors.pb"
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--include_source_info",
         f"--descriptor_set_out={out}", *files],
        cwd=protos, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def enum_elements(
    enum: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]
) -> Iterator[Element]:
    yield f"enum {scope}{enum.name}", path
    for i, value in enumerate(enum.value):
        yield f"enum value {scope}{enum.name}.{value.name}", (*path, ENUM_VALUE, i)


def message_elements(
    message: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]
) -> Iterator[Element]:
    name = f"{scope}{message.name}"
    if message.options.map_entry:  # synthesized for map<K, V> fields, never written by hand
        return
    yield f"message {name}", path
    for i, field in enumerate(message.field):
        yield f"field {name}.{field.name}", (*path, MESSAGE_FIELD, i)
    for i, oneof in enumerate(message.oneof_decl):
        # proto3 `optional` makes a synthetic oneof named after the field; it has no source.
        if not oneof.name.startswith("_"):
            yield f"oneof {name}.{oneof.name}", (*path, MESSAGE_ONEOF, i)
    for i, nested in enumerate(message.nested_type):
        yield from message_elements(nested, f"{name}.", (*path, MESSAGE_NESTED, i))
    for i, enum in enumerate(message.enum_type):
        yield from enum_elements(enum, f"{name}.", (*path, MESSAGE_ENUM, i))


def file_elements(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[Element]:
    for i, message in enumerate(proto.message_type):
        yield from message_elements(message, "", (FILE_MESSAGE, i))
    for i, enum in enumerate(proto.enum_type):
        yield from enum_elements(enum, "", (FILE_ENUM, i))
    for i, service in enumerate(proto.service):
        yield f"service {service.name}", (FILE_SERVICE, i)
        for j, method in enumerate(service.method):
            yield f"rpc {service.name}.{method.name}", (FILE_SERVICE, i, SERVICE_METHOD, j)


def comment_problems(protos: Path, tmp_path: Path) -> list[str]:
    """Every element of the protos under `protos` that lacks a proper leading comment."""
    problems = []
    for proto in descriptors(protos, tmp_path).file:
        comments = {
            tuple(location.path): location.leading_comments.strip()
            for location in proto.source_code_info.location
        }
        for element, path in file_elements(proto):
            comment = comments.get(path, "")
            if not comment:
                problems.append(f"{proto.name}: {element} has no leading comment")
            elif not comment.rstrip("`)").endswith((".", "!", "?", ":")):
                problems.append(f"{proto.name}: {element}: comment is not a sentence: {comment!r}")
    return problems


def test_every_proto_element_has_a_leading_comment(tmp_path: Path) -> None:
    problems = comment_problems(ROOT / "protos", tmp_path)
    assert not problems, "uncommented proto elements:\n  " + "\n  ".join(problems)


def test_the_check_finds_an_uncommented_field_and_rpc(tmp_path: Path) -> None:
    """Guards the checker itself: it must notice what it exists to notice."""
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    run_service = protos / "runstream" / "v1" / "run_service.proto"
    text = run_service.read_text()
    text = text.replace(
        "message GetRunRequest {", "message GetRunRequest {\n  string undocumented_field = 99;", 1
    )
    text = text.replace(
        "service RunService {",
        "service RunService {\n  rpc UndocumentedRpc(GetRunRequest) returns (GetRunResponse);",
        1,
    )
    run_service.write_text(text)
    problems = "\n".join(comment_problems(protos, tmp_path))
    assert "field GetRunRequest.undocumented_field has no leading comment" in problems
    assert "rpc RunService.UndocumentedRpc has no leading comment" in problems
