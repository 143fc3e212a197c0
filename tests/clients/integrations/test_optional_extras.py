"""The framework integrations add nothing to the base install.

Importing the SDK, the integrations package and the CLI (and building its parser, which
registers `runstream agui`) loads none of the frameworks; an integration whose extra is missing
says which extra to install instead of failing with a bare ModuleNotFoundError.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("langchain_core", "langgraph", "agents", "openai", "ag_ui", "pydantic")


def run_python(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sdk_and_the_cli_import_no_framework() -> None:
    result = run_python(
        f"""
        import sys
        import runstream
        import runstream.integrations
        from runstream.cli.main import build_parser
        build_parser()
        loaded = sorted(
            name for name in sys.modules
            if name.split(".")[0] in {FRAMEWORKS!r}
        )
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("runstream.integrations.langchain", "langchain_core", "langchain"),
        ("runstream.integrations.openai_agents", "agents", "openai-agents"),
        ("runstream.integrations.agui", "ag_ui", "agui"),
        ("runstream.integrations.agui_bridge", "ag_ui", "agui"),
    ],
)
def test_an_integration_without_its_extra_names_the_extra(
    module: str, missing: str, extra: str
) -> None:
    # A finder that makes the framework look uninstalled, as in a base install.
    result = run_python(
        f"""
        import importlib.abc, sys

        class Uninstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == {missing!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None

        sys.meta_path.insert(0, Uninstalled())
        try:
            import {module}
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'runstream[{extra}]'" in result.stdout
