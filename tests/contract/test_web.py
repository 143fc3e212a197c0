"""The TypeScript side of the contract: generated code, the shipped bundle, type checks.

- The committed TypeScript in src/clients/web/src/gen is exactly what `buf generate` (with
  the pinned local protoc-gen-es) makes from protos/: regenerate with
  src/clients/web/scripts/gen.sh when the protos change.
- The dashboard bundle shipped in the Python package (runstream/dashboard/static) is
  exactly what src/clients/web builds: rebuild with `node src/clients/web/scripts/build.mjs`.
- The dashboard and the Node client type-check against the generated code (tsc --noEmit), so
  a proto change that breaks them fails here, not in a browser.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.web_support import ROOT, WEB, require, require_node_packages

GENERATED = Path("src/clients/web/src/gen")
SHIPPED = ROOT / "src" / "clients" / "python" / "runstream" / "dashboard" / "static"


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def differences(committed: dict[str, bytes], fresh: dict[str, bytes]) -> list[str]:
    return [
        *(
            f"differs: {name}"
            for name in sorted(committed.keys() & fresh.keys())
            if committed[name] != fresh[name]
        ),
        *(f"missing from the commit: {name}" for name in sorted(fresh.keys() - committed.keys())),
        *(f"no longer generated: {name}" for name in sorted(committed.keys() - fresh.keys())),
    ]


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_committed_typescript_is_what_buf_generates_from_the_protos(tmp_path: Path) -> None:
    require_node_packages()
    buf = ROOT / "node_modules" / ".bin" / "buf"
    require(buf.exists(), "node_modules/.bin/buf")
    # -o prefixes the template's output folder, so the work tree is never touched.
    run(
        [
            str(buf),
            "generate",
            "--template",
            str(GENERATED.parents[1] / "buf.gen.yaml"),
            "-o",
            str(tmp_path),
        ],
        ROOT,
    )
    fresh = files_under(tmp_path / GENERATED)
    assert fresh, "buf generate produced no TypeScript"
    problems = differences(files_under(ROOT / GENERATED), fresh)
    assert not problems, (
        "the generated TypeScript is out of date with protos/; run "
        "src/clients/web/scripts/gen.sh and commit the result:\n  " + "\n  ".join(problems)
    )


def test_shipped_dashboard_bundle_is_what_the_sources_build(tmp_path: Path) -> None:
    require_node_packages()
    run(["node", "scripts/build.mjs", "--outdir", str(tmp_path)], WEB)
    problems = differences(files_under(SHIPPED), files_under(tmp_path))
    assert not problems, (
        "the dashboard bundle in runstream/dashboard/static is stale; run "
        "`node src/clients/web/scripts/build.mjs` and commit the result:\n  "
        + "\n  ".join(problems)
    )
    assert (tmp_path / "app.js").stat().st_size > 10_000


def test_dashboard_and_node_client_type_check() -> None:
    require_node_packages()
    run([str(WEB / "node_modules" / ".bin" / "tsc"), "--noEmit", "-p", "."], WEB)
