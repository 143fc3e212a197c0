#!/usr/bin/env bash
# Regenerates package-lock.json from package.json so that `npm ci` accepts it here.
#
# Why not plain `npm install`: the package registry these machines reach serves only some of
# the per-platform binaries that packages list as optional dependencies (for @bufbuild/buf,
# only the Linux ones). `npm install` then writes a lock without the others, and `npm ci`
# rejects that lock as out of sync with package.json ("Missing: ... from lock file"). This
# script adds those entries back the way npm writes them on a machine that can see them:
# version, os and cpu, no integrity. They are never fetched on Linux x64, and on a platform
# that needs one npm fetches it by version as usual.
#
# Usage: scripts/npm-lock.sh [DIR]   (after editing DIR/package.json; then commit
#        DIR/package-lock.json). DIR is the repository root (the default) or
#        src/clients/web (the dashboard and Node client, whose esbuild has the same quirk).
set -euo pipefail
cd "$(dirname "$0")/.."
cd "${1:-.}"
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false

npm install --package-lock-only --no-audit --no-fund
python3 - <<'PY'
"""Adds lock entries for optional dependencies that the registry did not resolve."""

import json
import re
from pathlib import Path

lock_path = Path("package-lock.json")
lock = json.loads(lock_path.read_text())
packages = lock["packages"]
# npm's names for platforms in package names -> the os and cpu values of package.json.
PLATFORM = re.compile(r"-(darwin|linux|win32|freebsd|openbsd|netbsd|sunos|aix|android)"
                      r"-(x64|arm64|aarch64|armv7|arm|ia32|ppc64|s390x|riscv64|loong64)$")
CPU = {"aarch64": "arm64", "armv7": "arm"}

added = []
for location, entry in list(packages.items()):
    for name, version in entry.get("optionalDependencies", {}).items():
        nested = f"{location}/node_modules/{name}" if location else f"node_modules/{name}"
        if nested in packages or f"node_modules/{name}" in packages:
            continue
        if not re.fullmatch(r"\d+\.\d+\.\d+\S*", version):
            raise SystemExit(f"npm-lock: cannot pin {name}@{version} (not an exact version)")
        match = PLATFORM.search(name)
        stub = {
            "version": version,
            "cpu": [CPU.get(match[2], match[2])] if match else None,
            "dev": True if entry.get("dev") else None,
            "optional": True,
            "os": [match[1]] if match else None,
        }  # npm's own key order: version first, then alphabetical
        packages[f"node_modules/{name}"] = {k: v for k, v in stub.items() if v is not None}
        added.append(f"{name}@{version}")

lock["packages"] = {"": packages.pop("")} | dict(sorted(packages.items()))
lock_path.write_text(json.dumps(lock, indent=2) + "\n")
for name in added:
    print(f"npm-lock: added unresolved optional dependency {name}")
PY
rm -rf node_modules
npm ci --no-audit --no-fund >/dev/null
echo "npm-lock: package-lock.json installs with npm ci"
