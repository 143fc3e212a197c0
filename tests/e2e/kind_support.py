"""A copy of the project with one event kind more, `budget_warning`, added to its event.proto
alone: what the tests of a new kind (test_one_edit_kind.py) and of clients whose stubs predate
it (client_support.py) run a server and a producer from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

KIND_VALUE = "  EVENT_KIND_CUSTOM = 60;\n"
KIND_FIELD = "    Custom custom = 60 [(runstream.v1.kind) = {\n"
BUDGET_WARNING = """
// The run's spending neared its budget.
message BudgetWarning {
  // Dollars spent so far.
  double spent_usd = 1;
  // What the producer says of it.
  string message = 2 [(runstream.v1.limit) = {chars: 40}];
}
"""

CHANGES_NOTHING = "{changes_state: false moves_estimate: false}"
"""The kind's rules when it changes nothing in the run's state: it needs no fold."""


def copy_with_a_new_kind(root: Path, rules: str) -> str:
    """The project's protos, scripts, server and Python client, with `budget_warning` added
    to event.proto under `rules` (its ``(runstream.v1.kind)`` annotation) and `scripts/gen.sh`
    run over it; returns its PYTHONPATH."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")
    for part in ("protos", "scripts", "src/server", "src/clients/python"):
        shutil.copytree(ROOT / part, root / part, ignore=ignore)
    proto = root / "protos/runstream/v1/event.proto"
    text = proto.read_text()
    assert KIND_VALUE in text and KIND_FIELD in text
    text = text.replace(KIND_VALUE, KIND_VALUE + "  EVENT_KIND_BUDGET_WARNING = 61;\n")
    option = f"[(runstream.v1.kind) = {rules}]"
    field = f"    // Spending neared the budget.\n    BudgetWarning budget_warning = 61 {option};\n"
    proto.write_text(text.replace(KIND_FIELD, field + KIND_FIELD) + BUDGET_WARNING)
    env = {**os.environ, "PY": sys.executable}
    done = subprocess.run(
        ["bash", "scripts/gen.sh"], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return f"{root / 'src/server'}{os.pathsep}{root / 'src/clients/python'}"
