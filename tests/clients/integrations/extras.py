"""Skips a framework test locally when its extra is missing; fails it in CI.

`make setup` (scripts/setup.sh test) installs the langchain, openai-agents and agui extras,
so CI always has them: there a missing framework is a broken setup and must not pass as
skipped. A developer whose .venv predates the extras gets a skip naming the fix.
"""

from __future__ import annotations

import importlib
import os

import pytest


def require_extra(module: str, extra: str) -> None:
    """Skips (or in CI fails) the calling test unless ``module`` imports."""
    try:
        importlib.import_module(module)
    except ImportError:
        message = f"{module} is missing: run `make setup` (the {extra} extra)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
