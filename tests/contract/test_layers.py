"""The server's packages import one another without a cycle, and nothing of the SDK's but its
generated code.

When two of runstream_server's packages import each other (domain -> auth -> domain, as the
principal once made), whether an import works depends on which module a program happens to
load first: a partly initialised module, an ImportError naming a name that plainly exists.
This reads every module's imports (ast, not importing anything) and fails naming the files
that close a cycle. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import itertools
from collections import defaultdict
from pathlib import Path

import pytest
import runstream_server

PACKAGE = Path(runstream_server.__file__).parent


def _imported(tree: ast.Module, package: str) -> set[str]:
    """The dotted names `tree` imports at run time (``from m import n`` gives ``m.n``)."""
    names: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def test_the_server_packages_import_one_another_without_a_cycle() -> None:
    imports: dict[str, set[str]] = defaultdict(set)  # a package: the packages it imports
    files: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts == ("__init__.py",):
            continue
        importer = relative.parts[0].removesuffix(".py")
        package = ".".join(("runstream_server", *relative.parts[:-1]))
        for name in _imported(ast.parse(path.read_text()), package):
            parts = name.split(".")
            if parts[0] == "runstream_server" and len(parts) > 1 and parts[1] != importer:
                imports[importer].add(parts[1])
                files[importer, parts[1]].add(str(relative))
    assert "store" in imports["domain"]  # the scan sees imports at all

    try:
        graphlib.TopologicalSorter(imports).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1][::-1]  # each imports the next
        pytest.fail(
            "runstream_server's packages import one another in a cycle:\n"
            + "\n".join(
                f"  {a} -> {b}: {', '.join(sorted(files[a, b]))}"
                for a, b in itertools.pairwise(cycle)
            )
        )


def test_the_server_imports_nothing_of_the_sdk_but_its_generated_code() -> None:
    """The SDK and its CLI may import the server (`runstream serve`, lazily); the server takes
    only the generated messages and stubs (`runstream.v1`) from the SDK's package, so a change
    to the SDK cannot break a server, nor load the SDK into it."""
    reaching: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        package = ".".join(("runstream_server", *relative.parts[:-1]))
        for name in sorted(_imported(ast.parse(path.read_text()), package)):
            parts = name.split(".")
            if parts[0] == "runstream" and parts[1:2] != ["v1"]:
                reaching.append(f"{relative}: {name}")
    assert reaching == []
