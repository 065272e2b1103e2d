"""The layers import in one direction only: controller -> analysis -> collectors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {  # relative imports would hide the layer they reach, so the project uses none
    "collectors": {"analysis", "controller", "relative"},
    "analysis": {"controller", "relative"},
    "controller": {"relative"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level package names imported by a Python file (a relative import counts as ``relative``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("relative" if node.level else (node.module or "").split(".")[0])
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no Python files under {layer}/"
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[layer]) for path in files
    }
    assert {path: bad for path, bad in offenders.items() if bad} == {}
