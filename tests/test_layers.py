"""The four layers (README, "Layout"), imports only downward, and no cycle between modules.

import-linter checks the contracts of pyproject.toml (as CI does, `lint-imports`). The
graph below is read again with ``ast``, every ``import`` statement included: those inside
functions and under ``TYPE_CHECKING`` too, since such an import hides a cycle rather
than removing it. Last, both checkers are shown failing on a throwaway tree that breaks
the rules on purpose.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def importlinter_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "importlinter"
    ]
    return config


def layers_contract() -> dict[str, Any]:
    [contract] = [c for c in importlinter_config()["contracts"] if c["type"] == "layers"]
    return dict(contract)


# -- the checker ----------------------------------------------------------------------------


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every module of these packages under ``root``."""
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules of these packages it imports, wherever the import statement is
    (module level, in a function, under ``if TYPE_CHECKING``)."""
    modules = module_files(root, packages)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the package, up level - 1 packages
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # ``from package import name`` imports a module when name is one.
                targets += [f"{base}.{alias.name}" for alias in node.names]
        graph[name] = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (strongly connected
    components of more than one module: Tarjan's algorithm, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return sorted(found)


def upward_imports(graph: Mapping[str, set[str]], layers: list[str]) -> list[tuple[str, str]]:
    """(importer, imported) for every import of a package in a higher layer. ``layers``
    as import-linter writes them: highest first, siblings separated by ':' or '|'."""
    rank = {
        package.strip(): level
        for level, layer in enumerate(layers)
        for package in layer.replace("|", ":").split(":")
    }
    return sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if rank[target.split(".")[0]] < rank[source.split(".")[0]]
    )


# -- the project ----------------------------------------------------------------------------


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root``, with the contracts found there."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_imports_upward_or_in_a_cycle() -> None:
    packages = importlinter_config()["root_packages"]
    graph = import_graph(ROOT, packages)
    assert set(packages) <= graph.keys()
    assert sum(len(targets) for targets in graph.values()) > 200  # the graph was read
    assert upward_imports(graph, layers_contract()["layers"]) == []
    assert cycles(graph) == []


# -- the checkers catch what they are for ---------------------------------------------------


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    """The project's packages, nearly empty, with one upward import and one cycle, the
    latter hidden in a function and under TYPE_CHECKING."""
    for package in importlinter_config()["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "petition_api" / "handlers.py").write_text("VALUE = 1\n")
    (tmp_path / "countersign_core" / "settings.py").write_text(
        "from petition_api.handlers import VALUE\n"
    )
    (tmp_path / "counter_worker" / "first.py").write_text(
        "def later() -> None:\n    from . import second\n"
    )
    (tmp_path / "counter_worker" / "second.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import counter_worker.third\n"
    )
    (tmp_path / "counter_worker" / "third.py").write_text(
        "from counter_worker.first import later\n"
    )
    return tmp_path


def test_the_ast_checker_reports_an_upward_import_and_a_hidden_cycle(bad_tree: Path) -> None:
    graph = import_graph(bad_tree, importlinter_config()["root_packages"])
    assert upward_imports(graph, layers_contract()["layers"]) == [
        ("countersign_core.settings", "petition_api.handlers")
    ]
    assert cycles(graph) == [
        ["counter_worker.first", "counter_worker.second", "counter_worker.third"]
    ]


def test_lint_imports_fails_on_an_upward_import(bad_tree: Path) -> None:
    """What CI runs, with the project's layers, on the bad tree."""
    contract = layers_contract()
    lines = [
        "[importlinter]",
        "root_packages =",
        *(f"    {p}" for p in importlinter_config()["root_packages"]),
        "",
        "[importlinter:contract:layers]",
        f"name = {contract['name']}",
        "type = layers",
        "layers =",
        *(f"    {layer}" for layer in contract["layers"]),
    ]
    (bad_tree / ".importlinter").write_text("\n".join(lines) + "\n")
    result = lint_imports(bad_tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert "countersign_core.settings -> petition_api.handlers" in result.stdout
