"""A workflow team's code type-checks against the SDK as they write it: the README's examples
and the usual calls pass ``mypy --strict``, what the SDK returns is typed (no ``Any`` for an
IDE to lose the thread at), and a call the SDK refuses is refused by the type checker too.

One mypy run checks every snippet; each test reads its output. It runs as in a user's
project: a configuration of its own, not this repository's, and the SDK found on the Python
path, as an installed package is (its own modules are not checked, its py.typed is read).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.contract.test_readme_examples import readme_examples

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = textwrap.dedent(
    """\
    from __future__ import annotations

    import runstream
    from runstream import StepSpec


    async def plan_and_watch(client: runstream.Client, run_id: str) -> None:
        plan = [StepSpec("fetch"), StepSpec("rank", depends_on=["fetch"])]
        run = await client.start_run("typed", steps=plan)
        StepSpec("publish", depends_on="rank")  # refused: one id is not a list of them
        choice = await run.ask("Which persona?", ["gen_z", "pros"], default="gen_z", timeout=60)
        reveal_type(choice)
        async for event in client.watch(run_id):
            reveal_type(event)
            reveal_type(event.payload)
        snapshot = await client.get_run(run_id)
        reveal_type(snapshot.estimate)
        reveal_type(await client.list_decisions(run_id))
    """
)
"""A typed user's calls; the line marked "refused" is the one error mypy must report."""

OPTIONS_BUILT_APART = textwrap.dedent(
    """\
    from __future__ import annotations

    import runstream
    from runstream import DecisionOption, OptionLike


    async def ask_persona(run: runstream.RunReporter, experts: bool) -> str | None:
        options: list[OptionLike] = ["gen_z", ("parents", "Parents")]
        if experts:
            options.append(DecisionOption("pros", "Professionals", "People who buy for work"))
        return (await run.ask("Which persona?", options, default="gen_z")).choice
    """
)
"""Options built before the call, as a workflow that offers some only sometimes does."""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """mypy --strict's lines about each checked file, by file name (without ".py")."""
    home = tmp_path_factory.mktemp("typed-user")
    examples = readme_examples()
    sources = {"producer": examples["producer"], "watcher": examples["watcher"]}
    sources["user_code"] = USER_CODE
    sources["options_built_apart"] = OPTIONS_BUILT_APART
    for name, source in sources.items():
        (home / f"{name}.py").write_text(source)
    config = home / "mypy.ini"
    config.write_text("[mypy]\n")
    # The project's .venv has the SDK as an editable install, found through an import hook a
    # type checker cannot follow: on PYTHONPATH it is found as a wheel's install is.
    checked = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--config-file", str(config), "--strict",
            "--no-error-summary", "--cache-dir", str(home / ".mypy_cache"),
            *(str(home / f"{n}.py") for n in sources),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src" / "clients" / "python")},
        cwd=home, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert not checked.stderr, checked.stderr
    by_file: dict[str, list[str]] = {name: [] for name in sources}
    for line in checked.stdout.splitlines():
        name = Path(line.split(":", 1)[0]).stem
        by_file.setdefault(name, []).append(line)
    return by_file


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if ": error:" in line]


@pytest.mark.parametrize("example", ["producer", "watcher"])
def test_the_readme_examples_pass_mypy_strict(
    mypy_output: dict[str, list[str]], example: str
) -> None:
    assert errors(mypy_output[example]) == []


def test_depends_on_takes_a_list_and_refuses_one_string(
    mypy_output: dict[str, list[str]],
) -> None:
    """``StepSpec("rank", depends_on=["fetch"])`` is how a plan is written (and runs): mypy
    said 'incompatible type "list[str]"; expected "tuple[str, ...]"'. One id given as a
    string, which start_run refuses, stays a type error."""
    refused_line = USER_CODE.splitlines().index(
        '    StepSpec("publish", depends_on="rank")  # refused: one id is not a list of them'
    )
    said = errors(mypy_output["user_code"])
    assert [int(line.split(":")[1]) for line in said] == [refused_line + 1], said
    assert 'Argument "depends_on" to "StepSpec" has incompatible type "str"' in said[0]


def test_options_built_apart_from_ask_can_be_annotated(
    mypy_output: dict[str, list[str]],
) -> None:
    """ask()'s options were typed with an alias private to the SDK: a list mixing values and
    DecisionOptions, unannotated, is a list[object] to mypy ('Argument 2 to "ask" of
    "RunReporter" has incompatible type "list[object]"'), and the type to annotate it with
    could not be imported from runstream."""
    assert mypy_output["options_built_apart"] == []


def test_what_the_sdk_returns_is_typed(mypy_output: dict[str, list[str]]) -> None:
    revealed = [
        m[1]
        for line in mypy_output["user_code"]
        if (m := re.search(r'note: Revealed type is "(.*)"$', line))
    ]
    assert revealed[:2] == ["runstream._types.DecisionResult", "runstream._types.Event"]
    assert revealed[2].startswith("runstream._events.RunCreated | ")
    assert revealed[3:] == [
        "runstream._types.Estimate | None",
        "list[runstream._types.Decision]",
    ]
    assert not [kind for kind in revealed if "Any" in kind]


def unannotated(source: str) -> list[str]:
    """The functions of ``source`` that mypy --strict reports as missing a type annotation:
    a parameter (other than self) or the return without one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            params = [p for p in params if p.arg not in ("self", "cls")]
            params += [p for p in (args.vararg, args.kwarg) if p is not None]
            if node.returns is None or any(p.annotation is None for p in params):
                found.append(f"{node.name} (line {node.lineno})")
    return found


def test_every_readme_example_annotates_its_functions() -> None:
    """The examples a team copies into a mypy --strict or pyright project type-check there.
    The framework examples are checked for what is their own (mypy on the frameworks takes
    15 s): the OpenAI Agents one's model said 'Function is missing a type annotation' twice
    and 'Call to untyped function "OfflineModel" in typed context' where it was used."""
    missing = {name: unannotated(body) for name, body in readme_examples().items()}
    assert {name: found for name, found in missing.items() if found} == {}
