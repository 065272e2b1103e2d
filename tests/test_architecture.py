"""The layers import in one direction only: controller -> analysis -> collectors -> core; dataplane -> core.

Inside controller: cli on top; loop and campaign; testbeds; deploy (inventories, Ansible) and actuators below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

PACKAGES = ("core", "collectors", "analysis", "controller", "dataplane")
BELOW_THE_TESTBEDS = {"controller.testbeds", "controller.cli", "controller.campaign", "controller.loop",
                      "controller.loop_report", "controller.spec", "controller.reproduce"}
FORBIDDEN = {  # relative imports would hide the layer they reach, so the project uses none
    "core": {"collectors", "analysis", "controller", "dataplane", "relative"},
    "collectors": {"analysis", "controller", "dataplane", "relative"},
    "analysis": {"controller", "dataplane", "relative"},
    "controller": {"dataplane", "relative"},
    "dataplane": {"collectors", "analysis", "controller", "relative"},
    # inside controller: the testbeds use deployment (inventories) and actuators, never the reverse
    "controller.deploy": BELOW_THE_TESTBEDS | {"controller.optimizers"},
    "controller.actuators": BELOW_THE_TESTBEDS | {"controller.deploy", "controller.optimizers", "controller.problem"},
    "controller.testbeds": {"controller.cli", "controller.campaign", "controller.loop", "controller.reproduce"},
    "controller.optimizers": BELOW_THE_TESTBEDS | {"controller.deploy", "controller.actuators"},
    # watching a testbed reads Prometheus only: it neither deploys nor actuates
    "controller.monitor": BELOW_THE_TESTBEDS | {"controller.deploy", "controller.actuators", "controller.optimizers"},
    # the closed loop may run through the campaign machinery, not the other way round
    "controller.campaign": {"controller.cli", "controller.loop", "controller.reproduce"},
    "controller.reproduce": {"controller.cli", "controller.campaign", "controller.deploy", "controller.testbeds"},
}
"""Package (a top-level layer or a dotted subpackage) -> the packages and modules its modules must not import."""


def layer_files(layer: str) -> list[Path]:
    """The Python files of a (dotted) package."""
    return sorted((REPO / layer.replace(".", "/")).rglob("*.py"))


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
    files = layer_files(layer)
    assert files, f"no Python files under {layer}"
    assert offenders(files, FORBIDDEN[layer]) == {}


def test_only_the_cli_imports_the_cli() -> None:
    files = [path for path in layer_files("controller") if "cli" not in path.relative_to(REPO).parts]
    assert offenders(files, {"controller.cli"}) == {}


def test_every_package_has_a_rule() -> None:
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert packages == set(PACKAGES) == {layer for layer in FORBIDDEN if "." not in layer}


def test_the_check_catches_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from controller.testbeds.lab import LabInventory\nimport core.errors\n", encoding="utf-8")
    assert offenders([module], {"controller.testbeds"}, tmp_path) == {"module.py": ["controller.testbeds.lab"]}
    assert offenders([module], {"controller.test"}, tmp_path) == {}  # a prefix matches whole names only
    assert offenders([module], {"collectors"}, tmp_path) == {}
