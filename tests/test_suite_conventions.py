"""The test suite's own rules, checked on its source: every test can fail, and fakes say so in the test name.

A test asserts something (an ``assert``, ``pytest.raises``/``warns``/``fail``, or a helper that asserts); no
assertion is true whatever happens (``assert x or True``, ``assert (x, "message")``); no error type is
``Exception`` itself; no failure is swallowed (``except ...: pass``); results are asserted, not printed; and a
test that runs against a fake (from ``tests/fakes`` or a ``Fake*`` class) has ``fake`` in its name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

TESTS = REPO / "tests"
MODULES = sorted(TESTS.glob("test_*.py"))
HELPER_MODULES = [path for path in sorted(TESTS.glob("*.py")) if path not in MODULES]
ASSERTING_CALLS = {"raises", "warns", "fail", "approx"}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def called_name(call: ast.Call) -> str:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")


def is_fixture(function: ast.FunctionDef) -> bool:
    return any(isinstance(target := (decorator.func if isinstance(decorator, ast.Call) else decorator),
                          ast.Attribute) and target.attr == "fixture" for decorator in function.decorator_list)


def functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Module-level functions and methods of module-level classes."""
    found = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            found += [item for item in node.body if isinstance(item, ast.FunctionDef)]
    return found


def asserting_helpers() -> set[str]:
    """Names of functions, in any test or helper module, whose body asserts (an ``assert`` or ``pytest.fail``)."""
    names: set[str] = set()
    for path in [*MODULES, *HELPER_MODULES]:
        for function in functions(parse(path)):
            if not function.name.startswith("test") and any(
                    isinstance(node, ast.Assert) or (isinstance(node, ast.Call) and called_name(node) == "fail")
                    for node in ast.walk(function)):
                names.add(function.name)
    return names


def asserts(function: ast.FunctionDef, helpers: set[str]) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            name = called_name(node)
            if name in ASSERTING_CALLS or name.startswith("assert_") or name in helpers:
                return True
    return False


def collected_tests(path: Path) -> list[ast.FunctionDef]:
    return [function for function in functions(parse(path)) if function.name.startswith("test_")]


def missing_assertions(path: Path, helpers: set[str]) -> list[str]:
    return [test.name for test in collected_tests(path) if not asserts(test, helpers)]


@pytest.mark.parametrize("path", MODULES, ids=[path.name for path in MODULES])
def test_every_test_asserts_something(path: Path) -> None:
    assert missing_assertions(path, asserting_helpers()) == []


def always_true(test: ast.expr) -> bool:
    """An assert condition that holds whatever the code under test does."""
    if isinstance(test, ast.Constant):
        return bool(test.value)
    if isinstance(test, ast.Tuple | ast.List | ast.Set | ast.Dict | ast.JoinedStr):
        return bool(getattr(test, "elts", None) or getattr(test, "keys", None) or getattr(test, "values", None))
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return any(always_true(value) for value in test.values)
    return False


def weak_spots(path: Path) -> list[str]:
    """Assertions that cannot fail, ``pytest.raises(Exception)``, swallowed exceptions, prints in test modules."""
    problems = []
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.Assert) and always_true(node.test):
            problems.append(f"line {node.lineno}: the assertion is always true")
        if isinstance(node, ast.Call) and called_name(node) == "raises" and node.args and \
                getattr(node.args[0], "id", None) in ("Exception", "BaseException"):
            problems.append(f"line {node.lineno}: pytest.raises(Exception): name the error type")
        if isinstance(node, ast.ExceptHandler) and (node.type is None or all(
                isinstance(statement, ast.Pass) for statement in node.body)):
            problems.append(f"line {node.lineno}: a swallowed exception (bare except or except: pass)")
        if path.name.startswith("test_") and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "print":  # the builtin; a rich Console's print renders into a buffer
            problems.append(f"line {node.lineno}: print in a test module: assert the figure instead")
    return sorted(problems, key=lambda problem: int(problem.split()[1].rstrip(":")))


@pytest.mark.parametrize("path", [*MODULES, *HELPER_MODULES], ids=[p.name for p in [*MODULES, *HELPER_MODULES]])
def test_no_assertion_cannot_fail_and_no_failure_is_swallowed(path: Path) -> None:
    assert weak_spots(path) == []


def names_bound_to_fakes(tree: ast.Module) -> set[str]:
    """Names a module binds to fakes: imports from tests/fakes, its own ``Fake*`` classes and ``fake*`` helpers."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fakes":
            names |= {alias.asname or alias.name for alias in node.names}
        if (isinstance(node, ast.ClassDef) and "fake" in node.name.lower()) or \
                (isinstance(node, ast.FunctionDef) and node.name.startswith("fake")):
            names.add(node.name)
    return names


def uses(function: ast.FunctionDef, names: set[str]) -> set[str]:
    referenced = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}
    return (referenced | {argument.arg for argument in function.args.args}) & names


def misnamed_tests(path: Path) -> dict[str, list[str]]:
    """Tests without ``fake`` in their name that use a fake (directly or through fixtures and helpers)."""
    tree = parse(path)
    fakes = names_bound_to_fakes(tree)
    module_functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    growing = True
    while growing:  # fixtures and helpers that reach a fake are fakes too
        before = len(fakes)
        fakes |= {function.name for function in module_functions
                  if not function.name.startswith("test") and uses(function, fakes)}
        growing = len(fakes) > before
    return {test.name: sorted(uses(test, fakes)) for test in collected_tests(path)
            if "fake" not in test.name and uses(test, fakes)}


@pytest.mark.parametrize("path", MODULES, ids=[path.name for path in MODULES])
def test_tests_on_fakes_say_fake_in_their_names(path: Path) -> None:
    assert misnamed_tests(path) == {}


BAD_MODULE = """
import pytest
from fakes.onos import FakeOnos

@pytest.fixture
def controller():
    return FakeOnos()

def test_silent():
    value = 1 + 1

def test_printed():
    print(2)

def test_always(value):
    assert value or True
    assert (value == 3, "three")

def test_broad():
    with pytest.raises(Exception):
        int("x")

def test_swallowed():
    try:
        int("x")
    except ValueError:
        pass

def test_steering(controller):
    assert controller.flows == {}
"""


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    path = tmp_path / "test_bad.py"
    path.write_text(BAD_MODULE, encoding="utf-8")
    assert missing_assertions(path, set()) == ["test_silent", "test_printed", "test_swallowed"]
    assert [problem.split(": ", 1)[1] for problem in weak_spots(path)] == [
        "print in a test module: assert the figure instead", "the assertion is always true",
        "the assertion is always true", "pytest.raises(Exception): name the error type",
        "a swallowed exception (bare except or except: pass)"]
    assert misnamed_tests(path) == {"test_steering": ["controller"]}

