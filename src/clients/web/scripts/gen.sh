#!/usr/bin/env bash
# Regenerates the TypeScript code in src/clients/web/src/gen from protos/ (the one place the
# generated TypeScript lives). tests/contract/test_web.py fails when it is stale.
# Needs the repository's pinned buf (npm ci at the root) and this package's protoc-gen-es
# (npm ci here); scripts/setup.sh test installs both.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
node_modules/.bin/buf generate --template src/clients/web/buf.gen.yaml "$@"
