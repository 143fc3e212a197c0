"""The framework tests need their extras; a .venv made before the extras existed lacks them.

`make setup` installs the langchain, openai-agents and agui extras, so in CI a missing
framework is a broken setup and stops the run. Locally, the modules whose framework is
missing are left out, and pytest's header says which and how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Test module -> (the framework it imports, the extra that installs it).
NEEDS = {
    "test_langgraph.py": ("langgraph", "langchain"),
    "test_langgraph_interrupt_questions.py": ("langgraph", "langchain"),
    "test_langgraph_retries.py": ("langgraph", "langchain"),
    "test_openai_agents.py": ("agents", "openai-agents"),
    "test_openai_agents_what_is_reported.py": ("agents", "openai-agents"),
    "test_agui.py": ("ag_ui", "agui"),
    "test_agui_identity.py": ("ag_ui", "agui"),
    "test_agui_run_story.py": ("ag_ui", "agui"),
}


def missing_extras() -> dict[str, str]:
    """Test modules whose framework is not installed, with the extra that installs it."""
    return {
        name: extra
        for name, (module, extra) in NEEDS.items()
        if importlib.util.find_spec(module) is None
    }


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    extra = missing_extras().get(collection_path.name)
    if extra is None:
        return None
    if os.environ.get("CI"):
        raise pytest.UsageError(
            f"{collection_path.name} needs the {extra} extra; scripts/setup.sh test installs it"
        )
    return True


def pytest_report_header(config: pytest.Config) -> str | None:
    missing = missing_extras()
    if not missing:
        return None
    listed = ", ".join(f"{name} ({extra})" for name, extra in missing.items())
    return f"framework tests left out, their extras are missing (run `make setup`): {listed}"
