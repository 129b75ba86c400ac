"""The tests' own house rules, read from the source with ``ast``.

- Helpers live in tests/support/: a test module imports no other test module (nor a
  conftest, which pytest loads by itself), and bench/ reuses tests/support/ the same way.
- Each helper is defined once: no copy of a tests/support/ function or class elsewhere.
- The shipped packages carry no test fixture: the wheel holds neither tests/ nor bench/,
  and nothing it holds imports them.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUPPORT = "tests.support"


def modules_under(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    """``(dotted name, path)`` of every module of ``package`` under ``root``."""
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-local imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_test_module(module: str) -> bool:
    parts = module.split(".")
    ours = parts[0] in ("tests", "bench")
    return ours and any(part.startswith("test_") or part == "conftest" for part in parts)


def helper_imports_outside_support(root: Path) -> list[str]:
    """ "A imports B" for each import, under tests/ and bench/, of a test module, or of a
    tests module that is not in tests/support/."""
    wrong = []
    for package in ("tests", "bench"):
        for module, path in modules_under(root, package):
            for imported in sorted(imports_of(path)):
                outside = imported.startswith("tests.") and not imported.startswith(SUPPORT)
                if is_test_module(imported) or outside:
                    wrong.append(f"{module} imports {imported}")
    return wrong


def top_level_definitions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in tree.body if isinstance(node, kinds)}


def shipped_packages(root: Path) -> list[str]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    packages: list[str] = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def copies_of_support_helpers(root: Path) -> list[str]:
    """ "name in A and in tests.support.B" for each function or class of tests/support/
    defined again in tests/, bench/ or a shipped package."""
    helpers = {
        name: module
        for module, path in modules_under(root, SUPPORT)
        for name in top_level_definitions(path)
    }
    copies = []
    for package in ("tests", "bench", *shipped_packages(root)):
        for module, path in modules_under(root, package):
            if module.startswith(SUPPORT):
                continue
            for name in sorted(top_level_definitions(path) & set(helpers)):
                copies.append(f"{name} in {module} and in {helpers[name]}")
    return copies


# -- the rules --------------------------------------------------------------------------------


def test_test_modules_import_helpers_only_from_tests_support() -> None:
    assert helper_imports_outside_support(REPO) == []


def test_each_support_helper_is_defined_once() -> None:
    assert copies_of_support_helpers(REPO) == []


def test_the_wheel_ships_no_tests_nor_benches() -> None:
    shipped = shipped_packages(REPO)
    assert "tests" not in shipped
    assert "bench" not in shipped
    reaching_in = [
        f"{module} imports {imported}"
        for package in shipped
        for module, path in modules_under(REPO, package)
        for imported in imports_of(path)
        if imported.split(".")[0] in ("tests", "bench")
    ]
    assert reaching_in == []


# -- the checks see what they must ------------------------------------------------------------


def test_the_checks_catch_a_test_module_imported_and_a_helper_copied(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.hatch.build.targets.wheel]\npackages = ["app"]\n'
    )
    files = {
        "tests/__init__.py": "",
        "tests/support/__init__.py": "",
        "tests/support/waiting.py": "async def eventually() -> None: ...\n",
        "tests/test_a.py": "SLUG = 'a'\n",
        "tests/test_b.py": "def f() -> None:\n    from tests.test_a import SLUG\n",
        "tests/test_c.py": "import tests.conftest\nfrom tests.support.waiting import eventually\n",
        "bench/__init__.py": "",
        "bench/load.py": "from tests import test_a\n",
        "app/__init__.py": "",
        "app/ports.py": "def eventually() -> None: ...\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert helper_imports_outside_support(tmp_path) == [
        "tests.test_b imports tests.test_a",
        "tests.test_b imports tests.test_a.SLUG",
        "tests.test_c imports tests.conftest",
        "bench.load imports tests.test_a",
    ]
    assert copies_of_support_helpers(tmp_path) == [
        "eventually in app.ports and in tests.support.waiting"
    ]
