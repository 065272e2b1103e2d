"""The layers import in one direction only: controller -> analysis -> collectors -> core; dataplane -> core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGES = ("core", "collectors", "analysis", "controller", "dataplane")
FORBIDDEN = {  # relative imports would hide the layer they reach, so the project uses none
    "core": {"collectors", "analysis", "controller", "dataplane", "relative"},
    "collectors": {"analysis", "controller", "dataplane", "relative"},
    "analysis": {"controller", "dataplane", "relative"},
    "controller": {"dataplane", "relative"},
    "dataplane": {"collectors", "analysis", "controller", "relative"},
}
"""Package -> the top-level packages its modules must not import."""


def imported_modules(path: Path) -> set[str]:
    """Dotted module names imported by a Python file (a relative import counts as ``relative``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("relative" if node.level else node.module or "")
    return names


def offenders(files: list[Path], forbidden: set[str], root: Path = REPO) -> dict[str, list[str]]:
    """File (relative to ``root``) -> the imported modules that are, or lie below, one of ``forbidden``."""
    found = {}
    for path in files:
        bad = sorted(module for module in imported_modules(path)
                     if any(module == name or module.startswith(f"{name}.") for name in forbidden))
        if bad:
            found[str(path.relative_to(root))] = bad
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    files = sorted((REPO / layer).rglob("*.py"))
    assert files, f"no Python files under {layer}/"
    assert offenders(files, FORBIDDEN[layer]) == {}


def test_every_package_has_a_rule() -> None:
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert packages == set(PACKAGES) == set(FORBIDDEN)


def test_the_check_catches_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from controller.testbeds.lab import LabInventory\nimport core.errors\n", encoding="utf-8")
    assert offenders([module], {"controller.testbeds"}, tmp_path) == {"module.py": ["controller.testbeds.lab"]}
    assert offenders([module], {"controller.test"}, tmp_path) == {}  # a prefix matches whole names only
    assert offenders([module], {"collectors"}, tmp_path) == {}
