"""The package's layers import one way only: a module may import its own layer and the layers below it.

The order is written once, in docs/architecture.md (the `layers` block); this test reads it from there. Every
import counts, including those inside functions (a lazy import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "tunesmith"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

pytestmark = pytest.mark.unit


def layer_order() -> dict[str, int]:
    """Top-level module or package -> its layer (0 = the bottom), from the docs' `layers` block (top first)."""
    block = re.search(r"```layers\n(.*?)```", ARCHITECTURE.read_text(), re.S)
    assert block, f"{ARCHITECTURE} has no ```layers block"
    lines = [line.split("#")[0].split() for line in block.group(1).splitlines()]
    lines = [names for names in lines if names]
    return {name: level for level, names in enumerate(reversed(lines)) for name in names}


def unit_of(path: Path) -> str:
    """The top-level module or package a source file belongs to."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_units(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level unit) of every `tunesmith.X` import in a module, wherever it sits."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "tunesmith":
                units = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
                found += [(node.lineno, unit) for unit in units]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tunesmith" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


def upward_imports() -> list[str]:
    order = layer_order()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name in {"__init__.py", "__main__.py"}:
            continue  # the package root only wires start-up (compat shims), it is nobody's dependency
        unit = unit_of(path)
        if unit not in order:
            problems.append(f"{path.relative_to(ROOT)}: '{unit}' is in no layer of docs/architecture.md")
            continue
        for line, target in imported_units(ast.parse(path.read_text(), str(path))):
            if target not in order:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports '{target}', which is in no layer")
            elif order[target] > order[unit]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: '{unit}' imports '{target}', a higher layer")
    return problems


def test_no_module_imports_a_higher_layer():
    assert upward_imports() == []


def test_every_layer_names_a_real_module():
    real = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(layer_order()) <= real


def test_the_check_sees_lazy_imports(tmp_path):
    tree = ast.parse("def f():\n    from tunesmith.recipes.common import pad_id\n")
    assert imported_units(tree) == [(2, "recipes")]
