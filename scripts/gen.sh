#!/usr/bin/env bash
# Regenerates the Python code from protos/ into src/clients/python/runstream/v1 (the one
# place generated Python lives), then the SDK's event payload types from the same protos
# (runstream/_events.py, by scripts/gen_sdk_events.py). CI runs it and fails when the result
# differs from git.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
out=src/clients/python
rm -f "$out"/runstream/v1/*_pb2*.py "$out"/runstream/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I protos \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/runstream/v1/*.proto
touch "$out"/runstream/v1/__init__.py
descriptors="$(mktemp)"
trap 'rm -f "$descriptors"' EXIT
"$PY" -m grpc_tools.protoc -I protos --include_imports --include_source_info \
  --descriptor_set_out="$descriptors" protos/runstream/v1/*.proto
"$PY" scripts/gen_sdk_events.py "$descriptors" "$out"/runstream/_events.py
