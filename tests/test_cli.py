"""The command line: lazy command groups (only the one named is imported) and the conventions every command keeps."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import COMMAND_GROUPS, build_parser, command_group, main
from controller.cli.common import HelpFormatter, OneLineErrorParser

SMOKE = Path(__file__).resolve().parents[1] / "campaigns" / "replay-smoke.yaml"


@pytest.mark.parametrize("group", sorted(COMMAND_GROUPS))
def test_every_group_registers_and_prints_help(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([group, "--help"])
    assert done.value.code == 0
    assert f"usage: slicebed {group}" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "group"), [
    (["campaign", "run", "x.yaml"], "campaign"),
    (["--runs-dir", "model", "optimize", "--help"], "optimize"),
    (["--quiet", "runs", "list"], "runs"),
    (["--version"], None),
    (["nonsense"], None),
])
def test_command_group_skips_global_options_and_their_values(argv: list[str], group: str | None) -> None:
    assert command_group(argv) == group


def test_version_imports_no_command_module() -> None:
    code = ("import sys; from controller.cli import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('controller.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['controller.cli.common']"


# --- conventions: help on every option (defaults shown), --json on every command, cmd_<group>_<action> ----------

def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name (empty for a leaf command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                                            argparse.ArgumentParser]]:
    children = subcommands(parser)
    if not children:
        yield path, parser
    for name, child in children.items():
        yield from leaf_commands(child, (*path, name))


def every_command() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command of every group, each group registered on its own parser as `slicebed GROUP` does it."""
    return [found for group in sorted(COMMAND_GROUPS)
            for found in leaf_commands(subcommands(build_parser(group))[group], (group,))]


def convention_problems(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """What command ``path`` does against the CLI conventions (empty when nothing)."""
    command = " ".join(path)
    problems = [f"{command}: {action.dest} has no help" for action in parser._actions
                if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]
    if "--json" not in parser._option_string_actions:
        problems.append(f"{command}: no --json option (the result as one JSON object)")
    handler = parser.get_default("handler")
    expected = "cmd_" + "_".join(part.replace("-", "_") for part in path)
    if getattr(handler, "__name__", None) != expected:
        problems.append(f"{command}: handler {getattr(handler, '__name__', None)!r}, expected {expected!r}")
    if not issubclass(parser.formatter_class, HelpFormatter):
        problems.append(f"{command}: help does not show the defaults ({parser.formatter_class.__name__})")
    return problems


def test_every_command_follows_the_cli_conventions() -> None:
    commands = every_command()
    assert {path[0] for path, _ in commands} == set(COMMAND_GROUPS)
    assert {("campaign", "run"), ("optimize",), ("testbed", "check")} <= {path for path, _ in commands}
    assert [problem for path, parser in commands for problem in convention_problems(path, parser)] == []


def test_the_convention_check_catches_each_breach() -> None:
    def cmd_demo_show(_args: argparse.Namespace) -> int:
        return 0

    bad = argparse.ArgumentParser()
    bad.add_argument("--limit", type=int, default=3)
    bad.set_defaults(handler=cmd_demo_show)
    assert convention_problems(("demo", "list"), bad) == [
        "demo list: limit has no help", "demo list: no --json option (the result as one JSON object)",
        "demo list: handler 'cmd_demo_show', expected 'cmd_demo_list'",
        "demo list: help does not show the defaults (HelpFormatter)"]


def test_help_shows_defaults_that_say_something() -> None:
    parser = OneLineErrorParser(prog="demo")
    parser.add_argument("--pace", type=float, default=0.5, help="wall seconds per testbed second")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a small run")
    text = " ".join(parser.format_help().split())
    assert "wall seconds per testbed second (default: 0.5)" in text
    assert "output directory" in text and "output directory (default" not in text
    assert "a small run" in text and "a small run (default" not in text


@pytest.mark.parametrize("argv", [
    ["runs", "list"],
    ["campaign", "schedule", str(SMOKE), "--every", "2h", "--kubernetes"],
    ["campaign", "schedule", str(SMOKE), "--every", "6h", "--unit-dir", "{units}", "--no-enable"],
])
def test_json_prints_exactly_one_object_and_the_default_is_for_people(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "units").mkdir()
    filled = [part.format(units=tmp_path / "units") for part in argv]
    assert main(["--runs-dir", str(tmp_path / "runs"), *filled, "--json"]) == 0
    out = capsys.readouterr().out
    assert isinstance(json.loads(out), dict) and out.count("\n") == 1
    assert main(["--runs-dir", str(tmp_path / "runs"), *filled]) == 0
    people = capsys.readouterr().out
    assert people.strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(people)
