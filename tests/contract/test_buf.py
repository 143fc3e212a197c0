"""`buf lint` and `buf breaking` guard the contract, run with the pinned buf from npm.

Lint keeps the protos in buf's STANDARD style. Breaking-change detection (FILE rules) is
checked both ways: the working protos are compatible with a copy of themselves and with the
protos committed on main, and deliberately breaking edits to a temporary copy are reported,
so a green run means the guard works, not merely that it ran.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"

pytestmark = pytest.mark.skipif(
    not BUF.exists(),
    reason="node_modules/.bin/buf is missing: run `make setup` (scripts/setup.sh test runs npm ci)",
)


def buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs the pinned buf and returns its result without raising on failure."""
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def contract_copy(tmp_path: Path, name: str) -> Path:
    """A copy of the module (buf.yaml and protos/) that a test may edit."""
    copy = tmp_path / name
    copy.mkdir()
    shutil.copy2(ROOT / "buf.yaml", copy / "buf.yaml")
    shutil.copytree(ROOT / "protos", copy / "protos")
    return copy


def edit(copy: Path, relative: str, old: str, new: str) -> None:
    """Replaces `old` by `new` exactly once in one proto of a copy."""
    path = copy / "protos" / "runstream" / "v1" / relative
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {relative} exactly once; update this test"
    path.write_text(text.replace(old, new))


def test_buf_lint_passes() -> None:
    result = buf("lint")
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


def test_buf_lint_reports_a_style_violation(tmp_path: Path) -> None:
    copy = contract_copy(tmp_path, "bad")
    edit(copy, "run.proto", "message StepSpec {", "message step_spec_v2 {}\n\nmessage StepSpec {")
    result = buf("lint", cwd=copy)
    assert result.returncode != 0
    assert "step_spec_v2" in result.stdout + result.stderr


def test_working_protos_are_compatible_with_a_copy_of_themselves(tmp_path: Path) -> None:
    baseline = contract_copy(tmp_path, "baseline")
    result = buf("breaking", ".", "--against", str(baseline))
    assert result.returncode == 0, f"buf breaking failed:\n{result.stdout}{result.stderr}"


def test_working_protos_are_compatible_with_main() -> None:
    """The released contract lives on main: uncommitted or branch changes must not break it."""
    on_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "refs/heads/main"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if on_main.returncode != 0:
        pytest.skip("not a git checkout with a main branch (e.g. an exported source tree)")
    result = buf("breaking", ".", "--against", ".git#branch=main")
    assert result.returncode == 0, (
        f"the protos break compatibility with main:\n{result.stdout}{result.stderr}"
    )


@pytest.mark.parametrize(
    ("proto", "old", "new", "mentioned"),
    [
        pytest.param(
            "run.proto",
            "  string cancel_reason = 21;\n",
            "",
            "cancel_reason",
            id="field-deleted",
        ),
        pytest.param(
            "run_service.proto",
            "rpc CancelRun(CancelRunRequest)",
            "rpc AbortRun(CancelRunRequest)",
            "CancelRun",
            id="rpc-renamed",
        ),
        pytest.param(
            "run.proto",
            "  int64 last_seq = 14;",
            "  string last_seq = 14;",
            "last_seq",
            id="field-type-changed",
        ),
        pytest.param(
            "event.proto",
            "  EVENT_KIND_CUSTOM = 60;",
            "  EVENT_KIND_CUSTOM = 61;",
            "60",
            id="enum-value-renumbered",
        ),
    ],
)
def test_breaking_changes_are_reported(
    tmp_path: Path, proto: str, old: str, new: str, mentioned: str
) -> None:
    baseline = contract_copy(tmp_path, "baseline")
    changed = contract_copy(tmp_path, "changed")
    edit(changed, proto, old, new)
    result = buf("breaking", str(changed), "--against", str(baseline))
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"buf breaking accepted a breaking change:\n{output}"
    assert mentioned in output, output
