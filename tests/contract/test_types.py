"""The SDK and the server type-check: ``mypy --strict`` (pyproject's [tool.mypy]) over both
packages, as ``make lint`` runs it, so ``make test`` (what CI runs) catches what only a type
checker sees, e.g. a ``case runstream.<Class>()`` in the terminal view naming a class the
package does not export. With the cache in .mypy_cache a run takes about a second; a cold
one about 35 s.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["src/clients/python/runstream", "src/server/runstream_server"]


def test_both_packages_type_check_strictly() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (the test extra installs it: make setup)")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"mypy {' '.join(PACKAGES)}:\n{result.stdout}{result.stderr}"
